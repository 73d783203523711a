"""Checks of culaunch on real frameworks (see scripts/frameworks).

Ground truth is never culaunch itself: each traced Python process writes the
CUDA libraries of its own /proc/self/maps, and bare runs give the output and
exit status a traced run must reproduce.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

CULAUNCH = os.environ["CULAUNCH_BIN"]
CUDA = re.compile(
    r"/lib(cuda|cudart|cublas|cublasLt|cudnn[a-z_]*|cufft|cufftw|cufile[a-z_]*|curand|cusolver[A-Za-z]*|"
    r"cusparse|cusparseLt|nccl|nvrtc|nvrtc-builtins|nvJitLink|nvshmem[a-z_]*|cupti|nvToolsExt|nvidia-ml)\.so"
)
MAPS = (
    "import atexit, os, sys\n"
    "def _dump():\n"
    "    with open(os.environ['MAPS_OUT'] + '.' + str(os.getpid()), 'w') as f:\n"
    "        f.write(open('/proc/self/maps').read())\n"
    "atexit.register(_dump)\n"
)
results = []


def check(name, ok, detail=""):
    results.append((name, ok))
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""), flush=True)


def mapped_cuda(prefix):
    out = {}
    d = os.path.dirname(prefix)
    for f in os.listdir(d):
        if f.startswith(os.path.basename(prefix) + "."):
            pid = int(f.rsplit(".", 1)[1])
            paths = set()
            for line in open(os.path.join(d, f)):
                parts = line.split(None, 5)
                if len(parts) == 6 and CUDA.search(parts[5].strip()):
                    paths.add(os.path.realpath(parts[5].strip()))
            out[pid] = paths
    return out


def run(argv, env=None, **kw):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=e, **kw)


def summary_paths(summary, pid):
    return {
        l["path"]
        for l in summary["libraries"]
        if any(p.endswith(f":{pid}") for p in l["processes"]) and CUDA.search(l["path"])
    }


def traced_vs_maps(tag, py, code, work):
    maps = os.path.join(work, f"{tag}.maps")
    sj = os.path.join(work, f"{tag}.json")
    script = MAPS + code
    bare = run([py, "-c", script], env={"MAPS_OUT": maps + "bare"})
    r = run([CULAUNCH, "--summary-json", sj, "--", py, "-c", script], env={"MAPS_OUT": maps})
    check(f"{tag}: traced exit status equals bare ({bare.returncode})", r.returncode == bare.returncode, r.stderr[-2000:])
    check(f"{tag}: traced stdout equals bare", r.stdout == bare.stdout, f"{r.stdout!r} vs {bare.stdout!r}")
    summary = json.load(open(sj))
    truth = mapped_cuda(maps)
    for pid, paths in truth.items():
        got = summary_paths(summary, pid)
        check(f"{tag}: pid {pid}: the {len(paths)} CUDA libraries in /proc/self/maps are the reported ones",
              got == paths, f"only maps: {sorted(paths - got)}; only report: {sorted(got - paths)}")
    return summary, r


def site_packages(venv):
    return subprocess.check_output([os.path.join(venv, "bin/python"), "-c",
                                    "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()


def torch_checks(venv, work):
    py = os.path.join(venv, "bin/python")
    site = site_packages(venv)
    summary, _ = traced_vs_maps("torch import", py, "import torch; print(torch.ones(3).sum().item())", work)
    fams = {l["family"] for l in summary["libraries"]}
    check("torch import: cudart, cublas, cudnn and nccl are among the families", {"cudart", "cublas", "cudnn", "nccl"} <= fams, str(fams))
    reqs = summary.get("requirements", [])
    check("torch import: every declared requirement it loaded is satisfied in torch's own venv",
          bool(reqs) and all(r["satisfied"] for r in reqs), json.dumps([r for r in reqs if not r["satisfied"]])[:2000])

    # A pin of libcudart to a copy: the process maps the copy, not the wheel's.
    cudart = [l["path"] for l in summary["libraries"] if l["family"] == "cudart"][0]
    copy_dir = os.path.join(work, "pinned")
    os.makedirs(copy_dir, exist_ok=True)
    copy = os.path.join(copy_dir, os.path.basename(cudart))
    shutil.copy(cudart, copy)
    maps = os.path.join(work, "pin.maps")
    r = run([CULAUNCH, "-q", "--pin", f"{os.path.basename(cudart)}={copy}", "--", py, "-c", MAPS + "import torch"],
            env={"MAPS_OUT": maps})
    truth = mapped_cuda(maps)
    mapped = set().union(*truth.values()) if truth else set()
    check("torch pin: the pinned copy is mapped and the wheel's libcudart is not",
          r.returncode == 0 and os.path.realpath(copy) in mapped and cudart not in mapped, r.stderr[-1500:])

    # --strict with the whole nvidia/ tree: works; with only libcudart: refused, named.
    r = run([CULAUNCH, "-q", "--strict", "--toolkit", os.path.join(site, "nvidia"), "--", py, "-c",
             "import torch; print(torch.ones(2).sum().item())"])
    check("torch strict with --toolkit nvidia/: import works and computes", r.returncode == 0 and "2.0" in r.stdout, r.stderr[-1500:])
    r = run([CULAUNCH, "-q", "--strict", "--pin", f"{os.path.basename(cudart)}={cudart}", "--", py, "-c", "import torch"])
    check("torch strict with only libcudart pinned: the import fails, naming the refused library",
          r.returncode != 0 and "culaunch: refused lib" in r.stderr, r.stderr[-1500:])

    lockf = os.path.join(work, "torch.lock")
    r = run([CULAUNCH, "lock", "-q", "-o", lockf, "--", py, "-c", "import torch"])
    n = open(lockf).read().count("[[lib]]") if os.path.exists(lockf) else 0
    check(f"torch lock: written ({n} entries)", r.returncode == 0 and n >= 10, r.stderr[-1500:])
    r = run([CULAUNCH, "-q", "--locked", lockf, "--", py, "-c", "import torch"])
    check("torch --locked: replays", r.returncode == 0, r.stderr[-1500:])

    # torchrun, 3 workers on gloo: same output as bare, ranks 0-2 in the report.
    job = os.path.join(work, "ddp.py")
    open(job, "w").write(
        "import torch, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "t = torch.ones(1) * (dist.get_rank() + 1)\n"
        "dist.all_reduce(t)\n"
        "print(f'rank {dist.get_rank()} of {dist.get_world_size()}: {t.item()}')\n"
        "dist.destroy_process_group()\n")
    torchrun = [os.path.join(venv, "bin/torchrun"), "--standalone", "--nproc-per-node", "3", job]
    bare = run(torchrun, env={"OMP_NUM_THREADS": "1"})
    trace = os.path.join(work, "ddp.jsonl")
    r = run([CULAUNCH, "-q", "-t", trace, "--"] + torchrun, env={"OMP_NUM_THREADS": "1"})
    # The workers share one stdout pipe and Python may write a line and its
    # newline separately, so lines can interleave, traced or bare: compare
    # the workers' messages, not the lines.
    said = lambda out: sorted(re.findall(r"rank \d+ of \d+: [0-9.]+", out))
    check("torchrun: traced output equals bare (3 workers)",
          r.returncode == bare.returncode == 0 and said(r.stdout) == said(bare.stdout) and len(said(bare.stdout)) == 3,
          f"{r.stdout!r} vs {bare.stdout!r} {r.stderr[-1500:]}")
    rep = run([CULAUNCH, "report", "--json", trace])
    ranks = sorted(p["rank"] for p in json.loads(rep.stdout)["processes"] if p.get("rank") is not None) if rep.returncode == 0 else []
    check("torchrun: ranks 0, 1, 2 are in the report", sorted(set(ranks)) == [0, 1, 2], f"{ranks} {rep.stderr[-500:]}")
    text = run([CULAUNCH, "report", trace]).stdout
    check("torchrun: the agent is shown as the parent of the workers, not as a rank",
          "parent of ranks 0-2" in text, text[:1500])


def tf_checks(venv, work):
    py = os.path.join(venv, "bin/python")
    traced_vs_maps("tensorflow import", py,
                   "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))", work)


def torch_tf_checks(venv, work):
    py = os.path.join(venv, "bin/python")
    code = "import torch, tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    summary, r = traced_vs_maps("torch+tensorflow import", py, code, work)
    conflicts = {c["family"] for c in summary.get("conflicts", [])}
    check("torch+tensorflow: the cudart 12/13 pair in one process is a conflict", "cudart" in conflicts, str(conflicts))
    mismatches = [x for x in summary.get("requirements", []) if not x["satisfied"]]
    torch_cudnn = [x for x in mismatches if x["framework"]["name"] == "torch" and x["soname"] == "libcudnn.so.9"]
    check("torch+tensorflow: torch's cuDNN requirement is reported unmet", bool(torch_cudnn), json.dumps(mismatches)[:1500])
    kinds = [d["kind"] for d in summary.get("diagnoses", [])]
    check("torch+tensorflow: the run names the wheel clash", "wheel_clash" in kinds, str(kinds))
    doc = run([CULAUNCH, "doctor", "--json", "--python", py])
    d = json.loads(doc.stdout) if doc.returncode == 0 else {}
    clashed = {frozenset(x["name"] for x in c["dists"]) for c in d.get("clashes", [])}
    for pair in (("nvidia-cudnn-cu12", "nvidia-cudnn-cu13"), ("nvidia-nccl-cu12", "nvidia-nccl-cu13")):
        check(f"doctor: {pair[0]} and {pair[1]} clash", frozenset(pair) in clashed, str(clashed))
    dk = [p["kind"] for p in d.get("problems", d.get("diagnoses", []))]
    check("doctor: one venv with frameworks built for two CUDA majors is called out", "frameworks_cuda_majors" in dk, str(dk))


# A CUDA library file, a wheel's hashed copy included (libcudart-e409450e.so.11.0).
HASHED_CUDA = re.compile(r"/lib(cudart|nvToolsExt|cublas|cublasLt|cudnn[a-z_]*|nvrtc)(-[0-9a-f]{8})?\.so")


def torch113_checks(venv, work):
    """torch 1.13.1 bundles libcudart and libnvToolsExt under auditwheel's
    hashed names and also installs NVIDIA's cu11 wheels."""
    global CUDA
    plain, CUDA = CUDA, HASHED_CUDA
    try:
        torch113_checks_hashed(venv, work)
    finally:
        CUDA = plain


