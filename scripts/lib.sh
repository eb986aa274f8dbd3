# Shared by scripts/test and scripts/demo (source it; it is not a program).
# Sets SC_ROOT to the repository root and cds there.

SC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$SC_ROOT"

SC_PACKAGES=(libasio-dev libfmt-dev catch2 cmake g++ clang ncat ccache libssl-dev openssl python3 iproute2 curl prometheus haproxy)

sc_log() { printf '==> %s\n' "$*" >&2; }

# Installs whichever of SC_PACKAGES is missing (apt-get; sudo only when not root).
sc_ensure_deps() {
    local missing=() pkg
    for pkg in "${SC_PACKAGES[@]}"; do
        if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0

    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if ! command -v sudo >/dev/null; then
            echo "error: missing packages (${missing[*]}) and not root, and sudo is not available" >&2
            return 1
        fi
        sudo=(sudo)
    fi
    sc_log "installing ${missing[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

# sc_configure BUILD_DIR CXX [CMAKE_ARGS...]: configures the project in BUILD_DIR (RelWithDebInfo).
sc_configure() {
    local dir="$1" cxx="$2"
    shift 2
    # ccache keeps compiled objects across builds and clean clones on the same machine (its cache
    # lives in the user's home): a rebuild after a small change, or CI after a session, is cheap.
    # Paths are hashed relative to the checkout, so a clone in another folder hits the same cache.
    local launcher=()
    if command -v ccache >/dev/null; then
        launcher=("-DCMAKE_CXX_COMPILER_LAUNCHER=env;CCACHE_BASEDIR=$SC_ROOT;CCACHE_NOHASHDIR=1;ccache")
    fi
    sc_log "configuring $dir with $cxx"
    cmake -S "$SC_ROOT" -B "$dir" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_COMPILER="$cxx" \
        -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
        ${launcher[@]+"${launcher[@]}"} \
        "$@"
}

# sc_demo_args [MODE] [socket-connector options...]: the arguments scripts/demo runs the command
# with, one per line. The demo's defaults (server-to-server --a :9000 --b :8000 --verbose
# --log-traffic --timeout 0) each give way to the same option given here (`--a :9001` or
# `--a=:9001`); a first argument that is not an option replaces the mode. -h or --help: the
# command's help alone.
sc_demo_args() {
    local mode=server-to-server arg
    if [[ $# -gt 0 && $1 != -* ]]; then
        mode=$1
        shift
    fi
    local -A given=()
    for arg in "$@"; do
        case $arg in
        -h | --help | --version)
            printf '%s\n' "$arg"
            return 0
            ;;
        --*) given[${arg%%=*}]=1 ;;
        esac
    done
    # name and value ("" for a flag)
    local defaults=(--a :9000 --b :8000 --verbose "" --log-traffic "" --timeout 0)
    printf '%s\n' "$mode"
    local i
    for ((i = 0; i < ${#defaults[@]}; i += 2)); do
        [[ -n ${given[${defaults[i]}]+set} ]] && continue
        printf '%s\n' "${defaults[i]}"
        [[ -n ${defaults[i + 1]} ]] && printf '%s\n' "${defaults[i + 1]}"
    done
    # The caller's own, as given.
    for arg in "$@"; do
        printf '%s\n' "$arg"
    done
}
