"""Issue 21, TLS termination: the run's certificate, the TLS client wrapper the throughput loads
go through, and the probe of what each TLS relay negotiates.

The certificate is made once per run in $TMP/tls with openssl: one self-signed EC P-256 CA and
a server certificate it signs, EC P-256 too, for DNS:localhost and IP:127.0.0.1. Every TLS relay
serves that one certificate (without the CA: the chain the clients are sent is the server
certificate alone) with its default protocol versions, ciphers and groups, and every client
trusts the CA.

iperf3 speaks no TLS, so the throughput loads go iperf3 client -> the wrapper -> the relay under
test -> iperf3 server, where the wrapper is stunnel in client mode (plaintext in, TLS out,
verifying the chain and the name), the same configuration before every relay and started fresh
for each measurement. Its cost is in every TLS throughput figure; its CPU is read beside the
relay's. Its log (level info) says, per connection, what it negotiated.

The probe, once per run and relay before the repeats: `openssl s_client -brief` fetches the
backend's tiny file through the relay (the version, cipher suite, key exchange group and
signature it negotiated, the chain and name verified, the bytes that came back), then
`openssl s_client -sess_out` and `-sess_in` try to resume that session PROBE_RESUMES times: wrk
resumes sessions whenever the relay lets it (see loads.tls_connrate)."""
import os
import re
import subprocess

from .common import HOST, BenchError, log
from .packages import stunnel_binary
from .processes import PROCS, tail, wait_listen

NAME = "localhost"          # the name the clients check (and send as SNI where they send one)
DAYS = 2
PROBE_RESUMES = 4
TINY = "/tiny.txt"          # the nginx HTTP backend's file (backends.start_http)
TINY_BODY = "hello from the benchmark backend\n"