def torch113_checks_hashed(venv, work):
    py = os.path.join(venv, "bin/python")
    site = site_packages(venv)
    summary, _ = traced_vs_maps("torch 1.13 import", py, "import torch; print(torch.ones(3).sum().item())", work)
    vendored = [l for l in summary["libraries"] if os.path.basename(l["path"]).startswith("libcudart-")]
    check("torch 1.13: its hashed libcudart is a cudart, not given torch's version",
          len(vendored) == 1 and vendored[0]["family"] == "cudart" and vendored[0].get("version") != "1.13.1",
          json.dumps(vendored)[:1500])
    wheel = os.path.join(site, "nvidia/cuda_runtime/lib/libcudart.so.11.0")
    maps = os.path.join(work, "pin113.maps")
    r = run([CULAUNCH, "-q", "--pin", f"libcudart.so.11.0={wheel}", "--", py, "-c",
             MAPS + "import torch; print(torch.ones(3).sum().item())"], env={"MAPS_OUT": maps})
    mapped = set().union(*mapped_cuda(maps).values())
    cudarts = {os.path.realpath(p) for p in mapped if "libcudart" in p}
    check("torch 1.13 pin: the hashed copy's requests map NVIDIA's libcudart.so.11.0 instead, and the import computes",
          r.returncode == 0 and "3.0" in r.stdout and cudarts == {os.path.realpath(wheel)}, f"{cudarts} {r.stderr[-1500:]}")
    r = run([CULAUNCH, "-q", "--strict", "--toolkit", os.path.join(site, "nvidia"), "--", py, "-c", "import torch"])
    check("torch 1.13 strict with --toolkit nvidia/: the unpinned hashed libnvToolsExt is refused, named",
          r.returncode != 0 and "culaunch: refused libnvToolsExt-847d78f2.so.1" in r.stderr, r.stderr[-1500:])


def main():
    tier, names = sys.argv[1], sys.argv[2:]
    work = tempfile.mkdtemp(prefix="culaunch-frameworks-")
    for name in names:
        venv = os.path.join(tier, name)
        {"torch": torch_checks, "tf": tf_checks, "torch-tf": torch_tf_checks, "torch113": torch113_checks}[name](venv, os.path.join(work, name) if os.makedirs(os.path.join(work, name)) is None else work)
    failed = sum(1 for _, ok in results if not ok)
    print(f"frameworks: {len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
