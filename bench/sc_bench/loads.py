"""One measurement through one relay (or `direct`), started fresh for it and stopped right
after. Each returns the figures of its record:

  throughput  iperf3 -P 1 and -P 8, and the relay's CPU time during each
  pusher      bench/tools.py source -> sink, fixed bytes: direct, the proxy mode and rendezvous
  latency     sockperf ping-pong (or the python one): p50, p99 and CPU per round trip
  connrate    wrk with `Connection: close`: conn/s, CPU and TCP segments per connection
  memory      bench/tools.py idle-pairs: the relay's RSS per idle pair at each level
  sessionrate bench/tools.py sessions: sessions/s through `socket-connector rendezvous`, and
              the proxy's conn/s by the same generator (its own echo behind the proxy)
  sessionmemory  bench/tools.py rv-memory: the rendezvous's RSS per pending side and per
              idle paired session
  tls-throughput  issue 21: iperf3 -P 1 and -P 8 through the TLS client wrapper (tls.py) and a
              relay terminating TLS; the relay's CPU time and the wrapper's
  tls-connrate  issue 21: full TLS handshakes/s (openssl s_time -new, 16 at once) and wrk's
              https conn/s, each connection fetching the backend's tiny file; CPU per connection
  tls-memory  issue 21: bench/tools.py tls-idle-pairs: the relay's RSS per idle TLS pair

latency_load, wrk_load and handshake_load also serve the paired rounds (schedule.py), on relays
already up."""
import json
import re
import subprocess
import time

from . import backends, peers, tls
from .common import HOST, PY, TOOLS, BenchError
from .peers import RENDEZVOUS, SESSIONS
from .processes import PROCS, read_line, run, tail, tcp_out_segs, tcp_port_sockets, tree_cpu, tree_rss


def throughput(h, target):
    relay = peers.start(h, target, h.port["iperf3"])
    out = {}
    try:
        for streams in (1, 8):
            cmd = ["iperf3", "-c", HOST, "-p", str(relay.port), "-P", str(streams),
                   "-t", str(h.p["iperf_t"]), "--connect-timeout", "5000", "-J"]
            h.journal.note_cmd("load", f"throughput, {streams} stream(s)", cmd, {relay.port: "PORT"})
            cpu0 = tree_cpu(relay.pid) if relay.pid else None
            try:
                text = run(cmd, h.p["iperf_t"] + 30, f"iperf3-P{streams}-{target}")
            except BenchError:
                backends.start_iperf(h)       # a failed test can leave the server busy
                raise
            cpu1 = tree_cpu(relay.pid) if relay.pid else None
            try:
                j = json.loads(text)
                recv = j["end"]["sum_received"]
            except (ValueError, KeyError) as e:
                raise BenchError(f"iperf3 output not understood ({e}): {text[-300:]}")
            out[f"bps{streams}"] = recv["bits_per_second"]
            out[f"bytes{streams}"] = recv["bytes"]
            if cpu0 is not None:
                out[f"cpu{streams}"] = cpu1 - cpu0
    finally:
        peers.stop(relay)
    return out


def pusher(h, target):
    """Throughput with the python pusher: direct, proxy (--multi) and rendezvous."""
    out = {}
    for streams in (1, 8):
        tl = h.p["push_limit"]
        total = h.p["push_bytes"]
        sink_port = h.port["sink"]
        relay = None
        sink = None
        try:
            if target == RENDEZVOUS:
                relay = peers.start(h, RENDEZVOUS, h.port["rdv_b"])
                sink_cmd = [PY, TOOLS, "sink", "--connect", str(h.port["rdv_b"]),
                            "--streams", str(streams), "--time-limit", str(tl + 10)]
                src_port = relay.port
            else:
                sink_cmd = [PY, TOOLS, "sink", "--listen", str(sink_port),
                            "--streams", str(streams), "--time-limit", str(tl + 10)]
            h.journal.note_cmd("load", "pusher sink, " + ("dialing the rendezvous B side" if target == RENDEZVOUS
                                                     else "listening (the backend)"), sink_cmd)
            sink = PROCS.spawn(sink_cmd, f"sink-{target}", stdout_pipe=True)
            if read_line(sink, 30) != "READY":
                raise BenchError(f"pusher sink did not start: {tail(sink.err_path)}")
            if target == "direct":
                src_port = sink_port
            elif target != RENDEZVOUS:
                relay = peers.start(h, target, sink_port)
                src_port = relay.port
            cpu0 = tree_cpu(relay.pid) if relay else None
            src_cmd = [PY, TOOLS, "source", "--connect", str(src_port), "--streams", str(streams),
                       "--bytes", str(total), "--time-limit", str(tl)]
            h.journal.note_cmd("load", "pusher source", src_cmd, {src_port: "PORT"})
            run(src_cmd, tl + 30, f"source-{target}")
            line = read_line(sink, 30)
            cpu1 = tree_cpu(relay.pid) if relay else None
            try:
                j = json.loads(line or "")
            except ValueError:
                raise BenchError(f"pusher sink gave no result: {tail(sink.err_path)}")
            if not j["bytes"] or j["seconds"] <= 0:
                raise BenchError("pusher moved no bytes")
            out[f"bps{streams}"] = j["bytes"] * 8 / j["seconds"]
            out[f"bytes{streams}"] = j["bytes"]
            if relay:
                out[f"cpu{streams}"] = cpu1 - cpu0
        finally:
            PROCS.stop(sink)
            peers.stop(relay)
    return out


