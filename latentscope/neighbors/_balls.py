"""kNN-ball membership counts (the radius queries of the manifold metrics).

A point ``x`` is inside the ball of centre ``c`` with squared radius ``r2`` when
``|x - c|^2 <= r2``. Two engines, both complete (no membership is missed):

``"exact"``
    float64. The queries go through in blocks of rows, each against all centres,
    with squared distances ``|q|^2 + |c|^2 - 2 q.c`` after centring both sets on
    the centres' mean (which keeps the cancellation error small). Only one
    ``(query block, n_centre)`` matrix exists at a time, bounded by ``max_bytes``;
    the cost is O(n_query * n_centre * dim).
``"faiss"``
    Memberships are found from the centres' side in an exhaustive
    ``faiss.IndexFlatL2`` (float32): each centre's nearest points are fetched in
    growing batches until the batch reaches past the ball's radius, so the lists
    are complete. Results equal the exact engine's up to float32 rounding (points
    within rounding distance of a ball's surface may flip).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..stream import DEFAULT_MAX_BYTES
from ._faiss import flat_index

__all__ = ["BallCounts", "ball_counts", "DEFAULT_CANDIDATES"]

#: First number of neighbours fetched per centre by the faiss ball search (doubled as needed).
DEFAULT_CANDIDATES = 32


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

    Parameters
    ----------
    queries : ndarray of shape (n_query, dim)
    centres : ndarray of shape (n_centre, dim)
    centre_sqradii : sequence of ndarray of shape (n_centre,)
        One or more sets of squared ball radii of the centres (counted in one pass).
    query_sqradii : ndarray of shape (n_query,), optional
        Squared radii of balls around the queries (for ``centre_in_query_balls``).
    method : {"exact", "faiss"}, default="exact"
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Memory budget of one block of squared distances (exact engine).
    query_block : int, optional
        Queries per block (overrides ``max_bytes``).
    n_candidates : int, default=32
        First number of neighbours fetched per ball (faiss engine).

    Returns
    -------
    BallCounts
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
    step = int(query_block) if query_block else max(1, int(max_bytes) // (8 * max(1, nc)))
    for lo in range(0, nq, step):
        hi = min(nq, lo + step)
        # |c|^2 - 2 q.c, then + |q|^2: the squared distance
        d2 = q_m2[lo:hi] @ c.T
        d2 += cn[None, :]
        d2 += qn[lo:hi, None]
        for j, r2 in enumerate(radii):
            inside = d2 <= r2[None, :]
            q_counts[j][lo:hi] = np.count_nonzero(inside, axis=1)
            c_counts[j] += np.count_nonzero(inside, axis=0)
        if qr is not None:
            c_in_q |= (d2 <= qr[lo:hi, None]).any(axis=0)
    return BallCounts(q_counts, c_counts, c_in_q, "exact")


def _faiss_pairs(centres: np.ndarray, index: Any, sqradii: np.ndarray, k0: int) -> tuple[np.ndarray, ...]:
    """All (centre, indexed point, squared distance) with ``|point - centre|^2 <= sqradius(centre)``.

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
    pc, pq, d2 = _faiss_pairs(c, flat_index(q), widest, n_candidates)
    q_counts, c_counts = [], []
    for r2 in radii:
        keep = d2 <= r2[pc]
        q_counts.append(np.bincount(pq[keep], minlength=nq).astype(np.int64))
        c_counts.append(np.bincount(pc[keep], minlength=nc).astype(np.int64))
    c_in_q = None
    if query_sqradii is not None:
        _, hit, _ = _faiss_pairs(q, flat_index(c), np.asarray(query_sqradii, dtype=np.float64), n_candidates)
        c_in_q = np.bincount(hit, minlength=nc) > 0
    return BallCounts(q_counts, c_counts, c_in_q, "faiss")
