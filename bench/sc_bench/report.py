"""The markdown report printed on stdout, section by section: the main table, the pusher, the
rendezvous's sessions and memory, what a connection and a round trip cost, the paired rounds,
the relay while scraped (issue 22), socket-connector ÷ each peer with the targets,
TLS termination (issue 21) with its targets, micro-benchmarks, notes and errors, and the commands
and configs used. It names no path of this machine: paths inside the checkout are
relative to its root, others by file name."""
import platform
import shlex

from . import scrape, targets, tls
from .common import relative, relative_argv
from .peers import RENDEZVOUS, SC_TLS, SCRAPED, SESSIONS


def markdown(h, s, pusher):
    """The whole report; also sets h.targets."""
    lines = []
    for section in (_table, _pusher, _sessions, _connection_costs, _round_trip_costs, _conn_paired, _latency_paired,
                    _scraped, _versus, _tls, _micro, _notes_errors, _commands):
        section(h, s, pusher, lines.append)
    return "\n".join(lines)


def f(x, fmt="{:.2f}", suffix=""):
    """A figure, or — when this run has none."""
    return "—" if x is None else fmt.format(x) + suffix


def us(x):
    """A difference in µs, signed."""
    return "—" if x is None else f"{x:+.0f} µs" if abs(x) >= 10 else f"{x:+.1f} µs"


def _table(h, s, pusher, w):
    """The title, how to read the figures, and the main table: each relay ÷ direct."""
    date = h.started.strftime("%Y-%m-%d %H:%M %Z")
    w(f"# Relay benchmark, {date}")
    w("")
    a = h.args
    w(f"Machine: {h.machine}. Mode: {'quick (smoke check; figures are indicative only)' if a.quick else 'full'}, "
      f"{h.repeats} repeat(s), interleaved. socket-connector: `{relative(h.binary) if h.binary else '—'}`"
      + (f", --threads {a.threads}" if a.threads else " (default threads)") + ".")
    w("")
    plain = {"throughput", "cpu", "latency", "connrate", "memory"} & set(h.metrics)
    if plain or not h.tls_targets:
        w("Ratios are medians over repeats of (relay ÷ direct) measured in the same repeat; "
          "\"added\" latency is relay minus direct. Higher is better for ×, lower for CPU, µs and KiB.")
        w("")
    if not plain:
        return      # only the rendezvous's own metrics, or TLS's: their sections follow

    lv = h.levels
    hdr = ["relay", "1-stream × direct", "8-stream × direct", "relay CPU s/GB", "RTT p50 added",
           "RTT p99 added", "conn/s × direct"] + [f"KiB RSS/idle pair @{x:,}" for x in lv]
    w("| " + " | ".join(hdr) + " |")
    w("|" + "---|" * len(hdr))
    d = s["direct"]
    w("| " + " | ".join([h.labels["direct"] + " — absolute", f(d.get("gbps1"), "{:.1f}", " Gbit/s"),
                         f(d.get("gbps8"), "{:.1f}", " Gbit/s"), "—",
                         f(d.get("rtt_p50_us"), "{:.1f}", " µs RTT"), f(d.get("rtt_p99_us"), "{:.1f}", " µs RTT"),
                         f(d.get("cps"), "{:,.0f}", " conn/s")] + ["—"] * len(lv)) + " |")
    for t, row in s.items():
        if t == "direct":
            continue
        cells = [h.labels[t], f(row["tp1_x"]), f(row["tp8_x"]), f(row["cpu_s_per_gb"]),
                 us(row["rtt_p50_added_us"]), us(row["rtt_p99_added_us"]), f(row["cps_x"])]
        for x in lv:
            v = row.get(f"kib_per_pair_{x}")
            cell = f(v, "{:,.1f}")
            recs = [r for r in h.records if r["metric"] == "memory" and r["target"] == t]
            if any(f"skip{x}" in r for r in recs):
                cell = "skipped ‡"
            elif any(f"partial{x}" in r for r in recs):
                cell += " (partial)"
            cells.append(cell)
        w("| " + " | ".join(cells) + " |")
    w("")
    if RENDEZVOUS in s:
        w("† rendezvous pairs cannot be driven by iperf3 (both ends dial in): its throughput and CPU come "
          "from the python pusher (bench/tools.py), × the same pusher with no relay; see below.")
    if any("skip" in k for r in h.records for k in r):
        w(f"‡ socat forks a process per pair: not run above {h.args.fork_pairs_max:,} pairs (--fork-pairs-max).")
    w("")