def latency(h, target):
    relay = peers.start(h, target, h.port["sockperf"])
    try:
        return latency_load(h, relay, h.p["lat_t"], "latency")
    finally:
        peers.stop(relay)


def latency_load(h, relay, t, what):
    """One ping-pong of `t` seconds through `relay`: the round trip's p50 and p99 in µs, and
    the relay's CPU time per round trip (all of the run's round trips, warm-up included)."""
    target = relay.target
    cpu0 = tree_cpu(relay.pid) if relay.pid else None
    if h.use_sockperf:
        cmd = ["sockperf", "ping-pong", "--tcp", "-i", HOST, "-p", str(relay.port),
               "-t", str(t), "--full-rtt"]
        h.journal.note_cmd("load", f"{what}: sockperf, 14-byte messages, full round trip", cmd, {relay.port: "PORT"})
        text = re.sub(r"\x1b\[[0-9;]*m", "", run(cmd, t + 30, f"sockperf-{target}"))
        p50 = re.search(r"percentile 50\.000 =\s*([\d.]+)", text)
        p99 = re.search(r"percentile 99\.000 =\s*([\d.]+)", text)
        if not (p50 and p99):
            raise BenchError(f"sockperf output not understood: {text[-300:]}")
        out = {"p50": float(p50.group(1)), "p99": float(p99.group(1))}
        n = re.search(r"\[Total Run\].*?ReceivedMessages=(\d+)", text)
        trips = int(n.group(1)) if n else 0
    else:
        cmd = [PY, TOOLS, "pingpong-client", "--connect", str(relay.port), "--seconds", str(t)]
        h.journal.note_cmd("load", f"{what}: python 1-byte ping-pong, round trip", cmd, {relay.port: "PORT"})
        j = json.loads(run(cmd, t + 30, f"pingpong-{target}").strip().splitlines()[-1])
        if not j["count"]:
            raise BenchError("ping-pong got no answer")
        out = {"p50": j["p50_us"], "p99": j["p99_us"]}
        trips = j["count"]
    cpu1 = tree_cpu(relay.pid) if relay.pid else None
    if trips > 0 and cpu0 is not None and cpu1 is not None:
        out["cpu_us_per_rt"] = (cpu1 - cpu0) / trips * 1e6
    return out


def connrate(h, target):
    relay = peers.start(h, target, h.port["http"])
    try:
        return wrk_load(h, relay, h.p["wrk_d"], "conn/s: wrk, a new connection per request")
    finally:
        peers.stop(relay)


def wrk_load(h, relay, d, label, scheme="http"):
    """One wrk load of `d` seconds through `relay`: conn/s, and the relay's CPU and the TCP
    segments per connection. `scheme` https: wrk speaks TLS to the relay (issue 21)."""
    cmd = ["wrk", "-t", "1", "-c", str(h.p["wrk_c"]), "-d", f"{d}s", "--timeout", "2s",
           "-H", "Connection: close", f"{scheme}://{HOST}:{relay.port}/tiny.txt"]
    h.journal.note_cmd("load", label, cmd, {relay.port: "PORT"})
    target = relay.target
    cpu0 = tree_cpu(relay.pid) if relay.pid else None
    segs0 = tcp_out_segs()
    text = run(cmd, d + 30, f"wrk-{target}")
    segs1 = tcp_out_segs()
    cpu1 = tree_cpu(relay.pid) if relay.pid else None
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if not m:
        raise BenchError(f"wrk output not understood: {text[-300:]}")
    out = {"cps": float(m.group(1))}
    # What each connection cost: the relay's CPU, and TCP segments on both links.
    n = re.search(r"(\d+) requests in", text)
    requests = int(n.group(1)) if n else 0
    if requests > 0:
        out["requests"] = requests
        if cpu0 is not None and cpu1 is not None:
            out["cpu_us_per_conn"] = (cpu1 - cpu0) / requests * 1e6
        if segs0 is not None and segs1 is not None:
            out["segs_per_conn"] = (segs1 - segs0) / requests
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if e:
        out["socket_errors"] = sum(int(x) for x in e.groups())
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if n:
        out["non2xx"] = int(n.group(1))
    return out


