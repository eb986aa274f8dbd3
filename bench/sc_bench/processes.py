"""Starting and stopping processes, waiting for them to listen or speak, and reading their
CPU time, RSS and the machine's TCP segments from /proc.

Every process runs in its own process group with PR_SET_PDEATHSIG, so stopping a group also
stops what it forked (socat's children, nginx workers), and the harness's direct children die
with it even if it is killed with SIGKILL."""
import ctypes
import os
import re
import select
import signal
import subprocess
import time

from .common import SYS_PATH, BenchError

_libc = None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    pass


def _child_setup():
    # Die with the harness even if it is killed with SIGKILL (PR_SET_PDEATHSIG).
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class Procs:
    """Every process the harness starts, each in its own process group."""

    def __init__(self):
        self.live = []
        self.seq = 0
        self.tmp = None

    def spawn(self, cmd, label, stdin=None, stdout_pipe=False):
        self.seq += 1
        base = os.path.join(self.tmp, f"{self.seq:03d}-{label}")
        out = subprocess.PIPE if stdout_pipe else open(base + ".out", "wb")
        err = open(base + ".err", "wb")
        p = subprocess.Popen(cmd, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                             stdout=out, stderr=err, start_new_session=True,
                             preexec_fn=_child_setup, env=dict(os.environ, PATH=SYS_PATH))
        p.out_path = None if stdout_pipe else base + ".out"
        p.err_path = base + ".err"
        p.label = label
        self.live.append(p)
        return p

    def stop(self, p, grace=3.0):
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # The group may outlive its leader (socat children, nginx workers).
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        for f in (p.stdin, p.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in list(reversed(self.live)):
            self.stop(p, grace=1.0)


PROCS = Procs()


def tail(path, n=8):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").strip().splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return ""


def listening(port):
    want = f"0100007F:{port:04X}"
    any_ = f"00000000:{port:04X}"
    for path in ("/proc/net/tcp",):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and parts[1] in (want, any_):
                        return True
        except OSError:
            pass
    return False


def wait_listen(p, port, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if listening(port):
            return
        if p.poll() is not None:
            raise BenchError(f"{p.label} exited with status {p.returncode} before listening on "
                             f"{port}: {tail(p.err_path) or tail(p.out_path or '')}")
        time.sleep(0.02)
    raise BenchError(f"{p.label} did not listen on {port} within {timeout:.0f} s")


def wait_output(p, pattern, count=1, timeout=30.0):
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(p.out_path, "rb") as f:
                text = f.read().decode(errors="replace")
            if len(rx.findall(text)) >= count:
                return text
        except OSError:
            pass
        if p.poll() is not None:
            raise BenchError(f"{p.label} exited with status {p.returncode} before printing "
                             f"'{pattern}': {tail(p.err_path)}")
        time.sleep(0.02)
    raise BenchError(f"{p.label} did not print '{pattern}' within {timeout:.0f} s")


def read_line(p, timeout):
    """One line from a process started with stdout_pipe=True (bounded wait)."""
    end = time.monotonic() + timeout
    buf = b""
    fd = p.stdout.fileno()
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], max(0.0, min(0.5, end - time.monotonic())))
        if r:
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
            if chunk == b"\n":
                return buf.decode(errors="replace").strip()
        elif p.poll() is not None:
            break
    return None


def run(cmd, timeout, label, stdin=None):
    """Runs a load generator to completion (bounded); returns stdout text. `stdin`: a file to
    read its standard input from (default: /dev/null)."""
    p = PROCS.spawn(cmd, label, stdin=stdin)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        PROCS.stop(p)
        raise BenchError(f"{label} did not finish within {timeout:.0f} s")
    PROCS.stop(p)
    with open(p.out_path, "rb") as f:
        out = f.read().decode(errors="replace")
    if p.returncode != 0:
        raise BenchError(f"{label} exited with status {p.returncode}: "
                         f"{tail(p.err_path) or out.strip()[-600:]}")
    return out


# The /proc readings: CPU time and RSS summed over a process tree, TCP segments sent.
CLK = os.sysconf("SC_CLK_TCK")


def _proc_stats():
    stats = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rfind(")") + 2:].split()
        stats[int(d)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    return stats


def tree_pids(root, stats=None):
    stats = stats or _proc_stats()
    children = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out, stats


def tree_cpu(root):
    """utime+stime (+cutime+cstime: reaped children) of a process tree, seconds."""
    pids, stats = tree_pids(root)
    return sum(stats[p][1] for p in pids) / CLK


def tcp_out_segs():
    """The machine's TCP segments sent so far (/proc/net/snmp Tcp OutSegs), or None."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Tcp:")]
        return int(rows[1][rows[0].index("OutSegs")])
    except (OSError, IndexError, ValueError):
        return None


def tcp_port_sockets(port):
    """The sockets of local port `port` (/proc/net/tcp): (established, of those how many have
    bytes not yet read, connections waiting in the accept queues of its listening sockets)."""
    suffix = f":{port:04X}"
    est = unread = backlog = 0
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if not parts[1].endswith(suffix):
                    continue
                rx = int(parts[4].split(":")[1], 16)
                if parts[3] == "01":
                    est += 1
                    unread += rx > 0
                elif parts[3] == "0A":
                    backlog += rx
    except (OSError, IndexError, ValueError):
        pass
    return est, unread, backlog


def tree_rss(root):
    """Summed VmRSS of a process tree, KiB, and its process count."""
    pids, _ = tree_pids(root)
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total, len(pids)
