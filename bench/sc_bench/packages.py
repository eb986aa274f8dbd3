"""The Debian packages a run needs: which are there, installing the missing ones with apt-get,
and the versions the report's labels name."""
import os
import re
import shutil
import subprocess

from .common import SYS_PATH, log

NGINX_STREAM_SO = "/usr/lib/nginx/modules/ngx_stream_module.so"


def have(cmd):
    return shutil.which(cmd, path=SYS_PATH) is not None


def stunnel_binary():
    """Debian's stunnel4 installs the program as stunnel4 (and stunnel); issue 21 runs it."""
    return "stunnel4" if have("stunnel4") else "stunnel"


PKG_CHECK = {
    "socat": lambda: have("socat"),
    "haproxy": lambda: have("haproxy"),
    "nginx": lambda: have("nginx"),
    "libnginx-mod-stream": lambda: os.path.exists(NGINX_STREAM_SO),
    "iperf3": lambda: have("iperf3"),
    "sockperf": lambda: have("sockperf"),
    "wrk": lambda: have("wrk"),
    "gnuplot-nox": lambda: have("gnuplot"),
    "openssl": lambda: have("openssl"),
    "stunnel4": lambda: have("stunnel4") or have("stunnel"),
}


def ensure_packages(pkgs, allow_install, notes):
    missing = [p for p in pkgs if not PKG_CHECK[p]()]
    if not missing:
        return
    if not allow_install:
        notes.append(f"not installed (and --no-install given): {', '.join(missing)}")
        return
    sudo = [] if os.geteuid() == 0 else (["sudo"] if have("sudo") else None)
    if sudo is None:
        notes.append(f"cannot install {', '.join(missing)}: not root and no sudo")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=SYS_PATH)
    log(f"apt-get update (to install {' '.join(missing)})")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
    available = []
    for p in missing:
        pol = subprocess.run(["apt-cache", "policy", p], capture_output=True, text=True, env=env).stdout
        m = re.search(r"Candidate:\s*(\S+)", pol)
        if m and m.group(1) != "(none)":
            available.append(p)
        else:
            notes.append(f"package {p} does not exist in this Debian release's archive")
    if available:
        log(f"apt-get install {' '.join(available)}")
        r = subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
                           + available, env=env, stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            notes.append(f"apt-get install {' '.join(available)} failed (status {r.returncode})")
    for p in available:
        if not PKG_CHECK[p]():
            notes.append(f"package {p} could not be installed")


def version_of(cmd, rx):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, env=dict(os.environ, PATH=SYS_PATH))
        m = re.search(rx, r.stdout + r.stderr)
        return m.group(1) if m else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""
