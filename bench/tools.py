#!/usr/bin/env python3
"""Small load generators used by bench/run (standard library only).

  tools.py sink     (--listen PORT | --connect PORT) --streams N [--time-limit S]
      Accepts (or dials) N connections, reads each until EOF and prints one JSON
      line: {"bytes": B, "seconds": S, "streams": N}. "seconds" runs from the
      first byte received to the last EOF. With --connect it prints READY once
      all N connections are up (a rendezvous B side); with --listen it prints
      READY once it listens.
  tools.py source   --connect PORT --streams N --bytes TOTAL [--time-limit S]
      Dials N connections, then pushes TOTAL bytes split evenly over them (or
      stops at the time limit), shuts each down for writing and waits for EOF.
  tools.py pingpong-server --listen PORT
      Echoes every byte back (1-byte ping-pong; the fallback when sockperf is
      missing).
  tools.py pingpong-client --connect PORT --seconds S [--max-count N]
      Sends 1 byte, waits for the echo, repeatedly (bounded in time and count);
      prints {"count": N, "p50_us": ., "p99_us": ., "mean_us": .} (round trip).
  tools.py idle-pairs --relay PORT --backend PORT --pairs N [--window W] [--timeout S]
      Listens on the backend port, opens N client connections to the relay (at
      most W, default 4, not yet seen by the backend at a time: socat listens
      with a backlog of 5), holds both ends idle and
      prints {"pairs": accepted, "opened": N, "seconds": S} when all N reached
      the backend (or the timeout passed). Then waits for a line on stdin and
      closes everything with RST (no TIME_WAIT), backend side first.
  tools.py sessions --mode rendezvous --connect PORT --secret-file FILE
           | --mode proxy --connect PORT --echo-listen PORT
           [--concurrency C] [--seconds S] [--max-count N] [--size B] [--io-timeout S]
      Runs units back to back, at most C (default 16) at a time, starting new ones for S
      seconds or until N have started, then lets those in flight finish (at most
      --io-timeout later). A rendezvous unit is a session: two connections to PORT, sides A
      and B of a fresh session id; each sends its token line and B bytes, reads the other's
      B bytes and checks them byte for byte, then both close. The 2N tokens are minted
      before the clock starts (HMAC-SHA256 of the secret file's content minus one trailing
      newline). A proxy unit is one connection to PORT (a relay that dials --echo-listen,
      which this process serves itself, echoing every byte, in the same event loop): send B
      bytes, read them back, check them, close. Any error, mismatch, extra byte or unit
      older than --io-timeout fails the unit; a failed unit is never counted. Prints
      {"mode", "units", "failed", "errors": {why: count}, "seconds", "rate", ...}; "seconds"
      runs from the first connect to the last unit done.
  tools.py rv-memory --connect PORT --secret-file FILE --sessions N [--window W] [--timeout S]
      Opens N side-A connections to a rendezvous at PORT (at most W, default 64, connecting
      at a time); each sends its token line and waits: prints {"stage": "pending", ...}.
      After a line on stdin, opens the N matching B sides: each sends its token line and a
      32-byte message, its A reads and checks it and answers with its own, which B reads and
      checks: prints {"stage": "paired", "sessions": joined, ...}. After another line on
      stdin (or when stdin closes) closes everything with RST, B sides first.
  tools.py scrape --connect PORT [--path /metrics] [--interval S] [--seconds S] [--max-count N]
           [--timeout S]
      Scrapes a `--metrics` endpoint: GET PATH over a new connection every S seconds
      (default 0.1: ten a second; a scrape that runs past its slot delays the next, none
      is sent in a burst to catch up), until a line on stdin (or stdin closes), --seconds
      or --max-count. A scrape is answered when a complete HTTP/1.1 200 response arrives
      within --timeout (default 2) whose body has Content-Length bytes and a
      socket_connector_connections_total sample; anything else fails it, by reason. Prints
      READY after the first scrape, then at the end {"scrapes", "ok", "failed",
      "errors": {why: count}, "over_interval", "seconds", "p50_ms", "p99_ms", "max_ms",
      "connections_first", "connections_last", "cpu_s", "stopped": stdin, seconds or
      max-count}.
  tools.py tls-idle-pairs --relay PORT --backend PORT --pairs N --ca FILE [--name NAME]
           [--window W] [--timeout S]
      Issue 21: listens on the backend port and opens N TLS connections to a relay that
      terminates TLS (at most W, default 16, not yet proven at a time), python's ssl with its
      defaults, verifying the chain against FILE and the name NAME (default localhost, also
      sent as SNI). Each, once its handshake is done, sends a 32-byte message that the backend
      reads and checks and answers with 32 bytes of its own, which the client reads and checks:
      the pair is proven, and then held idle. Prints {"pairs": proven, "opened", "failed",
      "errors": {why: count}, "seconds", "version", "cipher"} when all N are proven or failed
      (or the timeout passed). Then waits for a line on stdin and closes everything with RST,
      backend side first.

Every loop here is bounded in count and time; addresses are 127.0.0.1 only.
"""
import argparse
import collections
import errno
import hashlib
import hmac
import json
import os
import re
import resource
import selectors
import socket
import struct
import sys
import threading
import time

