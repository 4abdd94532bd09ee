"""Benchmark of FilamentDetector on planted and null clouds (issues 7 and 12).

Run on demand (not collected by pytest)::

    python benchmarks/bench_filaments.py                   # 200,000 x 256, 10 null seeds
    python benchmarks/bench_filaments.py --n 20000 --null-seeds 3
    python benchmarks/bench_filaments.py --bulk t3-copula  # planted structures in a t3-copula bulk
    python benchmarks/bench_filaments.py --null-bulks all  # null clouds of every bulk law
    python benchmarks/bench_filaments.py --acceptance      # issue 12: 20,000 x 256, 5 laws x 10 seeds
    python benchmarks/bench_filaments.py --compare-knn     # also time the kNN engines

It prints, in one run:

- the planted benchmark (10 filaments, 3 blobs, 3 sheets in a Gaussian bulk):
  membership precision and recall, matches per planted filament, fit time, peak
  traced memory of the fit and the process's peak RSS;
- the null benchmark: clouds of the same size without planted structure (Gaussian by
  default; ``--null-bulks`` picks the laws of
  :data:`~latentscope.filaments.BULKS`), the number of seeds on which any filament
  is reported, the candidate share and a one-sided check of the per-point p-values
  against the uniform law (the largest ``share(p <= a) / a`` over a = 0.001 ... 0.2);
- the baseline: an exact kNN graph of the data and of the null cloud (what the
  detector would cost with exact neighbours everywhere), extrapolated from the
  exact neighbours of 2,000 queries, next to the fit time, with the ratio;
- with ``--compare-knn``: time and recall@k of the forest, faiss IVF and faiss HNSW
  (when faiss is installed) against exact neighbours, for planted-structure queries
  and for bulk queries.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

try:
    import latentscope  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentscope.filaments import BULKS, FilamentDetector, make_planted_cloud, score_planted  # noqa: E402

LEVELS = (0.001, 0.01, 0.05, 0.2)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed_fit(z: np.ndarray, **params) -> tuple[FilamentDetector, float, float]:
    """Fit; return the detector, the wall time and the traced peak memory (MB)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    det = FilamentDetector(**params).fit(z)
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return det, wall, peak / 2**20


