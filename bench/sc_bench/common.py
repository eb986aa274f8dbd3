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


def relative(path):
    """A path as the report names it: relative to the repository root when it lies inside the
    checkout, else its file name alone (a report names no path of the machine it ran on)."""
    full = os.path.realpath(path)
    if full == ROOT or full.startswith(ROOT + os.sep):
        return os.path.relpath(full, ROOT)
    if os.path.abspath(path).startswith(ROOT + os.sep):
        return os.path.relpath(os.path.abspath(path), ROOT)
    return os.path.basename(path.rstrip(os.sep)) or path


def relative_argv(argv):
    """The command line as the report prints it: bench/run relative, and every absolute path
    among the arguments (also after `--opt=`) through relative()."""
    out = [os.path.relpath(argv[0], ROOT)]
    for arg in argv[1:]:
        opt, eq, val = arg.partition("=")
        if eq and opt.startswith("--") and os.path.isabs(val):
            out.append(f"{opt}={relative(val)}")
        else:
            out.append(relative(arg) if os.path.isabs(arg) else arg)
    return out


class BenchError(Exception):
    """Something did not run at all: a relay that would not start, a load that failed."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP: stop everything started here."""
