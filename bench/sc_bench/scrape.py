"""Issue 22's scraper: while `socket-connector-scraped` runs, `bench/tools.py scrape` GETs its
`--metrics` endpoint's /metrics ten times a second. It starts with the relay (once the relay
listens) and stops with it (before it), and what it counted (scrapes, failures and why, answer
times) is kept in h.scrapes with the load it ran beside. A failed scrape is an error of the run.

The scraper is bounded like every load generator here: SECONDS and MAX_COUNT, far more than any
relay stays up (the harness stops it with its relay)."""
import json
import subprocess

from .common import PY, TOOLS, BenchError, log
from .processes import PROCS, read_line, tail

INTERVAL = 0.1        # ten scrapes a second
TIMEOUT = 2           # seconds for a whole scrape: connect, request, the complete answer
SECONDS = 3600        # the scraper's own bounds
MAX_COUNT = 36000


class Scraper:
    def __init__(self, h, proc, port, phase):
        self.h, self.proc, self.port, self.phase = h, proc, port, phase


def command(port):
    return [PY, TOOLS, "scrape", "--connect", str(port), "--path", "/metrics", "--interval", str(INTERVAL),
            "--seconds", str(SECONDS), "--max-count", str(MAX_COUNT), "--timeout", str(TIMEOUT)]


def start(h, port, label):
    """Starts the scraper on the endpoint at `port` and waits for its first scrape."""
    cmd = command(port)
    h.journal.note_cmd("relay", f"issue 22: the scraper beside {label}, started once it listens and "
                                "stopped before it: GET /metrics ten times a second, a new connection each", cmd)
    p = PROCS.spawn(cmd, "scraper", stdin=subprocess.PIPE, stdout_pipe=True)
    if read_line(p, TIMEOUT + 10) != "READY":
        PROCS.stop(p)
        raise BenchError(f"the scraper did not start: {tail(p.err_path)}")
    return Scraper(h, p, port, dict(h.phase or {}))


def stop(scraper):
    """Stops the scraper and keeps what it counted in h.scrapes; failed scrapes, or no count at
    all, go to the run's errors. Never raises: the relay is stopped after it regardless."""
    if scraper is None:
        return
    h, p = scraper.h, scraper.proc
    try:
        p.stdin.write(b"\n")
        p.stdin.flush()
    except OSError:
        pass
    line = read_line(p, TIMEOUT + 10)
    PROCS.stop(p)
    where = _where(scraper.phase)
    try:
        j = json.loads(line or "")
    except ValueError:
        h.journal.errors.append(f"scraper ({where}) gave no count: {tail(p.err_path)}")
        log(f"ERROR scraper ({where}) gave no count")
        return
    j.update(scraper.phase)
    h.scrapes.append(j)
    if j["failed"]:
        msg = (f"scrapes of the --metrics endpoint ({where}): {j['failed']} of {j['scrapes']} failed: "
               + "; ".join(f"{k} ({v})" for k, v in j["errors"].items()))
        h.journal.errors.append(msg)
        log(f"ERROR {msg}")
    if j.get("stopped") != "stdin":
        h.journal.notes.append(f"the scraper ({where}) stopped at its bound ({j.get('stopped')}) "
                               "before its relay was stopped")


def _where(phase):
    metric, rep = phase.get("metric"), phase.get("rep")
    if metric in ("connpair", "latpair"):
        return "paired conn/s rounds" if metric == "connpair" else "paired latency rounds"
    return f"{metric or 'load'}" + ("" if rep is None else f", repeat {rep + 1}")