_CNF = """# issue 21: the benchmark's certificate (bench/sc_bench/tls.py)
[req]
distinguished_name = dn
prompt = no
[dn]
CN = socket-connector bench
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(h, args, label, what):
    """One openssl command for the certificate, noted in the report."""
    h.journal.note_cmd("tls", what, ["openssl"] + args)
    r = subprocess.run(["openssl"] + args, capture_output=True, text=True, timeout=60, cwd=PROCS.tmp)
    if r.returncode != 0:
        raise BenchError(f"openssl {label} failed (status {r.returncode}): {r.stderr.strip()[-400:]}")


def make_certificate(h):
    """Makes $TMP/tls/{ca.pem, cert.pem, key.pem, combined.pem}; h.tls_files names them."""
    d = os.path.join(PROCS.tmp, "tls")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    f = {k: os.path.join(d, n) for k, n in (("cnf", "cert.cnf"), ("ca", "ca.pem"), ("ca_key", "ca.key"),
                                             ("csr", "server.csr"), ("cert", "cert.pem"), ("key", "key.pem"),
                                             ("combined", "combined.pem"), ("request", "get.txt"))}
    h.journal.write_config(os.path.join("tls", "cert.cnf"), _CNF, "tls-cert")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-sha256"]
    _openssl(h, ["req", "-x509", "-new"] + ec + ["-keyout", f["ca_key"], "-out", f["ca"], "-days", str(DAYS),
                 "-config", f["cnf"], "-extensions", "ca_ext", "-subj", "/CN=socket-connector bench CA"],
             "req (CA)", "the CA: self-signed, EC P-256")
    _openssl(h, ["req", "-new"] + ec + ["-keyout", f["key"], "-out", f["csr"], "-config", f["cnf"],
                 "-subj", f"/CN={NAME}"],
             "req (server)", "the server key (EC P-256) and its request")
    _openssl(h, ["x509", "-req", "-in", f["csr"], "-CA", f["ca"], "-CAkey", f["ca_key"], "-set_serial", "2",
                 "-days", str(DAYS), "-sha256", "-extfile", f["cnf"], "-extensions", "server_ext", "-out", f["cert"]],
             "x509 (server)", "the server certificate, signed by the CA, for DNS:localhost and IP:127.0.0.1")
    with open(f["combined"], "w") as out:
        for part in (f["cert"], f["key"]):
            with open(part) as src:
                out.write(src.read())
    h.journal.note_cmd("tls", "HAProxy's crt file: certificate and key in one",
                       f"cat {f['cert']} {f['key']} > {f['combined']}")
    for k in ("ca", "cert", "key", "combined"):
        os.chmod(f[k], 0o644)
    with open(f["request"], "w") as out:
        out.write(f"GET {TINY} HTTP/1.0\r\nHost: {NAME}\r\n\r\n")
    h.tls_files = f
    r = subprocess.run(["openssl", "x509", "-in", f["cert"], "-noout", "-text"], capture_output=True, text=True,
                       timeout=30)
    text = r.stdout
    h.tls_cert = {
        "key": "EC P-256" if "prime256v1" in text or "P-256" in text else "?",
        "signature": (re.search(r"Signature Algorithm:\s*(\S+)", text) or [None, "?"])[1],
        "san": (re.search(r"Subject Alternative Name:.*\n\s*(.+)", text) or [None, "?"])[1].strip(),
    }
    log(f"TLS certificate: {h.tls_cert['key']}, {h.tls_cert['signature']}, {h.tls_cert['san']}")


# ---- the client wrapper of the throughput loads
def wrapper_config(h, relay_port):
    f = h.tls_files
    return ("; issue 21: the TLS client wrapper (plaintext in, TLS out), the same before every relay\n"
            "foreground = yes\nsyslog = no\npid =\ndebug = info\n"
            "[wrapper]\nclient = yes\n"
            f"accept = {HOST}:{h.port['tls_wrap']}\nconnect = {HOST}:{relay_port}\n"
            f"CAfile = {f['ca']}\nverifyChain = yes\ncheckHost = {NAME}\nsni = {NAME}\n")


def wrapper_start(h, relay):
    """Starts the wrapper in front of `relay` and waits until it listens."""
    subs = {relay.port: "PORT", h.port["tls_wrap"]: "WRAP"}
    path = h.journal.write_config(f"stunnel-wrapper-{relay.port}.conf", wrapper_config(h, relay.port),
                                  "stunnel-wrapper", subs)
    cmd = [stunnel_binary(), path]
    h.journal.note_cmd("load", "the TLS client wrapper of the throughput loads (stunnel, client mode)", cmd, subs)
    p = PROCS.spawn(cmd, f"tls-wrapper-{relay.target}")
    wait_listen(p, h.port["tls_wrap"], timeout=30)
    return p


def wrapper_negotiated(p):
    """What the wrapper's log says it negotiated: {"ciphersuite": {text: connections},
    "temp_key": {...}, "warnings": [its lines of level warning or worse]}."""
    out = {"ciphersuite": {}, "temp_key": {}, "warnings": []}
    try:
        with open(p.err_path, "rb") as fh:
            text = fh.read().decode(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = re.search(r"((?:TLSv[\d.]+|SSLv3)) ciphersuite: (\S+)", line)
        if m:
            k = f"{m.group(1)} {m.group(2)}"
            out["ciphersuite"][k] = out["ciphersuite"].get(k, 0) + 1
        m = re.search(r"(?:Peer|Server) temporary key: (.+)$", line)
        if m:
            k = m.group(1).strip()
            out["temp_key"][k] = out["temp_key"].get(k, 0) + 1
        if re.search(r"LOG[0-4]\[", line):
            out["warnings"].append(line.strip()[-200:])
    return out


# ---- the probe
def _s_client(h, relay, extra, label, what):
    """One openssl s_client through `relay` that fetches the tiny file: (status, stdout, stderr)."""
    f = h.tls_files
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{relay.port}", "-servername", NAME, "-verify_hostname", NAME,
           "-CAfile", f["ca"], "-verify_return_error", "-ign_eof"] + extra
    h.journal.note_cmd("tls", what, cmd + ["<", f["request"]], {relay.port: "PORT"})
    with open(f["request"], "rb") as req:
        p = PROCS.spawn(cmd, label, stdin=req)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            PROCS.stop(p)
            return None, "", f"did not finish within 15 s: {tail(p.err_path)}"
    PROCS.stop(p)
    with open(p.out_path, "rb") as fh:
        out = fh.read().decode(errors="replace")
    with open(p.err_path, "rb") as fh:
        err = fh.read().decode(errors="replace")
    return p.returncode, out, err


def probe(h, relay):
    """What `relay` negotiates with openssl s_client's defaults, whether the tiny file comes back
    intact through it, and whether it resumes a session (PROBE_RESUMES tries)."""
    t = relay.target
    res = {}
    rc, out, err = _s_client(h, relay, ["-brief"], f"s_client-{t}",
                             "negotiated version, cipher and group, once per relay: fetch the tiny file")
    brief = [line.strip() for line in err.splitlines() if ":" in line and not line.startswith(("depth=", "verify"))]
    res["brief"] = [x for x in brief if not x.startswith(("DONE", "read:"))][:12]
    for key, rx in (("protocol", r"Protocol version:\s*(\S+)"), ("cipher", r"Ciphersuite:\s*(\S+)"),
                    ("group", r"(?:Server|Peer) Temp Key:\s*(.+)"), ("signature", r"Signature type:\s*(\S+)"),
                    ("hash", r"Hash used:\s*(\S+)"), ("verification", r"Verification:\s*(.+)"),
                    ("peer", r"Peer certificate:\s*(.+)")):
        m = re.search(rx, err)
        res[key] = m.group(1).strip() if m else None
    res["http_ok"] = " 200 " in out.split("\r\n", 1)[0] and out.endswith(TINY_BODY)
    if rc != 0 or not res["protocol"]:
        res["error"] = f"s_client through {t} failed (status {rc}): {(err.strip() or out.strip())[-300:]}"
        return res
    if not res["http_ok"]:
        res["error"] = (f"the tiny file did not come back intact through {t}: got {len(out)} bytes "
                        f"{out[:80]!r} ... {out[-60:]!r}")
    # Resumption: one full handshake that saves its session, then tries to resume it.
    sess = os.path.join(PROCS.tmp, "tls", f"session-{t}.pem")
    rc, out, err = _s_client(h, relay, ["-sess_out", sess], f"s_client-sess-{t}",
                             "resumption probe: a full handshake that saves the session (ticket)")
    first = re.search(r"^(New|Reused), (\S+), Cipher is (\S+)", out, re.M)
    res["resumed"], res["resume_tries"] = 0, 0
    if rc != 0 or not first:
        res["resume_note"] = f"the first handshake failed (status {rc})"
        return res
    if not os.path.exists(sess) or os.path.getsize(sess) == 0:
        res["resume_note"] = "no session to resume (no ticket received)"
        return res
    for i in range(PROBE_RESUMES):
        rc, out, err = _s_client(h, relay, ["-sess_in", sess, "-sess_out", sess], f"s_client-resume-{t}-{i}",
                                 "resumption probe: resume the saved session (each saves the newest ticket)")
        res["resume_tries"] += 1
        m = re.search(r"^(New|Reused), ", out, re.M)
        if rc == 0 and m and m.group(1) == "Reused":
            res["resumed"] += 1
    return res


def probe_all(h):
    """Runs the probe through each TLS relay, fresh, in front of the HTTP backend; a failure is an
    error of the run (the relay's loads still run)."""
    from . import peers
    h.tls_probe = {}
    for t in h.tls_targets:
        log(f"TLS probe: {t}")
        res = {}
        relay = None
        try:
            relay = peers.start(h, t, h.port["http"])
            res = probe(h, relay)
        except BenchError as e:
            res["error"] = str(e)
        try:
            peers.stop(relay)
        except BenchError as e:
            res["error"] = str(e)
        h.tls_probe[t] = res
        if res.get("error"):
            h.journal.errors.append(f"TLS probe / {t}: {res['error']}")
            log(f"ERROR TLS probe {t}: {res['error']}")
