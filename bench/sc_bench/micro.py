"""The library's own micro-benchmarks: executables named *_bench under the build directory of
the binary under test (build/gcc by default), each run with --quick in quick mode."""
import os

from .common import ROOT, BenchError, log, relative
from .processes import run


def run_all(h):
    """[(path relative to the checkout, output)] of every micro-benchmark found."""
    results = []
    bdir = os.path.join(ROOT, "build", "gcc")
    if h.binary and os.path.realpath(h.binary).startswith(os.path.join(ROOT, "build") + os.sep):
        rel = os.path.relpath(os.path.realpath(h.binary), os.path.join(ROOT, "build"))
        bdir = os.path.join(ROOT, "build", rel.split(os.sep)[0])
    if not os.path.isdir(bdir):
        return results
    found = []
    for dp, dn, fn in os.walk(bdir):
        dn[:] = [d for d in dn if d != "CMakeFiles"]
        for f in fn:
            path = os.path.join(dp, f)
            if f.endswith("_bench") and os.path.isfile(path) and os.access(path, os.X_OK):
                found.append(path)
    if not found:
        h.journal.notes.append(f"no library micro-benchmarks (executables named *_bench) in "
                               f"{os.path.relpath(bdir, ROOT)}")
    for path in sorted(found):
        cmd = [path] + (["--quick"] if h.args.quick else [])
        h.journal.note_cmd("load", "library micro-benchmark", cmd)
        log(f"micro-benchmark {os.path.relpath(path, ROOT)}")
        try:
            out = run(cmd, 600, "micro-" + os.path.basename(path))
            results.append((os.path.relpath(path, ROOT), out.strip()))
        except BenchError as e:
            h.journal.errors.append(f"micro-benchmark {relative(path)}: {e}")
    return results
