"""bench/run's command line; signals and cleanup around the run."""
import argparse
import os
import shutil
import signal
import sys

from .common import BenchError, Interrupted, log
from .harness import Harness
from .peers import ALL_PEERS
from .processes import PROCS
from .schedule import TLS_METRICS     # issue 21: --tls

DEFAULT_METRICS = ["throughput", "cpu", "latency", "connrate", "memory", "sessionrate", "sessionmemory"]
ALL_METRICS = DEFAULT_METRICS + TLS_METRICS


def parse_args(description):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)

    def csv(allowed):
        def conv(s):
            xs = [x.strip() for x in s.split(",") if x.strip()]
            bad = [x for x in xs if x not in allowed]
            if bad or not xs:
                raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)} (got {s!r})")
            return list(dict.fromkeys(xs))
        return conv

    def ints(s):
        try:
            xs = [int(x) for x in s.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError("comma-separated positive numbers")
        if not xs or min(xs) < 1:
            raise argparse.ArgumentTypeError("comma-separated positive numbers")
        return xs
    p.add_argument("--peers", type=csv(ALL_PEERS), default=None,
                   help=f"relays to run besides direct (default {','.join(ALL_PEERS)}; stunnel runs the "
                        "TLS metrics only, socat and socket-connector-scraped the plaintext ones only)")
    p.add_argument("--metrics", type=csv(ALL_METRICS), default=None,
                   help=f"figures to measure: any of {','.join(ALL_METRICS)} (default "
                        f"{','.join(DEFAULT_METRICS)})")
    p.add_argument("--tls", action="store_true",
                   help=f"issue 21, TLS termination: add {','.join(TLS_METRICS)} to the metrics; without "
                        "--metrics, measure only these")
    p.add_argument("--tls-pairs", type=int,
                   help="idle TLS pairs held for tls-memory (default 1000; 100 with --quick)")
    p.add_argument("--repeats", type=int, help="interleaved repeats (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke check: 1 s loads, 1 repeat, 100 and 1,000 idle pairs, 128 MiB pushed, "
                        "1,000 rendezvous sessions")
    p.add_argument("--threads", type=int, help="passed to socket-connector as --threads N")
    p.add_argument("--out", help="also write the results as JSON to this file")
    p.add_argument("--chart", help="draw a PNG chart (gnuplot), e.g. docs/bench.png")
    p.add_argument("--binary", help="socket-connector binary (default build/gcc/examples/socket-connector)")
    p.add_argument("--duration", type=int,
                   help="seconds per iperf3/sockperf/wrk/sessions load (default 5; 1 with --quick)")
    p.add_argument("--pairs", type=ints, help="idle pair levels (default 1000,10000; 100,1000 with --quick)")
    p.add_argument("--fork-pairs-max", type=int, default=1000,
                   help="largest idle pair level run against socat, which forks per pair (default 1000)")
    p.add_argument("--base-port", type=int, default=27100,
                   help="first of the ~20 loopback ports used; kept outside the ephemeral range (default 27100)")
    p.add_argument("--python-latency", action="store_true",
                   help="measure RTT with the python 1-byte ping-pong instead of sockperf")
    p.add_argument("--no-install", action="store_true", help="never run apt-get; skip what is missing")
    p.add_argument("--no-micro", action="store_true",
                   help="do not run the library's micro-benchmarks (build/gcc/**/*_bench)")
    p.add_argument("--pair-rounds", type=int,
                   help="paired rounds after the repeats: conn/s through socket-connector, HAProxy "
                        "(all three) and nginx stream, and latency through socket-connector, nginx stream "
                        "and HAProxy (no splice), each loaded in turn, the order reversed every round; with "
                        "the TLS metrics also full TLS handshakes/s and wrk's https conn/s through the TLS "
                        "relays (default 16; 2 with --quick; 0: none)")
    p.add_argument("--pair-seconds", type=int, help="seconds per load in a paired round (default 2; 1 with --quick)")
    a = p.parse_args()
    a.peers_given = a.peers is not None
    if a.peers is None:
        a.peers = list(ALL_PEERS)
    if a.metrics is None:
        a.metrics = list(TLS_METRICS if a.tls else DEFAULT_METRICS)
    elif a.tls:
        a.metrics = list(dict.fromkeys(a.metrics + TLS_METRICS))
    if a.tls_pairs is not None and a.tls_pairs < 1:
        p.error("--tls-pairs must be at least 1")
    if a.pair_rounds is None:
        a.pair_rounds = 2 if a.quick else 16
    if a.pair_rounds < 0:
        p.error("--pair-rounds must be 0 or more")
    if a.pair_seconds is None:
        a.pair_seconds = 1 if a.quick else 2
    if a.pair_seconds < 1:
        p.error("--pair-seconds must be at least 1")
    if a.repeats is not None and a.repeats < 1:
        p.error("--repeats must be at least 1")
    if a.threads is not None and a.threads < 1:
        p.error("--threads must be at least 1")
    if a.duration is not None and a.duration < 1:
        p.error("--duration must be at least 1")
    return a


def main(description):
    """bench/run: `description` is its docstring, the --help text."""
    args = parse_args(description)

    def on_signal(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    h = Harness(args, list(sys.argv))
    try:
        rc = h.main()
    except Interrupted as e:
        log(f"interrupted ({e}); stopping everything started here")
        rc = 130
    except BenchError as e:
        log(f"error: {e}")
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        PROCS.stop_all()
        if PROCS.tmp and os.path.isdir(PROCS.tmp):
            if os.environ.get("BENCH_KEEP_TMP"):
                log(f"kept {PROCS.tmp}")
            else:
                shutil.rmtree(PROCS.tmp, ignore_errors=True)
    sys.exit(rc)