HOST = "127.0.0.1"
CHUNK = 1 << 20


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def say(obj):
    sys.stdout.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
    sys.stdout.flush()


def rst_close(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def listener(port, backlog=4096):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((HOST, port))
    ls.listen(backlog)
    return ls


def cmd_sink(a):
    deadline = time.monotonic() + a.time_limit
    conns = []
    if a.listen:
        ls = listener(a.listen)
        say("READY")
        ls.settimeout(max(0.1, deadline - time.monotonic()))
        for _ in range(a.streams):
            c, _ = ls.accept()
            conns.append(c)
        ls.close()
    else:
        for _ in range(a.streams):
            conns.append(socket.create_connection((HOST, a.connect), timeout=10))
        say("READY")
    lock = threading.Lock()
    state = {"bytes": 0, "first": None, "last": None}

    def reader(c):
        buf = bytearray(CHUNK)
        mv = memoryview(buf)
        total = 0
        c.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                n = c.recv_into(mv)
            except socket.timeout:
                continue
            except OSError:
                break
            if n == 0:
                break
            if total == 0:
                with lock:
                    if state["first"] is None:
                        state["first"] = time.monotonic()
            total += n
        with lock:
            state["bytes"] += total
            state["last"] = time.monotonic()
        c.close()

    threads = [threading.Thread(target=reader, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = (state["last"] - state["first"]) if state["first"] else 0.0
    say({"bytes": state["bytes"], "seconds": secs, "streams": a.streams,
         "complete": time.monotonic() < deadline})


def cmd_source(a):
    deadline = time.monotonic() + a.time_limit
    conns = [socket.create_connection((HOST, a.connect), timeout=10) for _ in range(a.streams)]
    per = a.bytes // a.streams
    barrier = threading.Barrier(a.streams)
    payload = memoryview(b"\x5a" * CHUNK)
    sent = [0] * a.streams

    def writer(i, c):
        c.settimeout(None)
        barrier.wait()
        left = per
        while left > 0 and time.monotonic() < deadline:
            n = min(left, CHUNK)
            c.sendall(payload[:n])
            left -= n
            sent[i] += n
        c.shutdown(socket.SHUT_WR)
        c.settimeout(max(1.0, deadline + 10 - time.monotonic()))
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
        c.close()

    threads = [threading.Thread(target=writer, args=(i, c)) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    say({"sent": sum(sent)})


def cmd_pingpong_server(a):
    ls = listener(a.listen, 64)
    say("READY")
    while True:
        c, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def echo(c=c):
            try:
                while True:
                    d = c.recv(4096)
                    if not d:
                        break
                    c.sendall(d)
            except OSError:
                pass
            c.close()
        threading.Thread(target=echo, daemon=True).start()


def cmd_pingpong_client(a):
    c = socket.create_connection((HOST, a.connect), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    warm_end = time.monotonic() + min(0.2, a.seconds / 5)
    end = time.monotonic() + a.seconds
    now = time.perf_counter_ns
    while len(samples) < a.max_count:
        t0 = now()
        c.sendall(b"x")
        if not c.recv(1):
            break
        t1 = now()
        m = time.monotonic()
        if m >= end:
            break
        if m >= warm_end:
            samples.append((t1 - t0) / 1000.0)
    c.close()
    samples.sort()

    def pct(p):
        return samples[min(len(samples) - 1, int(p / 100.0 * len(samples)))] if samples else None
    say({"count": len(samples), "p50_us": pct(50), "p99_us": pct(99),
         "mean_us": (sum(samples) / len(samples)) if samples else None})


def cmd_idle_pairs(a):
    raise_nofile()
    start = time.monotonic()
    deadline = start + a.timeout
    ls = listener(a.backend)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, "accept")
    backends, clients = [], []
    failed = 0
    while len(backends) < a.pairs and time.monotonic() < deadline:
        while len(clients) < a.pairs and len(clients) - len(backends) < a.window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((HOST, a.relay))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                failed += 1
                if failed > 100:
                    break
                time.sleep(0.01)
                continue
            clients.append(s)
        for _key, _ in sel.select(timeout=0.2):
            while True:
                try:
                    c, _ = ls.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                backends.append(c)
        if failed > 100:
            break
    elapsed = time.monotonic() - start
    say({"pairs": len(backends), "opened": len(clients), "seconds": elapsed,
         "connect_errors": failed})
    sel.unregister(ls)
    hold_then_reset(a.hold_limit, backends, clients, ls)


def hold_then_reset(limit, backends, clients, listener):
    """Holds the pairs until told to release them (or stdin closes), at most `limit` seconds,
    then resets every socket, the backend ends first."""
    rsel = selectors.DefaultSelector()
    rsel.register(sys.stdin, selectors.EVENT_READ)
    rsel.select(timeout=limit)
    for s in backends:
        rst_close(s)
    time.sleep(0.05)
    for s in clients:
        rst_close(s)
    listener.close()


def cmd_tls_idle_pairs(a):
    import ssl
    raise_nofile()
    ctx = ssl.create_default_context(cafile=a.ca)     # TLS 1.2 or later; the chain and the name checked
    start = time.monotonic()
    deadline = start + a.timeout
    ls = listener(a.backend)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, ("listen", None))
    errors = collections.Counter()
    clients, backends = [], []      # every socket, for the RST at the end
    state = {"opened": 0, "proven": 0, "failed": 0, "inflight": 0, "version": None, "cipher": None}

    def message(i):
        return (b"%08d" % i) * 4

    def answer(i):
        return message(i)[::-1]

    class Client:
        __slots__ = ("i", "sock", "step", "got")

    def fail(c, why):
        errors[why] += 1
        state["failed"] += 1
        state["inflight"] -= 1
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        rst_close(c.sock)
        c.step = "failed"

    def want(c, events):
        sel.modify(c.sock, events, ("client", c))

    def advance(c):
        """Moves a client on as far as it goes without blocking."""
        if c.step == "connect":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return fail(c, f"connect: {os.strerror(err)}")
            sel.unregister(c.sock)
            plain = c.sock
            c.sock = ctx.wrap_socket(plain, server_hostname=a.name, do_handshake_on_connect=False)
            clients[c.i] = c.sock
            sel.register(c.sock, selectors.EVENT_READ, ("client", c))
            c.step = "handshake"
        if c.step == "handshake":
            try:
                c.sock.do_handshake()
            except ssl.SSLWantReadError:
                return want(c, selectors.EVENT_READ)
            except ssl.SSLWantWriteError:
                return want(c, selectors.EVENT_WRITE)
            except ssl.SSLCertVerificationError as e:
                return fail(c, f"certificate not verified: {e.verify_message}")
            except (ssl.SSLError, OSError) as e:
                return fail(c, f"handshake: {type(e).__name__} {getattr(e, 'reason', None) or e}")
            if state["version"] is None:
                state["version"], state["cipher"] = c.sock.version(), c.sock.cipher()[0]
            c.step = "send"
        if c.step == "send":
            try:
                sent = c.sock.send(message(c.i))
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return want(c, selectors.EVENT_WRITE)
            except (ssl.SSLError, OSError) as e:
                return fail(c, f"send: {type(e).__name__}")
            if sent != 32:
                return fail(c, "send: short write")
            c.step = "answer"
            want(c, selectors.EVENT_READ)
        if c.step == "answer":
            while True:
                try:
                    data = c.sock.recv(4096)
                except ssl.SSLWantReadError:
                    return want(c, selectors.EVENT_READ)
                except ssl.SSLWantWriteError:
                    return want(c, selectors.EVENT_WRITE)
                except (ssl.SSLError, OSError) as e:
                    return fail(c, f"read: {type(e).__name__} {getattr(e, 'reason', None) or e}")
                if not data:
                    return fail(c, "closed before the answer")
                c.got += data
                want_ = answer(c.i)
                if len(c.got) > 32 or c.got != want_[:len(c.got)]:
                    return fail(c, "wrong bytes in the answer")
                if len(c.got) == 32:
                    sel.unregister(c.sock)
                    c.step = "idle"
                    state["proven"] += 1
                    state["inflight"] -= 1
                    return

    def backend_read(b):
        sock, got = b
        try:
            data = sock.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            errors["backend: closed before the message"] += 1
            sel.unregister(sock)
            return
        got += data
        b[1] = got
        if len(got) < 32:
            return
        sel.unregister(sock)
        i = int(got[:8]) if got[:8].isdigit() else -1
        if len(got) != 32 or i < 0 or got != message(i):
            errors["backend: wrong bytes in the message"] += 1
            return
        try:
            sock.send(answer(i))
        except OSError:
            errors["backend: answer not sent"] += 1

    while state["proven"] + state["failed"] < a.pairs and time.monotonic() < deadline:
        while state["opened"] < a.pairs and state["inflight"] < a.window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((HOST, a.relay))
            c = Client()
            c.i, c.sock, c.step, c.got = state["opened"], s, "connect", b""
            clients.append(s)
            state["opened"] += 1
            state["inflight"] += 1
            if err not in (0, errno.EINPROGRESS):
                errors[f"connect: {os.strerror(err)}"] += 1
                state["failed"] += 1
                state["inflight"] -= 1
                rst_close(s)
                continue
            sel.register(s, selectors.EVENT_WRITE, ("client", c))
        for key, _ in sel.select(timeout=0.2):
            kind, obj = key.data
            if kind == "listen":
                while True:
                    try:
                        b, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    b.setblocking(False)
                    backends.append(b)
                    sel.register(b, selectors.EVENT_READ, ("backend", [b, b""]))
            elif kind == "client":
                if obj.step not in ("failed", "idle"):
                    advance(obj)
            else:
                backend_read(obj)
    pending = a.pairs - state["proven"] - state["failed"]
    if pending > 0:
        errors["not proven within the timeout"] += pending
    say({"pairs": state["proven"], "opened": state["opened"], "failed": state["failed"],
         "accepted": len(backends), "errors": dict(errors), "seconds": time.monotonic() - start,
         "version": state["version"], "cipher": state["cipher"]})
    hold_then_reset(a.hold_limit, backends, clients, ls)


def read_secret(path):
    """A rendezvous secret: the file's content minus one trailing LF or CR LF."""
    with open(path, "rb") as f:
        secret = f.read()
    if secret.endswith(b"\r\n"):
        secret = secret[:-2]
    elif secret.endswith(b"\n"):
        secret = secret[:-1]
    return secret


def mint(secret, session, side, ttl):
    """A v1 session token, as `socket-connector token` makes it."""
    signed = f"v1.{session}.{side}.{int(time.time()) + ttl}"
    return signed + "." + hmac.new(secret, signed.encode(), hashlib.sha256).hexdigest()


def payload(session, side, size):
    """`size` bytes that name the session and the side, so crossed sessions show."""
    seed = f"{session}.{side}.".encode()
    return (seed * (size // len(seed) + 1))[:size]


class _Flow:
    """One client socket of a unit: connect, send `out`, read exactly `expect` back."""
    __slots__ = ("sock", "unit", "out", "expect", "got", "connected")

    def __init__(self, sock, unit, out, expect):
        self.sock, self.unit, self.out, self.expect = sock, unit, out, expect
        self.got = b""
        self.connected = False


class _Unit:
    __slots__ = ("flows", "left", "t0")

    def __init__(self, t0):
        self.flows, self.left, self.t0 = [], 0, t0


class _Echo:
    """The proxy's backend: echoes every byte of an accepted socket until end of stream."""
    __slots__ = ("sock", "pending")

    def __init__(self, sock):
        self.sock, self.pending = sock, b""


def _forget(sel, sock):
    """Takes `sock` out of `sel` (if it is there) and closes it."""
    try:
        sel.unregister(sock)
    except (KeyError, ValueError):
        pass
    sock.close()


def cmd_sessions(a):
    raise_nofile()
    rendezvous = a.mode == "rendezvous"
    if rendezvous and not a.secret_file:
        sys.exit("sessions --mode rendezvous needs --secret-file")
    if not rendezvous and not a.echo_listen:
        sys.exit("sessions --mode proxy needs --echo-listen")
    prefix = f"s{os.getpid()}-{int(time.time()) % 100000}"
    tokens = []
    mint_seconds = 0.0
    if rendezvous:
        secret = read_secret(a.secret_file)
        ttl = int(a.seconds + a.io_timeout) + 3600
        t = time.monotonic()
        for i in range(a.max_count):
            sid = f"{prefix}-{i}"
            tokens.append((mint(secret, sid, "A", ttl), mint(secret, sid, "B", ttl)))
        mint_seconds = time.monotonic() - t
    sel = selectors.DefaultSelector()
    echo_ls = None
    echoes = set()
    if not rendezvous:
        echo_ls = listener(a.echo_listen)
        echo_ls.setblocking(False)
        sel.register(echo_ls, selectors.EVENT_READ, None)
    units = set()
    errors = collections.Counter()
    count = {"started": 0, "done": 0, "failed": 0}
    size = a.size

    def close_unit(u):
        units.discard(u)
        for fl in u.flows:
            _forget(sel, fl.sock)

    def fail(u, why):
        if u in units:
            close_unit(u)
            count["failed"] += 1
            errors[why] += 1

    def start_unit(i, now):
        u = _Unit(now)
        units.add(u)
        if rendezvous:
            sid = f"{prefix}-{i}"
            pa, pb = payload(sid, "A", size), payload(sid, "B", size)
            ta, tb = tokens[i]
            plan = [(ta.encode() + b"\n" + pa, pb), (tb.encode() + b"\n" + pb, pa)]
        else:
            p = payload(f"{prefix}-{i}", "P", size)
            plan = [(p, p)]
        for out, expect in plan:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            fl = _Flow(s, u, out, expect)
            u.flows.append(fl)
            u.left += 1
            err = s.connect_ex((HOST, a.connect))
            if err not in (0, errno.EINPROGRESS):
                fail(u, f"connect: {os.strerror(err)}")
                return
            sel.register(s, selectors.EVENT_WRITE, fl)

    def on_flow(fl):
        u, s = fl.unit, fl.sock
        if u not in units:
            return
        if fl.out is not None:
            if not fl.connected:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(u, f"connect: {os.strerror(err)}")
                    return
                fl.connected = True
            try:
                n = s.send(fl.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                fail(u, f"send: {e.strerror}")
                return
            fl.out = fl.out[n:]
            if not fl.out:
                fl.out = None
                sel.modify(s, selectors.EVENT_READ, fl)
            return
        try:
            data = s.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            fail(u, f"recv: {e.strerror}")
            return
        if not data:
            fail(u, f"end of stream after {len(fl.got)} of {len(fl.expect)} bytes")
            return
        fl.got += data
        if len(fl.got) < len(fl.expect):
            return
        if len(fl.got) > len(fl.expect):
            fail(u, "more bytes than the other end sent")
        elif fl.got != fl.expect:
            fail(u, "bytes differ from those sent")
        else:
            sel.unregister(s)
            u.left -= 1
            if u.left == 0:
                close_unit(u)
                count["done"] += 1
                state["last"] = time.monotonic()

    def on_echo_accept():
        for _ in range(64):
            try:
                c, _ = echo_ls.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                errors[f"echo accept: {e.strerror}"] += 1
                return
            c.setblocking(False)
            e = _Echo(c)
            echoes.add(e)
            sel.register(c, selectors.EVENT_READ, e)

    def echo_close(e):
        echoes.discard(e)
        _forget(sel, e.sock)

    def on_echo(e, ev):
        try:
            if e.pending:
                n = e.sock.send(e.pending)
                e.pending = e.pending[n:]
                if not e.pending:
                    sel.modify(e.sock, selectors.EVENT_READ, e)
                return
            data = e.sock.recv(4096)
            if not data:
                echo_close(e)
                return
            n = e.sock.send(data)
            if n < len(data):
                e.pending = data[n:]
                sel.modify(e.sock, selectors.EVENT_WRITE, e)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            echo_close(e)

    cpu0 = time.process_time()
    start = time.monotonic()
    state = {"last": start}
    stop_at = start + a.seconds
    hard_end = stop_at + a.io_timeout + 1
    next_sweep = start + 0.25
    max_failed = max(1000, a.concurrency * 10)
    now = start
    def may_start():
        return now < stop_at and count["started"] < a.max_count and count["failed"] < max_failed
    while now < hard_end:
        while may_start() and len(units) < a.concurrency:
            start_unit(count["started"], now)
            count["started"] += 1
        if not units and not may_start():
            break
        for key, ev in sel.select(timeout=0.1):
            d = key.data
            if d is None:
                on_echo_accept()
            elif type(d) is _Flow:
                on_flow(d)
            else:
                on_echo(d, ev)
        now = time.monotonic()
        if now >= next_sweep:
            next_sweep = now + 0.25
            for u in [u for u in units if now - u.t0 > a.io_timeout]:
                fail(u, f"no answer within {a.io_timeout:g} s")
    for u in list(units):
        fail(u, "still running at the time limit")
    cpu = time.process_time() - cpu0
    for e in list(echoes):
        echo_close(e)
    if echo_ls:
        echo_ls.close()
    secs = state["last"] - start
    say({"mode": a.mode, "units": count["done"], "failed": count["failed"], "started": count["started"],
         "errors": dict(errors), "seconds": secs, "rate": count["done"] / secs if secs > 0 else 0.0,
         "concurrency": a.concurrency, "size": size, "minted": 2 * len(tokens),
         "mint_seconds": mint_seconds, "generator_cpu_s": cpu})


def _open_sides(port, lines, window, deadline, on_ready=None):
    """Connects len(lines) sockets to `port` (at most `window` connecting at a time) and sends
    each its line; returns (sockets, errors): sockets[i] is None where connect or send failed."""
    socks = [None] * len(lines)
    errors = collections.Counter()
    sel = selectors.DefaultSelector()
    nxt = 0
    waiting = 0
    while (nxt < len(lines) or waiting) and time.monotonic() < deadline:
        while nxt < len(lines) and waiting < window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((HOST, port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                errors[f"connect: {os.strerror(err)}"] += 1
            else:
                sel.register(s, selectors.EVENT_WRITE, nxt)
                waiting += 1
            nxt += 1
        for key, _ in sel.select(timeout=0.2):
            s, i = key.fileobj, key.data
            sel.unregister(s)
            waiting -= 1
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                s.close()
                errors[f"connect: {os.strerror(err)}"] += 1
                continue
            try:
                s.sendall(lines[i])      # a line of ~150 bytes: fits in an empty send buffer
                socks[i] = s
            except OSError as e:
                s.close()
                errors[f"send: {e.strerror}"] += 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
        errors["connect: not done in time"] += 1
    return socks, errors


def _read_exact(pairs, n, deadline, errors):
    """Reads n bytes from each socket of pairs [(index, socket)]; returns {index: bytes}."""
    got = {}
    bufs = {}
    sel = selectors.DefaultSelector()
    for i, s in pairs:
        sel.register(s, selectors.EVENT_READ, i)
        bufs[i] = b""
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            s, i = key.fileobj, key.data
            try:
                data = s.recv(n - len(bufs[i]))
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                data, why = b"", f"recv: {e.strerror}"
            else:
                why = f"end of stream after {len(bufs[i])} of {n} bytes"
            if not data:
                sel.unregister(s)
                errors[why] += 1
                continue
            bufs[i] += data
            if len(bufs[i]) == n:
                sel.unregister(s)
                got[i] = bufs[i]
    if sel.get_map():
        errors["no answer in time"] += len(sel.get_map())
    return got


def _wait_stdin(limit):
    rsel = selectors.DefaultSelector()
    rsel.register(sys.stdin, selectors.EVENT_READ)
    if rsel.select(timeout=limit):
        sys.stdin.readline()


def cmd_rv_memory(a):
    raise_nofile()
    secret = read_secret(a.secret_file)
    prefix = f"m{os.getpid()}-{int(time.time()) % 100000}"
    n = a.sessions
    ttl = int(2 * a.timeout + a.hold_limit) + 3600
    sids = [f"{prefix}-{i}" for i in range(n)]
    a_lines = [(mint(secret, sid, "A", ttl) + "\n").encode() for sid in sids]
    b_tokens = [mint(secret, sid, "B", ttl) for sid in sids]
    size = 32
    # Stage 1: the A sides, each its token line and nothing more.
    start = time.monotonic()
    a_socks, errors = _open_sides(a.connect, a_lines, a.window, start + a.timeout)
    # A pending side the relay closed (or wrote to) reads as ready: none should.
    sel = selectors.DefaultSelector()
    for i, s in enumerate(a_socks):
        if s is not None:
            sel.register(s, selectors.EVENT_READ, i)
    for key, _ in sel.select(timeout=0.2):
        errors["pending side closed or written to by the relay"] += 1
        a_socks[key.data] = None
        key.fileobj.close()
    sel.close()
    pending = sum(1 for s in a_socks if s is not None)
    say({"stage": "pending", "sides": pending, "opened": n, "errors": dict(errors),
         "seconds": time.monotonic() - start})
    _wait_stdin(a.hold_limit)
    # Stage 2: the B sides (token line + message), then A answers what it read.
    start = time.monotonic()
    live = [i for i in range(n) if a_socks[i] is not None]
    b_lines = [(b_tokens[i] + "\n").encode() + payload(sids[i], "B", size) for i in live]
    opened, errors = _open_sides(a.connect, b_lines, a.window, start + a.timeout)
    b_socks = [None] * n
    for i, s in zip(live, opened):
        b_socks[i] = s
    joined = [i for i in live if b_socks[i] is not None]
    got_a = _read_exact([(i, a_socks[i]) for i in joined], size, start + a.timeout, errors)
    answered = []
    for i in joined:
        if i not in got_a:
            continue
        if got_a[i] != payload(sids[i], "B", size):
            errors["A read bytes that B did not send"] += 1
            continue
        try:
            a_socks[i].sendall(payload(sids[i], "A", size))
            answered.append(i)
        except OSError as e:
            errors[f"send: {e.strerror}"] += 1
    got_b = _read_exact([(i, b_socks[i]) for i in answered], size, start + a.timeout, errors)
    ok = 0
    for i in answered:
        if i in got_b:
            if got_b[i] == payload(sids[i], "A", size):
                ok += 1
            else:
                errors["B read bytes that A did not send"] += 1
    say({"stage": "paired", "sessions": ok, "pending": len(live), "errors": dict(errors),
         "seconds": time.monotonic() - start})
    _wait_stdin(a.hold_limit)
    for s in b_socks + a_socks:
        if s is not None:
            rst_close(s)


COUNTER = b"socket_connector_connections_total"


def _scrape_once(port, path, timeout):
    """One GET of `path`: (None, connections_total) when answered, or (why, None)."""
    deadline = time.monotonic() + timeout
    try:
        c = socket.create_connection((HOST, port), timeout=timeout)
    except socket.timeout:
        return "connect timed out", None
    except OSError as e:
        return f"connect: {e.strerror or e}", None
    try:
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: bench-scrape\r\n"
                  "Accept: text/plain\r\n\r\n".encode())
        got = b""
        need = None     # the whole response's length, once the head is in
        while need is None or len(got) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                return "no complete answer in time", None
            c.settimeout(left)
            data = c.recv(65536)
            if not data:
                break
            got += data
            if need is None and b"\r\n\r\n" in got:
                head, _, _ = got.partition(b"\r\n\r\n")
                m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
                if not m:
                    return "no Content-Length", None
                need = len(head) + 4 + int(m.group(1))
    except socket.timeout:
        return "no complete answer in time", None
    except OSError as e:
        return f"read: {e.strerror or e}", None
    finally:
        c.close()
    status = got.split(b"\r\n", 1)[0].decode(errors="replace")
    if not status.startswith("HTTP/1.1 200 "):
        return f"status {status[:40]!r}" if status else "closed without an answer", None
    if need is None or len(got) < need:
        return "closed before the whole body", None
    body = got[got.index(b"\r\n\r\n") + 4:]
    m = re.search(rb"(?m)^" + COUNTER + rb" (\d+)$", body)
    if not m:
        return "no socket_connector_connections_total sample", None
    return None, int(m.group(1))


def cmd_scrape(a):
    cpu0 = time.process_time()
    rsel = selectors.DefaultSelector()
    try:
        rsel.register(sys.stdin, selectors.EVENT_READ)
    except (OSError, ValueError):   # stdin a file or a terminal: only the bounds stop it
        rsel = None
    start = time.monotonic()
    end = start + a.seconds
    errors = collections.Counter()
    times = []
    ok = over = 0
    first = last = None
    slot = start
    stopped = "max-count"
    while len(times) < a.max_count:
        # Wait for the slot, or for the line on stdin that stops the scraper.
        wait = max(0.0, slot - time.monotonic())
        if time.monotonic() + wait >= end:
            stopped = "seconds"
            break
        if rsel is None:
            time.sleep(wait)
        elif rsel.select(timeout=wait):
            stopped = "stdin"
            break
        t0 = time.monotonic()
        why, value = _scrape_once(a.connect, a.path, a.timeout)
        took = time.monotonic() - t0
        times.append(took * 1000.0)
        if why:
            errors[why] += 1
        else:
            ok += 1
            first = value if first is None else first
            last = value
        over += took > a.interval
        if len(times) == 1:
            say("READY")
        slot = max(slot + a.interval, time.monotonic())
    seconds = time.monotonic() - start
    times.sort()

    def pct(p):
        return times[min(len(times) - 1, int(p / 100.0 * len(times)))] if times else None
    say({"scrapes": len(times), "ok": ok, "failed": len(times) - ok, "errors": dict(errors),
         "over_interval": over, "interval": a.interval, "seconds": seconds, "p50_ms": pct(50),
         "p99_ms": pct(99), "max_ms": times[-1] if times else None, "connections_first": first,
         "connections_last": last, "cpu_s": time.process_time() - cpu0, "stopped": stopped})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--listen", type=int)
    g.add_argument("--connect", type=int)
    s.add_argument("--streams", type=int, default=1)
    s.add_argument("--time-limit", type=float, default=60)
    s = sub.add_parser("source")
    s.add_argument("--connect", type=int, required=True)
    s.add_argument("--streams", type=int, default=1)
    s.add_argument("--bytes", type=int, required=True)
    s.add_argument("--time-limit", type=float, default=60)
    s = sub.add_parser("pingpong-server")
    s.add_argument("--listen", type=int, required=True)
    s = sub.add_parser("pingpong-client")
    s.add_argument("--connect", type=int, required=True)
    s.add_argument("--seconds", type=float, default=2)
    s.add_argument("--max-count", type=int, default=2_000_000)
    s = sub.add_parser("idle-pairs")
    s.add_argument("--relay", type=int, required=True)
    s.add_argument("--backend", type=int, required=True)
    s.add_argument("--pairs", type=int, required=True)
    s.add_argument("--window", type=int, default=4)
    s.add_argument("--timeout", type=float, default=120)
    s.add_argument("--hold-limit", type=float, default=300)
    s = sub.add_parser("sessions")
    s.add_argument("--mode", choices=["rendezvous", "proxy"], required=True)
    s.add_argument("--connect", type=int, required=True)
    s.add_argument("--secret-file")
    s.add_argument("--echo-listen", type=int)
    s.add_argument("--concurrency", type=int, default=16)
    s.add_argument("--seconds", type=float, default=5)
    s.add_argument("--max-count", type=int, default=200_000)
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--io-timeout", type=float, default=5)
    s = sub.add_parser("rv-memory")
    s.add_argument("--connect", type=int, required=True)
    s.add_argument("--secret-file", required=True)
    s.add_argument("--sessions", type=int, required=True)
    s.add_argument("--window", type=int, default=64)
    s.add_argument("--timeout", type=float, default=120)
    s.add_argument("--hold-limit", type=float, default=300)
    s = sub.add_parser("tls-idle-pairs")
    s.add_argument("--relay", type=int, required=True)
    s.add_argument("--backend", type=int, required=True)
    s.add_argument("--pairs", type=int, required=True)
    s.add_argument("--ca", required=True)
    s.add_argument("--name", default="localhost")
    s.add_argument("--window", type=int, default=16)
    s.add_argument("--timeout", type=float, default=120)
    s.add_argument("--hold-limit", type=float, default=300)
    s = sub.add_parser("scrape")
    s.add_argument("--connect", type=int, required=True)
    s.add_argument("--path", default="/metrics")
    s.add_argument("--interval", type=float, default=0.1)
    s.add_argument("--seconds", type=float, default=3600)
    s.add_argument("--max-count", type=int, default=36000)
    s.add_argument("--timeout", type=float, default=2)
    a = p.parse_args()
    {"sink": cmd_sink, "source": cmd_source, "pingpong-server": cmd_pingpong_server,
     "pingpong-client": cmd_pingpong_client, "idle-pairs": cmd_idle_pairs,
     "sessions": cmd_sessions, "rv-memory": cmd_rv_memory, "scrape": cmd_scrape,
     "tls-idle-pairs": cmd_tls_idle_pairs}[a.cmd](a)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