def _release(holder):
    """Sends the line a holding tool (idle-pairs, rv-memory) waits for before its next stage."""
    try:
        holder.stdin.write(b"\n")
        holder.stdin.flush()
    except OSError:
        pass


def _finish(holder):
    """Waits (bounded) for a holding tool to close what it holds and exit."""
    try:
        holder.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def memory(h, target):
    out = {}
    for level in h.levels:
        n = level
        if target == "socat" and n > h.args.fork_pairs_max:
            out[f"skip{level}"] = (f"socat forks one process per pair; skipped above "
                                   f"{h.args.fork_pairs_max} pairs (--fork-pairs-max)")
            continue
        relay = peers.start(h, target, h.port["idle"])
        holder = None
        try:
            time.sleep(0.3)
            rss0, _ = tree_rss(relay.pid)
            cmd = [PY, TOOLS, "idle-pairs", "--relay", str(relay.port), "--backend", str(h.port["idle"]),
                   "--pairs", str(n), "--timeout", str(h.p["mem_timeout"])]
            h.journal.note_cmd("load", "memory: idle pairs", cmd, {relay.port: "PORT"})
            holder = PROCS.spawn(cmd, f"idle-{target}-{n}", stdin=subprocess.PIPE, stdout_pipe=True)
            line = read_line(holder, h.p["mem_timeout"] + 30)
            try:
                j = json.loads(line or "")
            except ValueError:
                raise BenchError(f"idle-pairs gave no result: {tail(holder.err_path)}")
            if j["pairs"] == 0:
                raise BenchError(f"no pair reached the backend through {target}")
            time.sleep(0.5)
            rss1, nproc = tree_rss(relay.pid)
            out[f"rss_kib{level}"] = (rss1 - rss0) / j["pairs"]
            out[f"pairs{level}"] = j["pairs"]
            out[f"rss0_{level}"] = rss0
            out[f"rss1_{level}"] = rss1
            out[f"procs{level}"] = nproc
            if j["pairs"] < n:
                out[f"partial{level}"] = f"only {j['pairs']} of {n} pairs in {j['seconds']:.0f} s"
            _release(holder)
            _finish(holder)
        finally:
            PROCS.stop(holder)
            peers.stop(relay)
    return out


def sessionrate(h, target):
    """Units per second by bench/tools.py sessions: through `socket-connector rendezvous`
    (target SESSIONS) a unit is a session, two connections; through the proxy mode
    (target socket-connector) one connection, which the proxy relays to the generator's own
    echo. Also the relay's CPU time and the machine's TCP segments per unit."""
    echo = h.port["echo"]
    relay = peers.start(h, target, echo)
    try:
        t = h.p["sess_t"]
        cmd = [PY, TOOLS, "sessions"]
        if target == SESSIONS:
            cmd += ["--mode", "rendezvous", "--connect", str(relay.port), "--secret-file", peers.secret_file(h)]
            label = ("sessions/s: per session two connections (sides A and B of a fresh session), each sends "
                     "its token line and 64 bytes and reads the other's 64")
        else:
            cmd += ["--mode", "proxy", "--connect", str(relay.port), "--echo-listen", str(echo)]
            label = ("proxy conn/s, the same generator: per unit one connection, 64 bytes sent, echoed by "
                     "the generator behind the proxy, read back")
        cmd += ["--concurrency", str(h.p["sess_c"]), "--seconds", str(t), "--max-count", str(h.p["sess_max"]),
                "--size", "64", "--io-timeout", "5"]
        h.journal.note_cmd("load", label, cmd, {relay.port: "PORT", echo: "BACKEND"})
        cpu0 = tree_cpu(relay.pid)
        segs0 = tcp_out_segs()
        # Minting 2 tokens per unit up to --max-count comes first, before the generator's
        # clock starts: allow for it.
        text = run(cmd, t + 90, f"sessions-{target}")
        segs1 = tcp_out_segs()
        cpu1 = tree_cpu(relay.pid)
    finally:
        peers.stop(relay)
    try:
        j = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"sessions gave no result: {text[-300:]}")
    unit = "session" if target == SESSIONS else "connection"
    if not j["units"]:
        raise BenchError(f"no {unit} completed through {target}: {j['failed']} failed {j['errors']}")
    out = {"rate": j["rate"], "units": j["units"], "failed": j["failed"], "seconds": j["seconds"],
           "generator_cpu_s": j["generator_cpu_s"], "cpu_us_per_unit": (cpu1 - cpu0) / j["units"] * 1e6}
    if segs0 is not None and segs1 is not None:
        out["segs_per_unit"] = (segs1 - segs0) / j["units"]
    if j["failed"]:
        # A failed unit is never counted, and the run reports it as an error.
        out["error"] = (f"{j['failed']} of {j['started']} {unit}s failed: "
                        + "; ".join(f"{k} ({v})" for k, v in j["errors"].items()))
    return out


