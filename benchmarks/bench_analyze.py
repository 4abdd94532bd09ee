"""Benchmark: ``latentscope.analysis.analyze`` against the naive in-memory notebook.

Writes an N x 256 float32 store (an anisotropic, off-centre normal cloud) and runs,
each in its own subprocess so that peak memory (``ru_maxrss``) is measured alone:

* **ours** -- ``analyze(store, out_dir, figures=False)``: two streaming passes
  (pass 1: mean, covariance, min/max; pass 2: histograms of raw components and PCA
  coordinates, quantiles, radii, pair densities), plus the core-covariance passes
  (the first of which also counts the rows inside the quantile boxes).
* **notebook** -- the same results computed the naive way: ``h5py`` read of the
  whole matrix, ``numpy.cov``, ``sklearn.decomposition.PCA`` fit + transform, one
  ``numpy.histogram`` per component (raw and PCA), ``scipy.stats`` moments,
  ``numpy.quantile`` for quantiles and boxes, ``numpy.linalg.norm`` for the radii,
  ``numpy.histogram2d`` for pairs, and the same core iteration on the in-memory
  matrix.

``--main-only`` compares the two-pass main analysis alone (no core, no quantile
boxes) with the matching notebook. ``--rows 2000000 --no-baseline`` runs ours on a
2 GB store (the notebook would need about 10 GB).

Usage::

    python benchmarks/bench_analyze.py [--rows 200000] [--dim 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LEVELS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975, 0.99, 0.995, 0.999)


def make_store(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    import numpy as np

    from latentscope import create_store

    rng = np.random.default_rng(seed)
    evals = np.geomspace(4.0, 0.01, dim)
    Q = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    A = (np.sqrt(evals)[:, None] * Q.T).astype(np.float32)
    mu = (rng.normal(size=dim) * 0.3 + 0.2).astype(np.float32)
    with create_store(path, dim, overwrite=True, source="bench_analyze") as store:
        step = 65536
        for lo in range(0, rows, step):
            n = min(step, rows - lo)
            store.append(rng.standard_normal((n, dim), dtype=np.float32) @ A + mu)


# -- children ---------------------------------------------------------------------------
def run_ours(path: str, threads: int, main_only: bool) -> dict:
    from latentscope import open_store
    from latentscope.analysis import analyze

    import shutil

    out = tempfile.mkdtemp(prefix="bench_analyze_")
    try:
        t0 = time.perf_counter()
        with open_store(path) as store:
            res = analyze(store, out, figures=False, n_threads=threads,
                          core=not main_only, quantiles=None if main_only else (0.005, 0.995))
        elapsed = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"time": elapsed, "passes": res.n_passes, "timings": res.timings,
            "core_iter": res.core.n_iter_ if res.core is not None else 0}


def run_notebook(path: str, main_only: bool, core_iter: int) -> dict:
    import h5py
    import numpy as np
    import scipy.stats as ss
    from scipy.special import gammainc, gammaincinv
    from sklearn.decomposition import PCA

    from latentscope import open_store

    with open_store(path) as store:
        n = store.n_rows
    t = {}
    t0 = time.perf_counter()
    with h5py.File(path, "r") as h5:
        X = h5["z"][:n]
    t["read"] = time.perf_counter() - t0

    def stats(M):
        out = {"mean": M.mean(0), "std": M.std(0), "min": M.min(0), "max": M.max(0),
               "skew": ss.skew(M, axis=0), "kurt": ss.kurtosis(M, axis=0),
               "q": np.quantile(M, LEVELS, axis=0)}
        out["hist"] = [np.histogram(M[:, k], bins=100) for k in range(M.shape[1])]
        return out

    s = time.perf_counter()
    raw = stats(X)
    t["raw stats"] = time.perf_counter() - s
    s = time.perf_counter()
    cov = np.cov(X, rowvar=False)
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    pairs = np.dstack(np.unravel_index(np.argsort(-np.abs(np.triu(corr, 1)), axis=None)[:4], corr.shape))[0]
    dens = [np.histogram2d(X[:, i], X[:, j], bins=64) for i, j in pairs]
    t["cov + pairs"] = time.perf_counter() - s
    s = time.perf_counter()
    pca = PCA().fit(X)
    T = pca.transform(X)
    t["sklearn PCA"] = time.perf_counter() - s
    s = time.perf_counter()
    pcs = stats(T)
    pc_dens = [np.histogram2d(T[:, i], T[:, j], bins=64) for i, j in ((0, 1), (0, 2), (1, 2), (2, 3))]
    t["PC stats"] = time.perf_counter() - s
    s = time.perf_counter()
    r_origin = np.linalg.norm(X, axis=1)
    r_center = np.linalg.norm(X - X.mean(0), axis=1)
    r_maha = np.linalg.norm(T / np.sqrt(pca.explained_variance_), axis=1)
    radial = [np.histogram(r, bins=100) for r in (r_origin, r_center, r_maha)]
    boxes = (X.min(0), X.max(0), T.min(0), T.max(0))
    t["radii + boxes"] = time.perf_counter() - s
    if not main_only:
        s = time.perf_counter()
        qa = np.quantile(X, [0.005, 0.995], axis=0)
        qp = np.quantile(T, [0.005, 0.995], axis=0)
        inside_a = np.mean(np.all((X >= qa[0]) & (X <= qa[1]), axis=1))
        inside_p = np.mean(np.all((T >= qp[0]) & (T <= qp[1]), axis=1))
        t["quantile boxes"] = time.perf_counter() - s
        s = time.perf_counter()
        dim = X.shape[1]
        thr = 2 * gammaincinv(dim / 2, 0.9)
        kappa = 0.9 / gammainc(dim / 2 + 1, thr / 2)
        mean, C = X.mean(0, dtype=np.float64), cov
        h = int(round(0.9 * X.shape[0]))
        for _ in range(core_iter):  # the same C-steps: keep the h rows of smallest radius
            w, V = np.linalg.eigh(C)
            W = V / np.sqrt(w)
            d2 = np.sum(((X - mean) @ W) ** 2, axis=1)
            keep = d2 <= np.partition(d2, h - 1)[h - 1]
            mean = X[keep].mean(0, dtype=np.float64)
            C = kappa * np.cov(X[keep], rowvar=False)
        t["core"] = time.perf_counter() - s
    elapsed = time.perf_counter() - t0
    del raw, pcs, dens, pc_dens, radial, boxes
    return {"time": elapsed, "timings": t}


def child(args: argparse.Namespace) -> None:
    if args.child == "ours":
        res = run_ours(args.path, args.threads, args.main_only)
    else:
        res = run_notebook(args.path, args.main_only, args.core_iter)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    res["peak_rss_mb"] = ru.ru_maxrss / 1024
    res["cpu_s"] = ru.ru_utime + ru.ru_stime
    print("RESULT " + json.dumps(res))


def spawn(kind: str, args: argparse.Namespace, path: Path, core_iter: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--path", str(path), "--threads", str(args.threads),
           "--core-iter", str(core_iter)] + (["--main-only"] if args.main_only else [])
    env = dict(os.environ, LATENTSCOPE_NO_PROGRESS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"{kind} failed")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--path", default=None, help="store to use (created when missing)")
    p.add_argument("--keep", action="store_true", help="keep the generated store")
    p.add_argument("--main-only", action="store_true", help="two-pass main analysis only (no core, no quantile boxes)")
    p.add_argument("--no-baseline", action="store_true", help="run ours only (e.g. for 2M rows)")
    p.add_argument("--child", choices=["ours", "notebook"], help=argparse.SUPPRESS)
    p.add_argument("--core-iter", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    tmp = None
    if args.path is None:
        tmp = tempfile.mkdtemp(prefix="bench_store_")
        path = Path(tmp) / "z.h5"
    else:
        path = Path(args.path)
    if not path.exists():
        t0 = time.perf_counter()
        make_store(path, args.rows, args.dim)
        print(f"wrote {args.rows:,} x {args.dim} float32 store ({path.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - t0:.1f} s")
    try:
        # warm the page cache so that both read from memory
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass
        ours = spawn("ours", args, path)
        mode = "two-pass main analysis" if args.main_only else "full analysis (main + core + quantile boxes)"
        print(f"\n{mode}, {args.rows:,} x {args.dim}, threads={args.threads}")
        print(f"  ours:     {ours['time']:7.2f} s   peak RSS {ours['peak_rss_mb']:7.0f} MB   "
              f"CPU {ours['cpu_s']:6.1f} s   passes {ours['passes']} (core iterations {ours['core_iter']})")
        print("            " + ", ".join(f"{k} {v:.2f}" for k, v in ours["timings"].items()))
        if not args.no_baseline:
            nb = spawn("notebook", args, path, core_iter=ours["core_iter"])
            print(f"  notebook: {nb['time']:7.2f} s   peak RSS {nb['peak_rss_mb']:7.0f} MB   CPU {nb['cpu_s']:6.1f} s")
            print("            " + ", ".join(f"{k} {v:.2f}" for k, v in nb["timings"].items()))
            print(f"  speed-up {nb['time'] / ours['time']:.2f}x (wall), {nb['cpu_s'] / ours['cpu_s']:.2f}x (CPU time); "
                  f"peak memory {nb['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x lower")
    finally:
        if tmp is not None and not args.keep:
            path.unlink(missing_ok=True)
            os.rmdir(tmp)


if __name__ == "__main__":
    main()
