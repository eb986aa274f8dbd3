"""The targets of issue 4, each met, NOT met or n/a (a figure this run does not have)."""
from .peers import RENDEZVOUS


def _ge(x, y):
    return None if x is None or y is None else x >= y


def _le(x, y):
    return None if x is None or y is None else x <= y


def judge(h, s, pusher):
    """[{"target": text, "status": met / NOT met / n/a}] for the metrics of this run."""
    out = []

    def target(text, ok):
        out.append({"target": text, "status": "n/a" if ok is None else ("met" if ok else "NOT met")})

    sc, hs, hp, ng = s["socket-connector"], s.get("haproxy-splice", {}), s.get("haproxy", {}), s.get("nginx", {})
    ms = h.metrics
    if "throughput" in ms:
        target("1-stream throughput ≥ HAProxy with splice", _ge(sc["tp1_x"], hs.get("tp1_x")))
        target("8-stream throughput ≥ HAProxy with splice", _ge(sc["tp8_x"], hs.get("tp8_x")))
    if "cpu" in ms:
        target("CPU s/GB ≤ HAProxy with splice", _le(sc["cpu_s_per_gb"], hs.get("cpu_s_per_gb")))
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
    return out
