"""Mergeable streaming reducers accumulating in float64.

Every reducer has ``update(block)`` (a 2-D block of rows, returns self),
``merge(other)`` (combine with a reducer fed other rows, returns self) and
``result()``. Merging in any order over any block partition gives the result of one
pass over the concatenated rows, up to floating-point rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["Moments", "MomentsResult", "Covariance", "CovarianceResult", "Histogram", "HistogramResult"]


def _as_block(block: np.ndarray, dim: int | None, owner: str) -> np.ndarray:
    block = np.asarray(block)
    if block.ndim != 2:
        raise InvalidParameterError(f"{owner}.update: block must be 2-D (rows, components); got shape {block.shape}.")
    if dim is not None and block.shape[1] != dim:
        raise InvalidParameterError(f"{owner}.update: block must have {dim} columns; got {block.shape[1]}.")
    return block


def _check_same(a, b, attr: str, owner: str) -> None:
    if getattr(a, attr) != getattr(b, attr):
        raise InvalidParameterError(
            f"{owner}.merge: {attr} must match; got {getattr(a, attr)!r} and {getattr(b, attr)!r}."
        )


@dataclass(frozen=True)
class MomentsResult:
    """Per-component count, mean, variance (population and sample), std, min and max."""

    n: int
    mean: np.ndarray
    m2: np.ndarray
    m3: np.ndarray
    m4: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @property
    def var(self) -> np.ndarray:
        """Population variance (ddof=0)."""
        return self.m2 / self.n if self.n else np.full_like(self.m2, np.nan)

    @property
    def var_unbiased(self) -> np.ndarray:
        """Sample variance (ddof=1)."""
        return self.m2 / (self.n - 1) if self.n > 1 else np.full_like(self.m2, np.nan)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    @property
    def skewness(self) -> np.ndarray:
        """Biased sample skewness g1 (scipy.stats.skew default); NaN for zero variance."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.m2 > 0, np.sqrt(self.n) * self.m3 / self.m2**1.5, np.nan)

    @property
    def excess_kurtosis(self) -> np.ndarray:
        """Biased excess kurtosis g2 (scipy.stats.kurtosis default); NaN for zero variance."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.m2 > 0, self.n * self.m4 / self.m2**2 - 3.0, np.nan)


class Moments:
    """Per-component count, mean, central moments 2-4, min and max (Chan/Welford merges).

    Parameters
    ----------
    dim : int, optional
        Number of components; inferred from the first block when omitted.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        self.n = 0
        self._init(dim) if dim is not None else None

    def _init(self, dim: int) -> None:
        self.dim = int(dim)
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)
        self.m3 = np.zeros(dim)
        self.m4 = np.zeros(dim)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)

    def update(self, block: np.ndarray) -> "Moments":
        block = _as_block(block, self.dim, "Moments")
        if self.dim is None:
            self._init(block.shape[1])
        if block.shape[0] == 0:
            return self
        x = block.astype(np.float64, copy=False)
        other = Moments(self.dim)
        other.n = x.shape[0]
        other.mean = x.mean(axis=0)
        d = x - other.mean
        d2 = d * d
        other.m2 = d2.sum(axis=0)
        other.m3 = (d2 * d).sum(axis=0)
        other.m4 = (d2 * d2).sum(axis=0)
        other.min = x.min(axis=0)
        other.max = x.max(axis=0)
        return self.merge(other)

    def merge(self, other: "Moments") -> "Moments":
        if other.n == 0:
            return self
        if self.n == 0:
            if self.dim is None:
                self._init(other.dim)
            _check_same(self, other, "dim", "Moments")
            self.n = other.n
            for name in ("mean", "m2", "m3", "m4", "min", "max"):
                setattr(self, name, getattr(other, name).copy())
            return self
        _check_same(self, other, "dim", "Moments")
        na, nb = float(self.n), float(other.n)
        n = na + nb
        delta = other.mean - self.mean
        d_n = delta / n
        m2 = self.m2 + other.m2 + delta * d_n * na * nb
        m3 = self.m3 + other.m3 + delta * d_n * d_n * na * nb * (na - nb) + 3.0 * d_n * (na * other.m2 - nb * self.m2)
        m4 = (
            self.m4
            + other.m4
            + delta * d_n**3 * na * nb * (na * na - na * nb + nb * nb)
            + 6.0 * d_n * d_n * (na * na * other.m2 + nb * nb * self.m2)
            + 4.0 * d_n * (na * other.m3 - nb * self.m3)
        )
        self.mean = self.mean + d_n * nb
        self.m2, self.m3, self.m4 = m2, m3, m4
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        self.n = int(n)
        return self

    def result(self) -> MomentsResult:
        if self.dim is None:
            raise InvalidParameterError("Moments.result: no block was seen, so the number of components is unknown.")
        return MomentsResult(self.n, self.mean.copy(), self.m2.copy(), self.m3.copy(), self.m4.copy(), self.min.copy(), self.max.copy())