def exact_queries(z: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Exact k nearest neighbours of some rows (BLAS), and the seconds it took."""
    t0 = time.perf_counter()
    zc = z - z.mean(axis=0)
    sq = np.einsum("ij,ij->i", zc, zc)
    out = np.empty((queries.size, k), np.int64)
    for lo in range(0, queries.size, 500):
        q = queries[lo:lo + 500]
        d2 = sq[q][:, None] - 2.0 * zc[q] @ zc.T + sq[None, :]
        d2[np.arange(q.size), q] = np.inf
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        out[lo:lo + 500] = part
    return out, time.perf_counter() - t0


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


def compare_knn(z: np.ndarray, structure: np.ndarray, k: int, seed: int) -> None:
    from latentscope.neighbors import faiss_available, faiss_ivf_knn, forest_knn

    rng = np.random.default_rng(seed)
    qs = np.concatenate([rng.choice(np.flatnonzero(structure), 1000, replace=False),
                         rng.choice(np.flatnonzero(~structure), 1000, replace=False)])
    truth, t_ex = exact_queries(z, qs, k)
    n = z.shape[0]
    print(f"\nkNN engines, k={k}, {n} x {z.shape[1]} (recall@{k} on 1,000 structure / 1,000 bulk queries)")
    print(f"  exact BLAS              {t_ex * n / qs.size:8.1f} s (extrapolated from {qs.size} queries)")
    for trees, leaf in ((1, 512), (2, 256), (2, 512), (3, 512)):
        t0 = time.perf_counter()
        _, idx = forest_knn(z, k, n_trees=trees, leaf_size=leaf, rng=np.random.default_rng(seed))
        t = time.perf_counter() - t0
        print(f"  forest trees={trees} leaf={leaf:<4d}  {t:8.1f} s   recall structure {recall_at_k(idx[qs[:1000]], truth[:1000]):.3f}"
              f"  bulk {recall_at_k(idx[qs[1000:]], truth[1000:]):.3f}")
    if not faiss_available():
        print("  faiss not installed: IVF/HNSW skipped")
        return
    import faiss

    for nprobe in (1, 2):
        t0 = time.perf_counter()
        _, idx = faiss_ivf_knn(z, k, nprobe=nprobe, rng=np.random.default_rng(seed))
        t = time.perf_counter() - t0
        print(f"  faiss IVF{int(round(np.sqrt(n)))} nprobe={nprobe}   {t:8.1f} s   recall structure "
              f"{recall_at_k(idx[qs[:1000]], truth[:1000]):.3f}  bulk {recall_at_k(idx[qs[1000:]], truth[1000:]):.3f}")
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(z.shape[1], 16)
    index.hnsw.efConstruction = 40
    index.add(np.ascontiguousarray(z, dtype=np.float32))
    t_build = time.perf_counter() - t0
    index.hnsw.efSearch = 32
    t0 = time.perf_counter()
    _, idx = index.search(np.ascontiguousarray(z[qs], dtype=np.float32), k + 1)
    t_q = time.perf_counter() - t0
    idx = np.array([[j for j in row if j != q][:k] for row, q in zip(idx, qs)])
    print(f"  faiss HNSW16 efSearch=32 {t_build + t_q * n / qs.size:7.1f} s (build {t_build:.1f} s + queries extrapolated)"
          f"   recall structure {recall_at_k(idx[:1000], truth[:1000]):.3f}  bulk {recall_at_k(idx[1000:], truth[1000:]):.3f}")


def pvalue_excess(p: np.ndarray) -> list[float]:
    """share(p <= a) / a at each of LEVELS: at most about 1 for uniform or conservative p-values."""
    p = p[np.isfinite(p)]
    return [float(np.mean(p <= a) / a) for a in LEVELS]


def run_nulls(n: int, dim: int, bulks: list[str], seeds: int, knn: str, k: int) -> dict:
    """Fit clouds without planted structure; print one line per fit; return per-law results."""
    out = {}
    for bulk in bulks:
        hits, walls, shares, excess = 0, [], [], []
        print(f"\nnull: {bulk} clouds {n} x {dim}")
        for s in range(seeds):
            null = make_planted_cloud(n, dim, n_filaments=0, n_blobs=0, n_sheets=0, bulk=bulk, rng=1000 + s)
            d, w, tr = timed_fit(null.z, k=k, knn=knn, rng=s)
            hits += bool(d.filaments_)
            walls.append(w)
            shares.append(float(d.candidates_.mean()))
            excess.append(pvalue_excess(d.density_pvalue_))
            print(f"  seed {s}: {len(d.filaments_)} filaments, {int(d.candidates_.sum())} candidates"
                  f" ({100 * shares[-1]:.2f} %), share(p<=a)/a at a={LEVELS}: "
                  + " ".join(f"{e:.2f}" for e in excess[-1])
                  + f"   h {d.bandwidth_:.2f}   {w:.1f} s (CPU {d.cpu_times_['total']:.1f} s), traced peak {tr:.0f} MB",
                  flush=True)
        ok = sum(sh <= 0.01 for sh in shares)
        pooled = np.mean(excess, axis=0)  # every seed has n points: the pooled share over seeds
        # one-sided binomial z of the pooled share (independent points; neighbours share neighbours)
        z = [(pooled[i] - 1) * a * np.sqrt(seeds * n / (a * (1 - a))) for i, a in enumerate(LEVELS)]
        print(f"  {bulk}: seeds with any filament {hits} of {seeds}; seeds with <= 1 % candidates {ok} of {seeds};"
              f" share(p<=a)/a pooled over seeds " + " ".join(f"{v:.2f}" for v in pooled)
              + " (z " + " ".join(f"{v:+.1f}" for v in z) + "), max over seeds "
              + " ".join(f"{v:.2f}" for v in np.max(excess, axis=0))
              + f"; median fit {np.median(walls):.1f} s   process peak RSS {peak_rss_mb():.0f} MB")
        out[bulk] = dict(hits=hits, ok=ok, pooled=pooled.tolist(), excess=np.max(excess, axis=0).tolist())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--null-seeds", type=int, default=10)
    ap.add_argument("--bulk", default="gaussian", choices=BULKS, help="law of the planted cloud's bulk")
    ap.add_argument("--null-bulks", default="gaussian",
                    help="comma-separated laws of the null clouds, or 'all'")
    ap.add_argument("--acceptance", action="store_true",
                    help="issue 12's acceptance: 20,000 x 256, every bulk law, 10 null seeds, planted in t3-copula")
    ap.add_argument("--knn", default="auto")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--compare-knn", action="store_true")
    args = ap.parse_args(argv)
    if args.acceptance:
        args.n, args.dim, args.null_seeds, args.bulk, args.null_bulks = 20_000, 256, 10, "t3-copula", "all"
    null_bulks = list(BULKS) if args.null_bulks == "all" else args.null_bulks.split(",")
    for b in null_bulks:
        if b not in BULKS:
            ap.error(f"--null-bulks: unknown law {b!r}; expected some of {', '.join(BULKS)} or 'all'")

    scale = args.n / 200_000
    sizes = dict(
        filament_points=(max(40, int(200 * scale)), max(80, int(5000 * scale))),
        blob_points=(max(40, int(500 * scale)), max(80, int(3000 * scale))),
        sheet_points=(max(40, int(1000 * scale)), max(80, int(4000 * scale))),
    )
    print(f"FilamentDetector benchmark: {args.n} x {args.dim}, k={args.k}, knn={args.knn!r}, bulk {args.bulk}")
    cloud = make_planted_cloud(args.n, args.dim, n_filaments=10, n_blobs=3, n_sheets=3 if args.dim >= 3 else 0,
                               bulk=args.bulk, rng=args.seed, **sizes)
    det, wall, traced = timed_fit(cloud.z, k=args.k, knn=args.knn, rng=args.seed)
    sc = score_planted(cloud, det.labels_)
    sys.stdout.flush()
    print(f"\nplanted (seed {args.seed}): {len(cloud.structures)} structures, {int(cloud.filament_mask.sum())} filament points")
    print(f"  precision {sc['precision']:.4f}   recall {sc['recall']:.4f}   detected {sc['n_detected']} / planted {sc['n_planted']}"
          f"   matches per planted filament {sc['matches']}   each matched once: {sc['matched_once']}")
    print(f"  reported points by ground truth: {sc['reported_by_kind']}   candidates {int(det.candidates_.sum())}")
    print(f"  fit {wall:.1f} s  (" + ", ".join(f"{k} {v:.1f}" for k, v in det.timings_.items() if k != "total")
          + f")   process CPU {det.cpu_times_['total']:.1f} s   traced peak {traced:.0f} MB   h {det.bandwidth_:.2f}"
          f"   process peak RSS {peak_rss_mb():.0f} MB   engine {det.knn_method_}")

    rng = np.random.default_rng(args.seed)
    queries = rng.choice(args.n, 2000, replace=False)
    _, t_q = exact_queries(cloud.z, queries, args.k)
    baseline = 2 * t_q * args.n / queries.size
    print(f"\nbaseline: exact kNN graph of data + null cloud {baseline:.0f} s (extrapolated from 2,000 queries)"
          f"   detector {wall:.1f} s   ratio {baseline / wall:.1f}x")

    if args.null_seeds:
        run_nulls(args.n, args.dim, null_bulks, args.null_seeds, args.knn, args.k)

    if args.compare_knn:
        compare_knn(cloud.z, cloud.labels >= 0, args.k, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