def _settle(port, established, timeout):
    """Waits (bounded) until `port` has at least `established` connections, none with bytes
    unread and none waiting to be accepted: the relay has read every token line and message.
    True when it did."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        est, unread, backlog = tcp_port_sockets(port)
        if est >= established and not unread and not backlog:
            return True
        time.sleep(0.2)
    return False


def sessionmemory(h, target):
    """The rendezvous's RSS: fresh, after N A sides have sent their tokens and wait, and after
    the N matching B sides have joined them (each pair exchanged a message both ways)."""
    n = h.session_level
    relay = peers.start(h, target, None)
    holder = None
    out = {"sessions_opened": n}
    timeout = h.p["mem_timeout"]
    where = "the fresh relay"     # what was under way, should the relay exit
    try:
        time.sleep(0.3)
        rss0, _ = tree_rss(relay.pid)
        cmd = [PY, TOOLS, "rv-memory", "--connect", str(relay.port), "--secret-file", peers.secret_file(h),
               "--sessions", str(n), "--timeout", str(timeout)]
        h.journal.note_cmd("load", "memory: pending sides, then idle paired sessions", cmd, {relay.port: "PORT"})
        holder = PROCS.spawn(cmd, f"rv-memory-{n}", stdin=subprocess.PIPE, stdout_pipe=True)

        def stage(name):
            line = read_line(holder, timeout + 30)
            try:
                j = json.loads(line or "")
            except ValueError:
                raise BenchError(f"rv-memory gave no result for {name}: {tail(holder.err_path)}")
            if j.get("stage") != name:
                raise BenchError(f"rv-memory: expected stage {name}, got {line}")
            return j

        where = f"{n:,} pending sides"
        j1 = stage("pending")
        sides = j1["sides"]
        if not sides:
            raise BenchError(f"no pending side stayed open at the rendezvous: {j1['errors']}")
        if not _settle(relay.port, sides, timeout):
            out["partial_pending"] = f"the relay had not read every pending side's token within {timeout} s"
        time.sleep(0.5)
        rss1, _ = tree_rss(relay.pid)
        _release(holder)
        where = f"{sides:,} sessions joining"
        j2 = stage("paired")
        sessions = j2["sessions"]
        if not sessions:
            raise BenchError(f"no session was joined at the rendezvous: {j2['errors']}")
        if not _settle(relay.port, 2 * sessions, timeout):
            out["partial_paired"] = f"the relay had not settled {sessions} paired sessions within {timeout} s"
        time.sleep(0.5)
        rss2, _ = tree_rss(relay.pid)
        out.update({"pending_sides": sides, "sessions": sessions, "rss0": rss0, "rss_pending": rss1,
                    "rss_paired": rss2, "kib_per_pending": (rss1 - rss0) / sides,
                    "kib_per_session": (rss2 - rss0) / sessions})
        errors = {k: v for j in (j1, j2) for k, v in j["errors"].items()}
        if sides < n or sessions < sides or errors:
            out["error"] = (f"{sides} of {n} sides pending, {sessions} sessions joined"
                            + (": " + "; ".join(f"{k} ({v})" for k, v in errors.items()) if errors else ""))
        where = "the release of the sessions"
        _release(holder)
        _finish(holder)
    finally:
        PROCS.stop(holder)
        if relay.proc.poll() is not None:
            PROCS.stop(relay.proc)
            raise BenchError(f"relay {target} exited (status {relay.proc.returncode}) during {where}: "
                             f"{tail(relay.proc.err_path) or tail(relay.proc.out_path)}")
        peers.stop(relay)
    return out


# ---- issue 21: TLS termination
def tls_throughput(h, target):
    """iperf3 -P 1 and -P 8 through the TLS client wrapper and `target` (which terminates TLS) to
    the iperf3 server; the relay's CPU time during each load, and the wrapper's."""
    relay = peers.start(h, target, h.port["iperf3"])
    wrapper = None
    out = {}
    try:
        wrapper = tls.wrapper_start(h, relay)
        wrap = h.port["tls_wrap"]
        for streams in (1, 8):
            cmd = ["iperf3", "-c", HOST, "-p", str(wrap), "-P", str(streams),
                   "-t", str(h.p["iperf_t"]), "--connect-timeout", "5000", "-J"]
            h.journal.note_cmd("load", f"TLS throughput, {streams} stream(s), through the wrapper", cmd,
                               {wrap: "WRAP"})
            cpu0, wcpu0 = tree_cpu(relay.pid), tree_cpu(wrapper.pid)
            try:
                text = run(cmd, h.p["iperf_t"] + 30, f"iperf3-tls-P{streams}-{target}")
            except BenchError:
                backends.start_iperf(h)       # a failed test can leave the server busy
                raise
            cpu1, wcpu1 = tree_cpu(relay.pid), tree_cpu(wrapper.pid)
            try:
                recv = json.loads(text)["end"]["sum_received"]
            except (ValueError, KeyError) as e:
                raise BenchError(f"iperf3 output not understood ({e}): {text[-300:]}")
            if not recv.get("bytes"):
                raise BenchError(f"no byte reached the iperf3 server through the wrapper and {target}")
            out[f"bps{streams}"] = recv["bits_per_second"]
            out[f"bytes{streams}"] = recv["bytes"]
            out[f"cpu{streams}"] = cpu1 - cpu0
            out[f"wcpu{streams}"] = wcpu1 - wcpu0
        if wrapper.poll() is not None:
            raise BenchError(f"the TLS client wrapper exited (status {wrapper.returncode}): {tail(wrapper.err_path)}")
    finally:
        PROCS.stop(wrapper)
        if wrapper is not None:
            neg = tls.wrapper_negotiated(wrapper)
            out["wrapper_ciphersuite"] = neg["ciphersuite"]
            out["wrapper_temp_key"] = neg["temp_key"]
            if neg["warnings"]:
                out["wrapper_warnings"] = neg["warnings"][:5]
        peers.stop(relay)
    return out


S_TIME_LINE = re.compile(r"(\d+) connections in [\d.]+s; [\d.]+ connections/user sec, bytes read (\d+)")


def handshake_load(h, relay, t, label):
    """Full TLS handshakes through `relay` for about `t` seconds: h.p["hs_procs"] openssl s_time
    -new at once, each connecting, handshaking (no session reused), fetching the tiny file with
    HTTP/1.0 and closing, over and over. Connections per second over the wall time from the
    first start to the last exit, the relay's CPU and the TCP segments per connection, the
    bytes each fetch read, and how many handshakes were resumed (should be none)."""
    target = relay.target
    n = h.p["hs_procs"]
    cmd = ["openssl", "s_time", "-connect", f"{HOST}:{relay.port}", "-new", "-www", tls.TINY, "-time", str(t)]
    h.journal.note_cmd("load", f"{label} ({n} of them at once)", cmd, {relay.port: "PORT"})
    cpu0 = tree_cpu(relay.pid)
    segs0 = tcp_out_segs()
    procs = []
    t0 = time.monotonic()
    try:
        for i in range(n):
            procs.append(PROCS.spawn(cmd, f"s_time-{target}-{i}"))
        deadline = t0 + t + 30
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise BenchError(f"openssl s_time through {target} did not finish within {t + 30} s")
        t1 = time.monotonic()
        segs1 = tcp_out_segs()
        cpu1 = tree_cpu(relay.pid)
    finally:
        for p in procs:
            PROCS.stop(p)
    conns = nbytes = resumed = 0
    failed = []
    for p in procs:
        with open(p.out_path, "rb") as fh:
            text = fh.read().decode(errors="replace")
        m = S_TIME_LINE.search(text)
        if p.returncode != 0 or not m:
            failed.append(f"status {p.returncode}: {(tail(p.err_path, 3) or text.strip()[-200:])}")
            continue
        conns += int(m.group(1))
        nbytes += int(m.group(2))
        marks = text.split("seconds\n", 1)[-1].split("\n\n", 1)[0]
        resumed += marks.count("r")
    if not conns:
        raise BenchError(f"no TLS connection completed through {target} with openssl s_time: "
                         + "; ".join(failed[:3]))
    out = {"hs_rate": conns / (t1 - t0), "hs_conns": conns, "hs_bytes_per_conn": nbytes / conns,
           "hs_resumed": resumed, "hs_cpu_us": (cpu1 - cpu0) / conns * 1e6}
    if segs0 is not None and segs1 is not None:
        out["hs_segs"] = (segs1 - segs0) / conns
    if failed:
        # A client that fails stops at once: its connections so far still count, and the run
        # reports the failure as an error.
        out["error"] = f"{len(failed)} of {n} openssl s_time through {target} failed: " + "; ".join(failed[:3])
    return out


def tls_connrate(h, target):
    """Through one fresh relay terminating TLS: full handshakes/s with openssl s_time -new, then
    wrk's conn/s over https (wrk resumes a session whenever the relay lets it)."""
    relay = peers.start(h, target, h.port["http"])
    out = {}
    try:
        out.update(handshake_load(h, relay, h.p["wrk_d"],
                                  "full TLS handshakes/s: openssl s_time, a new session per connection, "
                                  "HTTP/1.0 GET of the tiny file"))
        if h.use_wrk:
            w = wrk_load(h, relay, h.p["wrk_d"], "TLS conn/s: wrk over https, a new connection per request",
                         scheme="https")
            out.update({f"wrk_{k}": v for k, v in w.items()})
    finally:
        peers.stop(relay)
    return out


