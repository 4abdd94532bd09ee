"""Benchmark: ``latentscope export STORE --out FILE.parquet`` (``export_parquet``), time and peak memory.

Writes an N x D float32 store (a heavy-tailed cloud: t3 and lognormal marginals mixed by
a rotation, with a ``filament_id`` and a ``density`` column) and exports it, each run in
its own subprocess so that peak memory (``ru_maxrss``) is measured alone. It runs at
``N/4`` and ``N`` rows: the goal is a peak that does not grow with N beyond the output
columns (the Parquet writer keeps nothing; only one row block and its neighbour
candidates are in memory). The neighbour search costs ``2 N^2 D`` flops; ``--k 0``
measures the streamed part alone (PCA pass, statistics, layout, writing).

Usage::

    python benchmarks/bench_export.py [--rows 200000] [--dim 256] [--k 10] [--knn auto]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_store(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    import numpy as np

    from latentscope import create_store

    rng = np.random.default_rng(seed)
    A = np.linalg.qr(rng.normal(size=(dim, dim)))[0] * np.geomspace(3.0, 0.05, dim)
    with create_store(path, dim, overwrite=True, source="bench_export") as store:
        step = 32768
        for lo in range(0, rows, step):
            n = min(step, rows - lo)
            X = rng.standard_t(3, size=(n, dim))
            X[:, : dim // 2] = rng.lognormal(0.0, 0.6, size=(n, dim // 2))
            store.append((X @ A).astype(np.float32), columns={
                "filament_id": rng.integers(-1, 20, n).astype(np.int64), "density": rng.lognormal(size=n)})


def child(path: str, out: str, k: int, knn: str) -> dict:
    from latentscope.export import export_parquet

    t0 = time.perf_counter()
    stats = export_parquet(path, out, k=k, knn=knn, overwrite=True)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "engine": stats["engine"], "rows": stats["rows"], "file_mb": Path(out).stat().st_size / 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--knn", default="auto")
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], int(a.child[2]), a.child[3])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for rows in (a.rows // 4, a.rows):
            store, out = Path(tmp) / f"z{rows}.h5", Path(tmp) / f"z{rows}.parquet"
            make_store(store, rows, a.dim)
            r = subprocess.run([sys.executable, __file__, "--child", str(store), str(out), str(a.k), a.knn],
                               check=True, capture_output=True, text=True)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            res["input_mb"] = rows * a.dim * 4 / 1e6
            results.append(res)
            print(f"{rows:>9,} x {a.dim}  k={a.k} ({res['engine']}): {res['seconds']:7.1f} s, "
                  f"peak RSS {res['peak_rss_mb']:7.0f} MB (z-points {res['input_mb']:.0f} MB), "
                  f"file {res['file_mb']:.0f} MB", flush=True)
            store.unlink()
            out.unlink()
        grow = results[1]["peak_rss_mb"] - results[0]["peak_rss_mb"]
        print(f"peak RSS growth from {a.rows // 4:,} to {a.rows:,} rows: {grow:+.0f} MB "
              f"(the z-points grew by {results[1]['input_mb'] - results[0]['input_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
