"""Paths, logging and the harness's two exceptions, shared by every module."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, "bench", "tools.py")
PY = sys.executable or "python3"
HOST = "127.0.0.1"
SYS_PATH = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """Something did not run at all: a relay that would not start, a load that failed."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP: stop everything started here."""