def _pusher(h, s, pusher, w):
    """The pusher's table: direct, the proxy mode and rendezvous, from the same load generator."""
    if pusher:
        w("## Pusher throughput (python source → sink, fixed bytes; proxy vs rendezvous)")
        w("")
        w("| path | 1 stream Gbit/s | × direct | 8 streams Gbit/s | × direct | relay CPU s/GB |")
        w("|---|---|---|---|---|---|")
        names = {"direct": "direct (python sink server)", "socket-connector": h.labels["socket-connector"],
                 RENDEZVOUS: h.labels[RENDEZVOUS].rstrip(" †")}
        for t, r in pusher.items():
            w(f"| {names[t]} | {f(r['gbps1'], '{:.2f}')} | {f(r['x1'])} | {f(r['gbps8'], '{:.2f}')} | "
              f"{f(r['x8'])} | {f(r['cpu_s_per_gb'])} |")
        if RENDEZVOUS in pusher:
            r = pusher[RENDEZVOUS]
            w("")
            w(f"Rendezvous ÷ proxy mode: 1 stream {f(r.get('vs_proxy1'))}, 8 streams {f(r.get('vs_proxy8'))}.")
        w("")


def _sessions(h, s, pusher, w):
    """`socket-connector rendezvous`: sessions/s beside the proxy's conn/s, and its memory."""
    sd = h.session_data
    if "rendezvous" in sd or "proxy" in sd:
        a = h.args
        w("## Rendezvous sessions per second (bench/tools.py sessions; proxy conn/s beside it)")
        w("")
        w(f"One generator, {h.p['sess_c']} units in flight, {h.p['sess_t']} s per load, medians over repeats. "
          "A rendezvous session is two client connections (sides A and B of a fresh session id), each "
          "sending its token line (minted before the clock starts) and 64 bytes and reading the other's "
          "64. A proxy connection is one client connection and one the relay dials to the generator's "
          "own echo, 64 bytes there and back. Either way the generator handles four socket ends and "
          "two 64-byte messages per unit. Relay CPU: its CPU time during the load ÷ units; segments: "
          "the machine's TCP segments sent ÷ units. A failed unit (error, short read, bytes that "
          "differ) is never counted.")
        w("")
        w("| path | per second | relay CPU µs per unit | TCP segments per unit | generator CPU share | units "
          "| failed |")
        w("|---|---|---|---|---|---|---|")
        for key, t, unit in (("rendezvous", SESSIONS, "sessions/s"), ("proxy", "socket-connector", "conn/s")):
            r = sd.get(key)
            if r:
                w(f"| {h.labels[t]} | {f(r['per_s'], '{:,.0f}')} {unit} | {f(r['cpu_us_per_unit'], '{:.1f}')} | "
                  f"{f(r['segs_per_unit'], '{:.1f}')} | {f(r['generator_cpu_share'], '{:.0%}')} | "
                  f"{r['units']:,} | {r['failed']:,} |")
        if "ratio" in sd:
            w("")
            w(f"Sessions/s ÷ proxy conn/s (median of the per-repeat ratios): **{f(sd['ratio'], '{:.3f}')}** "
              f"(target ≥ 0.9); relay CPU per session ÷ per proxy connection: {f(sd.get('cpu_ratio'), '{:.2f}')}.")
        w("")
    m = sd.get("memory")
    if m:
        w("## Rendezvous memory: pending sides and idle sessions (bench/tools.py rv-memory)")
        w("")
        w("The rendezvous's VmRSS fresh, after N A sides sent their token lines and wait, and after the N "
          "matching B sides joined them (each pair exchanged a 32-byte message both ways); each read once "
          "the relay has read every byte sent to it (/proc/net/tcp) and 0.5 s more. Medians over repeats.")
        w("")
        w("| N | RSS fresh | RSS with N pending sides | KiB per pending side | RSS with N idle sessions | "
          "KiB per idle session |")
        w("|---|---|---|---|---|---|")
        w(f"| {f(m['sessions'], '{:,.0f}')} | {f(m['rss0'], '{:,.0f}', ' KiB')} | "
          f"{f(m['rss_pending'], '{:,.0f}', ' KiB')} | {f(m['kib_per_pending'], '{:.2f}')} | "
          f"{f(m['rss_paired'], '{:,.0f}', ' KiB')} | {f(m['kib_per_session'], '{:.2f}')} |")
        w("")


