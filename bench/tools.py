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

Every loop here is bounded in count and time; addresses are 127.0.0.1 only.
"""
import argparse
import errno
import json
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
    # Hold until told to release (or stdin closes), bounded.
    sel.unregister(ls)
    rsel = selectors.DefaultSelector()
    rsel.register(sys.stdin, selectors.EVENT_READ)
    rsel.select(timeout=a.hold_limit)
    for s in backends:
        rst_close(s)
    time.sleep(0.05)
    for s in clients:
        rst_close(s)
    ls.close()


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
    a = p.parse_args()
    {"sink": cmd_sink, "source": cmd_source, "pingpong-server": cmd_pingpong_server,
     "pingpong-client": cmd_pingpong_client, "idle-pairs": cmd_idle_pairs}[a.cmd](a)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
