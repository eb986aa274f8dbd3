"""The targets of issue 4 (and issue 20's for the rendezvous by token, issue 22's for the relay
while its --metrics endpoint is scraped, issue 21's for TLS termination), each met, NOT met or
n/a (a figure this run does not have).

Throughput and CPU per GB are judged against the better of the HAProxy splice peers in the
run (forced splice, splice-auto), figure by figure, and the target says which one that was."""
from .peers import HAPROXY_SPLICE, RENDEZVOUS, SCRAPED
from .results import TLS_FIGURES

# Issue 22 asks for the scraped relay's figures "within noise" of the unscraped one's; taken here
# as at least this fraction of them (one 5 s load moves by several % on these machines).
WITHIN_NOISE = 0.95


def _ge(x, y):
    return None if x is None or y is None else x >= y


def _le(x, y):
    return None if x is None or y is None else x <= y


def better_splice_peer(s, key, higher):
    """The HAProxy splice peer with the better `key` (higher or lower), or None."""
    have = [t for t in HAPROXY_SPLICE if s.get(t, {}).get(key) is not None]
    if not have:
        return None
    return (max if higher else min)(have, key=lambda t: s[t][key])


def judge(h, s, pusher):
    """[{"target": text, "status": met / NOT met / n/a (, "peer": the peer it was judged
    against)}] for the metrics of this run."""
    out = []

    def target(text, ok, peer=None):
        out.append({"target": text, "status": "n/a" if ok is None else ("met" if ok else "NOT met")})
        if peer:
            out[-1]["peer"] = peer

    def splice(what, key, higher, fmt):
        t = better_splice_peer(s, key, higher)
        if t is None:
            target(f"{what} HAProxy with splice", None)
            return
        n = sum(1 for x in HAPROXY_SPLICE if x in s)
        which = "the better of its splice peers" if n > 1 else "its splice peer"
        ok = (_ge if higher else _le)(sc[key], s[t][key])
        target(f"{what} HAProxy with splice ({which}: {h.labels[t]}, {fmt.format(s[t][key])})", ok, t)

    sc, hp, ng = s["socket-connector"], s.get("haproxy", {}), s.get("nginx", {})
    ms = h.metrics
    if "throughput" in ms:
        splice("1-stream throughput ≥", "tp1_x", True, "{:.2f}× direct")
        splice("8-stream throughput ≥", "tp8_x", True, "{:.2f}× direct")
    if "cpu" in ms:
        splice("CPU s/GB ≤", "cpu_s_per_gb", False, "{:.2f} s/GB")
    if "latency" in ms:
        target("RTT p50 added ≤ nginx stream", _le(sc["rtt_p50_added_us"], ng.get("rtt_p50_added_us")))
        target("RTT p99 added ≤ nginx stream", _le(sc["rtt_p99_added_us"], ng.get("rtt_p99_added_us")))
        lp = sc.get("rtt_paired", {}).get("nginx", {})
        for key in ("p50", "p99"):
            if f"{key}_delta_us" in lp:
                d = lp[f"{key}_delta_us"]
                target(f"RTT {key} added ≤ nginx stream, paired rounds: median difference "
                       f"{d:+.1f} µs over {lp['rounds']} rounds", d <= 0)
    if "connrate" in ms:
        target("conn/s ≥ HAProxy (no splice), ratios to direct per repeat", _ge(sc["cps_x"], hp.get("cps_x")))
        pr = sc.get("cps_paired", {}).get("haproxy")
        if pr:
            target(f"conn/s ≥ HAProxy (no splice), paired rounds: median {pr['cps_ratio']:.3f}× over "
                   f"{pr['rounds']} rounds (ahead in {pr['ahead']})", pr["cps_ratio"] >= 1.0)
    if "memory" in ms:
        for x in h.levels:
            target(f"≤ 3 KiB RSS per idle pair at {x:,} pairs", _le(sc.get(f"kib_per_pair_{x}"), 3.0))
    if RENDEZVOUS in pusher and "throughput" in ms:
        r = pusher[RENDEZVOUS]
        ok = None if r.get("vs_proxy1") is None else (r["vs_proxy1"] >= 0.9 and (r.get("vs_proxy8") or 0) >= 0.9)
        target("rendezvous throughput the same as the proxy mode (at least 0.9× its 1- and 8-stream figures)", ok)
    sd = getattr(h, "session_data", {})
    if "sessionrate" in ms:
        r = sd.get("ratio")
        target("issue 20: rendezvous sessions/s ≥ 0.9× the proxy's conn/s (same generator, same run)"
               + ("" if r is None else f": {r:.3f}×"), _ge(r, 0.9))
    if "sessionmemory" in ms:
        m = sd.get("memory", {})
        n = f"{m['sessions']:,.0f}" if m.get("sessions") else "—"
        target(f"issue 20: ≤ 2 KiB RSS per pending rendezvous side at {n}", _le(m.get("kib_per_pending"), 2.0))
        target(f"issue 20: ≤ 2.5 KiB RSS per idle rendezvous session at {n}", _le(m.get("kib_per_session"), 2.5))
    sd = getattr(h, "scrape_data", {})
    if SCRAPED in h.peers:
        fig = sd.get("figures", {})
        within = f"≥ {WITHIN_NOISE}× unscraped (within noise)"

        def scraped(what, key, how):
            r = fig.get(key, {}).get("ratio")
            target(f"issue 22: {what} while scraped 10 times a second {within}, {how}"
                   + ("" if r is None else f": {r:.3f}×"), _ge(r, WITHIN_NOISE))
        tp = "throughput" if h.use_iperf else "pusher throughput"
        if "throughput" in ms:
            scraped(f"1-stream {tp}", "tp1", "median of the per-repeat ratios")
            scraped(f"8-stream {tp}", "tp8", "median of the per-repeat ratios")
        if "connrate" in ms:
            scraped("conn/s", "cps", "median of the per-repeat ratios")
            pr = fig.get("cps_paired")
            if pr:
                target(f"issue 22: conn/s while scraped 10 times a second {within}, paired rounds: median "
                       f"{pr['ratio']:.3f}× over {pr['rounds']} rounds (scraped ahead in {pr['ahead']})",
                       pr["ratio"] >= WITHIN_NOISE)
        a = sd.get("scrapes", {}).get("all")
        target("issue 22: every scrape answered (HTTP 200, the whole body, the counters)"
               + ("" if not a else f": {a['ok']:,} of {a['scrapes']:,}, {a['failed']:,} failed"),
               None if not a else a["failed"] == 0 and a["scrapes"] > 0)
    return out


