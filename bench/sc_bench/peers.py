"""The relays measured beside `direct`: their configs and command lines, starting one fresh for
a measurement and stopping it right after.

HAProxy runs three ways: `option splice-auto` (haproxy-splice), `option splice-request` and
`option splice-response` (haproxy-splice-forced, what HAProxy's users set for bulk TCP) and
`nosplice` (haproxy). Then nginx's stream module, socat with fork, and socket-connector in its
proxy mode (server-to-socket --multi), its rendezvous mode (server-to-server) and its
`rendezvous` command (sides paired by signed session tokens). For issue 22 the proxy mode also
runs as `socket-connector-scraped`: the same command line plus `--metrics`, its endpoint
scraped ten times a second for as long as it runs (scrape.py).

Issue 21 measures TLS termination: the TLS metrics run each peer's TLS form (TLS_FORMS), which
terminates TLS from the client and relays plaintext to the backend, all with the run's one
certificate (tls.py): socket-connector with `--tls-cert-a/--tls-key-a`, HAProxy with `bind ...
ssl crt` (one configuration: TLS cannot be spliced), nginx stream with `listen ... ssl`, and
stunnel4 in server mode (the peer `stunnel`, measured for the TLS metrics only)."""
import os
import secrets
import time

from . import scrape
from .common import HOST, BenchError
from .packages import NGINX_STREAM_SO, stunnel_binary
from .processes import PROCS, tail, wait_listen, wait_output

SCRAPED = "socket-connector-scraped"   # issue 22: the proxy mode with --metrics, scraped 10 times a second
STUNNEL = "stunnel"     # issue 21: stunnel4 in server mode, a peer of the TLS metrics only
ALL_PEERS = ["haproxy-splice", "haproxy-splice-forced", "haproxy", "nginx", "socat", "socket-connector", SCRAPED,
             STUNNEL]
TLS_ONLY = (STUNNEL,)   # peers without a plaintext form: the plaintext metrics skip them
SC_PEERS = ("socket-connector", SCRAPED)   # the peers that run the binary under test
# Issue 21: the TLS form of each peer that has one, in the order the TLS metrics list them
# (socket-connector first). The three HAProxy peers share one: TLS cannot be spliced.
SC_TLS = "socket-connector-tls"
TLS_FORMS = {"socket-connector": SC_TLS, "haproxy-splice": "haproxy-tls", "haproxy-splice-forced": "haproxy-tls",
             "haproxy": "haproxy-tls", "nginx": "nginx-tls", STUNNEL: STUNNEL}
TLS_ORDER = [SC_TLS, "haproxy-tls", "nginx-tls", STUNNEL]
RENDEZVOUS = "sc-rendezvous"
SESSIONS = "sc-sessions"   # `socket-connector rendezvous`: sessions by token, one port for both sides
HAPROXY_SPLICE = ["haproxy-splice-forced", "haproxy-splice"]   # the peers the splice targets compare with
# Each relay's listen port is the run's base port + this; the order of first use is kept so
# that a peer added later moves no other relay's port.
PORT_OFFSETS = {"haproxy-splice": 10, "haproxy": 11, "nginx": 12, "socat": 13, "socket-connector": 14,
                RENDEZVOUS: 15, "haproxy-splice-forced": 16, SESSIONS: 17, SCRAPED: 18,
                SC_TLS: 19, "haproxy-tls": 20, "nginx-tls": 21, STUNNEL: 22}
PACKAGES = {"haproxy-splice": ["haproxy"], "haproxy-splice-forced": ["haproxy"], "haproxy": ["haproxy"],
            "nginx": ["nginx", "libnginx-mod-stream"], "socat": ["socat"], "socket-connector": [], SCRAPED: [],
            STUNNEL: ["stunnel4"]}
TLS_PACKAGES = {SC_TLS: [], "haproxy-tls": ["haproxy"], "nginx-tls": ["nginx", "libnginx-mod-stream"],
                STUNNEL: ["stunnel4"]}
SPLICE_OPTIONS = {"haproxy-splice": ["splice-auto"],
                  "haproxy-splice-forced": ["splice-request", "splice-response"]}


def labels(haproxy_version, nginx_version, socat_version, threads, stunnel_version=""):
    """How the report names each target."""
    thr = f" --threads {threads}" if threads else ""
    return {
        "direct": "direct (no relay)",
        "haproxy-splice": f"HAProxy {haproxy_version}, splice-auto",
        "haproxy-splice-forced": f"HAProxy {haproxy_version}, forced splice",
        "haproxy": f"HAProxy {haproxy_version}, no splice",
        "nginx": f"nginx {nginx_version} stream",
        "socat": f"socat {socat_version} (fork)",
        "socket-connector": f"socket-connector --multi{thr}",
        SCRAPED: f"socket-connector --multi{thr} --metrics, scraped 10/s",
        RENDEZVOUS: f"socket-connector server-to-server{thr} (rendezvous) †",
        SESSIONS: f"socket-connector rendezvous{thr} (session tokens)",
        SC_TLS: f"socket-connector --multi{thr} --tls-cert-a",
        "haproxy-tls": f"HAProxy {haproxy_version}, bind ssl crt",
        "nginx-tls": f"nginx {nginx_version} stream, listen ssl",
        STUNNEL: f"stunnel {stunnel_version} (server mode)",
    }