def tls_memory(h, target):
    """The relay's RSS fresh, and with N idle TLS pairs through it (each proven with a 32-byte
    message both ways); (after - before) / N."""
    n = h.tls_pairs
    relay = peers.start(h, target, h.port["idle"])
    holder = None
    out = {}
    try:
        time.sleep(0.3)
        rss0, _ = tree_rss(relay.pid)
        cmd = [PY, TOOLS, "tls-idle-pairs", "--relay", str(relay.port), "--backend", str(h.port["idle"]),
               "--pairs", str(n), "--ca", h.tls_files["ca"], "--name", tls.NAME, "--timeout", str(h.p["mem_timeout"])]
        h.journal.note_cmd("load", "memory: idle TLS pairs, each proven by a 32-byte message both ways", cmd,
                           {relay.port: "PORT"})
        holder = PROCS.spawn(cmd, f"tls-idle-{target}-{n}", stdin=subprocess.PIPE, stdout_pipe=True)
        line = read_line(holder, h.p["mem_timeout"] + 30)
        try:
            j = json.loads(line or "")
        except ValueError:
            raise BenchError(f"tls-idle-pairs gave no result: {tail(holder.err_path)}")
        if j["pairs"] == 0:
            raise BenchError(f"no TLS pair was proven through {target}: {j['errors']}")
        time.sleep(0.5)
        rss1, nproc = tree_rss(relay.pid)
        out.update({"rss_kib": (rss1 - rss0) / j["pairs"], "pairs": j["pairs"], "rss0": rss0, "rss1": rss1,
                    "procs": nproc, "seconds": j["seconds"], "client_version": j.get("version"),
                    "client_cipher": j.get("cipher")})
        if j["pairs"] < n or j["errors"]:
            out["error"] = (f"{j['pairs']} of {n} TLS pairs proven in {j['seconds']:.0f} s"
                            + (": " + "; ".join(f"{k} ({v})" for k, v in j["errors"].items()) if j["errors"] else ""))
        _release(holder)
        _finish(holder)
    finally:
        PROCS.stop(holder)
        peers.stop(relay)
    return out


# The loads of the interleaved repeats, by metric name.
MEASURES = {"throughput": throughput, "pusher": pusher, "latency": latency, "connrate": connrate,
            "memory": memory, "sessionrate": sessionrate, "sessionmemory": sessionmemory,
            "tls-throughput": tls_throughput, "tls-connrate": tls_connrate, "tls-memory": tls_memory}
