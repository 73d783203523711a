"""The `report` section of scripts/bench: `culaunch report` over the traces
of a many-rank job, against `jq -c .` merely parsing the same files.

The corpus is synthesised from one real trace (a traced `import torch` with
--all-libs when the real-framework tier's torch venv exists, else a traced
run of the real libcudart wheels): 32 hosts x 32 ranks, each file the same
events under its own host, pids and rank, as `-t trace.%h.%q{RANK}.jsonl`
would leave them.
"""
import glob
import json
import os
import shutil
import statistics
import subprocess
import time

HOSTS, RANKS = 32, 32


def source_trace(culaunch, tmp, venv):
    os.makedirs(tmp, exist_ok=True)
    out = os.path.join(tmp, "report-source.jsonl")
    if os.path.exists(out):
        os.remove(out)
    tier = os.environ.get("CULAUNCH_TIER_DIR", os.path.expanduser("~/.cache/culaunch-tier"))
    torch_py = os.path.join(tier, "torch/bin/python")
    if os.path.exists(torch_py):
        argv, what = [torch_py, "-c", "import torch"], "real `import torch`"
    else:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_job.py")
        argv, what = [os.path.join(venv, "bin/python"), script], "the demo job on the real libcudart wheels"
    subprocess.run([culaunch, "-q", "--all-libs", "-t", out, "--"] + argv, check=True, capture_output=True)
    return out, what


def synthesise(src, tmp):
    corpus = os.path.join(tmp, "report-corpus")
    shutil.rmtree(corpus, ignore_errors=True)
    os.makedirs(corpus)
    events = [json.loads(l) for l in open(src)]
    pids = sorted({e["pid"] for e in events} | {e["ppid"] for e in events})
    n = 0
    for h in range(HOSTS):
        for r in range(RANKS):
            rank = h * RANKS + r
            base = 100000 + rank * 64
            remap = {p: base + i for i, p in enumerate(pids)}
            with open(os.path.join(corpus, f"trace.node{h:02d}.{rank}.jsonl"), "w") as f:
                for e in events:
                    e = dict(e, host=f"node{h:02d}", pid=remap[e["pid"]], ppid=remap.get(e["ppid"], e["ppid"]))
                    if e["event"] == "process_start":
                        e.update(rank=rank, local_rank=r, world_size=HOSTS * RANKS)
                        e["env"] = dict(e.get("env") or {}, RANK=str(rank), LOCAL_RANK=str(r))
                    f.write(json.dumps(e, separators=(",", ":")) + "\n")
                    n += 1
    return sorted(glob.glob(os.path.join(corpus, "*.jsonl"))), n


def peak_rss_kb(cmd):
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
    return int(out.stderr.strip().splitlines()[-1])


def run(runs, culaunch, tmp, venv):
    src, what = source_trace(culaunch, tmp, venv)
    files, lines = synthesise(src, tmp)
    size = sum(os.path.getsize(f) for f in files)
    variants = {
        "culaunch report --json": [culaunch, "report", "--json"] + files,
        "culaunch report (text)": [culaunch, "report"] + files,
        "jq -c . (parse only)": ["jq", "-c", "."] + files,
    }
    if not shutil.which("jq"):
        del variants["jq -c . (parse only)"]
    times = {k: [] for k in variants}
    for _ in range(max(3, runs // 3)):
        for k, cmd in variants.items():
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    rss = {k: peak_rss_kb(cmd) for k, cmd in variants.items()}
    ref = med.get("jq -c . (parse only)")
    print(f"\nreport: {len(files)} rank traces ({HOSTS} hosts x {RANKS} ranks) from {what}: "
          f"{lines} events, {size / 1e6:.1f} MB")
    print(f"  {'command':28} {'median':>10} {'vs jq':>7} {'peak RSS':>10}")
    for k in variants:
        ratio = f"x{med[k] / ref:.2f}" if ref else "-"
        print(f"  {k:28} {med[k] * 1000:8.0f} ms {ratio:>7} {rss[k] / 1024:7.1f} MB")
    return {"files": len(files), "events": lines, "bytes": size, "median_s": med, "peak_rss_kb": rss}
