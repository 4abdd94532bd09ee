"""Exact nearest-neighbour distances by blockwise BLAS, streamed over a store or an array.

The squared distance of a query q to a data row x is computed as
``|q|^2 - 2 q.x + |x|^2`` with one matrix product per block, in float64; the k best
candidates of each block are kept with :func:`numpy.argpartition` and merged with the
running best. The final k distances are then recomputed directly from the
differences ``q - x``, so the reported values carry no cancellation error. The
answer is exact (no approximate index) and does not depend on the block size, up
to ties.

Cost: ``2 * n_queries * n_rows * z_dim`` flops; memory: one block of data rows and
one block of squared distances, both bounded by ``max_bytes``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import check_array, check_rng
from .exceptions import InvalidParameterError
from .stream import iter_array_blocks, source_shape

__all__ = ["nearest_distances", "reference_distances", "KNN_METHOD"]

#: How distances are found (recorded in reports that use this module).
KNN_METHOD = "exact (blockwise BLAS, float64)"


def _read_rows(source: Any, rows: np.ndarray) -> np.ndarray:
    from .store import ZStore

    if isinstance(source, ZStore):
        return source.read(rows).astype(np.float64)
    return np.asarray(source, dtype=np.float64)[rows]


def nearest_distances(
    queries: Any,
    source: Any,
    k: int = 1,
    *,
    exclude: Any = None,
    skip: Any = None,
    transform: Any = None,
    return_indices: bool = False,
    max_bytes: int = 64 << 20,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Euclidean distances from each query to its ``k`` nearest rows of ``source``.

    With ``transform`` the distances are measured between ``transform(queries)``
    and ``transform(rows)`` (e.g. whitened PCA coordinates), each block of rows
    transformed as it is read.

    Parameters
    ----------
    queries : array-like of shape (n_queries, z_dim)
    source : ZStore or array-like of shape (n_rows, z_dim)
        The data, read block by block (a store is streamed, never loaded whole).
    k : int, default=1
        Number of neighbours.
    exclude : array-like of int of shape (n_queries,), optional
        For each query, one row of ``source`` to skip (use -1 for none). Pass the
        queries' own row indices to get distances to the *other* points (exclude
        self).
    skip : array-like of int, optional
        Rows of ``source`` that are never neighbours of any query (e.g. held-out
        calibration rows).
    transform : callable, optional
        Maps an array of shape (m, z_dim) to an array of shape (m, d): the space
        in which distances are measured (default: the latent space itself).
    return_indices : bool, default=False
        Also return the row indices of the neighbours.
    max_bytes : int, default=64 MiB
        Memory budget for a block of data rows (as float64) and a block of squared
        distances each.

    Returns
    -------
    distances : ndarray of shape (n_queries, k), float64
        Sorted ascending along each row.
    indices : ndarray of shape (n_queries, k), int64
        Only with ``return_indices``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    >>> nearest_distances(X, X, exclude=np.arange(3)).ravel().tolist()
    [5.0, 5.0, 5.0]
    """
    owner = "nearest_distances"
    Q = check_array(queries, name="queries", dtype=np.float64, owner=owner)
    n_rows, dim = source_shape(source)
    if Q.shape[1] != dim:
        raise InvalidParameterError(f"{owner}: queries must have {dim} columns like the source; got shape {Q.shape}.")
    m = Q.shape[0]
    if exclude is None:
        excl = np.full(m, -1, dtype=np.int64)
    else:
        excl = np.asarray(exclude)
        if excl.shape != (m,) or excl.dtype.kind not in "iu":
            raise InvalidParameterError(f"{owner}: exclude must be {m} integers (one per query); got shape {excl.shape}.")
        excl = excl.astype(np.int64)
        if excl.size and excl.max() >= n_rows:
            raise InvalidParameterError(f"{owner}: exclude holds row {int(excl.max())} but the source has {n_rows} rows.")
    skip_rows = np.zeros(0, np.int64) if skip is None else np.unique(np.asarray(skip, dtype=np.int64))
    if skip_rows.size and (skip_rows[0] < 0 or skip_rows[-1] >= n_rows):
        raise InvalidParameterError(f"{owner}: skip must hold row indices in [0, {n_rows}); got {skip_rows[0]}..{skip_rows[-1]}.")
    n_avail = n_rows - skip_rows.size - (1 if exclude is not None and np.any(excl >= 0) else 0)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= max(n_avail, 0):
        raise InvalidParameterError(f"{owner}: k must be an integer in [1, {n_avail}] (rows available); got {k!r}.")
    k = int(k)
    best_d = np.full((m, k), np.inf)
    best_i = np.full((m, k), -1, dtype=np.int64)
    if m == 0:
        return (best_d, best_i) if return_indices else best_d

    if transform is not None:
        Q = np.asarray(transform(Q), dtype=np.float64)
    qq = np.einsum("ij,ij->i", Q, Q)
    # float32 rows of max_bytes/2 become float64 blocks of max_bytes
    block_bytes = max(int(max_bytes) // 2, dim * 4)
    start = 0
    for block in iter_array_blocks(source, max_bytes=block_bytes):
        X = np.asarray(block, dtype=np.float64)
        b = X.shape[0]
        stop = start + b
        if transform is not None:
            X = np.asarray(transform(X), dtype=np.float64)
        lo, hi = np.searchsorted(skip_rows, [start, stop])
        skipped = skip_rows[lo:hi] - start
        xx = np.einsum("ij,ij->i", X, X)
        q_step = max(1, int(max_bytes) // (8 * b))
        for a in range(0, m, q_step):
            e = min(m, a + q_step)
            D = Q[a:e] @ X.T
            D *= -2.0
            D += qq[a:e, None]
            D += xx[None, :]
            ex = excl[a:e]
            hit = np.flatnonzero((ex >= start) & (ex < stop))
            if hit.size:
                D[hit, ex[hit] - start] = np.inf
            if skipped.size:
                D[:, skipped] = np.inf
            kk = min(k, b)
            if kk < b:
                part = np.argpartition(D, kk - 1, axis=1)[:, :kk]
            else:
                part = np.broadcast_to(np.arange(b), (e - a, b))
            cand_d = np.take_along_axis(D, part, axis=1)
            all_d = np.concatenate([best_d[a:e], cand_d], axis=1)
            all_i = np.concatenate([best_i[a:e], part + start], axis=1)
            keep = np.argpartition(all_d, k - 1, axis=1)[:, :k]
            best_d[a:e] = np.take_along_axis(all_d, keep, axis=1)
            best_i[a:e] = np.take_along_axis(all_i, keep, axis=1)
        start = stop

    # exact recomputation of the k winners from the differences
    flat = best_i.ravel()
    uniq, inv = np.unique(flat, return_inverse=True)
    rows = _read_rows(source, uniq)
    if transform is not None:
        rows = np.asarray(transform(rows), dtype=np.float64)
    rows = rows[inv].reshape(m, k, Q.shape[1])
    diff = rows - Q[:, None, :]
    dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    order = np.argsort(dist, axis=1, kind="stable")
    dist = np.take_along_axis(dist, order, axis=1)
    idx = np.take_along_axis(best_i, order, axis=1)
    return (dist, idx) if return_indices else dist


def reference_distances(
    source: Any,
    n_queries: int = 2000,
    k: int = 1,
    *,
    rng: Any = None,
    max_bytes: int = 64 << 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour distances of a random subsample of data rows to the rest.

    ``n_queries`` rows are drawn without replacement (all rows when the source is
    smaller); each is compared with *every* row of the full data, its own row
    excluded.

    Parameters
    ----------
    source : ZStore or array-like of shape (n_rows, z_dim)
    n_queries : int, default=2000
    k : int, default=1
    rng : None, int, SeedSequence or Generator
    max_bytes : int, default=64 MiB

    Returns
    -------
    rows : ndarray of shape (m,), int64
        The sampled row indices (sorted).
    distances : ndarray of shape (m, k)
    """
    n_rows, _ = source_shape(source)
    if isinstance(n_queries, bool) or not isinstance(n_queries, (int, np.integer)) or n_queries < 1:
        raise InvalidParameterError(f"reference_distances: n_queries must be an integer >= 1; got {n_queries!r}.")
    if n_rows < 2:
        raise InvalidParameterError(f"reference_distances: the source needs at least 2 rows; got {n_rows}.")
    gen = check_rng(rng)
    if n_queries >= n_rows:
        rows = np.arange(n_rows, dtype=np.int64)
    else:
        rows = np.sort(gen.choice(n_rows, size=int(n_queries), replace=False)).astype(np.int64)
    Q = _read_rows(source, rows)
    return rows, nearest_distances(Q, source, k, exclude=rows, max_bytes=max_bytes)
