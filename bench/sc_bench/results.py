"""Figures from the records: medians over repeats, ratios and differences against `direct`
in the same repeat, the summary the report and the chart print (and issue 22's: the scraped
socket-connector against the unscraped one, and what the scrapers counted; issue 21's: the TLS
relays, socket-connector's ÷ each peer's), and the JSON file."""
import json
import os
import platform
import statistics

from .common import log, relative, relative_argv
from .peers import RENDEZVOUS, SC_TLS, SCRAPED, SESSIONS


class Results:
    """The records of a run (one per load: rep, metric, target and its figures)."""

    def __init__(self, records):
        self.records = records

    def vals(self, metric, target, key):
        return {r["rep"]: r[key] for r in self.records
                if r["metric"] == metric and r["target"] == target and r.get(key) is not None}

    def ratio(self, metric, target, key, base="direct"):
        t, b = self.vals(metric, target, key), self.vals(metric, base, key)
        xs = [t[r] / b[r] for r in t if r in b and b[r]]
        return statistics.median(xs) if xs else None

    def delta(self, metric, target, key):
        t, b = self.vals(metric, target, key), self.vals(metric, "direct", key)
        xs = [t[r] - b[r] for r in t if r in b]
        return statistics.median(xs) if xs else None

    def med(self, metric, target, key):
        xs = list(self.vals(metric, target, key).values())
        return statistics.median(xs) if xs else None

    def cpu_per_gb_by_rep(self, metric, target):
        """{rep: relay CPU seconds per GB over the 1- and 8-stream loads}."""
        out = {}
        for r in self.records:
            if r["metric"] == metric and r["target"] == target and "cpu1" in r and "cpu8" in r:
                gb = (r["bytes1"] + r["bytes8"]) / 1e9
                if gb > 0:
                    out[r["rep"]] = (r["cpu1"] + r["cpu8"]) / gb
        return out

    def cpu_per_gb(self, metric, target):
        xs = list(self.cpu_per_gb_by_rep(metric, target).values())
        return statistics.median(xs) if xs else None


def summarize(h):
    """The summary rows by target, and the pusher's table."""
    res = h.results
    s = {}
    tp = "throughput" if h.use_iperf else "pusher"
    rdv = [RENDEZVOUS] if any(r["target"] == RENDEZVOUS for r in res.records) else []
    for t in ["direct"] + h.peers + rdv:
        m = "pusher" if t == RENDEZVOUS else tp
        row = {
            "tp1_x": res.ratio(m, t, "bps1"), "tp8_x": res.ratio(m, t, "bps8"),
            "cpu_s_per_gb": res.cpu_per_gb(m, t),
            "rtt_p50_added_us": res.delta("latency", t, "p50"),
            "rtt_p99_added_us": res.delta("latency", t, "p99"),
            "cps_x": res.ratio("connrate", t, "cps"),
            "cps": res.med("connrate", t, "cps"),
            "cpu_us_per_conn": res.med("connrate", t, "cpu_us_per_conn"),
            "segs_per_conn": res.med("connrate", t, "segs_per_conn"),
            "cpu_us_per_rt": res.med("latency", t, "cpu_us_per_rt"),
        }
        for lv in h.levels:
            row[f"kib_per_pair_{lv}"] = res.med("memory", t, f"rss_kib{lv}")
        if t == "direct":
            row.update({
                "gbps1": (res.med(tp, t, "bps1") or 0) / 1e9 or None,
                "gbps8": (res.med(tp, t, "bps8") or 0) / 1e9 or None,
                "rtt_p50_us": res.med("latency", t, "p50"),
                "rtt_p99_us": res.med("latency", t, "p99"),
                "cps": res.med("connrate", t, "cps"),
            })
        s[t] = row
    pusher = {}
    for t in ("direct", "socket-connector", RENDEZVOUS):
        if res.vals("pusher", t, "bps1") or res.vals("pusher", t, "bps8"):
            pusher[t] = {"gbps1": (res.med("pusher", t, "bps1") or 0) / 1e9 or None,
                         "gbps8": (res.med("pusher", t, "bps8") or 0) / 1e9 or None,
                         "x1": res.ratio("pusher", t, "bps1"), "x8": res.ratio("pusher", t, "bps8"),
                         "cpu_s_per_gb": res.cpu_per_gb("pusher", t)}
    paired = {}
    for t in h.pair_targets[1:]:
        if t == SCRAPED:        # not a peer: issue 22's section divides it by socket-connector
            continue
        sc, peer = res.vals("connpair", "socket-connector", "cps"), res.vals("connpair", t, "cps")
        xs = [sc[r] / peer[r] for r in sc if r in peer and peer[r]]
        if xs:
            paired[t] = {"cps_ratio": statistics.median(xs), "rounds": len(xs),
                         "min": min(xs), "max": max(xs), "ahead": sum(1 for x in xs if x >= 1.0)}
    if paired:
        s["socket-connector"]["cps_paired"] = paired
    lat_paired = {}
    for t in h.lat_pair_targets[1:]:
        row = {}
        for key in ("p50", "p99"):
            sc, peer = res.vals("latpair", "socket-connector", key), res.vals("latpair", t, key)
            xs = [sc[r] - peer[r] for r in sc if r in peer]
            if xs:
                row.update({f"{key}_delta_us": statistics.median(xs), f"{key}_min": min(xs),
                            f"{key}_max": max(xs), "rounds": len(xs)})
        if row:
            lat_paired[t] = row
    if lat_paired:
        s["socket-connector"]["rtt_paired"] = lat_paired
    if RENDEZVOUS in pusher:
        pusher[RENDEZVOUS]["vs_proxy1"] = res.ratio("pusher", RENDEZVOUS, "bps1", base="socket-connector")
        pusher[RENDEZVOUS]["vs_proxy8"] = res.ratio("pusher", RENDEZVOUS, "bps8", base="socket-connector")
    return s, pusher


