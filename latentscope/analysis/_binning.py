"""Fine-bin arithmetic: exact edges, coarse aggregation, quantiles from counts."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["fine_edges", "aligned_coarse", "quantiles_from_counts"]

_EPS32 = float(np.finfo(np.float32).eps)


def _check_bins(bins: Any, owner: str, multiple: int = 1) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 4 or bins % multiple:
        extra = f" and a multiple of {multiple}" if multiple > 1 else ""
        raise InvalidParameterError(f"{owner}: bins must be an integer >= 4{extra}; got {bins!r}.")
    return int(bins)


def _check_levels(qs: Any, owner: str) -> np.ndarray:
    q = np.atleast_1d(np.asarray(qs, dtype=np.float64))
    if q.ndim != 1 or q.size == 0 or not np.all((q >= 0) & (q <= 1)):
        raise InvalidParameterError(f"{owner}: quantile levels must be numbers in [0, 1]; got {qs!r}.")
    return q


def fine_edges(lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges ``lo + j (hi - lo) / bins`` (the last one exactly ``hi``), shape (dim, bins + 1).

    This is what :func:`numpy.linspace` computes; the binning uses the same formula.
    """
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    step = (hi - lo) / bins
    e = np.arange(bins + 1, dtype=np.float64)[None, :] * step[:, None] + lo[:, None]
    e[:, -1] = hi
    return e


def _edge_at(j: np.ndarray, lo: np.ndarray, hi: np.ndarray, step: np.ndarray, bins: int) -> np.ndarray:
    """Edge ``j`` (0..bins) of the components whose lo/hi/step are given (elementwise)."""
    return np.where(j >= bins, hi, j * step + lo)


def _widen_degenerate(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give zero-width ranges the width numpy.histogram uses (v - 0.5, v + 0.5)."""
    lo = lo.astype(np.float64).copy()
    hi = hi.astype(np.float64).copy()
    same = hi <= lo
    lo[same] -= 0.5
    hi[same] += 0.5
    return lo, hi


#: Components processed at once when reading results (bounds temporary memory).
_CHUNK_COMPONENTS = 32


def aligned_coarse(counts: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coarse bins made of whole fine bins, covering the occupied fine range.

    Each component gets exactly ``bins`` coarse bins of ``m`` fine bins each, with
    ``m = ceil(occupied / bins)``, centred on the occupied fine bins (coarse edges may
    extend past the fine range, over empty virtual bins). When the fine histogram
    spans the data's min and max with ``bins * k`` fine bins (ComponentStats on raw
    components), the coarse edges are ``fine_edges[::k]``: a plain ``bins``-bin
    histogram between min and max.

    Returns
    -------
    edges : ndarray of shape (dim, bins + 1)
    start : ndarray of shape (dim,), int
        Fine index of each component's first coarse edge.
    m : ndarray of shape (dim,), int
        Fine bins per coarse bin.
    """
    dim, fine = counts.shape
    occupied = counts > 0
    any_ = occupied.any(1)
    first = np.where(any_, occupied.argmax(1), 0)
    last = np.where(any_, fine - 1 - occupied[:, ::-1].argmax(1), fine - 1)
    del occupied
    used = last - first + 1
    m = np.maximum(1, -(-used // bins))
    slack = bins * m - used
    start = first - slack // 2
    # keep the window inside the fine range when it fits (it still covers first..last)
    fits = bins * m <= fine
    start = np.where(fits, np.clip(start, 0, np.maximum(fine - bins * m, 0)), start)
    step = (hi - lo) / fine
    k = start[:, None] + m[:, None] * np.arange(bins + 1)[None, :]
    # the fine edges' formula (fine_edges), extended past the range over virtual empty bins
    edges = np.where(k == fine, hi[:, None], k * step[:, None] + lo[:, None])
    return edges, start, m


def quantiles_from_counts(
    counts: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    qs: Any,
    vmin: np.ndarray | None = None,
    vmax: np.ndarray | None = None,
    underflow: np.ndarray | None = None,
    overflow: np.ndarray | None = None,
) -> np.ndarray:
    """Quantiles interpolated in fine histograms (numpy's default 'linear' method).

    The level ``q`` sits at rank ``h = q (n - 1)`` between order statistics
    ``floor(h)`` and ``floor(h) + 1``; each order statistic is placed inside its bin
    as if the bin's values were evenly spread, and clamped to ``[vmin, vmax]``. The
    error is at most one bin width; ranks 0 and n - 1 are the exact min and max.
    Ranks that fall into under- or overflow counts give NaN.

    Parameters
    ----------
    counts : ndarray of shape (dim, bins)
    lo, hi : ndarray of shape (dim,)
    qs : float or sequence of floats in [0, 1]
    vmin, vmax : ndarray of shape (dim,), optional
        Exact extremes.

    Returns
    -------
    ndarray of shape (len(qs), dim)
    """
    q = _check_levels(qs, "quantiles")
    counts = np.asarray(counts)
    dim, bins = counts.shape
    under = np.zeros(dim, np.int64) if underflow is None else np.asarray(underflow, np.int64)
    over = np.zeros(dim, np.int64) if overflow is None else np.asarray(overflow, np.int64)
    inner = counts.sum(1, dtype=np.int64)
    n = inner + under + over
    cum = np.cumsum(counts, axis=1, dtype=np.int64)
    width = (hi - lo) / bins
    vmin = lo if vmin is None else np.asarray(vmin, np.float64)
    vmax = hi if vmax is None else np.asarray(vmax, np.float64)
    h = q[:, None] * (n - 1)[None, :]  # (levels, dim) fractional ranks
    r0 = np.floor(h).astype(np.int64)
    frac = h - r0
    r1 = np.minimum(r0 + 1, np.maximum(n - 1, 0))
    ranks = np.concatenate([r0, r1])  # (2 levels, dim)
    ri = ranks - under[None, :]
    ok = (ri >= 0) & (ri < inner[None, :])
    rc = np.clip(ri, 0, np.maximum(inner - 1, 0)[None, :])
    j = np.empty_like(rc)
    for c in range(dim):  # bin of each order statistic: first j with cum[j] > rank
        j[:, c] = np.searchsorted(cum[c], rc[:, c], side="right")
    j = np.minimum(j, bins - 1)
    cols = np.broadcast_to(np.arange(dim), j.shape)
    cnt = counts[cols, j]
    before = cum[cols, j] - cnt
    pos = (rc - before + 0.5) / np.maximum(cnt, 1)
    v = lo[None, :] + (j + pos) * width[None, :]
    v = np.clip(v, vmin[None, :], vmax[None, :])
    v = np.where(ranks == 0, vmin[None, :], v)
    v = np.where(ranks == (n - 1)[None, :], vmax[None, :], v)
    v = np.where(ok | ((ranks == 0) & (under == 0)[None, :]) | ((ranks == (n - 1)[None, :]) & (over == 0)[None, :]),
                 v, np.nan)
    L = q.size
    out = v[:L] + frac * (v[L:] - v[:L])
    return np.where((n > 0)[None, :], out, np.nan)
