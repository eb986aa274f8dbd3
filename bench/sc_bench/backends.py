"""The servers behind the relays, up for the whole run: the iperf3 server, the latency echo
(sockperf server, or the python one) and nginx serving a tiny file over HTTP for wrk (and, for
the TLS metrics of issue 21, for openssl s_client and s_time). The relays terminating TLS relay
plaintext to these same backends."""
import os

from .common import HOST, PY, TOOLS
from .processes import PROCS, wait_listen


def start_all(h, metrics):
    """Starts the backends the metrics need; h.backends maps each role to its process."""
    h.backends = {}
    if h.use_iperf and ({"throughput", "cpu", "tls-throughput"} & metrics):
        start_iperf(h)
    if "latency" in metrics:
        start_latency(h)
    # issue 21: the TLS probe and the TLS connection loads fetch the tiny file too
    if ("connrate" in metrics and h.use_wrk) or h.tls_targets:
        start_http(h)


def start_iperf(h):
    """(Re)starts the iperf3 server: a failed test can leave it busy."""
    old = h.backends.get("iperf3")
    if old:
        PROCS.stop(old)
    cmd = ["iperf3", "-s", "-B", HOST, "-p", str(h.port["iperf3"])]
    h.journal.note_cmd("backend", "throughput and CPU: iperf3 server", cmd)
    p = PROCS.spawn(cmd, "iperf3-server")
    wait_listen(p, h.port["iperf3"])
    h.backends["iperf3"] = p


def start_latency(h):
    if h.use_sockperf:
        cmd = ["sockperf", "server", "--tcp", "-i", HOST, "-p", str(h.port["sockperf"])]
    else:
        cmd = [PY, TOOLS, "pingpong-server", "--listen", str(h.port["sockperf"])]
    h.journal.note_cmd("backend", "latency: " + ("sockperf server" if h.use_sockperf else "python echo"), cmd)
    p = PROCS.spawn(cmd, "latency-backend")
    wait_listen(p, h.port["sockperf"])
    h.backends["latency"] = p


def start_http(h):
    tmp = PROCS.tmp
    d = os.path.join(tmp, "nginx-http")
    www = os.path.join(d, "www")
    os.makedirs(www, exist_ok=True)
    for x in (tmp, d, www):
        os.chmod(x, 0o755)
    with open(os.path.join(www, "tiny.txt"), "w") as f:
        f.write("hello from the benchmark backend\n")
    cfg = ("daemon off;\nworker_processes 1;\n"
           f"pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
           f"worker_rlimit_nofile {h.nofile};\n"
           "events { worker_connections 4096; }\n"
           "http {\n    access_log off;\n"
           + "".join(f"    {k}_temp_path {d}/{k};\n"
                     for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
           + f"    server {{\n        listen {HOST}:{h.port['http']};\n"
           f"        root {www};\n    }}\n}}\n")
    path = h.journal.write_config("nginx-http-backend.conf", cfg, "nginx-http")
    cmd = ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", path]
    what = "conn/s" + (" and the TLS loads" if h.tls_targets else "")
    h.journal.note_cmd("backend", f"{what}: nginx http serving a tiny static file", cmd)
    p = PROCS.spawn(cmd, "http-backend")
    wait_listen(p, h.port["http"])
    h.backends["http"] = p