def summarize_sessions(h):
    """The rendezvous figures: sessions/s beside the proxy's conn/s from the same generator
    (medians over repeats, and the median of the per-repeat ratio), and the memory per
    pending side and per idle session. Empty when this run measured neither."""
    res = h.results
    out = {}
    for key, t in (("rendezvous", SESSIONS), ("proxy", "socket-connector")):
        if res.vals("sessionrate", t, "rate"):
            recs = [r for r in res.records if r["metric"] == "sessionrate" and r["target"] == t]
            out[key] = {"per_s": res.med("sessionrate", t, "rate"),
                        "cpu_us_per_unit": res.med("sessionrate", t, "cpu_us_per_unit"),
                        "segs_per_unit": res.med("sessionrate", t, "segs_per_unit"),
                        "generator_cpu_share": statistics.median(
                            [r["generator_cpu_s"] / r["seconds"] for r in recs if r.get("seconds")] or [0]),
                        "units": sum(r.get("units", 0) for r in recs),
                        "failed": sum(r.get("failed", 0) for r in recs)}
    if "rendezvous" in out and "proxy" in out:
        out["ratio"] = res.ratio("sessionrate", SESSIONS, "rate", base="socket-connector")
        out["cpu_ratio"] = res.ratio("sessionrate", SESSIONS, "cpu_us_per_unit", base="socket-connector")
    if res.vals("sessionmemory", SESSIONS, "kib_per_session"):
        out["memory"] = {k: res.med("sessionmemory", SESSIONS, k)
                         for k in ("sessions_opened", "pending_sides", "sessions", "rss0", "rss_pending",
                                   "rss_paired", "kib_per_pending", "kib_per_session")}
    return out


def _per_rep_ratio(t, b):
    """The median over repeats (or rounds) of t ÷ b, and how many there were."""
    xs = [t[r] / b[r] for r in t if r in b and b[r]]
    return (statistics.median(xs) if xs else None), xs


