"""Nearest-neighbour searches streamed over a z-source: the one "nearest other row".

The data are read block by block (:meth:`latentscope.stream.ZSource.iter_blocks`);
a store is never loaded whole. For each block the ``k`` best candidates of every
query are found and merged with the running best:

``method="exact"``
    squared distances ``|q|^2 - 2 q.x + |x|^2`` from one float64 matrix product per
    (query block, data block), the ``k`` smallest by :func:`numpy.argpartition`.
``method="faiss"``
    an exhaustive ``faiss.IndexFlatL2`` of the block (float32, both sides shifted by
    the queries' mean), searched for all queries at once.

The final ``k`` distances are then recomputed in float64 from the differences
``q - x``, so the reported values carry no cancellation error; the exact answer
does not depend on the block size; exact ties are broken by the lower row index
(the ``k`` best are kept in the total order (distance, row)). Cost: ``2 * n_queries *
n_rows * dim`` flops; memory: one block of data rows and one block of squared
distances, each bounded by ``max_bytes``.

Inside ``with latentscope.stream.cluster(...)`` the scan over the data runs as one
dask.distributed task per block of the local scan (:func:`_scan_task`); the
per-block ``k`` best merge exactly (:class:`_KBest`), so the answer is the local
one; only the final exact recomputation reads rows here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_array, check_positive, check_rng
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, check_max_bytes, reading
from ._faiss import flat_index

__all__ = ["nearest_distances", "reference_distances", "knn_sqdist", "kth_neighbour_sqdist"]


def _smallest(d: np.ndarray, i: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest of each row of ``d`` in the total order (distance, then index ``i``).

    :func:`numpy.argpartition` picks the ``k`` smallest distances; rows where the
    ``k``-th distance ties with one left out take the tied candidates of smallest
    index, so the choice does not depend on the order of the candidates (a block
    partition or merge order).
    """
    if k >= d.shape[1]:
        return np.broadcast_to(np.arange(d.shape[1]), d.shape)
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    thr = np.take_along_axis(d, part, axis=1).max(axis=1)
    n_le = np.count_nonzero(d <= thr[:, None], axis=1)
    tied = np.flatnonzero(n_le > k)
    for r in tied:  # rare: exact ties at the boundary
        order = np.lexsort((i[r] if i.ndim == 2 else i, d[r]))
        part[r] = order[:k]
    return part


def _merge(best_d: np.ndarray, best_i: np.ndarray, cand_d: np.ndarray, cand_i: np.ndarray, k: int) -> None:
    """Keep, in place, the ``k`` smallest (distance, index) of the running best and a block's candidates."""
    all_d = np.concatenate([best_d, cand_d], axis=1)
    all_i = np.concatenate([best_i, cand_i], axis=1)
    keep = _smallest(all_d, all_i, k)
    best_d[:] = np.take_along_axis(all_d, keep, axis=1)
    best_i[:] = np.take_along_axis(all_i, keep, axis=1)