@dataclass(frozen=True)
class CovarianceResult:
    """Count, mean and co-moment matrix; ``cov(ddof)`` and ``corr()`` derive from them."""

    n: int
    mean: np.ndarray
    comoment: np.ndarray

    def cov(self, ddof: int = 1) -> np.ndarray:
        """Covariance matrix (ddof=1 matches numpy.cov)."""
        if self.n - ddof <= 0:
            return np.full_like(self.comoment, np.nan)
        return self.comoment / (self.n - ddof)

    def corr(self) -> np.ndarray:
        """Pearson correlation matrix; rows/columns of zero-variance components are NaN."""
        c = self.comoment
        d = np.sqrt(np.diag(c))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = c / np.outer(d, d)
        np.clip(r, -1.0, 1.0, out=r)
        return r


class Covariance:
    """Streaming mean and covariance (pairwise co-moment updates, float64).

    Parameters
    ----------
    dim : int, optional
        Number of components; inferred from the first block when omitted.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        self.n = 0
        if dim is not None:
            self._init(dim)

    def _init(self, dim: int) -> None:
        self.dim = int(dim)
        self.mean = np.zeros(dim)
        self.comoment = np.zeros((dim, dim))

    def update(self, block: np.ndarray) -> "Covariance":
        block = _as_block(block, self.dim, "Covariance")
        if self.dim is None:
            self._init(block.shape[1])
        if block.shape[0] == 0:
            return self
        x = block.astype(np.float64)
        other = Covariance(self.dim)
        other.n = x.shape[0]
        other.mean = x.mean(axis=0)
        x -= other.mean
        other.comoment = x.T @ x
        return self.merge(other)

    def merge(self, other: "Covariance") -> "Covariance":
        if other.n == 0:
            return self
        if self.n == 0:
            if self.dim is None:
                self._init(other.dim)
            _check_same(self, other, "dim", "Covariance")
            self.n, self.mean, self.comoment = other.n, other.mean.copy(), other.comoment.copy()
            return self
        _check_same(self, other, "dim", "Covariance")
        na, nb = float(self.n), float(other.n)
        n = na + nb
        delta = other.mean - self.mean
        self.comoment = self.comoment + other.comoment + np.outer(delta, delta) * (na * nb / n)
        self.mean = self.mean + delta * (nb / n)
        self.n = int(n)
        return self

    def result(self) -> CovarianceResult:
        if self.dim is None:
            raise InvalidParameterError("Covariance.result: no block was seen, so the number of components is unknown.")
        return CovarianceResult(self.n, self.mean.copy(), (self.comoment + self.comoment.T) / 2.0)


@dataclass(frozen=True)
class HistogramResult:
    """Per-component histogram counts over fixed edges, with under/overflow counts."""

    edges: np.ndarray  # (dim, bins + 1)
    counts: np.ndarray  # (dim, bins), int64
    underflow: np.ndarray  # (dim,)
    overflow: np.ndarray  # (dim,)


class Histogram:
    """Fixed-range per-component histograms, streamed.

    Bins follow :func:`numpy.histogram`: half-open ``[e_i, e_{i+1})`` except the last,
    which includes its right edge. Values outside ``[lo, hi]`` are counted as under- or
    overflow.

    Parameters
    ----------
    lo, hi : float or array-like of shape (dim,)
        Range per component; ``hi`` must exceed ``lo``.
    bins : int, default=100
    """

    def __init__(self, lo, hi, bins: int = 100) -> None:
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise InvalidParameterError(f"Histogram: bins must be an integer >= 1; got {bins!r}.")
        lo = np.atleast_1d(np.asarray(lo, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(hi, dtype=np.float64))
        lo, hi = np.broadcast_arrays(lo, hi)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or np.any(hi <= lo):
            raise InvalidParameterError("Histogram: every hi must be finite and greater than its lo; got lo="
                                        f"{lo[:4]}..., hi={hi[:4]}....")
        self.bins = int(bins)
        self.lo, self.hi = lo.copy(), hi.copy()
        self.dim = lo.shape[0] if lo.shape[0] > 1 else None
        self._counts = None

    def _setup(self, dim: int) -> None:
        if self.dim is None:
            self.dim = dim
            self.lo = np.broadcast_to(self.lo, (dim,)).copy()
            self.hi = np.broadcast_to(self.hi, (dim,)).copy()
        self.edges = np.linspace(self.lo, self.hi, self.bins + 1, axis=1)
        self._counts = np.zeros(self.dim * (self.bins + 2), dtype=np.int64)

    def update(self, block: np.ndarray) -> "Histogram":
        block = _as_block(block, self.dim if self._counts is not None or self.dim else None, "Histogram")
        if self._counts is None:
            self._setup(block.shape[1])
        if block.shape[0] == 0:
            return self
        x = block.astype(np.float64, copy=False)
        scale = self.bins / (self.hi - self.lo)
        idx = np.floor((x - self.lo) * scale).astype(np.int64)
        # exact edge handling: compare with the stored edges to correct rounding of the division
        np.clip(idx, -1, self.bins, out=idx)
        inner = (idx >= 0) & (idx < self.bins)
        cols = np.broadcast_to(np.arange(self.dim), idx.shape)
        left = self.edges[cols[inner], idx[inner]]
        idx_in = idx[inner]
        xi = x[inner]
        idx_in = idx_in - (xi < left)
        right = self.edges[cols[inner], np.minimum(idx_in + 1, self.bins)]
        idx_in = idx_in + ((xi >= right) & (idx_in + 1 < self.bins))
        idx[inner] = idx_in
        idx[x == self.hi] = self.bins - 1
        idx[x < self.lo] = -1
        idx[x > self.hi] = self.bins
        flat = (idx + 1) + cols * (self.bins + 2)
        self._counts += np.bincount(flat.ravel(), minlength=self._counts.size)
        return self

    def merge(self, other: "Histogram") -> "Histogram":
        if other._counts is None:
            return self
        if self._counts is None:
            self._setup(other.dim)
        if self.bins != other.bins or not (np.array_equal(self.lo, other.lo) and np.array_equal(self.hi, other.hi)):
            raise InvalidParameterError("Histogram.merge: both histograms must have the same bins and ranges.")
        self._counts += other._counts
        return self

    def result(self) -> HistogramResult:
        if self._counts is None:
            raise InvalidParameterError("Histogram.result: no block was seen, so the number of components is unknown.")
        c = self._counts.reshape(self.dim, self.bins + 2)
        return HistogramResult(self.edges.copy(), c[:, 1:-1].copy(), c[:, 0].copy(), c[:, -1].copy())