def summarize_scraped(h):
    """Issue 22: the scraped socket-connector beside the unscraped one, figure by figure (the
    medians over repeats of each, and the median of the per-repeat ratios scraped ÷ unscraped),
    conn/s also from the paired rounds, and what the scrapers counted, by load. Empty when this
    run has no scraped relay."""
    res = h.results
    if SCRAPED not in h.peers:
        return {}
    tp = "throughput" if h.use_iperf else "pusher"
    out = {"figures": {}}
    for key, metric, field, scale in (("tp1", tp, "bps1", 1e-9), ("tp8", tp, "bps8", 1e-9),
                                      ("cpu_s_per_gb", tp, None, 1), ("cps", "connrate", "cps", 1),
                                      ("cpu_us_per_conn", "connrate", "cpu_us_per_conn", 1)):
        if field:
            sv, uv = res.vals(metric, SCRAPED, field), res.vals(metric, "socket-connector", field)
        else:
            sv, uv = res.cpu_per_gb_by_rep(metric, SCRAPED), res.cpu_per_gb_by_rep(metric, "socket-connector")
        if not sv and not uv:
            continue
        ratio, xs = _per_rep_ratio(sv, uv)
        out["figures"][key] = {
            "scraped": statistics.median(sv.values()) * scale if sv else None,
            "unscraped": statistics.median(uv.values()) * scale if uv else None,
            "ratio": ratio, "repeats": len(xs), "min": min(xs, default=None), "max": max(xs, default=None)}
    if SCRAPED in h.pair_targets:
        ratio, xs = _per_rep_ratio(res.vals("connpair", SCRAPED, "cps"), res.vals("connpair", "socket-connector", "cps"))
        if xs:
            out["figures"]["cps_paired"] = {
                "scraped": res.med("connpair", SCRAPED, "cps"), "unscraped": res.med("connpair", "socket-connector", "cps"),
                "ratio": ratio, "rounds": len(xs), "min": min(xs), "max": max(xs),
                "ahead": sum(1 for x in xs if x >= 1.0)}
    by = {}
    for j in h.scrapes:
        key = {"connpair": "paired conn/s rounds", "pusher": "pusher"}.get(j.get("metric"), j.get("metric") or "other")
        by.setdefault(key, []).append(j)
    if h.scrapes:
        by["all"] = list(h.scrapes)
    out["scrapes"] = {}
    for key, js in by.items():
        secs = sum(j["seconds"] for j in js)
        out["scrapes"][key] = {
            "runs": len(js), "scrapes": sum(j["scrapes"] for j in js), "ok": sum(j["ok"] for j in js),
            "failed": sum(j["failed"] for j in js), "over_interval": sum(j["over_interval"] for j in js),
            "seconds": secs, "per_s": sum(j["scrapes"] for j in js) / secs if secs else None,
            "p50_ms": statistics.median([j["p50_ms"] for j in js if j.get("p50_ms") is not None] or [0]) or None,
            "max_ms": max((j["max_ms"] for j in js if j.get("max_ms") is not None), default=None),
            "cpu_share": sum(j["cpu_s"] for j in js) / secs if secs else None,
            # scrapers whose last answer counted more pairs than their first: live counters
            "counter_rose": sum(1 for j in js if (j.get("connections_last") or 0) > (j.get("connections_first") or 0))}
    return out


# Issue 21's figures: (key, metric, field, higher is better). Field None: CPU seconds per GB over
# the 1- and 8-stream loads, of the relay ("cpu") or of the client wrapper ("wcpu").
TLS_FIGURES = [
    ("tp1", "tls-throughput", "bps1", True),
    ("tp8", "tls-throughput", "bps8", True),
    ("cpu_s_per_gb", "tls-throughput", ("cpu",), False),
    ("wrapper_cpu_s_per_gb", "tls-throughput", ("wcpu",), False),
    ("hs", "tls-connrate", "hs_rate", True),
    ("hs_cpu_us", "tls-connrate", "hs_cpu_us", False),
    ("wrk", "tls-connrate", "wrk_cps", True),
    ("wrk_cpu_us", "tls-connrate", "wrk_cpu_us_per_conn", False),
    ("kib", "tls-memory", "rss_kib", False),
]


def _tls_by_rep(res, metric, target, field):
    if isinstance(field, tuple):
        out = {}
        for r in res.records:
            if r["metric"] == metric and r["target"] == target and f"{field[0]}1" in r and f"{field[0]}8" in r:
                gb = (r["bytes1"] + r["bytes8"]) / 1e9
                if gb > 0:
                    out[r["rep"]] = (r[f"{field[0]}1"] + r[f"{field[0]}8"]) / gb
        return out
    return res.vals(metric, target, field)


