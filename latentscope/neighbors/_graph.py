"""k-nearest-neighbour graphs of a point set in memory (the filament detector's graphs).

Every engine returns ``(dist, idx)`` arrays of shape ``(n, k)`` sorted by distance,
without the point itself, in float32:

``"exact"``
    numpy/BLAS: blocks of queries against all points, squared distances from
    ``|q|^2 + |x|^2 - 2 q.x`` after centring (which keeps the float32 cancellation
    error small), the ``k`` smallest per row. Cost O(n^2 dim). From 10 000 points
    on, with faiss installed, ``faiss.IndexFlatL2`` does the same exhaustive search
    a little faster (``"faiss"`` asks for it at any size).
``"forest"``
    A random-projection forest: each tree splits the points at the median of a
    random projection until the leaves hold at most ``leaf_size`` points; inside a
    leaf the neighbours are exact (one small GEMM); the lists of ``n_trees`` trees
    are merged. Cost O(n * leaf_size * dim * n_trees), all in BLAS. Points whose
    neighbours are much closer than the bulk's (dense structures) keep almost all
    their true neighbours; the neighbours of bulk points are approximate (their
    k-th distance is over-estimated), which the detector accounts for by running
    the same engine on its null cloud.
``"faiss-ivf"``
    ``faiss.IndexIVFFlat`` with ``nprobe`` probes (optional dependency). Measured
    slower than the forest on the 2-core reference machine (see docs/filaments.md).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..stream import DEFAULT_MAX_BYTES, run_blocks
from ._engines import resolve_graph_engine
from ._faiss import faiss_available, flat_search, ivf_graph

__all__ = ["knn_graph", "exact_knn", "forest_knn", "faiss_ivf_knn"]

#: Budget of one block of the float32 distance matrix of :func:`exact_knn`: half the
#: one block budget, because the top-k selection holds a mask and a partitioned copy
#: of the block beside it, so one step stays within ``DEFAULT_MAX_BYTES``.
_BLOCK_BYTES = DEFAULT_MAX_BYTES // 2
#: Budget of one batch of leaves of the forest (a quarter of the one budget): the
#: gathered leaf points, the stacked leaf distance matrices and their sort copies
#: exist together, and the batches are the work units of the thread pool.
_LEAF_BYTES = DEFAULT_MAX_BYTES // 4

Progress = Callable[[int, int], None]


def _sorted_topk(d2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and indices of the k smallest entries of each row, sorted by value.

    ``np.partition`` (values only) plus a mask is several times faster than
    ``np.argpartition`` on wide rows; rows with ties at the k-th value fall back to
    ``argpartition``.
    """
    n, w = d2.shape
    if k >= w:
        part = np.argsort(d2, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(d2, part, axis=1), part
    kth = np.partition(d2, k - 1, axis=1)[:, k - 1 : k]
    mask = d2 <= kth
    counts = mask.sum(axis=1)
    exact = counts == k
    part = np.empty((n, k), np.int64)
    if exact.all():
        part[:] = np.nonzero(mask)[1].reshape(n, k)
    else:
        part[exact] = np.nonzero(mask[exact])[1].reshape(-1, k)
        bad = ~exact
        part[bad] = np.argpartition(d2[bad], k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(d2, part, axis=1)
    order = np.argsort(vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(part, order, axis=1)


def exact_knn(
    X: np.ndarray,
    k: int,
    *,
    progress: Progress | None = None,
    use_faiss: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row of ``X`` among the other rows.

    Parameters
    ----------
    X : ndarray of shape (n, dim)
        The points (float32 is used internally).
    k : int
        Neighbours per point; ``k < n``.
    progress : callable(done, total), optional
    use_faiss : bool, optional
        Use ``faiss.IndexFlatL2`` (default: when installed and ``n`` is large enough
        for it to pay off).

    Returns
    -------
    dist : ndarray of shape (n, k), float32
        Euclidean distances, ascending.
    idx : ndarray of shape (n, k), int64
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    if use_faiss is None:
        use_faiss = n >= 10_000 and faiss_available()
    Xc = X - X.mean(axis=0, dtype=np.float64).astype(np.float32)
    if use_faiss:
        d2, idx = flat_search(Xc, k, progress=progress)
        return np.sqrt(d2), idx
    sq = np.einsum("ij,ij->i", Xc, Xc)
    rows = max(1, min(n, _BLOCK_BYTES // max(1, 4 * n)))
    dist = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)

    def one(lo: int) -> None:
        hi = min(n, lo + rows)
        d2 = Xc[lo:hi] @ Xc.T
        d2 *= -2.0
        d2 += sq[lo:hi, None]
        d2 += sq[None, :]
        d2[np.arange(hi - lo), np.arange(lo, hi)] = np.inf
        v, i = _sorted_topk(d2, k)
        dist[lo:hi] = np.sqrt(np.maximum(v, 0.0))
        idx[lo:hi] = i

    starts = list(range(0, n, rows))
    run_blocks(one, starts, sizes=[min(rows, n - lo) for lo in starts], progress=progress)
    return dist, idx


def _leaf_matrix(Y: np.ndarray, leaf_size: int, rng: np.random.Generator) -> np.ndarray:
    """Leaves of one random-projection tree as an (n_leaves, width) index matrix.

    Every node is split at the median of a random column of ``Y`` down to the same
    depth, so all leaves hold ``floor`` or ``ceil`` of ``n / 2**depth`` (at most
    ``leaf_size``) points; shorter rows are padded with -1.
    """
    n, n_dirs = Y.shape
    depth = max(0, int(np.ceil(np.log2(n / leaf_size)))) if n > leaf_size else 0
    nodes = [np.arange(n)]
    for _ in range(depth):
        nxt = []
        for node in nodes:
            vals = Y[node, int(rng.integers(n_dirs))]
            half = node.size // 2
            part = np.argpartition(vals, half)
            nxt.append(node[part[:half]])
            nxt.append(node[part[half:]])
        nodes = nxt
    width = max(node.size for node in nodes)
    out = np.full((len(nodes), width), -1, np.int64)
    for r, node in enumerate(nodes):
        out[r, : node.size] = node
    return out


def _leaf_neighbours(Xc: np.ndarray, sq: np.ndarray, leaves: np.ndarray, k: int,
                     dist: np.ndarray, idx: np.ndarray) -> None:
    """Exact k nearest neighbours inside each leaf of a block (one batched GEMM)."""
    valid = leaves >= 0
    safe = np.where(valid, leaves, leaves[:, :1])
    P = Xc[safe]
    d2 = P @ P.transpose(0, 2, 1)
    d2 *= -2.0
    sqv = sq[safe]
    d2 += sqv[:, :, None]
    d2 += sqv[:, None, :]
    d2[np.broadcast_to(~valid[:, None, :], d2.shape)] = np.inf
    w = leaves.shape[1]
    d2[:, np.arange(w), np.arange(w)] = np.inf
    v, c = _sorted_topk(d2.reshape(-1, w), k)
    nb = safe[np.repeat(np.arange(leaves.shape[0]), w)[:, None], c]
    rows = valid.ravel()
    dist[leaves.ravel()[rows]] = v[rows]
    idx[leaves.ravel()[rows]] = nb[rows]


def _merge_lists(dists: list[np.ndarray], idxs: list[np.ndarray], k: int, *,
                 block: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Merge candidate neighbour lists: drop repeated indices, keep the k nearest.

    Works on blocks of rows, so the temporary arrays stay small whatever ``n``.
    """
    n = dists[0].shape[0]
    out_d = np.empty((n, k), dists[0].dtype)
    out_i = np.empty((n, k), np.int64)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        d = np.concatenate([x[lo:hi] for x in dists], axis=1).astype(np.float32)
        i = np.concatenate([x[lo:hi] for x in idxs], axis=1).astype(np.int64)
        # one sort of (index, distance) packed in an int64: the bits of a non-negative
        # float32 order like its value, so repeats of an index end up side by side
        d = np.where(i < 0, np.float32(np.inf), np.maximum(d, np.float32(0.0)))
        key = (np.where(i < 0, n, i) << 32) | d.view(np.uint32).astype(np.int64)
        key.sort(axis=1)
        i = key >> 32
        d = (key & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
        dup = np.zeros(i.shape, bool)
        dup[:, 1:] = i[:, 1:] == i[:, :-1]
        d[dup | (i >= n)] = np.inf
        v, sel = _sorted_topk(d, k)
        out_d[lo:hi] = v
        out_i[lo:hi] = np.take_along_axis(i, sel, axis=1)
    return out_d, out_i


def forest_knn(
    X: np.ndarray,
    k: int,
    *,
    n_trees: int = 2,
    leaf_size: int = 256,
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate k nearest neighbours from a random-projection forest.

    Parameters
    ----------
    X : ndarray of shape (n, dim)
    k : int
    n_trees : int, default=2
        Trees whose leaf neighbour lists are merged.
    leaf_size : int, default=256
        Largest leaf (all leaves hold ``n / 2**depth`` points, rounded, for the
        smallest depth that fits); raised to ``4 * (k + 1)`` if smaller so every leaf
        holds more than ``k`` points.
    rng : numpy Generator
    progress : callable(done, total), optional
        Called after each tree.

    Returns
    -------
    dist, idx : ndarrays of shape (n, k)
        As :func:`exact_knn`; a neighbour missing from every leaf list is replaced by
        a farther one, so ``dist`` over-estimates the true distances.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n, dim = X.shape
    leaf_size = max(int(leaf_size), 4 * (k + 1))
    if n <= leaf_size:
        return exact_knn(X, k, use_faiss=False)
    Xc = X - X.mean(axis=0, dtype=np.float64).astype(np.float32)
    sq = np.einsum("ij,ij->i", Xc, Xc)
    n_dirs = 32
    dists, idxs = [], []
    for t in range(n_trees):
        G = rng.standard_normal((dim, n_dirs)).astype(np.float32)
        leaves = _leaf_matrix(Xc @ G, leaf_size, rng)
        dist = np.empty((n, k), np.float32)
        idx = np.empty((n, k), np.int32 if n < 2**31 else np.int64)  # merged lists come back as int64
        w = leaves.shape[1]
        step = max(1, _LEAF_BYTES // (4 * w * max(w, dim)))
        blocks = [leaves[lo:lo + step] for lo in range(0, leaves.shape[0], step)]
        run_blocks(lambda b: _leaf_neighbours(Xc, sq, b, k, dist, idx), blocks)
        dists.append(dist)
        idxs.append(idx)
        if progress is not None:
            progress(t + 1, n_trees)
    if n_trees == 1:
        d2, idx = dists[0], idxs[0].astype(np.int64)
    else:
        d2, idx = _merge_lists(dists, idxs, k)
    return np.sqrt(np.maximum(d2, 0.0)).astype(np.float32), idx


def faiss_ivf_knn(
    X: np.ndarray,
    k: int,
    *,
    nprobe: int = 2,
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate k nearest neighbours from ``faiss.IndexIVFFlat`` (optional dependency).

    Parameters
    ----------
    X : ndarray of shape (n, dim)
    k : int
    nprobe : int, default=2
        Inverted lists probed per query (``sqrt(n)`` lists in all).
    rng : numpy Generator
        Draws the training points and the k-means seed.
    progress : callable(done, total), optional

    Returns
    -------
    dist, idx : ndarrays of shape (n, k)
        As :func:`exact_knn`; ``inf`` where the probed lists held too few points.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    Xc = np.ascontiguousarray(X - X.mean(axis=0, dtype=np.float64).astype(np.float32))
    d2, idx = ivf_graph(Xc, k, nprobe=nprobe, rng=rng, progress=progress)
    return np.sqrt(d2), idx


def knn_graph(
    X: np.ndarray,
    k: int,
    *,
    method: str = "auto",
    rng: np.random.Generator,
    n_trees: int = 2,
    leaf_size: int = 256,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """k nearest neighbours of every point among the others, with the engine ``method``.

    Parameters
    ----------
    X : ndarray of shape (n, dim)
        The points, in memory (float32 is used internally).
    k : int
        Neighbours per point; ``k < n``.
    method : {"auto", "exact", "faiss", "forest", "faiss-ivf"}, default="auto"
        See :mod:`latentscope.neighbors`; ``"auto"`` is exact up to 10 000 points,
        the forest beyond.
    rng : numpy Generator
        Randomness of the approximate engines.
    n_trees, leaf_size : int, default=2 and 256
        Forest parameters (see :func:`forest_knn`).
    progress : callable(done, total), optional

    Returns
    -------
    dist : ndarray of shape (n, k), float32
        Ascending distances.
    idx : ndarray of shape (n, k), int64
    method : str
        The engine used.
    """
    method = resolve_graph_engine(method, X.shape[0])
    if method == "exact":
        d, i = exact_knn(X, k, progress=progress)
    elif method == "faiss":
        d, i = exact_knn(X, k, progress=progress, use_faiss=True)
    elif method == "forest":
        d, i = forest_knn(X, k, n_trees=n_trees, leaf_size=leaf_size, rng=rng, progress=progress)
    else:
        d, i = faiss_ivf_knn(X, k, rng=rng, progress=progress)
    return d, i, method