def _exact_block(Q, qq, X, start, excl, skipped, k, max_bytes, best_d, best_i) -> None:
    b = X.shape[0]
    stop = start + b
    xx = np.einsum("ij,ij->i", X, X)
    q_step = max(1, int(max_bytes) // (8 * b))
    for a in range(0, Q.shape[0], q_step):
        e = min(Q.shape[0], a + q_step)
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
        part = _smallest(D, np.arange(start, stop), kk)
        _merge(best_d[a:e], best_i[a:e], np.take_along_axis(D, part, axis=1), part + start, k)


def _faiss_block(Qc32, centre, X, start, excl, skipped, k, best_d, best_i) -> None:
    keep = np.ones(X.shape[0], bool)
    keep[skipped] = False
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        return
    index = flat_index(X[rows] - centre)
    kk = min(k + 1, rows.size)  # one more, in case a query's own row is among them
    d2, ii = index.search(Qc32, kk)
    idx = np.where(ii >= 0, rows[np.maximum(ii, 0)] + start, -1).astype(np.int64)
    d2 = np.where((ii < 0) | (idx == excl[:, None]), np.inf, np.maximum(d2.astype(np.float64), 0.0))
    _merge(best_d, best_i, d2, idx, k)


class _KBest:
    """The ``k`` best candidates of each query so far: a mergeable reducer (exact under any merge order)."""

    def __init__(self, m: int, k: int) -> None:
        self.k = k
        self.d = np.full((m, k), np.inf)
        self.i = np.full((m, k), -1, dtype=np.int64)

    def merge(self, other: "_KBest") -> "_KBest":
        _merge(self.d, self.i, other.d, other.i, self.k)
        return self


class _Scan:
    """Everything a block of reference rows is compared with (sent once to every worker)."""

    def __init__(self, Q, excl, skip_rows, k, method, max_bytes, transform) -> None:
        self.Q, self.excl, self.skip_rows, self.k = Q, excl, skip_rows, int(k)
        self.method, self.max_bytes, self.transform = method, int(max_bytes), transform
        self.step = 0  # rows per block of the scan (set by the distributed scan)
        if method == "exact":
            self.qq = np.einsum("ij,ij->i", Q, Q)
        else:
            self.centre = Q.mean(axis=0)
            self.Qc32 = np.ascontiguousarray(Q - self.centre, dtype=np.float32)

    def empty(self) -> _KBest:
        return _KBest(self.Q.shape[0], self.k)

    def block(self, z: np.ndarray, start: int, best: _KBest) -> None:
        """Merge the candidates of rows ``start:start + len(z)`` into ``best``."""
        X = np.asarray(z, dtype=np.float64)
        stop = start + X.shape[0]
        if self.transform is not None:
            X = np.asarray(self.transform(X), dtype=np.float64)
        lo, hi = np.searchsorted(self.skip_rows, [start, stop])
        skipped = self.skip_rows[lo:hi] - start
        if self.method == "exact":
            _exact_block(self.Q, self.qq, X, start, self.excl, skipped, self.k, self.max_bytes, best.d, best.i)
        else:
            _faiss_block(self.Qc32, self.centre, X, start, self.excl, skipped, self.k, best.d, best.i)


def _scan_task(scan: _Scan, data: Any, a: int, b: int, lab: Any) -> _KBest:
    """One distributed task: the candidates of reference rows ``a:b`` (blocks of the local scan)."""
    from ..stream._dask import pin_blas, task_reader  # noqa: PLC0415

    pin_blas()
    best = scan.empty()
    start = a
    for z, _ in task_reader(data, a, b).units(scan.step):
        scan.block(z, start, best)
        start += z.shape[0]
    return best


def _scan_distributed(scan: _Scan, src: Any, block_bytes: int) -> _KBest | None:
    """The scan as one task per block of the local scan on the active cluster; None when there is none."""
    from ..stream import _dask  # noqa: PLC0415

    client = _dask.client_for(src)
    if client is None or src.n_rows == 0:
        return None
    scan.step = src.block_rows(block_bytes)
    if src.store is None and _dask.is_dask_array(src._data):
        ranges = _dask.task_ranges(src, block_bytes)  # its chunks, cut into blocks as the local scan reads them
    else:
        ranges = [(a, min(src.n_rows, a + scan.step)) for a in range(0, src.n_rows, scan.step)]
    inputs = _dask.task_inputs(client, src, ranges)
    if inputs is None:
        return None
    return _dask.map_merge(client, src, _scan_task, scan, ranges=ranges, inputs=inputs, kind="search")


def nearest_distances(
    queries: Any,
    source: Any,
    k: int = 1,
    *,
    exclude: Any = None,
    skip: Any = None,
    transform: Any = None,
    return_indices: bool = False,
    method: str = "exact",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Euclidean distances from each query to its ``k`` nearest rows of ``source``.

    With ``transform`` the distances are measured between ``transform(queries)``
    and ``transform(rows)`` (e.g. whitened PCA coordinates), each block of rows
    transformed as it is read.

    Parameters
    ----------
    queries : array-like of shape (n_queries, z_dim)
    source : ZStore, store path, ZSource or array-like of shape (n_rows, z_dim)
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
    method : {"exact", "faiss"}, default="exact"
        The engine that ranks the candidates (see :mod:`latentscope.neighbors`); the reported
        distances are recomputed in float64 either way.
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
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
    if method not in ("exact", "faiss"):
        raise InvalidParameterError(f"{owner}: method must be 'exact' or 'faiss'; got {method!r}.")
    max_bytes = check_max_bytes(max_bytes, owner=owner)
    Q = check_array(queries, name="queries", dtype=np.float64, owner=owner)
    with reading(source, owner="source") as src:
        return _nearest(Q, src, k, exclude, skip, transform, return_indices, method, max_bytes, owner)


def _nearest(Q, src, k, exclude, skip, transform, return_indices, method, max_bytes, owner):
    n_rows, dim = src.shape
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
    if m == 0:
        empty = np.full((0, k), np.inf)
        return (empty, np.full((0, k), -1, dtype=np.int64)) if return_indices else empty

    if transform is not None:
        Q = np.asarray(transform(Q), dtype=np.float64)
    scan = _Scan(Q, excl, skip_rows, k, method, max_bytes, transform)
    # float32 rows of max_bytes/2 become float64 blocks of max_bytes
    block_bytes = max(int(max_bytes) // 2, dim * 4)
    best = _scan_distributed(scan, src, block_bytes)
    if best is None:
        best = scan.empty()
        for block in src.iter_blocks(max_bytes=block_bytes):
            scan.block(block.z, block.start, best)
    best_i = best.i

    # exact recomputation of the k winners from the differences, in query chunks whose
    # (chunk, k, dim) float64 rows and differences stay within max_bytes
    dist = np.empty((m, k))
    step = max(1, int(max_bytes) // (16 * k * Q.shape[1]))
    for a in range(0, m, step):
        b = min(m, a + step)
        uniq, inv = np.unique(best_i[a:b].ravel(), return_inverse=True)
        rows = np.asarray(src.take(uniq), dtype=np.float64)
        if transform is not None:
            rows = np.asarray(transform(rows), dtype=np.float64)
        diff = rows[inv].reshape(b - a, k, Q.shape[1]) - Q[a:b, None, :]
        dist[a:b] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    order = np.argsort(dist, axis=1, kind="stable")
    dist = np.take_along_axis(dist, order, axis=1)
    idx = np.take_along_axis(best_i, order, axis=1)
    return (dist, idx) if return_indices else dist


def reference_distances(
    source: Any,
    n_queries: int | None = 2000,
    k: int = 1,
    *,
    rng: Any = None,
    method: str = "exact",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances of a random subsample of data rows to their nearest *other* rows.

    ``n_queries`` rows are drawn without replacement (all rows when the source is
    smaller, or with ``n_queries=None``); each is compared with *every* row of the
    full data, its own row excluded. This is the one "nearest other row" of the
    library (memorisation, the memorisation excess of :func:`~latentscope.metrics.evaluate_regions`,
    the landing figure of ``docs/samplers.md``).

    Parameters
    ----------
    source : ZStore, store path, ZSource or array-like of shape (n_rows, z_dim)
    n_queries : int or None, default=2000
    k : int, default=1
    rng : None, int, SeedSequence or Generator
        Draws the query rows (not used when every row is a query).
    method : {"exact", "faiss"}, default="exact"
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)

    Returns
    -------
    rows : ndarray of shape (m,), int64
        The sampled row indices (sorted).
    distances : ndarray of shape (m, k)

    Examples
    --------
    >>> import numpy as np
    >>> rows, d = reference_distances(np.array([[0.0], [1.0], [3.0]]), None)
    >>> rows.tolist(), d.ravel().tolist()
    ([0, 1, 2], [1.0, 1.0, 2.0])
    """
    owner = "reference_distances"
    with reading(source, owner="source") as src:
        n_rows = src.n_rows
        if n_queries is not None:
            check_positive(n_queries, "n_queries", owner=owner, integer=True)
        if n_rows < 2:
            raise InvalidParameterError(f"{owner}: the source needs at least 2 rows; got {n_rows}.")
        gen = check_rng(rng)
        if n_queries is None or n_queries >= n_rows:
            rows = np.arange(n_rows, dtype=np.int64)
        else:
            rows = np.sort(gen.choice(n_rows, size=int(n_queries), replace=False)).astype(np.int64)
        Q = np.asarray(src.take(rows), dtype=np.float64)
        return rows, nearest_distances(Q, src, k, exclude=rows, method=method, max_bytes=max_bytes)



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

    :func:`nearest_distances` with the neighbours' indices, squared.

    Parameters
    ----------
    queries : ndarray of shape (n_query, dim)
    reference : ZStore, store path, ZSource or array-like of shape (n_ref, dim)
        Streamed block by block whatever the engine.
    k : int
        Number of neighbours, at most the number of eligible reference rows.
    query_rows : ndarray of int, shape (n_query,), optional
        Row of ``reference`` that each query *is*; that row is excluded from the query's
        neighbours (self-exclusion). Use ``arange(n)`` when queries and reference are
        the same set.
    method : {"exact", "faiss"}, default="exact"
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)

    Returns
    -------
    sqdist : ndarray of shape (n_query, k), float64
        Ascending squared distances.
    index : ndarray of shape (n_query, k), int64
        Reference rows of those neighbours (ties in any order).
    """
    dist, idx = nearest_distances(queries, reference, k, exclude=query_rows, return_indices=True, method=method,
                                  max_bytes=max_bytes)
    return dist * dist, idx


def kth_neighbour_sqdist(
    X: np.ndarray, ks: Any, *, method: str = "exact", max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[np.ndarray]:
    """Squared distance from each row of ``X`` to its k-th nearest *other* row, for each k.

    One pass serves every ``k`` in ``ks`` (the neighbours up to ``max(ks)`` are kept).

    Parameters
    ----------
    X : ndarray of shape (n, dim)
    ks : sequence of int
    method : {"exact", "faiss"}, default="exact"
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)

    Returns
    -------
    list of ndarray of shape (n,)
    """
    _, d = reference_distances(X, None, max(ks), method=method, max_bytes=max_bytes)  # every row vs the others
    return [d[:, k - 1] ** 2 for k in ks]
