"""The order of the measurements. Each repeat runs every metric over every target in turn,
the order rotated by one place per repeat so no relay always runs first or right after
`direct`. Then the paired rounds: the relays compared with socket-connector run at once and
each round loads each in turn, the order reversed every round.

The scraped socket-connector (issue 22) runs the throughput (and cpu) and conn/s loads and the
paired conn/s rounds, beside the unscraped one; not the latency and memory loads.

The TLS metrics (issue 21) run over the relays' TLS forms (h.tls_targets, no `direct`), rotated
the same way, and have paired rounds of their own: full TLS handshakes/s and wrk's https conn/s
through socket-connector and each TLS peer."""
from . import loads, peers
from .common import BenchError, log
from .peers import RENDEZVOUS, SC_TLS, SCRAPED, SESSIONS

# The peers of the paired rounds, in this order, those of --peers.
CONN_PAIRED = ["haproxy", "haproxy-splice", "haproxy-splice-forced", "nginx", SCRAPED]
LATENCY_PAIRED = ["nginx", "haproxy"]
TLS_METRICS = ["tls-throughput", "tls-connrate", "tls-memory"]


def plan(h):
    """(metric, targets) in the order each repeat runs them."""
    targets = ["direct"] + h.peers
    unscraped = [t for t in targets if t != SCRAPED]    # latency and memory: not issue 22's figures
    out = []
    if {"throughput", "cpu"} & h.metrics:
        if h.use_iperf:
            out.append(("throughput", targets))
        rdv = [RENDEZVOUS] if "socket-connector" in h.peers else []
        if not h.use_iperf:
            out.append(("pusher", targets + rdv))
        elif rdv:
            out.append(("pusher", ["direct", "socket-connector"] + rdv))
    if "latency" in h.metrics:
        out.append(("latency", unscraped))
    if "connrate" in h.metrics:
        out.append(("connrate", targets))
    if "memory" in h.metrics:
        out.append(("memory", unscraped[1:]))
    if "socket-connector" in h.peers:
        if "sessionrate" in h.metrics:
            out.append(("sessionrate", [SESSIONS, "socket-connector"]))
        if "sessionmemory" in h.metrics:
            out.append(("sessionmemory", [SESSIONS]))
    for metric in TLS_METRICS:
        if metric in h.metrics and h.tls_targets:
            out.append((metric, list(h.tls_targets)))
    return out


def measure(h, metric, target, rep):
    """One load; its figures, or its error, become a record (with what a scraper beside it
    counted, for the scraped relay)."""
    rec = {"rep": rep, "metric": metric, "target": target}
    h.phase = {"metric": metric, "rep": rep}
    seen = len(h.scrapes)
    try:
        rec.update(loads.MEASURES[metric](h, target))
        if "error" in rec:      # figures, but some of the load failed (sessionrate, sessionmemory)
            h.journal.errors.append(f"{metric} / {target} (repeat {rep + 1}): {rec['error']}")
            log(f"ERROR {metric} {target}: {rec['error']}")
    except BenchError as e:
        rec["error"] = str(e)
        h.journal.errors.append(f"{metric} / {target} (repeat {rep + 1}): {e}")
        log(f"ERROR {metric} {target}: {e}")
    h.phase = None
    if len(h.scrapes) > seen:
        rec["scrapes"] = sum(j["scrapes"] for j in h.scrapes[seen:])
        rec["scrapes_failed"] = sum(j["failed"] for j in h.scrapes[seen:])
    h.records.append(rec)


def run_repeats(h, repeats):
    steps = plan(h)
    for rep in range(repeats):
        for metric, tl in steps:
            k = rep % len(tl)
            for target in tl[k:] + tl[:k]:   # rotate: no relay always runs first
                log(f"repeat {rep + 1}/{repeats}: {metric} / {target}")
                measure(h, metric, target, rep)


