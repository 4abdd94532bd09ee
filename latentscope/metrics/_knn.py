"""Nearest-neighbour radii and kNN-ball membership counts for the manifold metrics.

Two engines:

``"exact"``
    float64. Neighbour searches go through :func:`latentscope.neighbors.nearest_distances`
    (blockwise BLAS; a store is streamed). Ball counting (:func:`ball_counts`, which
    that module does not do) goes through the queries in blocks of rows, each against
    all centres, with squared distances ``|q|^2 + |c|^2 - 2 q.c`` after centring both
    sets on the centres' mean (which keeps the cancellation error small). Only one
    ``(query block, n_centre)`` matrix exists at a time, bounded by ``max_bytes``; the
    cost is O(n_query * n_centre * dim).
``"faiss"``
    ``faiss.IndexFlatL2`` (optional dependency, the ``knn`` extra): exhaustive search,
    multi-threaded, in float32. Ball memberships are found from the centres' side:
    each centre's nearest points are fetched in growing batches until the batch
    reaches past the ball's radius, so the membership lists are complete. Results
    therefore equal the exact engine's up to float32 rounding (points within rounding
    distance of a ball's surface may flip). Results computed this way say
    ``method="faiss"``. The cost is still O(n_query * n_ref * dim), only with a faster
    constant; a sub-quadratic (approximate) index is not used.

``"auto"`` takes ``"exact"`` while the number of query/reference pairs of the largest
pass is at most :data:`EXACT_MAX_PAIRS` (a 20 000 x 20 000 problem) or faiss is not
installed, and ``"faiss"`` beyond that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = [
    "EXACT_MAX_PAIRS", "KNN_METHODS", "resolve_method", "knn_sqdist", "kth_neighbour_sqdist",
    "BallCounts", "ball_counts",
]

#: Largest number of (query, reference) pairs for which ``knn="auto"`` stays exact.
EXACT_MAX_PAIRS = 20_000 * 20_000
KNN_METHODS = ("auto", "exact", "faiss")
#: Default memory budget of one block of squared distances.
DEFAULT_MAX_BYTES = 32 << 20
#: First number of neighbours fetched per centre by the faiss ball search (doubled as needed).
DEFAULT_CANDIDATES = 32


def _faiss():
    try:
        import faiss  # noqa: PLC0415 - optional, heavy
    except ImportError:
        return None
    return faiss


def resolve_method(knn: str, n_pairs: int, *, owner: str) -> str:
    """Turn ``knn`` ("auto", "exact", "faiss") into the engine actually used."""
    if knn not in KNN_METHODS:
        raise InvalidParameterError(f"{owner}: knn must be one of {', '.join(map(repr, KNN_METHODS))}; got {knn!r}.")
    if knn == "faiss":
        if _faiss() is None:
            raise InvalidParameterError(
                f"{owner}: knn='faiss' needs the faiss package; install latentscope-ae[knn] or use knn='exact'."
            )
        return "faiss"
    if knn == "auto" and n_pairs > EXACT_MAX_PAIRS and _faiss() is not None:
        return "faiss"
    return "exact"


def _rows_per_block(n_cols: int, max_bytes: int) -> int:
    return max(1, int(max_bytes) // (8 * max(1, n_cols)))


def _partial_sqdist(q_m2: np.ndarray, r: np.ndarray, rn: np.ndarray) -> np.ndarray:
    """``|r|^2 - 2 q.r`` for a block (``q_m2`` is ``-2 q``): the squared distance less ``|q|^2``.

    The row constant ``|q|^2`` changes neither the order within a row nor, when moved
    to the other side, a comparison; leaving it out saves a pass over the block.
    """
    d = q_m2 @ r.T
    d += rn[None, :]
    return d


def _reference_array(reference: Any) -> np.ndarray:
    from ..store import ZStore

    return reference.read() if isinstance(reference, ZStore) else reference


def knn_sqdist(
    queries: np.ndarray,
    reference: Any,
    k: int,
    *,
    query_rows: np.ndarray | None = None,
    method: str = "exact",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest squared distances from each query to the reference rows.

    The exact engine is :func:`latentscope.neighbors.nearest_distances` (blockwise
    float64 BLAS, a store streamed block by block, the winners recomputed from the
    differences); the faiss engine searches an ``IndexFlatL2`` in float32.

    Parameters
    ----------
    queries : ndarray of shape (n_query, dim)
    reference : ndarray of shape (n_ref, dim) or ZStore
    k : int
        Number of neighbours, at most the number of eligible reference rows.
    query_rows : ndarray of int, shape (n_query,), optional
        Row of ``reference`` that each query *is*; that row is excluded from the query's
        neighbours (self-exclusion). Use ``arange(n)`` when queries and reference are
        the same set.
    method : {"exact", "faiss"}
    max_bytes : int
        Memory budget of one block (exact engine).

    Returns
    -------
    sqdist : ndarray of shape (n_query, k), float64
        Ascending squared distances.
    index : ndarray of shape (n_query, k), int64
        Reference rows of those neighbours (ties in any order).
    """
    if method == "faiss":
        return _faiss_knn(queries, _reference_array(reference), k, query_rows)
    from ..neighbors import nearest_distances

    dist, idx = nearest_distances(queries, reference, k, exclude=query_rows, return_indices=True, max_bytes=max_bytes)
    return dist * dist, idx


