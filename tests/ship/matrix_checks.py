"""The checks scripts/glibc-matrix runs with the wheel's culaunch, on the
build machine and inside each Debian root. Standard library only (a minbase
root has python3 and nothing else); Python 3.7 and newer.

Every check compares culaunch's answer with ground truth from outside it: the
traced process's own /proc/self/maps, and the same command run bare.

    python3 matrix_checks.py CULAUNCH LIBCUDART [OLD_MODULE [FIXTURES]]

OLD_MODULE: an audit module linked against a newer glibc than 2.17 (the
build machine's); where this root's loader refuses it, culaunch must say so
and exit 125, and where the loader takes it, culaunch must run traced with it.
FIXTURES: a directory with libquiet.so (calls a function nothing defines)
and libok.so, built on the build machine (a root has no compiler).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

CULAUNCH, CUDART = sys.argv[1], os.path.realpath(sys.argv[2])
OLD_MODULE = sys.argv[3] if len(sys.argv) > 3 else None
FIXTURES = os.path.realpath(sys.argv[4]) if len(sys.argv) > 4 else None
WORK = tempfile.mkdtemp(prefix="culaunch-matrix-")
JOB = os.path.join(WORK, "job.py")
failures = []

# The job: dlopens a library, then writes its pid, the libcudart files in its
# own /proc/self/maps, and dlopen's error. `tree` also forks a child and
# starts a subprocess, which do the same into OUT.fork and OUT.sub.
JOB_SOURCE = r'''
import ctypes, json, os, subprocess, sys
out, lib, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "quiet":
    # dlopen called directly, dlerror never: a load that fails in
    # relocation, then one that succeeds and is closed at once.
    dl = ctypes.CDLL(None)
    if not hasattr(dl, "dlopen"):
        dl = ctypes.CDLL("libdl.so.2")
    dl.dlopen.restype, dl.dlopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    dl.dlclose.argtypes = [ctypes.c_void_p]
    failed = dl.dlopen(os.path.join(lib, "libquiet.so").encode(), 2) is None
    h = dl.dlopen(os.path.join(lib, "libok.so").encode(), 2)
    if h:
        dl.dlclose(h)
    with open("/proc/self/maps") as f:
        mapped = sorted({l.split()[-1] for l in f if l.split()[-1].startswith(lib + "/")})
    with open(out, "w") as f:
        json.dump({"pid": os.getpid(), "failed": failed, "opened": bool(h), "mapped": mapped}, f)
    sys.exit(0)
def record(path):
    error = None
    try:
        ctypes.CDLL(lib)
    except OSError as e:
        error = str(e)
    with open("/proc/self/maps") as f:
        mapped = sorted({l.split()[-1] for l in f if "libcudart" in l})
    with open(path, "w") as f:
        json.dump({"pid": os.getpid(), "mapped": mapped, "error": error}, f)
record(out)
if mode == "tree":
    child = os.fork()
    if child == 0:
        record(out + ".fork")
        os._exit(0)
    os.waitpid(child, 0)
    subprocess.run([sys.executable, sys.argv[0], out + ".sub", lib, "plain"], check=True)
'''


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail), flush=True)
    if not ok:
        failures.append(name)


def run(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, **kw)


def traced(options, out, mode="plain", lib=CUDART, env=None):
    trace = out + ".trace"
    p = run([CULAUNCH, "-t", trace] + options + ["--", sys.executable, JOB, out, lib, mode], env=env)
    events = []
    if os.path.exists(trace):
        with open(trace) as f:
            events = [json.loads(l) for l in f if l.strip()]
    return p, events


def seen(path):
    with open(path) as f:
        return json.load(f)


def loads(events, pid):
    return {e["path"] for e in events if e.get("event") == "load" and e.get("pid") == pid and e.get("ok", True)}


def cudart_loads(events, pid):
    return {x for x in loads(events, pid) if "libcudart" in x}


def main():
    with open(JOB, "w") as f:
        f.write(JOB_SOURCE)

    # A traced dlopen of the real libcudart: the file the process mapped.
    out = os.path.join(WORK, "plain")
    p, events = traced([], out)
    s = seen(out)
    check("the command runs and succeeds", p.returncode == 0, p.stderr)
    check("the process maps the wheel's libcudart", s["mapped"] == [CUDART], str(s))
    check(
        "the trace reports exactly the mapped libcudart for that pid",
        cudart_loads(events, s["pid"]) == set(s["mapped"]),
        str(loads(events, s["pid"])),
    )
    check("the loader printed nothing about the audit module", "audit interface" not in p.stderr, p.stderr)

    # A pin: the process maps the pinned copy and no other libcudart.
    pinned_dir = os.path.join(WORK, "pinned")
    os.mkdir(pinned_dir)
    pinned = os.path.join(pinned_dir, "libcudart.so.12")
    shutil.copy(CUDART, pinned)
    out = os.path.join(WORK, "pin")
    p, events = traced(["--pin", "libcudart.so.12=" + pinned], out)
    s = seen(out)
    check("a pinned run maps the pinned copy and nothing else", p.returncode == 0 and s["mapped"] == [pinned], str(s) + p.stderr)
    check(
        "the trace says the pinned copy was loaded, pinned",
        any(e.get("event") == "load" and e.get("pid") == s["pid"] and e.get("path") == pinned and e.get("pinned") for e in events),
        str([e for e in events if e.get("event") == "load"]),
    )

    # --strict without a pin refuses libcudart: dlopen fails, nothing mapped.
    out = os.path.join(WORK, "strict")
    p, events = traced(["--strict"], out)
    s = seen(out)
    check(
        "--strict refuses the load: dlopen fails with culaunch's reason and nothing is mapped",
        s["mapped"] == [] and s["error"] is not None and s["error"].startswith("culaunch: refused ") and "libcudart.so.12" in s["error"],
        str(s),
    )
    check("the trace records the refusal", any(e.get("event") == "deny" for e in events), str(events))

    # fork and subprocess children: each child's own maps against the trace.
    out = os.path.join(WORK, "tree")
    p, events = traced([], out, mode="tree")
    parent, forked, sub = seen(out), seen(out + ".fork"), seen(out + ".sub")
    starts = {e["pid"] for e in events if e.get("event") == "process_start"}
    check("the command with children succeeds", p.returncode == 0, p.stderr)
    check(
        "the fork child and the subprocess are traced processes",
        {parent["pid"], forked["pid"], sub["pid"]} <= starts,
        "%s not in %s" % ([parent["pid"], forked["pid"], sub["pid"]], starts),
    )
    for name, s in (("fork child", forked), ("subprocess", sub)):
        check(
            "the trace gives the %s's libcudart as its maps do" % name,
            s["mapped"] == [CUDART] and cudart_loads(events, s["pid"]) == set(s["mapped"]),
            "%s vs %s" % (s, loads(events, s["pid"])),
        )

    # Exit status and death by signal, as the bare command.
    for name, code in (
        ("exit status 7", "import sys; sys.exit(7)"),
        ("death by SIGTERM", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"),
        ("death by SIGABRT", "import os; os.abort()"),
    ):
        bare = run([sys.executable, "-c", code]).returncode
        under = run([CULAUNCH, "--quiet", "--", sys.executable, "-c", code]).returncode
        check("%s: culaunch ends as the bare command (%s)" % (name, bare), under == bare and bare != 0, "culaunch: %s" % under)

    p = run([CULAUNCH, "--", "echo", "hi"])
    check("nothing of culaunch's on the command's stdout", p.stdout == "hi\n", repr(p.stdout))

    if FIXTURES:
        # A load that fails in relocation, never asked about with dlerror,
        # and one closed at once: the loader notifies both alike.
        out = os.path.join(WORK, "quiet")
        p, events = traced(["--all-libs"], out, mode="quiet", lib=FIXTURES)
        s = seen(out)
        mine = [e for e in events if e.get("event") == "load" and e.get("pid") == s["pid"]]
        quiet, ok = (os.path.join(FIXTURES, n) for n in ("libquiet.so", "libok.so"))
        check("the job's own dlopen of libquiet.so fails, of libok.so succeeds", s["failed"] and s["opened"] and s["mapped"] == [], str(s))
        check(
            "the trace says the load that failed in relocation failed",
            [(e.get("ok"), e.get("reason")) for e in mine if e.get("path") == quiet] == [(True, None), (False, "failed")],
            str(mine),
        )
        check("the trace says the load closed at once loaded", [e.get("ok") for e in mine if e.get("path") == ok] == [True], str(mine))

    if OLD_MODULE:
        # Ground truth: what this root's loader does with the module, bare.
        bare = run([sys.executable, "-c", "pass"], env=dict(os.environ, LD_AUDIT=OLD_MODULE))
        refused = "cannot be loaded as audit interface" in bare.stderr
        env = dict(os.environ, CULAUNCH_AUDIT_MODULE=OLD_MODULE)
        out = os.path.join(WORK, "old")
        p, events = traced([], out, env=env)
        if refused:
            needed = bare.stderr.split("version `")[1].split("'")[0] if "version `" in bare.stderr else "?"
            check(
                "a module this glibc's loader refuses (%s) stops culaunch with 125, naming the version" % needed,
                p.returncode == 125 and needed in p.stderr and "audit interface" not in p.stderr and not os.path.exists(out),
                "rc %s: %s" % (p.returncode, p.stderr),
            )
        else:
            s = seen(out)
            check(
                "a module this glibc's loader takes runs traced",
                p.returncode == 0 and s["mapped"] == [CUDART] and cudart_loads(events, s["pid"]) == set(s["mapped"]),
                p.stderr,
            )

    shutil.rmtree(WORK, ignore_errors=True)
    print("%d failed" % len(failures))
    sys.exit(1 if failures else 0)


main()