# Issue 21: socket-connector terminating TLS against HAProxy terminating TLS, figure by figure,
# from the median of the per-repeat ratios socket-connector ÷ HAProxy (and from the paired rounds
# for the connection rates): (figure key, what, at least 1 (True) or at most 1 (False)).
TLS_TARGETS = [("tp1", "1-stream TLS throughput", True), ("tp8", "8-stream TLS throughput", True),
               ("hs", "full TLS handshakes/s (openssl s_time -new)", True),
               ("wrk", "TLS conn/s (wrk over https)", True),
               ("cpu_s_per_gb", "relay CPU s/GB (TLS throughput)", False),
               ("kib", "KiB RSS per idle TLS pair", False)]
TLS_PAIRED = {"hs": "tlshspair", "wrk": "tlswrkpair"}


def judge_tls(h, td):
    """Issue 21's targets: socket-connector at least HAProxy's throughput (1 and 8 streams) and
    handshakes per second, at most its CPU per GB and memory per idle TLS pair."""
    out = []
    if not td or not h.tls_targets:
        return out
    ratios = td.get("ratios", {}).get("haproxy-tls", {})
    pairs = f" at {h.tls_pairs:,} pairs"
    for key, what, higher in TLS_TARGETS:
        metric = next(m for k, m, _, _ in TLS_FIGURES if k == key)
        if metric not in h.metrics or (key == "wrk" and not h.use_wrk):
            continue
        r = ratios.get(key, {})
        x = r.get("ratio")
        rel = "≥" if higher else "≤"
        text = (f"issue 21: {what}{pairs if key == 'kib' else ''} {rel} HAProxy's, median of the per-repeat "
                f"ratios socket-connector ÷ HAProxy" + ("" if x is None else f": {x:.3f}×"))
        ok = None if x is None else (x >= 1.0 if higher else x <= 1.0)
        out.append({"target": text, "status": "n/a" if ok is None else ("met" if ok else "NOT met"),
                    "peer": "haproxy-tls"})
        pr = td.get("paired", {}).get(TLS_PAIRED.get(key), {}).get("haproxy-tls")
        if pr:
            ok = pr["ratio"] >= 1.0
            out.append({"target": f"issue 21: {what} ≥ HAProxy's, paired rounds: median {pr['ratio']:.3f}× over "
                                  f"{pr['rounds']} rounds (ahead in {pr['ahead']})",
                        "status": "met" if ok else "NOT met", "peer": "haproxy-tls"})
    return out