def summarize_tls(h):
    """Issue 21: for each TLS relay the medians over repeats of each figure and what the loads
    saw (bytes per fetch, resumed handshakes, wrk's errors, what the wrapper negotiated);
    socket-connector ÷ each peer, the median of the per-repeat ratios; and the paired rounds
    (socket-connector ÷ the peer, round by round). Empty when this run has no TLS relay."""
    res = h.results
    if not h.tls_targets:
        return {}
    out = {"rows": {}, "seen": {}, "ratios": {}, "paired": {}}
    for t in h.tls_targets:
        row = {}
        for key, metric, field, _ in TLS_FIGURES:
            xs = list(_tls_by_rep(res, metric, t, field).values())
            row[key] = statistics.median(xs) if xs else None
        out["rows"][t] = row
        recs = [r for r in res.records if r["target"] == t and r["metric"].startswith("tls")]
        seen = {"hs_conns": sum(r.get("hs_conns", 0) for r in recs),
                "hs_resumed": sum(r.get("hs_resumed", 0) for r in recs),
                "hs_bytes_per_conn": sorted({round(r["hs_bytes_per_conn"], 1) for r in recs
                                             if r.get("hs_bytes_per_conn") is not None}),
                "wrk_requests": sum(r.get("wrk_requests", 0) for r in recs),
                "wrk_socket_errors": sum(r.get("wrk_socket_errors", 0) for r in recs),
                "wrk_non2xx": sum(r.get("wrk_non2xx", 0) for r in recs),
                "pairs": res.med("tls-memory", t, "pairs"),
                "client": sorted({f"{r['client_version']} {r['client_cipher']}" for r in recs
                                  if r.get("client_version")}),
                "wrapper": {}, "wrapper_temp_key": {}}
        for r in recs:
            for k, n in (r.get("wrapper_ciphersuite") or {}).items():
                seen["wrapper"][k] = seen["wrapper"].get(k, 0) + n
            for k, n in (r.get("wrapper_temp_key") or {}).items():
                seen["wrapper_temp_key"][k] = seen["wrapper_temp_key"].get(k, 0) + n
        out["seen"][t] = seen
    if SC_TLS in h.tls_targets:
        for peer in h.tls_targets:
            if peer == SC_TLS:
                continue
            row = {}
            for key, metric, field, _ in TLS_FIGURES:
                ratio, xs = _per_rep_ratio(_tls_by_rep(res, metric, SC_TLS, field), _tls_by_rep(res, metric, peer, field))
                row[key] = {"ratio": ratio, "n": len(xs), "min": min(xs, default=None), "max": max(xs, default=None)}
            out["ratios"][peer] = row
        for metric, field in (("tlshspair", "hs_rate"), ("tlswrkpair", "cps")):
            for peer in h.tls_pair_targets[1:]:
                ratio, xs = _per_rep_ratio(res.vals(metric, SC_TLS, field), res.vals(metric, peer, field))
                if xs:
                    out["paired"].setdefault(metric, {})[peer] = {
                        "ratio": ratio, "rounds": len(xs), "min": min(xs), "max": max(xs),
                        "ahead": sum(1 for x in xs if x >= 1.0)}
    return out


def write_json(h, path, repeats):
    """Everything as JSON: summary, every raw measurement, commands, configs, notes, errors.
    Paths of this machine appear as relative() names them."""
    s, pusher = h.summary_data
    j = h.journal
    doc = {
        "started": h.started.isoformat(), "finished": h.finished.isoformat(),
        "machine": {"nproc": os.cpu_count(), "kernel": platform.release(), "description": h.machine},
        "mode": "quick" if h.args.quick else "full", "repeats": repeats,
        "argv": relative_argv(h.argv), "binary": h.binary and relative(h.binary), "threads": h.args.threads,
        "labels": h.labels, "levels": h.levels, "parameters": h.p,
        "summary": s, "pusher": pusher, "sessions": h.session_data, "scraped": h.scrape_data,
        "tls": h.tls_data, "tls_probe": h.tls_probe, "tls_certificate": h.tls_cert,
        "tls_pairs": h.tls_pairs if h.tls_targets else None,
        "scrapes": h.scrapes, "targets": h.targets,
        "records": h.records, "commands": [{"group": g, "label": l, "command": c} for g, l, c in j.commands],
        "ports": h.port,
        "configs": {k: {"file": n, "text": t} for k, (n, t) in j.configs.items()}, "notes": j.notes,
        "errors": j.errors,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    log(f"wrote {path}")
