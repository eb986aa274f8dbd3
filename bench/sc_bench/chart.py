"""The chart: five panels of the summary (throughput, conn/s, CPU per GB, added round trip,
memory per idle pair; the scraped socket-connector of issue 22 in the first three) and the
commands used, drawn by gnuplot (pngcairo) into one PNG whose title has the date and the
machine."""
import os
import subprocess

from .common import log
from .packages import have
from .peers import RENDEZVOUS, SCRAPED
from .processes import PROCS


def draw(h, path):
    """Draws the summary into `path` with gnuplot; its notes and errors go to the journal."""
    if not have("gnuplot"):
        h.journal.notes.append("chart not drawn: gnuplot missing")
        log("chart not drawn: gnuplot missing")
        return
    s, _ = h.summary_data
    tmp = PROCS.tmp

    def v(x):
        return "NaN" if x is None else f"{x:.6g}"

    def name(t):
        n = h.labels[t].replace(" †", "").replace("socket-connector", "sc")
        n = n.replace(" server-to-server", "").replace(" (rendezvous)", " rendezvous")
        n = n.replace(", ", "\\n").replace(" --", "\\n--").replace(" (fork)", "\\n(fork)")
        return n.replace('"', "'")
    rows = [t for t in s if t != "direct"]
    dat_all = os.path.join(tmp, "chart-all.dat")
    dat_px = os.path.join(tmp, "chart-proxies.dat")
    dat_lat = os.path.join(tmp, "chart-latency-memory.dat")    # the scraped relay runs neither load
    px = [t for t in rows if t != RENDEZVOUS]
    lat = [t for t in px if t != SCRAPED]
    for path_, keep in ((dat_all, rows), (dat_px, px), (dat_lat, lat)):
        with open(path_, "w") as fh:
            for t in keep:
                r = s[t]
                mem = [r.get(f"kib_per_pair_{x}") for x in h.levels]
                fh.write(f"\"{name(t)}\" {v(r['tp1_x'])} {v(r['tp8_x'])} {v(r['cps_x'])} "
                         f"{v(r['cpu_s_per_gb'])} {v(r['rtt_p50_added_us'])} {v(r['rtt_p99_added_us'])} "
                         + " ".join(v(m) for m in mem) + "\n")
    rtts = [x for t in rows for x in (s[t]["rtt_p50_added_us"], s[t]["rtt_p99_added_us"]) if x is not None]
    rtt_lo = min([0.0] + rtts) * 1.15
    cmds = [c for grp in ("backend", "relay", "load") for g, _, c in h.journal.commands if g == grp]
    cmds = [c if len(c) <= 150 else c[:147] + "..." for c in cmds][:30]
    caption = "\\n".join(c.replace('"', "'") for c in cmds)
    P = h.port
    ports = (f"PORT = relay listen port (or backend for direct); BACKEND = {P['iperf3']} iperf3, "
             f"{P['sockperf']} latency, {P['http']} nginx http, {P['idle']} idle, {P['sink']} sink")
    reps = max((r["rep"] for r in h.records if r["metric"] not in ("connpair", "latpair")), default=-1) + 1
    title = (f"socket-connector vs peers on 127.0.0.1, {h.started.strftime('%Y-%m-%d %H:%M %Z')}, "
             f"{h.machine}; {'quick' if h.args.quick else 'full'} run, {reps} interleaved repeat(s)"
             + (f" + {h.args.pair_rounds} paired conn/s rounds" if h.pair_targets else "")
             + (f" + {h.args.pair_rounds} paired latency rounds" if h.lat_pair_targets else "")
             ).replace('"', "'")
    mem_cols = ", ".join(
        f"'{dat_lat}' using {8 + i}" + (":xtic(1)" if i == 0 else "") + f" title '{x:,} idle pairs'"
        for i, x in enumerate(h.levels))

    def panel(plot, keys, targets):
        """The panel's plot, or an empty frame saying so when this run has none of its figures."""
        if any(s[t].get(k) is not None for t in targets for k in keys):
            return plot
        return ("unset logscale y\nunset xtics\nunset ytics\n"
                "set label 9 'not measured in this run' at graph 0.5,0.5 center\n"
                "plot [0:1] [0:1] 2 notitle with lines lc rgb 'white'\n"
                "unset label 9\nset xtics font 'Sans,8'\nset ytics")
    gp = f"""
set terminal pngcairo noenhanced size 1600,1300 font 'Sans,9'
set output '{os.path.abspath(path)}'
set datafile missing 'NaN'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set xtics font 'Sans,8'
set bmargin 4
set offsets 0, 0, graph 0.12, 0
set multiplot title "{title}" font 'Sans,11'
set size 0.5,0.31
set origin 0,0.64
set title 'Throughput x direct: iperf3 (rendezvous: python pusher) - higher is better'
set yrange [0:*]
{panel(f"plot '{dat_all}' using 2:xtic(1) title '1 stream', '' using 3 title '8 streams'", ['tp1_x', 'tp8_x'], rows)}
set origin 0.5,0.64
set title 'Connections/s x direct: wrk, Connection: close, nginx backend - higher is better'
{panel(f"plot '{dat_px}' using 4:xtic(1) title 'conn/s x direct'", ['cps_x'], px)}
set origin 0,0.33
set title 'Relay CPU seconds per GB relayed - lower is better'
{panel(f"plot '{dat_all}' using 5:xtic(1) title 'CPU s/GB'", ['cpu_s_per_gb'], rows)}
set origin 0.5,0.33
set title 'Round-trip time added over direct, microseconds - lower is better'
set yrange [{rtt_lo:.3g}:*]
{panel(f"plot '{dat_lat}' using 6:xtic(1) title 'p50', '' using 7 title 'p99'", ['rtt_p50_added_us', 'rtt_p99_added_us'], lat)}
set origin 0,0.02
set title 'KiB RSS per idle relayed pair (log scale) - lower is better'
set logscale y
set yrange [*:*]
{panel(f'plot {mem_cols}', [f'kib_per_pair_{x}' for x in h.levels], lat)}
unset logscale y
unset multiplot
"""
    # The commands, as a caption beside the memory panel.
    gp = gp.replace("unset multiplot", f"""set origin 0.5,0.02
set size 0.5,0.31
unset title
unset border
unset tics
unset key
unset grid
set xrange [0:1]
set yrange [0:1]
set label 1 "Commands (see bench/README.md):\\n{ports}" at graph 0.0,0.99 left front font 'Sans,8'
set label 2 "{caption}" at graph 0.0,0.90 left front font 'Mono,6.5'
plot 2 notitle with lines lc rgb 'white'
unset multiplot""")
    gpf = os.path.join(tmp, "chart.gp")
    with open(gpf, "w") as fh:
        fh.write(gp)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    r = subprocess.run(["gnuplot", gpf], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        h.journal.errors.append(f"gnuplot failed: {r.stderr.strip()[-400:]}")
        log(f"gnuplot failed: {r.stderr.strip()[-400:]}")
    else:
        log(f"wrote {path}")