class Relay:
    def __init__(self, target, proc, port, cmd, scraper=None):
        self.target, self.proc, self.port, self.cmd = target, proc, port, cmd
        self.scraper = scraper      # SCRAPED: its scraper (scrape.Scraper)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None


def haproxy_config(target, listen, backend, max_conns, nofile, crt=None):
    """`crt` (issue 21): the PEM file of certificate and key; the frontend then terminates TLS."""
    splice = SPLICE_OPTIONS.get(target)
    maxconn = max_conns // 2
    glob = f"global\n    maxconn {maxconn}\n"
    if splice:
        # HAProxy reserves two descriptors per pipe it may use for splicing (maxpipes,
        # default maxconn/4) on top of two per connection, and refuses to start when the
        # total exceeds the hard limit: give the splice peers only the pipes that fit.
        pipes = min(maxconn // 4, max(16, (nofile - 2 * maxconn - 64) // 2))
        glob += f"    maxpipes {pipes}\n"
    else:
        glob += "    nosplice\n"
    return (glob + "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1h\n"
            "    timeout server 1h\n    maxconn 100000\n"
            + "".join(f"    option {o}\n" for o in splice or []) +
            f"frontend fe\n    bind {HOST}:{listen}" + (f" ssl crt {crt}" if crt else "") +
            "\n    default_backend be\n"
            f"backend be\n    server s1 {HOST}:{backend}\n")


def nginx_stream_config(d, listen, backend, max_conns, nofile, tls=None):
    """`tls` (issue 21): (certificate, key); the server then terminates TLS."""
    ssl = "" if not tls else (f" ssl;\n        ssl_certificate {tls[0]};\n"
                              f"        ssl_certificate_key {tls[1]}")
    return (f"load_module {NGINX_STREAM_SO};\n"
            "daemon off;\nworker_processes auto;\n"
            f"worker_rlimit_nofile {nofile};\n"
            f"pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
            f"events {{ worker_connections {max_conns}; }}\n"
            "stream {\n    server {\n"
            f"        listen {HOST}:{listen}{ssl};\n        proxy_pass {HOST}:{backend};\n"
            "        proxy_connect_timeout 5s;\n        proxy_timeout 1h;\n"
            "    }\n}\n")


def stunnel_config(listen, backend, cert, key):
    """Issue 21: stunnel in server mode, its defaults but for the log level: `warning`, so that
    it logs no line per connection (the other relays log none either)."""
    return ("foreground = yes\nsyslog = no\npid =\ndebug = warning\n"
            "[relay]\n"
            f"accept = {HOST}:{listen}\nconnect = {HOST}:{backend}\n"
            f"cert = {cert}\nkey = {key}\n")


def secret_file(h):
    """The rendezvous's shared secret, made once per run: 32 random bytes as hex, a newline."""
    path = os.path.join(PROCS.tmp, "rendezvous.secret")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        h.journal.note_cmd("relay", "the rendezvous's secret (made once per run)",
                           "python3 -c 'import secrets; print(secrets.token_hex(32))' > $TMP/rendezvous.secret")
    return path


def relay_cmd(h, target, listen, backend):
    """The command line of `target` listening on `listen` and relaying to `backend`; writes its
    config (into the run's temporary directory) first where it has one."""
    if target == "haproxy-tls":
        cfg = haproxy_config("haproxy", listen, backend, h.max_conns, h.nofile, crt=h.tls_files["combined"])
        path = h.journal.write_config(f"haproxy-tls-{backend}.cfg", cfg, target, {backend: "BACKEND"})
        return ["haproxy", "-db", "-f", path]
    if target == "nginx-tls":
        d = os.path.join(PROCS.tmp, f"nginx-stream-tls-{backend}")
        os.makedirs(d, exist_ok=True)
        cfg = nginx_stream_config(d, listen, backend, h.max_conns, h.nofile,
                                  tls=(h.tls_files["cert"], h.tls_files["key"]))
        path = h.journal.write_config(f"nginx-stream-tls-{backend}.conf", cfg, "nginx-stream-tls", {backend: "BACKEND"})
        return ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", path]
    if target == STUNNEL:
        cfg = stunnel_config(listen, backend, h.tls_files["cert"], h.tls_files["key"])
        path = h.journal.write_config(f"stunnel-{backend}.conf", cfg, "stunnel", {backend: "BACKEND"})
        return [stunnel_binary(), path]
    if target.startswith("haproxy"):
        cfg = haproxy_config(target, listen, backend, h.max_conns, h.nofile)
        path = h.journal.write_config(f"{target}-{backend}.cfg", cfg, target, {backend: "BACKEND"})
        return ["haproxy", "-db", "-f", path]
    if target == "nginx":
        d = os.path.join(PROCS.tmp, f"nginx-stream-{backend}")
        os.makedirs(d, exist_ok=True)
        cfg = nginx_stream_config(d, listen, backend, h.max_conns, h.nofile)
        path = h.journal.write_config(f"nginx-stream-{backend}.conf", cfg, "nginx-stream", {backend: "BACKEND"})
        return ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", path]
    if target == "socat":
        return ["socat", f"TCP-LISTEN:{listen},bind={HOST},fork,reuseaddr", f"TCP:{HOST}:{backend}"]
    threads = ["--threads", str(h.args.threads)] if h.args.threads else []
    if target in SC_PEERS:
        cmd = [h.binary, "server-to-socket", "--a", f"{HOST}:{listen}", "--b", f"{HOST}:{backend}",
               "--multi", "--timeout", "0", "--no-keepalive"] + threads
        # issue 22: the same relay, serving its counters over HTTP on a port of its own.
        return cmd + (["--metrics", f"{HOST}:{h.port['metrics']}"] if target == SCRAPED else [])
    if target == SC_TLS:
        # issue 21: the proxy mode's command line, side A terminating TLS.
        return [h.binary, "server-to-socket", "--a", f"{HOST}:{listen}", "--b", f"{HOST}:{backend}",
                "--multi", "--timeout", "0", "--no-keepalive", "--tls-cert-a", h.tls_files["cert"],
                "--tls-key-a", h.tls_files["key"]] + threads
    if target == RENDEZVOUS:
        return [h.binary, "server-to-server", "--a", f"{HOST}:{listen}", "--b", f"{HOST}:{backend}",
                "--timeout", "0"] + threads
    if target == SESSIONS:
        # No limit on pending sides (the default 4,096 counts both sides on the one port) and
        # no pending timeout, so a memory level of 10,000 waiting sides fits and stays.
        return [h.binary, "rendezvous", "--listen", f"{HOST}:{listen}", "--secret-file", secret_file(h),
                "--max-pending", "0", "--pending-timeout", "0", "--no-keepalive"] + threads
    raise BenchError(f"unknown relay {target}")


def start(h, target, backend):
    """Starts `target` in front of `backend` and waits until it listens: for socket-connector,
    its `listening` lines; for the others, the port as LISTEN in /proc/net/tcp. The scraped
    socket-connector also gets its scraper, which has made its first scrape on return."""
    if target == "direct":
        return Relay("direct", None, backend, None)
    listen = h.port[target]
    cmd = relay_cmd(h, target, listen, backend)
    h.journal.note_cmd("relay", h.labels.get(target, target).rstrip(" †"), cmd,
                       None if target in (RENDEZVOUS, SESSIONS) else {backend: "BACKEND"})
    p = PROCS.spawn(cmd, f"relay-{target}")
    if target == SESSIONS:
        wait_output(p, r"listening on", 1, timeout=30)
    elif target in SC_PEERS + (RENDEZVOUS, SC_TLS):
        if target == SCRAPED:   # printed before the relay's own listening lines
            wait_output(p, r"metrics listening on", 1, timeout=30)
        wait_output(p, r"A listening on", 1, timeout=30)
        if target == RENDEZVOUS:
            wait_output(p, r"B listening on", 1, timeout=30)
    else:
        wait_listen(p, listen, timeout=30)
    time.sleep(0.1)
    if p.poll() is not None:
        raise BenchError(f"relay {target} exited at start: {tail(p.err_path)}")
    scraper = None
    if target == SCRAPED:
        try:
            scraper = scrape.start(h, h.port["metrics"], h.labels.get(target, target))
        except BenchError:
            PROCS.stop(p)
            raise
    return Relay(target, p, listen, cmd, scraper)


def stop(relay):
    """Stops a relay (its scraper first); a relay that had already exited is an error."""
    if relay and relay.scraper:
        scrape.stop(relay.scraper)
        relay.scraper = None
    if relay and relay.proc:
        if relay.proc.poll() is not None:
            msg = f"relay {relay.target} had exited (status {relay.proc.returncode}): {tail(relay.proc.err_path)}"
            PROCS.stop(relay.proc)
            raise BenchError(msg)
        PROCS.stop(relay.proc)