def _connection_costs(h, s, pusher, w):
    """conn/s, and the relay's CPU and the TCP segments per connection."""
    if any(row.get("cps") for row in s.values()):
        w("## What a connection costs (wrk, `Connection: close`, nginx behind)")
        w("")
        w("Medians over repeats. Relay CPU: the relay's processes' CPU time (user and system, "
          "kernel work on loopback included) during the wrk run ÷ requests. Segments: the "
          "machine's TCP segments sent during the run (/proc/net/snmp) ÷ requests, both links "
          "(client ↔ relay and relay ↔ nginx). On a machine whose cores the load saturates, "
          "these vary less from run to run than conn/s does.")
        w("")
        w("| path | conn/s | relay CPU µs per connection | TCP segments per connection |")
        w("|---|---|---|---|")
        for t, row in s.items():
            if t == RENDEZVOUS or not row.get("cps"):
                continue
            w(f"| {h.labels[t]} | {f(row['cps'], '{:,.0f}')} | "
              f"{'—' if t == 'direct' else f(row['cpu_us_per_conn'], '{:.1f}')} | "
              f"{f(row['segs_per_conn'], '{:.2f}')} |")
        w("")


def _round_trip_costs(h, s, pusher, w):
    """The relay's CPU per round trip of the latency ping-pong."""
    if any(row.get("cpu_us_per_rt") for row in s.values()):
        w("## What a round trip costs (the latency ping-pong)")
        w("")
        w("Medians over repeats. Relay CPU: the relay's processes' CPU time (user and system) "
          "during the ping-pong ÷ its round trips (each crosses the relay twice). A relay that "
          "spins before it sleeps (socket-connector's `--spin`) spends more here and adds less "
          "to the round trip.")
        w("")
        w("| path | RTT p50 added | relay CPU µs per round trip |")
        w("|---|---|---|")
        for t, row in s.items():
            if t in ("direct", RENDEZVOUS) or not row.get("cpu_us_per_rt"):
                continue
            w(f"| {h.labels[t]} | {us(row['rtt_p50_added_us'])} | "
              f"{f(row['cpu_us_per_rt'], '{:.1f}')} |")
        w("")


def _conn_paired(h, s, pusher, w):
    """Every paired conn/s round, socket-connector ÷ each peer, and the scraped socket-connector
    ÷ socket-connector."""
    pairs = h.pair_targets
    if pairs and (s.get("socket-connector", {}).get("cps_paired") or SCRAPED in pairs):
        a = h.args
        paired = s["socket-connector"].get("cps_paired", {})
        peers_ = [t for t in pairs[1:] if t != SCRAPED]     # the scraped relay is divided the other way
        scraped = [SCRAPED] if SCRAPED in pairs else []
        w("## conn/s in paired rounds")
        w("")
        w(f"After the repeats, {'; '.join(h.labels[t] for t in pairs)} run at once (each idle "
          f"while another is loaded), and each round loads each in turn with the same wrk "
          f"command for {a.pair_seconds} s, forwards in even rounds and "
          "backwards in odd ones. Each ratio is socket-connector's conn/s ÷ the peer's in the "
          "same round, so it compares loads seconds apart rather than each with a `direct` "
          "measured up to a minute earlier; the median over rounds is reported."
          + (" The last column is the other way round: the scraped socket-connector (issue 22) ÷ "
             "socket-connector; its scraper runs through the whole phase, also while the others are "
             "loaded." if scraped else ""))
        w("")
        w("| round | " + " | ".join(h.labels[t] for t in pairs) + " | "
          + " | ".join([f"÷ {h.labels[t]}" for t in peers_] + ["scraped ÷ unscraped" for t in scraped]) + " |")
        w("|" + "---|" * (1 + len(pairs) + len(peers_) + len(scraped)))
        vals = {t: h.results.vals("connpair", t, "cps") for t in pairs}

        def div(x, y):
            return None if x is None or not y else x / y
        for r in range(h.args.pair_rounds):
            sc_v = vals["socket-connector"].get(r)
            cells = [str(r + 1)] + [f(vals[t].get(r), "{:,.0f}") for t in pairs]
            cells += [f(div(sc_v, vals[t].get(r))) for t in peers_]
            cells += [f(div(vals[t].get(r), sc_v)) for t in scraped]
            w("| " + " | ".join(cells) + " |")
        sp = h.scrape_data.get("figures", {}).get("cps_paired", {})
        w("| **median** | " + " | ".join(f(h.results.med("connpair", t, "cps"), "{:,.0f}") for t in pairs) + " | "
          + " | ".join(["**" + f(paired.get(t, {}).get("cps_ratio")) + "**" for t in peers_]
                       + ["**" + f(sp.get("ratio")) + "**" for t in scraped]) + " |")
        w("| rounds with socket-connector ahead (÷ ≥ 1) | " + " | ".join("" for t in pairs) + " | "
          + " | ".join([f"{paired[t]['ahead']} of {paired[t]['rounds']}" if t in paired else "—" for t in peers_]
                       + [f"scraped ahead in {sp['ahead']} of {sp['rounds']}" if sp else "—" for t in scraped])
          + " |")
        w("")