def run_paired_rounds(h):
    """conn/s (wrk) through socket-connector, the HAProxy and nginx peers and the scraped
    socket-connector, and latency (sockperf) through socket-connector, nginx and HAProxy
    without splice."""
    a = h.args
    if a.pair_rounds <= 0:
        return
    run_tls_paired_rounds(h)
    if "socket-connector" not in h.peers:
        return
    conn_peers = [t for t in CONN_PAIRED if t in h.peers]
    if "connrate" in h.metrics and conn_peers:
        h.pair_targets = ["socket-connector"] + conn_peers
        label = "conn/s in paired rounds: wrk, the same load, shorter"
        paired(h, "connpair", "conn/s", h.port["http"], h.pair_targets, a.pair_rounds,
               lambda relay: loads.wrk_load(h, relay, a.pair_seconds, label))
    lat_peers = [t for t in LATENCY_PAIRED if t in h.peers]
    if "latency" in h.metrics and lat_peers:
        h.lat_pair_targets = ["socket-connector"] + lat_peers
        paired(h, "latpair", "latency", h.port["sockperf"], h.lat_pair_targets, a.pair_rounds,
               lambda relay: loads.latency_load(h, relay, a.pair_seconds, "latency in paired rounds"))


def run_tls_paired_rounds(h):
    """Issue 21: full TLS handshakes/s (openssl s_time) and wrk's https conn/s through
    socket-connector and each TLS peer, all up at once, loaded in turn."""
    a = h.args
    if "tls-connrate" not in h.metrics or SC_TLS not in h.tls_targets or len(h.tls_targets) < 2:
        return
    h.tls_pair_targets = list(h.tls_targets)
    paired(h, "tlshspair", "full TLS handshakes/s", h.port["http"], h.tls_pair_targets, a.pair_rounds,
           lambda relay: loads.handshake_load(h, relay, a.pair_seconds,
                                              "full TLS handshakes/s in paired rounds: openssl s_time, shorter"))
    if h.use_wrk:
        paired(h, "tlswrkpair", "TLS conn/s (wrk https)", h.port["http"], h.tls_pair_targets, a.pair_rounds,
               lambda relay: loads.wrk_load(h, relay, a.pair_seconds, "TLS conn/s in paired rounds: wrk over "
                                            "https, shorter", scheme="https"))


def paired(h, metric, what, backend, targets, rounds, load):
    """Paired rounds (records of metric `metric`): every relay of `targets` runs at once (each
    idle while another is loaded), and each round runs `load(relay)` on each in turn,
    forwards in even rounds and backwards in odd ones (A B C, C B A, ...), so neighbours in
    time are compared and no relay always goes first. socket-connector is then compared
    with each peer round by round (its conn/s ÷ the peer's, its round trip − the peer's; the
    scraped socket-connector's conn/s ÷ socket-connector's), and the median over rounds is
    reported."""
    relays = {}
    h.phase = {"metric": metric, "rep": None}
    try:
        for t in targets:
            relays[t] = peers.start(h, t, backend)
        for r in range(rounds):
            order = targets if r % 2 == 0 else targets[::-1]
            for t in order:
                log(f"paired round {r + 1}/{rounds}: {what} / {t}")
                rec = {"rep": r, "metric": metric, "target": t}
                try:
                    rec.update(load(relays[t]))
                    if "error" in rec:      # figures, but part of the load failed (openssl s_time)
                        h.journal.errors.append(f"paired {what} / {t} (round {r + 1}): {rec['error']}")
                except BenchError as e:
                    rec["error"] = str(e)
                    h.journal.errors.append(f"paired {what} / {t} (round {r + 1}): {e}")
                h.records.append(rec)
    except BenchError as e:
        h.journal.errors.append(f"paired {what}: {e}")
    finally:
        for relay in relays.values():
            try:
                peers.stop(relay)
            except BenchError as e:
                h.journal.errors.append(str(e))
        h.phase = None
