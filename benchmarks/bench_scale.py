"""Benchmark: ``analyze`` on a local dask cluster against the single-process path.

Writes an N x 256 float32 **Zarr** store of a non-Gaussian cloud (t3 marginals with a
few dominant axes, rotated, off-centre) and analyses it twice, each run in its own
subprocess so that peak memory is measured alone:

* **single** -- ``analyze(store, figures=False, n_threads=W)`` in one process, the
  engine's threads reading the store block by block;
* **cluster** -- the same call inside ``latentscope.stream.cluster(workers=W)``: a
  ``distributed.LocalCluster`` of W worker processes (one thread each); every pass is
  map + fixed-tree merge of the same reducers over chunk-aligned row ranges that the
  workers read from the store themselves.

For each it prints wall time, bytes read from the store (``rchar`` of ``/proc/PID/io``
of every process that reads: the single process, or the workers), peak memory of the
process (single) or of each worker (cluster), and the largest relative difference of
any number of the two ``summary.json`` files. Then an **estimate on paper** for
10^9 x 256 on N workers: passes x bytes / aggregate bandwidth, where the aggregate is
the smaller of N times the per-worker rate measured here and an assumed storage
bandwidth (``--storage-gbs``). It is an estimate, not a measurement.

Usage::

    python benchmarks/bench_scale.py [--rows 2000000] [--dim 256] [--workers 2]
    python benchmarks/bench_scale.py --rows 20000000   # 20.5 GB on disk
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_store(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    """An off-centre, rotated cloud with t3 marginals and a steep spectrum."""
    import numpy as np

    from latentscope.store import create_store

    rng = np.random.default_rng(seed)
    scales = np.geomspace(6.0, 0.05, dim)
    Q = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    A = (scales[:, None] * Q.T).astype(np.float32)
    mu = (rng.normal(size=dim) * 2.0 + 1.0).astype(np.float32)
    with create_store(path, dim, overwrite=True, source="bench_scale") as store:
        step = 1 << 16
        for lo in range(0, rows, step):
            n = min(step, rows - lo)
            t = rng.standard_t(3, size=(n, dim)).astype(np.float32)
            store.append(t @ A + mu, ids=np.arange(lo, lo + n, dtype=np.int64))


def _io_read() -> int:
    """Bytes this process has read through system calls (page cache included)."""
    try:
        with open("/proc/self/io") as fh:
            for line in fh:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(kind: str, path: str, workers: int, out: str) -> dict:
    from latentscope.analysis import analyze
    from latentscope.stream import cluster

    io0 = _io_read()
    t0 = time.perf_counter()
    if kind == "single":
        res = analyze(path, out, figures=False, n_threads=workers)
        wall = time.perf_counter() - t0
        return {"time": wall, "bytes_read": _io_read() - io0, "peak_rss_mb": [_maxrss_mb()],
                "passes": res.n_passes}
    with cluster(workers=workers) as client:
        before = client.run(_io_read)
        t0 = time.perf_counter()
        res = analyze(path, out, figures=False)
        wall = time.perf_counter() - t0
        after = client.run(_io_read)
        rss = client.run(_maxrss_mb)
    read = sum(after[w] - before.get(w, 0) for w in after)
    return {"time": wall, "bytes_read": read, "peak_rss_mb": sorted(rss.values()), "passes": res.n_passes,
            "client_rss_mb": _maxrss_mb()}


def spawn(kind: str, path: Path, workers: int, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--path", str(path), "--workers", str(workers),
           "--out", str(out)]
    env = dict(os.environ, LATENTSCOPE_NO_PROGRESS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{kind} run failed")
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def _numbers(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{prefix}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{prefix}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, float(obj)


def max_relative_difference(a: Path, b: Path) -> tuple[float, str, int]:
    """Largest |x - y| / max(|x|, |y|) over every number of two summary.json files."""
    skip = ("time", "timing", "elapsed", "created", "seconds", "path", "n_threads", "threads")
    A = dict(_numbers(json.loads(a.read_text())))
    B = dict(_numbers(json.loads(b.read_text())))
    worst, where, count = 0.0, "", 0
    for key, x in A.items():
        if any(s in key.lower() for s in skip) or key not in B:
            continue
        y = B[key]
        count += 1
        if math.isnan(x) and math.isnan(y):
            continue
        scale = max(abs(x), abs(y))
        d = 0.0 if scale == 0 else abs(x - y) / scale
        if d > worst:
            worst, where = d, key
    return worst, where, count


def estimate(passes: int, per_worker_bps: float, storage_gbs: float, dim: int) -> list[str]:
    total = 1e9 * dim * 4
    lines = [f"estimate on paper for 10^9 x {dim} ({total / 1e12:.2f} TB per pass, {passes} passes): "
             f"per-worker rate measured here {per_worker_bps / 1e6:.0f} MB/s, storage assumed {storage_gbs:g} GB/s"]
    for n in (8, 32, 128, 512):
        agg = min(n * per_worker_bps, storage_gbs * 1e9)
        t = passes * total / agg
        bound = "storage-bound" if n * per_worker_bps > storage_gbs * 1e9 else "compute-bound"
        lines.append(f"  N={n:4d} workers: aggregate {agg / 1e9:6.2f} GB/s -> {t / 3600:6.2f} h ({bound}; estimate)")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--path", default=None, help="Zarr store to use (created when missing)")
    p.add_argument("--keep", action="store_true", help="keep the generated store")
    p.add_argument("--storage-gbs", type=float, default=10.0,
                   help="assumed aggregate storage bandwidth (GB/s) for the 10^9 estimate")
    p.add_argument("--child", choices=["single", "cluster"], help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        res = run_child(args.child, args.path, args.workers, args.out)
        print("RESULT " + json.dumps(res))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    path = Path(args.path) if args.path else tmp / "z.zarr"
    need = args.rows * args.dim * 4
    free = shutil.disk_usage(path.parent if path.parent.exists() else tmp).free
    if not path.exists() and need * 1.1 > free:
        raise SystemExit(f"--rows {args.rows:,}: the store needs {need / 1e9:.1f} GB; {free / 1e9:.1f} GB free.")
    try:
        if not path.exists():
            t0 = time.perf_counter()
            make_store(path, args.rows, args.dim)
            print(f"wrote {args.rows:,} x {args.dim} float32 Zarr store ({need / 1e9:.2f} GB of z) "
                  f"in {time.perf_counter() - t0:.0f} s")
        single = spawn("single", path, args.workers, tmp / "single")
        clus = spawn("cluster", path, args.workers, tmp / "cluster")
        diff, where, count = max_relative_difference(tmp / "single" / "summary.json", tmp / "cluster" / "summary.json")
        print(f"\nanalyze (figures off), {args.rows:,} x {args.dim}, {args.workers} threads vs {args.workers} workers")
        print(f"  {'':10s} {'wall s':>8s} {'GB read':>8s} {'passes':>6s}  peak RSS MB (per process)")
        for name, r in (("single", single), ("cluster", clus)):
            print(f"  {name:10s} {r['time']:8.1f} {r['bytes_read'] / 1e9:8.2f} {r['passes']:6d}  "
                  + ", ".join(f"{m:.0f}" for m in r["peak_rss_mb"]))
        print(f"  ratio cluster/single: wall {clus['time'] / single['time']:.2f}x, bytes read "
              f"{clus['bytes_read'] / max(1, single['bytes_read']):.2f}x, peak memory per process "
              f"{max(clus['peak_rss_mb']) / max(single['peak_rss_mb']):.2f}x "
              f"(client process {clus.get('client_rss_mb', 0):.0f} MB)")
        print(f"  largest relative difference over {count:,} summary.json numbers: {diff:.2e} ({where or '-'})")
        per_worker = clus["bytes_read"] / clus["time"] / args.workers
        for line in estimate(clus["passes"], per_worker, args.storage_gbs, args.dim):
            print(line)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
