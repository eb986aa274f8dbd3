"""One run: the settings that follow from the command line (loads, idle-pair levels, the
binary, the packages and peers there are, labels, ports), then the backends, the repeats, the
paired rounds, the micro-benchmarks, and the report, chart and JSON."""
import datetime
import os
import platform
import re
import resource
import tempfile

from . import backends, chart, micro, peers, report, results, schedule, tls
from .common import ROOT, BenchError, log
from .journal import Journal
from .packages import PKG_CHECK, ensure_packages, have, stunnel_binary, version_of
from .processes import PROCS, listening


class Harness:
    def __init__(self, args, argv):
        self.args = args
        self.argv = argv
        self.journal = Journal()
        self.records = []
        self.results = results.Results(self.records)
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.labels = {}
        self.pair_targets = []  # the relays of the paired conn/s rounds, socket-connector first
        self.lat_pair_targets = []  # the same for the paired latency rounds
        self.targets = []
        self.micro_results = []
        self.binary = None
        self.scrapes = []       # issue 22: what each scraper counted, with the load it ran beside
        self.phase = None       # the load under way ({"metric", "rep"}), for the scraper's count
        self.tls_targets = []   # issue 21: the TLS relays (peers.TLS_ORDER), socket-connector's first
        self.tls_pair_targets = []
        self.tls_files = {}     # the run's certificate (tls.make_certificate)
        self.tls_cert = {}
        self.tls_probe = {}     # what each TLS relay negotiated (tls.probe_all)

    def main(self):
        a = self.args
        self.settle_loads()
        self.find_binary()
        self.settle_tools()
        self.settle_labels()
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))
        except (ValueError, OSError):
            pass
        PROCS.tmp = tempfile.mkdtemp(prefix="sc-bench.")
        self.pick_ports()
        self.started = datetime.datetime.now().astimezone()
        log(f"temp dir {PROCS.tmp}; ports from {self.port['iperf3'] - 1}; repeats {self.repeats}; "
            f"peers {','.join(self.peers + [t for t in self.tls_targets if t not in self.peers])}; "
            f"metrics {','.join(sorted(self.metrics))}")
        if self.tls_targets:
            tls.make_certificate(self)
        backends.start_all(self, self.metrics)
        if self.tls_targets:
            tls.probe_all(self)
        schedule.run_repeats(self, self.repeats)
        schedule.run_paired_rounds(self)
        self.finished = datetime.datetime.now().astimezone()
        if not a.no_micro:
            self.micro_results = micro.run_all(self)
        return self.report()

    # ---- settings
    def settle_loads(self):
        """Load lengths, repeats and idle-pair levels (capped by the fd limit)."""
        a = self.args
        quick = a.quick
        self.p = {
            "iperf_t": a.duration or (1 if quick else 5),
            "lat_t": a.duration or (1 if quick else 5),
            "wrk_d": a.duration or (1 if quick else 5),
            "wrk_c": 16,
            "push_bytes": (128 << 20) if quick else (2 << 30),
            "push_limit": 10 if quick else 30,
            "mem_timeout": 60 if quick else 180,
            "sess_t": a.duration or (1 if quick else 5),
            "sess_c": 16,
            "hs_procs": 16,     # issue 21: openssl s_time processes at once (as wrk's 16 connections)
        }
        # Sessions (2 tokens each) the generator mints before its clock starts: more than it
        # can run in the time (about 1.5 s of minting for 200,000 sessions).
        self.p["sess_max"] = 40000 * self.p["sess_t"]
        self.repeats = a.repeats or (1 if quick else 3)
        levels = [100, 1000] if quick else [1000, 10000]
        if a.pairs:
            levels = a.pairs
        cap = max(1, (self.nofile - 200) // 2)
        tls_want = a.tls_pairs or (100 if quick else 1000)      # issue 21's idle TLS pairs
        # Connection slots the relays are configured for: enough for the largest idle-pair
        # level (2 per pair), within the fd limit, and no more (nginx and HAProxy size
        # tables by it).
        self.max_conns = min(self.nofile - 64, 2 * min(cap, max(levels + [tls_want])) + 1024)
        self.levels = []
        for lv in levels:
            if lv > cap:
                if "memory" in a.metrics:
                    self.journal.notes.append(
                        f"{lv:,} idle pairs need about {2 * lv + 200:,} file descriptors in the relay; "
                        f"the hard limit (ulimit -Hn) is {self.nofile:,} and cannot be raised here, "
                        f"so that level is measured at {cap:,} pairs")
                lv = cap
            if lv not in self.levels:
                self.levels.append(lv)
        # Issue 21: idle TLS pairs, 2N sockets in the relay and 2N in the generator.
        self.tls_pairs = min(cap, tls_want)
        if self.tls_pairs < tls_want and {"tls-memory"} & set(a.metrics):
            self.journal.notes.append(
                f"{tls_want:,} idle TLS pairs need about {2 * tls_want + 200:,} file descriptors in the relay; the "
                f"hard limit (ulimit -Hn) is {self.nofile:,}, so they are measured at {self.tls_pairs:,} pairs")
        # Rendezvous memory: N sessions, 2N sockets in the relay and 2N in the generator.
        self.session_level = min(cap, 1000 if quick else 10000)
        if self.session_level < (1000 if quick else 10000) and {"sessionmemory"} & set(a.metrics):
            self.journal.notes.append(
                f"{1000 if quick else 10000:,} rendezvous sessions need about twice as many file descriptors "
                f"in the relay and in the generator; the hard limit (ulimit -Hn) is {self.nofile:,}, so "
                f"they are measured at {self.session_level:,} sessions")

    def find_binary(self):
        a = self.args
        self.binary = a.binary or next((b for b in (os.path.join(ROOT, "build/gcc/examples/socket-connector"),
                                                    os.path.join(ROOT, "build/clang/examples/socket-connector"))
                                        if os.access(b, os.X_OK)), None)
        self.journal.binary = self.binary
        if set(peers.SC_PEERS) & set(a.peers) and not (self.binary and os.access(self.binary, os.X_OK)):
            raise BenchError("socket-connector binary not found: run scripts/test first (or pass --binary)")

    def settle_tools(self):
        """Installs what the peers and metrics need, then drops or substitutes what is missing."""
        a = self.args
        notes = self.journal.notes
        peer_list = a.peers
        metrics = set(a.metrics)
        tls_metrics = metrics & set(schedule.TLS_METRICS)
        if not metrics - tls_metrics:
            # Only the TLS metrics (issue 21): the plaintext relays do not run.
            peer_list = []
        else:
            peer_list = [x for x in peer_list if x not in peers.TLS_ONLY]
        explicit = a.peers_given
        for peer in a.peers:
            if peer in peers.TLS_ONLY and not tls_metrics and explicit:
                notes.append(f"peer {peer} runs the TLS metrics only (issue 21; --tls): none in this run")
            if peer not in peers.TLS_FORMS and tls_metrics and explicit:
                notes.append(f"peer {peer} has no TLS form here: the TLS metrics skip it")
        tls_list = [t for t in peers.TLS_ORDER
                    if tls_metrics and t in {peers.TLS_FORMS.get(x) for x in a.peers}]
        pkgs = []
        if {"throughput", "cpu"} & metrics:
            pkgs.append("iperf3")
        if "latency" in metrics:
            pkgs.append("sockperf")
        if "connrate" in metrics:
            pkgs += ["wrk", "nginx"]
        for peer in peer_list:
            pkgs += peers.PACKAGES[peer]
        if tls_list:
            # the certificate and the probe (openssl), the HTTP backend behind the probe and the
            # connection loads (nginx); the throughput's iperf3 and client wrapper (stunnel4)
            pkgs += ["openssl", "nginx"]
            if "tls-throughput" in metrics:
                pkgs += ["iperf3", "stunnel4"]
            if "tls-connrate" in metrics:
                pkgs.append("wrk")
            for t in tls_list:
                pkgs += peers.TLS_PACKAGES[t]
        if a.chart:
            pkgs.append("gnuplot-nox")
        ensure_packages(list(dict.fromkeys(pkgs)), not a.no_install, notes)
        self.use_iperf = have("iperf3")
        self.use_sockperf = have("sockperf") and not a.python_latency
        self.use_wrk = have("wrk") and have("nginx")
        if "latency" in metrics and not self.use_sockperf:
            notes.append("latency: sockperf " + ("not used (--python-latency)" if have("sockperf") else "missing")
                         + "; substitute: bench/tools.py pingpong-client/-server, 1-byte messages, RTT")
        if {"throughput", "cpu"} & metrics and not self.use_iperf:
            notes.append("throughput: iperf3 missing; substitute: the python pusher (bench/tools.py source/sink)")
        if {"sessionrate", "sessionmemory"} & metrics and "socket-connector" not in peer_list:
            notes.append("sessionrate and sessionmemory measure socket-connector only: skipped without it in --peers")
            metrics -= {"sessionrate", "sessionmemory"}
        if "connrate" in metrics and not self.use_wrk:
            notes.append("connrate: wrk or nginx missing; metric skipped")
            metrics.discard("connrate")
        if peers.SCRAPED in peer_list:
            if not {"throughput", "cpu", "connrate"} & metrics:
                notes.append(f"{peers.SCRAPED} is measured for throughput, cpu and connrate only: "
                             "none of them in this run")
            if "socket-connector" not in peer_list:
                notes.append(f"issue 22 compares {peers.SCRAPED} with socket-connector in the same run: "
                             "without socket-connector in --peers its ratios are n/a")
        for peer in list(peer_list):
            missing = [pk for pk in peers.PACKAGES[peer] if not PKG_CHECK[pk]()]
            if missing:
                notes.append(f"peer {peer} skipped: package {missing[0]} is missing")
                peer_list = [x for x in peer_list if x != peer]
        self.peers = peer_list
        if tls_list:
            missing = [pk for pk in ("openssl", "nginx") if not PKG_CHECK[pk]()]
            if missing:
                notes.append(f"the TLS metrics skipped: package {missing[0]} is missing (the certificate, the "
                             "probe and the HTTP backend need openssl and nginx)")
                tls_list = []
                metrics -= tls_metrics
            if "tls-throughput" in metrics and not (have("iperf3") and PKG_CHECK["stunnel4"]()):
                notes.append("tls-throughput skipped: it needs iperf3 and stunnel4 (the TLS client wrapper)")
                metrics.discard("tls-throughput")
            if "tls-connrate" in metrics and not have("wrk"):
                notes.append("tls-connrate: wrk missing; only the full handshakes (openssl s_time) are measured")
        for t in list(tls_list):
            missing = [pk for pk in peers.TLS_PACKAGES[t] if not PKG_CHECK[pk]()]
            if missing:
                notes.append(f"TLS relay {t} skipped: package {missing[0]} is missing")
                tls_list.remove(t)
        self.tls_targets = tls_list
        self.metrics = metrics

    def settle_labels(self):
        hv = version_of(["haproxy", "-v"], r"version (\d+\.\d+(?:\.\d+)?)") if have("haproxy") else ""
        nv = version_of(["nginx", "-v"], r"nginx/(\S+)") if have("nginx") else ""
        sv = version_of(["socat", "-V"], r"socat version (\S+)") if have("socat") else ""
        tv = version_of([stunnel_binary(), "-version"], r"stunnel (\d+\.\d+)") if PKG_CHECK["stunnel4"]() else ""
        self.stunnel_version = tv
        self.labels = peers.labels(hv, nv, sv, self.args.threads, tv)

    # ---- ports: fixed per role so commands stay the same across repeats
    def ports(self, base):
        p = {"iperf3": base + 1, "sockperf": base + 2, "http": base + 3, "idle": base + 4,
             "sink": base + 5, "rdv_b": base + 6, "echo": base + 7, "metrics": base + 8, "tls_wrap": base + 9}
        for t, offset in peers.PORT_OFFSETS.items():
            p[t] = base + offset
        return p

    def pick_ports(self):
        """Listening ports outside the ephemeral range (a client socket in TIME_WAIT on an
        ephemeral port would make a later bind of that port fail)."""
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                lo, hi = (int(x) for x in f.read().split())
        except (OSError, ValueError):
            lo, hi = 32768, 60999
        base = self.args.base_port
        for _ in range(50):
            ports = self.ports(base)
            top = max(ports.values())
            if not (base <= hi and top >= lo) and top < 65536 and not any(listening(x) for x in ports.values()):
                if base != self.args.base_port:
                    self.journal.notes.append(
                        f"ports moved to {base}-{top} (--base-port {self.args.base_port} was "
                        f"busy or inside the ephemeral range {lo}-{hi})")
                self.port = ports
                return
            base = base + 100 if not (base <= hi and top >= lo) else max(1024, lo - 1000 - (top - base))
        raise BenchError("no free port range found (try --base-port)")

    # ---- results
    def report(self):
        """Prints the markdown report, draws the chart and writes the JSON; 1 if anything failed."""
        a = self.args
        self.summary_data = results.summarize(self)
        self.session_data = results.summarize_sessions(self)
        self.scrape_data = results.summarize_scraped(self)
        self.tls_data = results.summarize_tls(self)
        s, pusher = self.summary_data
        cpu = ""
        try:
            with open("/proc/cpuinfo") as f:
                m = re.search(r"model name\s*:\s*(.*)", f.read())
                cpu = m.group(1).strip() if m else ""
        except OSError:
            pass
        self.machine = f"nproc {os.cpu_count()}, kernel {platform.release()}" + (f", {cpu}" if cpu else "")
        if a.chart:
            chart.draw(self, a.chart)     # before the text, so its notes and errors are reported
        print(report.markdown(self, s, pusher), flush=True)
        if a.out:
            results.write_json(self, a.out, self.repeats)
        return 1 if self.journal.errors else 0