def _faiss_index(reference: np.ndarray):
    faiss = _faiss()
    ref = np.ascontiguousarray(reference, dtype=np.float32)
    index = faiss.IndexFlatL2(ref.shape[1])
    index.add(ref)
    return index


def _faiss_knn(
    queries: np.ndarray, reference: np.ndarray, k: int, query_rows: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    centre = np.asarray(queries, dtype=np.float64).mean(axis=0)
    index = _faiss_index(np.asarray(reference, dtype=np.float64) - centre)
    q = np.ascontiguousarray(np.asarray(queries, dtype=np.float64) - centre, dtype=np.float32)
    extra = 1 if query_rows is not None else 0
    kk = min(k + extra, index.ntotal)
    d2, idx = index.search(q, kk)
    d2 = np.maximum(d2.astype(np.float64), 0.0)
    idx = idx.astype(np.int64)
    if query_rows is not None:
        # move the query's own row (if found) to the end, then keep the first k
        is_self = idx == np.asarray(query_rows, dtype=np.int64)[:, None]
        order = np.argsort(is_self, axis=1, kind="stable")
        d2 = np.take_along_axis(d2, order, axis=1)[:, :k]
        idx = np.take_along_axis(idx, order, axis=1)[:, :k]
    return d2, idx


def kth_neighbour_sqdist(
    X: np.ndarray, ks: Sequence[int], *, method: str = "exact", max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[np.ndarray]:
    """Squared distance from each row of ``X`` to its k-th nearest *other* row, for each k.

    One pass serves every ``k`` in ``ks`` (the neighbours up to ``max(ks)`` are kept).
    """
    kmax = max(ks)
    d2, _ = knn_sqdist(X, X, kmax, query_rows=np.arange(X.shape[0]), method=method, max_bytes=max_bytes)
    return [d2[:, k - 1].copy() for k in ks]


@dataclass(frozen=True)
class BallCounts:
    """What one pass of queries against kNN balls of centres finds.

    Attributes
    ----------
    query_counts : list of ndarray of shape (n_query,), int64
        For each centre-radius set, the number of centre balls containing each query.
    centre_counts : list of ndarray of shape (n_centre,), int64
        For each centre-radius set, the number of queries inside each centre's ball.
    centre_in_query_balls : ndarray of shape (n_centre,), bool, or None
        Whether each centre lies in at least one query ball (only when query radii are given).
    method : str
        ``"exact"`` or ``"faiss"``.
    """

    query_counts: list
    centre_counts: list
    centre_in_query_balls: np.ndarray | None
    method: str


def ball_counts(
    queries: np.ndarray,
    centres: np.ndarray,
    centre_sqradii: Sequence[np.ndarray],
    query_sqradii: np.ndarray | None = None,
    *,
    method: str = "exact",
    max_bytes: int = DEFAULT_MAX_BYTES,
    query_block: int | None = None,
    n_candidates: int = DEFAULT_CANDIDATES,
) -> BallCounts:
    """Count memberships of queries in centre balls (and of centres in query balls).

    A point ``x`` is inside the ball of centre ``c`` with squared radius ``r2`` when
    ``|x - c|^2 <= r2``. The exact engine goes through the query set in blocks of rows,
    each against all centres, so only a ``(query_block, n_centre)`` matrix is held; the
    faiss engine searches from each ball's centre with a growing number of neighbours
    (starting at ``n_candidates``) until the ball's surface is passed.
    """
    nq, nc = queries.shape[0], centres.shape[0]
    if method == "faiss":
        return _faiss_ball_counts(queries, centres, centre_sqradii, query_sqradii, n_candidates)
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(centres, dtype=np.float64)
    centre = c.mean(axis=0)
    q = q - centre
    c = c - centre
    qn = np.einsum("ij,ij->i", q, q)
    cn = np.einsum("ij,ij->i", c, c)
    q_m2 = -2.0 * q
    radii = [np.asarray(r, dtype=np.float64) for r in centre_sqradii]
    q_counts = [np.zeros(nq, dtype=np.int64) for _ in radii]
    c_counts = [np.zeros(nc, dtype=np.int64) for _ in radii]
    c_in_q = np.zeros(nc, dtype=bool) if query_sqradii is not None else None
    qr = np.asarray(query_sqradii, dtype=np.float64) if query_sqradii is not None else None
    step = int(query_block) if query_block else _rows_per_block(nc, max_bytes)
    for lo in range(0, nq, step):
        hi = min(nq, lo + step)
        d2 = _partial_sqdist(q_m2[lo:hi], c, cn)
        d2 += qn[lo:hi, None]
        for j, r2 in enumerate(radii):
            inside = d2 <= r2[None, :]
            q_counts[j][lo:hi] = np.count_nonzero(inside, axis=1)
            c_counts[j] += np.count_nonzero(inside, axis=0)
        if qr is not None:
            c_in_q |= (d2 <= qr[lo:hi, None]).any(axis=0)
    return BallCounts(q_counts, c_counts, c_in_q, "exact")


def _faiss_pairs(centres: np.ndarray, index: Any, sqradii: np.ndarray, k0: int) -> tuple[np.ndarray, np.ndarray]:
    """All (centre, indexed point) pairs with ``|point - centre|^2 <= sqradius(centre)``.

    Each centre's neighbours are searched with ``k0`` candidates; centres whose
    candidates all lie inside their ball are searched again with twice as many, until
    the ball's edge is reached or every point was returned. The pairs are therefore
    complete (exhaustive index), not truncated.
    """
    ntot = index.ntotal
    todo = np.arange(centres.shape[0])
    kk = max(1, min(int(k0), ntot))
    c_out, p_out, d_out = [], [], []
    while todo.size:
        d2, idx = index.search(centres[todo], kk)
        d2 = np.maximum(d2.astype(np.float64), 0.0)
        inside = (d2 <= sqradii[todo][:, None]) & (idx >= 0)
        saturated = inside.all(axis=1) & (kk < ntot)
        done = ~saturated
        rows, cols = np.nonzero(inside[done])
        c_out.append(todo[done][rows])
        p_out.append(idx[done][rows, cols].astype(np.int64))
        d_out.append(d2[done][rows, cols])
        todo = todo[saturated]
        kk = min(2 * kk, ntot)
    return np.concatenate(c_out), np.concatenate(p_out), np.concatenate(d_out)


def _faiss_ball_counts(queries, centres, centre_sqradii, query_sqradii, n_candidates) -> BallCounts:
    nq, nc = queries.shape[0], centres.shape[0]
    shift = np.asarray(centres, dtype=np.float64).mean(axis=0)
    q = np.ascontiguousarray(np.asarray(queries, dtype=np.float64) - shift, dtype=np.float32)
    c = np.ascontiguousarray(np.asarray(centres, dtype=np.float64) - shift, dtype=np.float32)
    radii = [np.asarray(r, dtype=np.float64) for r in centre_sqradii]
    widest = np.max(np.stack(radii), axis=0)
    pc, pq, d2 = _faiss_pairs(c, _faiss_index(q), widest, n_candidates)
    q_counts, c_counts = [], []
    for r2 in radii:
        keep = d2 <= r2[pc]
        q_counts.append(np.bincount(pq[keep], minlength=nq).astype(np.int64))
        c_counts.append(np.bincount(pc[keep], minlength=nc).astype(np.int64))
    c_in_q = None
    if query_sqradii is not None:
        _, hit, _ = _faiss_pairs(q, _faiss_index(c), np.asarray(query_sqradii, dtype=np.float64), n_candidates)
        c_in_q = np.bincount(hit, minlength=nc) > 0
    return BallCounts(q_counts, c_counts, c_in_q, "faiss")
