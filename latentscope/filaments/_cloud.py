"""The cloud a detection starts from: its finite rows, distinct rows, moments and smoothed-bootstrap null."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError, NonFiniteError
from ..stream import DEFAULT_MAX_BYTES, as_zsource, run_blocks, run_pass

__all__ = ["load_points", "moments", "null_cloud"]

#: Bytes of one work unit of the null-cloud pass (a quarter of the one
#: block budget, 16 MiB: the units the thread pool shares out).
_UNIT_BYTES = DEFAULT_MAX_BYTES // 4


def load_points(X: Any, on_nonfinite: str = "raise") -> tuple[np.ndarray, np.ndarray, int]:
    """The finite rows of ``X`` as float32, their row numbers, and the total number of rows.

    Parameters
    ----------
    X : ZStore, store path, ZSource or 2-D array-like
        Taken through :func:`latentscope.stream.as_zsource`; a store opened from a
        path is closed again.
    on_nonfinite : {"raise", "skip"}
        Rows with NaN or inf raise :class:`~latentscope.exceptions.NonFiniteError`,
        or are left out.
    """
    own = "FilamentDetector"
    if isinstance(X, np.ndarray) and X.ndim != 2:
        raise InvalidParameterError(f"{own}: X must be 2-D (n_points, z_dim); got shape {X.shape}.")
    with as_zsource(X, owner=f"{own}: X") as source:
        if source.dim < 2:
            raise InvalidParameterError(f"{own}: z_dim must be >= 2; got {source.dim}.")
        Z = np.asarray(source.read(), dtype=np.float32)  # the graphs need every point in memory
    n_total = Z.shape[0]
    finite = np.isfinite(Z).all(axis=1)
    rows = np.arange(n_total)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        if on_nonfinite == "raise":
            raise NonFiniteError(
                f"{own}: X holds non-finite values in {bad.size} rows (first at row {int(bad[0])}); "
                "pass on_nonfinite='skip' to leave them out."
            )
        Z, rows = Z[finite], rows[finite]
    return np.ascontiguousarray(Z, dtype=np.float32), rows, n_total


def _unique_rows(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first occurrence of each distinct row, and each row's group."""
    n = Z.shape[0]
    Zn = Z + np.float32(0.0)  # -0.0 -> 0.0
    h = np.fromiter((hash(r.tobytes()) for r in Zn), dtype=np.int64, count=n)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    same = np.zeros(n, bool)
    if n > 1:
        cand = np.flatnonzero(hs[1:] == hs[:-1]) + 1
        if cand.size:
            same[cand] = (Zn[order[cand]] == Zn[order[cand - 1]]).all(axis=1)
    if not same.any():
        return np.arange(n), np.arange(n)
    group_sorted = np.cumsum(~same) - 1
    group = np.empty(n, np.int64)
    group[order] = group_sorted
    first = np.full(group_sorted[-1] + 1, n, np.int64)
    np.minimum.at(first, group, np.arange(n))
    # renumber groups by first occurrence so unique rows keep the input order
    rank = np.argsort(first, kind="stable")
    inv = np.empty_like(rank)
    inv[rank] = np.arange(rank.size)
    return first[rank], inv[group]


class _Scatter:
    """Scatter matrix about a fixed centre: float32 products per work unit, summed in float64 (a run_pass reducer)."""

    def __init__(self, center32: np.ndarray) -> None:
        self.c = center32
        self.s: np.ndarray | None = None

    def update(self, z: np.ndarray, groups: Any = None) -> "_Scatter":
        b = np.asarray(z, dtype=np.float32) - self.c
        p = (b.T @ b).astype(np.float64)
        self.s = p if self.s is None else self.s + p
        return self

    def merge(self, other: "_Scatter") -> "_Scatter":
        if other.s is not None:
            self.s = other.s.copy() if self.s is None else self.s + other.s
        return self


def moments(U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean of ``U``, and its covariance's eigenvalues and eigenvectors.

    Parameters
    ----------
    U : ndarray of shape (n, dim), float32

    Returns
    -------
    mean : ndarray of shape (dim,), float64
    variances : ndarray of shape (dim,)
        Eigenvalues, descending, clipped at 0.
    axes : ndarray of shape (dim, dim)
        Eigenvectors as rows, in the same order.
    """
    n, dim = U.shape
    mean = U.mean(axis=0, dtype=np.float64)
    # one streamed pass (on the active dask cluster when there is one): float32 products, summed in float64
    scatter = run_pass(U, partial(_Scatter, mean.astype(np.float32)), n_threads=None)
    cov = (scatter.s if scatter.s is not None else np.zeros((dim, dim))) / max(1, n - 1)
    w, V = np.linalg.eigh(cov)
    return mean, np.clip(w[::-1], 0.0, None), V[:, ::-1].T.copy()


def null_cloud(U: np.ndarray, mean: np.ndarray, var: np.ndarray, axes: np.ndarray, h: float,
               gen: np.random.Generator) -> np.ndarray:
    """The smoothed-bootstrap null: each point shrunk to the mean and jittered once (float32).

    ``mu + sqrt(1 - h^2) (z_i - mu) + h eps``, ``eps ~ N(0, Sigma)``: the draw of the
    ``kde`` sampler (:class:`~latentscope.samplers.KDESampler`), with every point used
    once instead of resampled, so the null has exactly the data's mean and covariance
    up to the noise's sampling error.

    Parameters
    ----------
    U : ndarray of shape (n, dim), float32
    mean, var, axes : ndarray
        As returned by :func:`moments`.
    h : float
        The jitter, in (0, 1].
    gen : numpy Generator
        Spawns one stream per work unit, so the draw does not depend on thread order.

    Returns
    -------
    ndarray of shape (n, dim), float32
    """
    from ..samplers._kde import KDESampler  # noqa: PLC0415

    n, dim = U.shape
    kde = KDESampler(bandwidth=h)  # float32 factors: the noise's product runs in float32
    kde.mean_ = mean
    kde.variances_, kde.components_ = var.astype(np.float32), axes.astype(np.float32)
    out = np.empty((n, dim), np.float32)
    step = max(1, _UNIT_BYTES // (8 * dim))
    starts = list(range(0, n, step))
    gens = dict(zip(starts, gen.spawn(len(starts))))  # one stream per block: thread-order free

    def draw(lo: int) -> None:
        hi = min(n, lo + step)
        xi = gens[lo].standard_normal((hi - lo, dim), dtype=np.float32)
        out[lo:hi] = kde._draw(U, np.arange(lo, hi), xi, h)

    run_blocks(draw, starts)
    return out