def _latency_paired(h, s, pusher, w):
    """Every paired latency round, and socket-connector − each peer."""
    lpairs = h.lat_pair_targets
    if lpairs and s.get("socket-connector", {}).get("rtt_paired"):
        a = h.args
        lp = s["socket-connector"]["rtt_paired"]
        w("## Latency in paired rounds")
        w("")
        w(f"After the repeats, {'; '.join(h.labels[t] for t in lpairs)} run at once, and each "
          f"round runs the same ping-pong through each in turn for {a.pair_seconds} s, forwards "
          "in even rounds and backwards in odd ones. Each difference is socket-connector's round "
          "trip (p50 or p99, µs) minus the peer's in the same round, so the machine's drift "
          "between repeats drops out; the median over rounds is reported (negative: "
          "socket-connector adds less).")
        w("")
        w("| round | " + " | ".join(f"{h.labels[t]} p50 / p99" for t in lpairs) + " | "
          + " | ".join(f"Δ {h.labels[t]} p50 / p99" for t in lpairs[1:]) + " |")
        w("|" + "---|" * (2 * len(lpairs)))
        v50 = {t: h.results.vals("latpair", t, "p50") for t in lpairs}
        v99 = {t: h.results.vals("latpair", t, "p99") for t in lpairs}

        def pair_cell(x, y, fmt="{:.1f}"):
            return f"{f(x, fmt)} / {f(y, fmt)}"

        def diff(v, t, r):
            a_, b_ = v["socket-connector"].get(r), v[t].get(r)
            return None if a_ is None or b_ is None else a_ - b_
        for r in range(h.args.pair_rounds):
            cells = [str(r + 1)] + [pair_cell(v50[t].get(r), v99[t].get(r)) for t in lpairs]
            cells += [pair_cell(diff(v50, t, r), diff(v99, t, r), "{:+.1f}") for t in lpairs[1:]]
            w("| " + " | ".join(cells) + " |")
        w("| **median** | " + " | ".join(pair_cell(h.results.med("latpair", t, "p50"), h.results.med("latpair", t, "p99"))
                                        for t in lpairs) + " | "
          + " | ".join("**" + pair_cell(lp.get(t, {}).get("p50_delta_us"), lp.get(t, {}).get("p99_delta_us"),
                                        "{:+.1f}") + "**" for t in lpairs[1:]) + " |")
        w("")


