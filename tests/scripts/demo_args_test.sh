#!/usr/bin/env bash
# scripts/demo's arguments (sc_demo_args in scripts/lib.sh): the defaults, and options given on
# its command line replacing them. Run by ctest from any directory.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

failures=0
expect() {
    local want=$1
    shift
    local got
    got=$(sc_demo_args "$@" | tr '\n' ' ')
    if [[ $got != "$want" ]]; then
        printf 'FAIL: sc_demo_args %s\n  want: %s\n  got:  %s\n' "$*" "$want" "$got" >&2
        failures=$((failures + 1))
    fi
}

expect "server-to-server --a :9000 --b :8000 --verbose --log-traffic --timeout 0 "
expect "server-to-server --verbose --log-traffic --timeout 0 --a :9001 --b :8001 " --a :9001 --b :8001
expect "server-to-server --b :8000 --verbose --log-traffic --timeout 0 --a=:9001 " --a=:9001
expect "server-to-server --a :9000 --b :8000 --verbose --log-traffic --timeout 5 " --timeout 5
expect "server-to-server --a :9000 --b :8000 --verbose --log-traffic --timeout 0 --stats " --stats
expect "server-to-socket --b :8000 --verbose --log-traffic --timeout 0 --a :9001 --multi " \
    server-to-socket --a :9001 --multi
expect "--help " --a :1 --help
expect "-h " -h

if ((failures > 0)); then
    echo "demo_args: $failures failed" >&2
    exit 1
fi
echo "demo_args: all passed"