def _scraped(h, s, pusher, w):
    """Issue 22: the scraped socket-connector ÷ the unscraped one, and what the scrapers counted."""
    sd = h.scrape_data
    if not sd:
        return
    fig = sd.get("figures", {})
    w("## socket-connector while scraped ten times a second (issue 22)")
    w("")
    w(f"{h.labels[SCRAPED]}: the command line of {h.labels['socket-connector']} plus "
      f"`--metrics 127.0.0.1:{h.port['metrics']}`. For as long as it runs, "
      f"`bench/tools.py scrape` GETs its /metrics every {scrape.INTERVAL:g} s, a new connection each; it "
      "makes its first scrape before the load starts and is stopped after the load, before the relay. "
      "Both relays run the same loads in every repeat, interleaved with the others. Each ratio is the "
      "median of the per-repeat ratios scraped ÷ unscraped (for paired conn/s, per round); the absolute "
      "figures are medians over repeats. Relay CPU includes the endpoint's thread; the scraper's own CPU "
      f"is not the relay's (it is listed below). Target: within noise, taken as ≥ {targets.WITHIN_NOISE}.")
    w("")
    names = {"tp1": ("1-stream throughput", "{:.2f}", " Gbit/s"), "tp8": ("8-stream throughput", "{:.2f}", " Gbit/s"),
             "cpu_s_per_gb": ("relay CPU s/GB", "{:.2f}", ""), "cps": ("conn/s", "{:,.0f}", ""),
             "cpu_us_per_conn": ("relay CPU µs per connection", "{:.1f}", ""),
             "cps_paired": ("conn/s, paired rounds", "{:,.0f}", "")}
    if fig:
        w("| figure | socket-connector (unscraped) | scraped | scraped ÷ unscraped | range of the ratios |")
        w("|---|---|---|---|---|")
        for key, (name, fmt, unit) in names.items():
            r = fig.get(key)
            if not r:
                continue
            n = f"{r['rounds']} rounds" if "rounds" in r else f"{r['repeats']} repeat(s)"
            rng = "—" if r.get("min") is None else f"{r['min']:.3f} – {r['max']:.3f} ({n})"
            w(f"| {name} | {f(r['unscraped'], fmt, unit)} | {f(r['scraped'], fmt, unit)} | "
              f"**{f(r['ratio'], '{:.3f}')}** | {rng} |")
        w("")
        w("Throughput and conn/s: ≥ 1 means no cost. CPU: ≤ 1 means no cost.")
        w("")
    sc = sd.get("scrapes", {})
    if sc:
        w(f"The scrapes (`GET /metrics`, answered: HTTP 200, the whole body, a "
          f"`socket_connector_connections_total` sample, within {scrape.TIMEOUT} s; over "
          f"{scrape.INTERVAL * 1000:g} ms: longer than the interval, which a Prometheus with "
          "scrape_timeout = scrape_interval would have given up on; answer p50: the median of the "
          "scrapers' medians; counter rose: scrapers whose last answer counted more pairs "
          "(`socket_connector_connections_total`) than their first, so the counters were live; scraper "
          "CPU: its CPU time ÷ its time):")
        w("")
        w(f"| beside | scrapers | scrapes | answered | failed | over {scrape.INTERVAL * 1000:g} ms | scrapes/s | "
          "answer p50 | slowest | counter rose | scraper CPU |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        for key, r in sc.items():
            w(f"| {'**all**' if key == 'all' else key} | {r['runs']} | {r['scrapes']:,} | {r['ok']:,} | "
              f"{r['failed']:,} | {r['over_interval']:,} | {f(r['per_s'], '{:.1f}')} | "
              f"{f(r['p50_ms'], '{:.2f}', ' ms')} | {f(r['max_ms'], '{:.1f}', ' ms')} | "
              f"{r['counter_rose']} of {r['runs']} | {f(r['cpu_share'], '{:.1%}')} |")
        w("")


def _versus(h, s, pusher, w):
    """socket-connector ÷ each peer, and the targets."""
    sc = s.get("socket-connector")
    lv = h.levels
    others = [t for t in h.peers if t not in ("socket-connector", SCRAPED)]   # SCRAPED: see _scraped
    if sc and others:
        w("## socket-connector ÷ each peer (same run)")
        w("")
        w("Throughput, conn/s: > 1 means socket-connector is better. CPU, segments, KiB: < 1 means "
          "socket-connector is better. RTT: socket-connector's added latency minus the peer's (negative is better).")
        w("")
        hdr = ["peer", "1-stream", "8-stream", "CPU s/GB", "RTT p50 Δ", "RTT p99 Δ", "conn/s",
               "CPU µs/conn", "segments/conn"] + [f"KiB/pair @{x:,}" for x in lv]
        w("| " + " | ".join(hdr) + " |")
        w("|" + "---|" * len(hdr))

        def div(x, y):
            return None if x is None or not y else x / y

        def sub(x, y):
            return None if x is None or y is None else x - y
        for t in others:
            r = s[t]
            cells = [h.labels[t], f(div(sc["tp1_x"], r["tp1_x"])), f(div(sc["tp8_x"], r["tp8_x"])),
                     f(div(sc["cpu_s_per_gb"], r["cpu_s_per_gb"])),
                     us(sub(sc["rtt_p50_added_us"], r["rtt_p50_added_us"])),
                     us(sub(sc["rtt_p99_added_us"], r["rtt_p99_added_us"])),
                     f(div(sc["cps_x"], r["cps_x"])),
                     f(div(sc["cpu_us_per_conn"], r["cpu_us_per_conn"])),
                     f(div(sc["segs_per_conn"], r["segs_per_conn"]))]
            cells += [f(div(sc.get(f"kib_per_pair_{x}"), r.get(f"kib_per_pair_{x}")), "{:.3f}") for x in lv]
            w("| " + " | ".join(cells) + " |")
        w("")
    if sc:
        issues = ["4"] + (["20"] if {"sessionrate", "sessionmemory"} & set(h.metrics) else []) \
            + (["22"] if SCRAPED in h.peers else [])
        issues = "issue 4" if len(issues) == 1 else f"issues {', '.join(issues[:-1])} and {issues[-1]}"
        h.targets = targets.judge(h, s, pusher)
        if h.targets:
            w(f"### Targets of {issues}" + (" (quick mode: indicative only)" if h.args.quick else ""))
            w("")
            for t in h.targets:
                w(f"- {t['status']}: {t['target']}")
            w("")


def _tls(h, s, pusher, w):
    """Issue 21: the relays terminating TLS: the certificate and the clients, what each relay
    negotiated, the figures, socket-connector ÷ each peer, the paired rounds and the targets."""
    td = h.tls_data
    if not td:
        return
    a = h.args
    labels = h.labels
    ts = h.tls_targets
    c = h.tls_cert
    w("## TLS termination (issue 21)")
    w("")
    w(f"Each relay terminates TLS from the client and relays plaintext to the backends of the plaintext loads "
      "(the iperf3 server, nginx serving the 33-byte tiny file, the idle-pair holder). All "
      f"serve one certificate made for this run with openssl: a self-signed CA and a server certificate "
      f"it signs, both {c.get('key', '?')} ({c.get('signature', '?')}), for {c.get('san', '?')}; the chain "
      "sent is the server certificate alone. Each relay keeps its default TLS versions, ciphers and groups. "
      "The clients use their defaults too:")
    w("")
    w(f"- throughput: iperf3 → **a TLS client wrapper** (stunnel {h.stunnel_version} in client mode, verifying "
      "the chain and the name; plaintext in, TLS out) → the relay → iperf3 server. The wrapper is the same before every relay "
      "and started fresh with it; **its cost is in every TLS throughput figure** (its own CPU is listed). "
      f"{h.p['iperf_t']} s per load, 1 and 8 streams; relay CPU s/GB: the relay's process-tree CPU time "
      "(from /proc) during both loads ÷ the GB they delivered.")
    w(f"- full TLS handshakes/s: {h.p['hs_procs']} `openssl s_time -new` at once, each connecting, making a "
      f"full handshake (no session reused), fetching the tiny file with HTTP/1.0 and closing, over and over "
      f"for {h.p['wrk_d']} s; connections ÷ the wall time from the first start to the last exit. Relay CPU "
      "µs per handshake: the relay's CPU time ÷ connections.")
    w("- TLS conn/s (wrk): the conn/s load above over https (`Connection: close`). wrk keeps each "
      "connection's TLS session and resumes it on the next connection whenever the relay accepts it (see "
      "*sessions resumed* below), so where a relay resumes, most of these handshakes are abbreviated.")
    w(f"- memory: `bench/tools.py tls-idle-pairs` opens {h.tls_pairs:,} TLS connections through the relay "
      "(python's ssl, at most 16 in progress), each proven by a 32-byte message to the backend and 32 bytes "
      "back; then (VmRSS of the relay's process tree 0.5 s later − VmRSS fresh) ÷ pairs, as for the idle "
      "pairs.")
    w("")
    w("What each relay negotiated: `openssl s_client -brief` with its defaults, verifying the chain and "
      "the name, fetching the tiny file (*intact*: the status line and the file came back whole), once per "
      f"relay before the repeats; *sessions resumed*: {tls.PROBE_RESUMES} tries to resume the session of "
      "one s_client with `-sess_in`; the wrapper and python's ssl: what their connections negotiated.")
    w("")
    w("| relay | protocol | cipher suite | key exchange | signature | verification | intact | sessions resumed "
      "| the wrapper (throughput) | python ssl (idle pairs) |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for t in ts:
        pr = h.tls_probe.get(t, {})
        seen = td["seen"].get(t, {})
        wrap = ", ".join(f"{k} ×{n}" for k, n in seen.get("wrapper", {}).items()) or "—"
        wkey = ", ".join(seen.get("wrapper_temp_key", {}).keys())
        resumed = ("—" if "resumed" not in pr else f"{pr['resumed']} of {pr['resume_tries']}"
                   + (f" ({pr['resume_note']})" if pr.get("resume_note") else ""))
        w(f"| {labels[t]} | {pr.get('protocol') or '—'} | {pr.get('cipher') or '—'} | {pr.get('group') or '—'} | "
          f"{pr.get('signature') or '—'} | {pr.get('verification') or '—'} | "
          f"{'yes' if pr.get('http_ok') else 'NO'} | {resumed} | {wrap}{' (' + wkey + ')' if wkey else ''} | "
          f"{', '.join(seen.get('client', [])) or '—'} |")
    w("")
    protos = {h.tls_probe.get(t, {}).get("protocol") for t in ts} - {None}
    if len(protos) > 1:
        w("Not every relay negotiated the same protocol with its defaults ("
          + "; ".join(f"{labels[t]}: {h.tls_probe[t].get('protocol')}" for t in ts if h.tls_probe.get(t, {}).get("protocol"))
          + "). A TLS 1.2 relay's figures are TLS 1.2's: its full handshake takes two round trips instead of one, "
          "and its cipher suite is the one in the table.")
        w("")
    n = f"{h.tls_pairs:,}"
    w(f"Figures, medians over {h.repeats} repeat(s):")
    w("")
    w(f"| relay | 1-stream Gbit/s | 8-stream Gbit/s | relay CPU s/GB | wrapper CPU s/GB | full handshakes/s | "
      f"relay CPU µs/handshake | wrk https conn/s | relay CPU µs/conn (wrk) | KiB RSS/idle TLS pair @{n} |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for t in ts:
        r = td["rows"][t]
        w(f"| {labels[t]} | {f(r['tp1'] and r['tp1'] / 1e9)} | {f(r['tp8'] and r['tp8'] / 1e9)} | "
          f"{f(r['cpu_s_per_gb'])} | {f(r['wrapper_cpu_s_per_gb'])} | {f(r['hs'], '{:,.0f}')} | "
          f"{f(r['hs_cpu_us'], '{:.0f}')} | {f(r['wrk'], '{:,.0f}')} | {f(r['wrk_cpu_us'], '{:.0f}')} | "
          f"{f(r['kib'], '{:.1f}')} |")
    w("")
    if td["ratios"]:
        w("socket-connector ÷ each peer: the median of the per-repeat ratios (in brackets their range). "
          "Throughput and handshakes or conn/s: > 1 means socket-connector is better; CPU and KiB: < 1 means "
          "socket-connector is better.")
        w("")
        cols = [("tp1", "1-stream"), ("tp8", "8-stream"), ("cpu_s_per_gb", "CPU s/GB"),
                ("hs", "full handshakes/s"), ("hs_cpu_us", "CPU µs/handshake"), ("wrk", "wrk conn/s"),
                ("wrk_cpu_us", "CPU µs/conn (wrk)"), ("kib", f"KiB/idle TLS pair @{n}")]
        w("| peer | " + " | ".join(name for _, name in cols) + " |")
        w("|" + "---|" * (1 + len(cols)))
        for peer, row in td["ratios"].items():
            cells = []
            for key, _ in cols:
                x = row.get(key, {})
                rng = "" if x.get("n", 0) < 2 else f" ({x['min']:.2f}–{x['max']:.2f})"
                cells.append(f(x.get("ratio")) + rng)
            w(f"| {labels[peer]} | " + " | ".join(cells) + " |")
        w("")
    for metric, what, field, fmt in (("tlshspair", "full TLS handshakes/s", "hs_rate", "{:,.0f}"),
                                     ("tlswrkpair", "TLS conn/s (wrk https)", "cps", "{:,.0f}")):
        paired = td["paired"].get(metric)
        if not paired:
            continue
        pt = h.tls_pair_targets
        peers_ = pt[1:]
        w(f"### {what} in paired rounds")
        w("")
        w(f"After the repeats, {'; '.join(labels[t] for t in pt)} run at once, and each round loads each in "
          f"turn with the same load for {a.pair_seconds} s, forwards in even rounds and backwards in odd ones; "
          "each ratio is socket-connector's ÷ the peer's in the same round.")
        w("")
        w("| round | " + " | ".join(labels[t] for t in pt) + " | " + " | ".join(f"÷ {labels[t]}" for t in peers_) + " |")
        w("|" + "---|" * (1 + len(pt) + len(peers_)))
        vals = {t: h.results.vals(metric, t, field) for t in pt}
        for r in range(a.pair_rounds):
            sc_v = vals[SC_TLS].get(r)
            cells = [str(r + 1)] + [f(vals[t].get(r), fmt) for t in pt]
            cells += [f(None if sc_v is None or not vals[t].get(r) else sc_v / vals[t][r]) for t in peers_]
            w("| " + " | ".join(cells) + " |")
        w("| **median** | " + " | ".join(f(h.results.med(metric, t, field), fmt) for t in pt) + " | "
          + " | ".join("**" + f(paired.get(t, {}).get("ratio")) + "**" for t in peers_) + " |")
        w("| rounds with socket-connector ahead (÷ ≥ 1) | " + " | ".join("" for t in pt) + " | "
          + " | ".join(f"{paired[t]['ahead']} of {paired[t]['rounds']}" if t in paired else "—" for t in peers_)
          + " |")
        w("")
    seen_notes = []
    for t in ts:
        seen = td["seen"][t]
        if seen["hs_resumed"]:
            seen_notes.append(f"openssl s_time -new through {t}: {seen['hs_resumed']:,} of {seen['hs_conns']:,} "
                              "handshakes were resumed")
        if seen["wrk_socket_errors"] or seen["wrk_non2xx"]:
            seen_notes.append(f"wrk https through {t}: {seen['wrk_socket_errors']:,} socket errors, "
                              f"{seen['wrk_non2xx']:,} non-2xx responses in {seen['wrk_requests']:,} requests")
    sizes = {t: td["seen"][t]["hs_bytes_per_conn"] for t in ts if td["seen"][t]["hs_bytes_per_conn"]}
    if sizes:
        if len({x for v in sizes.values() for x in v}) > 1:
            seen_notes.append("bytes per fetch of the tiny file (openssl s_time) differ between relays: "
                              + "; ".join(f"{t} {v}" for t, v in sizes.items()))
        else:
            w(f"Every openssl s_time fetch through every relay read the same {next(iter(sizes.values()))[0]:,.0f} "
              "bytes (the backend's response).")
            w("")
    for x in seen_notes:
        h.journal.notes.append(x)
    tt = targets.judge_tls(h, td)
    h.targets = list(h.targets) + tt
    if tt:
        w("### Targets of issue 21" + (" (quick mode: indicative only)" if a.quick else ""))
        w("")
        for t in tt:
            w(f"- {t['status']}: {t['target']}")
        w("")


def _micro(h, s, pusher, w):
    """The output of the library's micro-benchmarks."""
    if h.micro_results:
        w("## Library micro-benchmarks")
        for path, out in h.micro_results:
            w(f"\n`{path}`\n\n```\n{out[-3000:]}\n```")
        w("")


def _notes_errors(h, s, pusher, w):
    """Notes (wrk errors and partial memory levels join them here) and errors."""
    for r in h.records:
        if r["metric"] == "tlswrkpair":
            continue        # counted with the TLS figures
        if r.get("socket_errors") or r.get("non2xx"):
            h.journal.notes.append(f"wrk through {r['target']} (repeat {r['rep'] + 1}): "
                              f"{r.get('socket_errors', 0)} socket errors, {r.get('non2xx', 0)} non-2xx responses")
        for k, v in r.items():
            if k.startswith("partial"):
                h.journal.notes.append(f"{r['metric']} through {r['target']} (repeat {r['rep'] + 1}): {v}")
    if h.journal.notes:
        w("## Notes")
        w("")
        for n in h.journal.notes:
            w(f"- {n}")
        w("")
    if h.journal.errors:
        w("## Errors")
        w("")
        for e in h.journal.errors:
            w(f"- {e}")
        w("")


def _commands(h, s, pusher, w):
    """The command line, every command used, and the generated configs."""
    w("## Commands used")
    w("")
    w("```")
    w("# " + " ".join(shlex.quote(x) for x in relative_argv(h.argv)))
    P = h.port
    if h.peers:
        w("# PORT: the relay's listen port (" + ", ".join(f"{t} {P[t]}" for t in h.peers)
          + (f", rendezvous A {P[RENDEZVOUS]} / B {P['rdv_b']}, rendezvous by token {P[SESSIONS]}"
             if "socket-connector" in h.peers else "")
          + "), or the backend's port for direct"
          + (f"; {P['metrics']}: the scraped socket-connector's --metrics endpoint" if SCRAPED in h.peers else ""))
    if h.tls_targets:
        w("# PORT (TLS, issue 21): " + ", ".join(f"{t} {P[t]}" for t in h.tls_targets)
          + f"; WRAP: {P['tls_wrap']}, the TLS client wrapper's listen port (it connects to PORT)")
    w(f"# BACKEND: {P['iperf3']} iperf3, {P['sockperf']} latency, {P['http']} nginx http, "
      f"{P['idle']} idle pairs, {P['sink']} pusher sink, {P['echo']} the sessions generator's echo")
    w(f"# $TMP: the run's temporary directory (generated configs); "
      f"python3: the harness's own, Python {platform.python_version()}")
    for group in ("tls", "backend", "relay", "load"):
        if group == "tls":
            if not any(g == "tls" for g, _, _ in h.journal.commands):
                continue
            w("# --- TLS (issue 21): the certificate, made once per run, and the probe of each relay")
        else:
            w(f"# --- {group}s")
        for g, label, cmd in h.journal.commands:
            if g == group:
                w(f"{cmd}    # {label}")
    w("```")
    w("")
    if h.journal.configs:
        w("## Generated configs")
        for name, text in h.journal.configs.values():
            w(f"\n`$TMP/{name}`\n\n```\n{text.rstrip()}\n```")
        w("")
