"""Mergeable streaming reducers accumulating in float64.

Every reducer has ``update(block)`` (a 2-D block of rows, returns self),
``merge(other)`` (combine with a reducer of the same kind fed other rows, returns
self) and ``result()``. Merging in any order over any block partition gives the result
of one pass over the concatenated rows, up to floating-point rounding (counts and
histograms exactly). Empty blocks are allowed; the number of components is fixed by
the first block (or the ``dim`` argument) and checked afterwards.

Large blocks are processed in row slabs (small enough to stay in the CPU cache for
the elementwise reducers, about 8 MiB of float64 for the BLAS-bound covariance), so the
extra memory of an update stays small whatever the block size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["Moments", "MomentsResult", "Covariance", "CovarianceResult", "Histogram", "HistogramResult"]

#: Elements per slab processed at once by the elementwise reducers (512 KiB of float64).
_SLAB_ELEMENTS = 1 << 16
#: Elements per slab of Covariance (its matrix product favours larger slabs).
_COV_SLAB_ELEMENTS = 1 << 20


def _check_dim(dim, owner: str) -> int | None:
    if dim is None:
        return None
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise InvalidParameterError(f"{owner}: dim must be an integer >= 1 or None; got {dim!r}.")
    return int(dim)


def _as_block(block, dim: int | None, owner: str) -> np.ndarray:
    block = np.asarray(block)
    if block.ndim != 2:
        raise InvalidParameterError(f"{owner}.update: block must be 2-D (rows, components); got shape {block.shape}.")
    if block.dtype.kind not in "biuf":
        raise InvalidParameterError(f"{owner}.update: block must hold real numbers; got dtype {block.dtype}.")
    if dim is not None and block.shape[1] != dim:
        raise InvalidParameterError(f"{owner}.update: block must have {dim} columns (components); got {block.shape[1]}.")
    return block


def _slabs(block: np.ndarray, elements: int | None = None) -> Iterator[np.ndarray]:
    """Row slabs of ``block`` as float64 copies, each about ``elements`` values."""
    rows = max(1, (elements or _SLAB_ELEMENTS) // max(1, block.shape[1]))
    for lo in range(0, block.shape[0], rows):
        yield block[lo : lo + rows].astype(np.float64)


def _check_other(self, other, owner: str) -> None:
    if not isinstance(other, type(self)):
        raise InvalidParameterError(f"{owner}.merge: other must be a {owner}; got {type(other).__name__}.")


def _check_dims(a: int | None, b: int | None, owner: str) -> None:
    if a is not None and b is not None and a != b:
        raise InvalidParameterError(f"{owner}.merge: both reducers must have the same dim; got {a} and {b}.")


# -- moments --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MomentsResult:
    """Per-component count, mean, central moment sums, min and max.

    Attributes
    ----------
    n : int
        Rows seen (the count of every component).
    mean : ndarray of shape (dim,)
    m2, m3, m4 : ndarray of shape (dim,)
        Sums of the 2nd, 3rd and 4th powers of the deviations from the mean.
    min, max : ndarray of shape (dim,)
        Extremes (+inf / -inf before any row).
    """

    n: int
    mean: np.ndarray
    m2: np.ndarray
    m3: np.ndarray
    m4: np.ndarray
    min: np.ndarray
    max: np.ndarray

    def _nan_like(self) -> np.ndarray:
        return np.full_like(self.m2, np.nan)

    @property
    def var(self) -> np.ndarray:
        """Population variance (ddof=0, like ``numpy.var``)."""
        return self.m2 / self.n if self.n else self._nan_like()

    @property
    def var_unbiased(self) -> np.ndarray:
        """Sample variance (ddof=1)."""
        return self.m2 / (self.n - 1) if self.n > 1 else self._nan_like()

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof=0)."""
        return np.sqrt(self.var)

    def _zero_var(self) -> np.ndarray:
        # scipy.stats's test for a constant component: m2/n <= (eps * mean)**2
        return self.m2 / max(self.n, 1) <= (np.finfo(np.float64).eps * self.mean) ** 2

    @property
    def skewness(self) -> np.ndarray:
        """Biased sample skewness g1, as ``scipy.stats.skew`` (NaN for constant components)."""
        if self.n == 0:
            return self._nan_like()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._zero_var(), np.nan, np.sqrt(self.n) * self.m3 / self.m2**1.5)

    @property
    def excess_kurtosis(self) -> np.ndarray:
        """Biased excess kurtosis g2, as ``scipy.stats.kurtosis`` (NaN for constant components)."""
        if self.n == 0:
            return self._nan_like()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._zero_var(), np.nan, self.n * self.m4 / self.m2**2 - 3.0)

    @property
    def sample_skewness(self) -> np.ndarray:
        """Bias-corrected skewness G1, as ``scipy.stats.skew(bias=False)`` (needs n > 2)."""
        n = self.n
        if n <= 2:
            return self.skewness
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.skewness * np.sqrt((n - 1.0) * n) / (n - 2.0)

    @property
    def sample_excess_kurtosis(self) -> np.ndarray:
        """Bias-corrected excess kurtosis G2, as ``scipy.stats.kurtosis(bias=False)`` (needs n > 3)."""
        n = self.n
        if n <= 3:
            return self.excess_kurtosis
        g2 = self.excess_kurtosis
        return ((n + 1.0) * g2 + 6.0) * (n - 1.0) / ((n - 2.0) * (n - 3.0))


class Moments:
    """Per-component count, mean, central moments 2-4, min and max (Chan/Welford merges).

    Parameters
    ----------
    dim : int, optional
        Number of components; taken from the first block when omitted.

    Examples
    --------
    >>> import numpy as np
    >>> m = Moments().update(np.arange(6.0).reshape(3, 2))
    >>> m.result().mean
    array([2., 3.])
    """

    def __init__(self, dim: int | None = None) -> None:
        self.dim = _check_dim(dim, "Moments")
        self.n = 0
        if self.dim is not None:
            self._init(self.dim)

    def _init(self, dim: int) -> None:
        self.dim = int(dim)
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)
        self.m3 = np.zeros(dim)
        self.m4 = np.zeros(dim)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)

    def update(self, block) -> "Moments":
        """Add the rows of a 2-D block; return self."""
        block = _as_block(block, self.dim, "Moments")
        if self.dim is None:
            self._init(block.shape[1])
        for x in _slabs(block):
            part = Moments(self.dim)
            part.n = x.shape[0]
            part.mean = x.mean(axis=0)
            part.min = x.min(axis=0)
            part.max = x.max(axis=0)
            x -= part.mean
            d2 = x * x
            part.m2 = d2.sum(axis=0)
            part.m3 = np.einsum("ij,ij->j", d2, x)
            part.m4 = np.einsum("ij,ij->j", d2, d2)
            self._merge(part)
        return self

    def merge(self, other: "Moments") -> "Moments":
        """Combine with a Moments fed other rows; return self."""
        _check_other(self, other, "Moments")
        _check_dims(self.dim, other.dim, "Moments")
        if self.dim is None and other.dim is not None:
            self._init(other.dim)
        return self._merge(other)

    def _merge(self, other: "Moments") -> "Moments":
        if other.n == 0:
            return self
        if self.n == 0:
            self.n = other.n
            for name in ("mean", "m2", "m3", "m4", "min", "max"):
                setattr(self, name, getattr(other, name).copy())
            return self
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
        """The statistics so far (NaN where undefined, e.g. the mean of no rows)."""
        if self.dim is None:
            raise InvalidParameterError("Moments.result: no block was seen and dim was not given, "
                                        "so the number of components is unknown.")
        mean = self.mean.copy() if self.n else np.full(self.dim, np.nan)
        return MomentsResult(self.n, mean, self.m2.copy(), self.m3.copy(), self.m4.copy(),
                             self.min.copy(), self.max.copy())


# -- covariance -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CovarianceResult:
    """Count, mean and co-moment matrix; ``cov(ddof)`` and ``corr()`` derive from them.

    Attributes
    ----------
    n : int
    mean : ndarray of shape (dim,)
    comoment : ndarray of shape (dim, dim)
        Sum over rows of the outer products of the deviations from the mean.
    """

    n: int
    mean: np.ndarray
    comoment: np.ndarray

    def cov(self, ddof: int = 1) -> np.ndarray:
        """Covariance matrix (``ddof=1`` matches ``numpy.cov``); NaN when n <= ddof."""
        if self.n - ddof <= 0:
            return np.full_like(self.comoment, np.nan)
        return self.comoment / (self.n - ddof)

    def corr(self) -> np.ndarray:
        """Pearson correlation matrix; rows and columns of constant components are NaN."""
        c = self.comoment
        d = np.sqrt(np.diag(c))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = c / np.outer(d, d)
        np.clip(r, -1.0, 1.0, out=r)
        ok = d > 0
        r[np.diag_indices_from(r)] = np.where(ok, 1.0, np.nan)
        return r


class Covariance:
    """Streaming mean and covariance matrix (pairwise co-moment merges, float64).

    Parameters
    ----------
    dim : int, optional
        Number of components; taken from the first block when omitted.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.dim = _check_dim(dim, "Covariance")
        self.n = 0
        if self.dim is not None:
            self._init(self.dim)

    def _init(self, dim: int) -> None:
        self.dim = int(dim)
        self.mean = np.zeros(dim)
        self.comoment = np.zeros((dim, dim))

    def update(self, block) -> "Covariance":
        """Add the rows of a 2-D block; return self."""
        block = _as_block(block, self.dim, "Covariance")
        if self.dim is None:
            self._init(block.shape[1])
        for x in _slabs(block, _COV_SLAB_ELEMENTS):
            part = Covariance(self.dim)
            part.n = x.shape[0]
            part.mean = x.mean(axis=0)
            x -= part.mean
            part.comoment = x.T @ x
            self._merge(part)
        return self

    def merge(self, other: "Covariance") -> "Covariance":
        """Combine with a Covariance fed other rows; return self."""
        _check_other(self, other, "Covariance")
        _check_dims(self.dim, other.dim, "Covariance")
        if self.dim is None and other.dim is not None:
            self._init(other.dim)
        return self._merge(other)

    def _merge(self, other: "Covariance") -> "Covariance":
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.comoment = other.n, other.mean.copy(), other.comoment.copy()
            return self
        na, nb = float(self.n), float(other.n)
        n = na + nb
        delta = other.mean - self.mean
        self.comoment = self.comoment + other.comoment + np.outer(delta, delta) * (na * nb / n)
        self.mean = self.mean + delta * (nb / n)
        self.n = int(n)
        return self

    def result(self) -> CovarianceResult:
        """The statistics so far (the co-moment matrix symmetrised)."""
        if self.dim is None:
            raise InvalidParameterError("Covariance.result: no block was seen and dim was not given, "
                                        "so the number of components is unknown.")
        mean = self.mean.copy() if self.n else np.full(self.dim, np.nan)
        return CovarianceResult(self.n, mean, (self.comoment + self.comoment.T) / 2.0)


# -- histogram ------------------------------------------------------------------------------
@dataclass(frozen=True)
class HistogramResult:
    """Per-component histogram counts over fixed edges, with out-of-range counts.

    Attributes
    ----------
    edges : ndarray of shape (dim, bins + 1)
    counts : ndarray of shape (dim, bins), int64
    underflow, overflow : ndarray of shape (dim,), int64
        Values below ``lo`` (including -inf) and above ``hi`` (including +inf).
    nan : ndarray of shape (dim,), int64
        NaN values (counted in no bin).
    """

    edges: np.ndarray
    counts: np.ndarray
    underflow: np.ndarray
    overflow: np.ndarray
    nan: np.ndarray | None = None

    @property
    def centers(self) -> np.ndarray:
        """Bin centres, shape (dim, bins)."""
        return (self.edges[:, :-1] + self.edges[:, 1:]) / 2.0

    def density(self) -> np.ndarray:
        """Counts normalised like ``numpy.histogram(density=True)`` (in-range values only)."""
        widths = np.diff(self.edges, axis=1)
        totals = self.counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.counts / widths / totals


class Histogram:
    """Fixed-range per-component histograms, streamed.

    Counts equal ``numpy.histogram(x, bins, range=(lo, hi))`` of each component taken
    as float64, exactly: bins are half-open ``[e_i, e_{i+1})`` except the last, which
    includes ``hi``; edges are ``numpy.linspace(lo, hi, bins + 1)``. Values outside
    ``[lo, hi]`` are counted as under- or overflow and NaN separately.

    Parameters
    ----------
    lo, hi : float or array-like of shape (dim,)
        Range per component (a scalar applies to all); every ``hi`` must exceed its ``lo``.
    bins : int, default=100
    """

    def __init__(self, lo, hi, bins: int = 100) -> None:
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
            raise InvalidParameterError(f"Histogram: bins must be an integer >= 1; got {bins!r}.")
        try:
            lo_arr = np.atleast_1d(np.asarray(lo, dtype=np.float64))
            hi_arr = np.atleast_1d(np.asarray(hi, dtype=np.float64))
            lo_arr, hi_arr = np.broadcast_arrays(lo_arr, hi_arr)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(f"Histogram: lo and hi must be numbers or matching 1-D arrays; got {lo!r}, {hi!r}.") from exc
        if lo_arr.ndim != 1:
            raise InvalidParameterError(f"Histogram: lo and hi must be scalars or 1-D; got shape {lo_arr.shape}.")
        bad = ~(np.isfinite(lo_arr) & np.isfinite(hi_arr) & (hi_arr > lo_arr))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise InvalidParameterError(
                f"Histogram: every hi must be finite and greater than its lo; got lo={lo_arr[j]}, hi={hi_arr[j]}"
                + (f" for component {j}." if lo_arr.size > 1 else ".")
            )
        self.bins = int(bins)
        self.lo, self.hi = lo_arr.copy(), hi_arr.copy()
        self.dim = lo_arr.shape[0] if lo_arr.shape[0] > 1 else None
        self._counts = None

    def _setup(self, dim: int) -> None:
        if self.dim is None:
            self.dim = dim
            self.lo = np.broadcast_to(self.lo, (dim,)).copy()
            self.hi = np.broadcast_to(self.hi, (dim,)).copy()
        edges = np.linspace(self.lo, self.hi, self.bins + 1, axis=1)
        if np.any(edges[:, :-1] >= edges[:, 1:]):
            raise InvalidParameterError(f"Histogram: too many bins ({self.bins}) for the range of some component.")
        self.edges = edges
        # numpy.linspace computes edge i as i * step + lo (the last edge is hi); when that
        # holds bit for bit, edges are computed on the fly instead of gathered.
        self._step = (self.hi - self.lo) / self.bins
        i = np.arange(self.bins, dtype=np.float64)[:, None]
        self._arith = bool(np.array_equal((i * self._step + self.lo).T, edges[:, :-1]))
        self._counts = np.zeros(self.dim * (self.bins + 3), dtype=np.int64)

    def _edge(self, idx: np.ndarray) -> np.ndarray:
        """Edge ``idx`` (0 <= idx < bins) of every component, for a (rows, dim) index array."""
        if self._arith:
            return idx * self._step + self.lo
        return self.edges.ravel()[idx + np.arange(self.dim) * (self.bins + 1)]

    def update(self, block) -> "Histogram":
        """Add the rows of a 2-D block; return self."""
        block = _as_block(block, self.dim, "Histogram")
        if self._counts is None:
            self._setup(block.shape[1])
        nb = self.bins
        lo, hi = self.lo, self.hi
        span = hi - lo
        offsets = np.arange(self.dim) * (nb + 3)
        for x in _slabs(block):
            # numpy.histogram's estimate (same expression), then its +-1 correction
            # against the exact edges; out-of-range values and NaN get their own slots
            f = x - lo
            f /= span
            f *= nb
            np.clip(f, 0, nb - 1, out=f)
            nan = np.isnan(f)
            has_nan = bool(nan.any())
            if has_nan:
                f[nan] = 0
            idx = f.astype(np.intp)
            idx -= x < self._edge(idx)
            np.clip(idx, 0, nb - 1, out=idx)
            idx += (x >= self._edge(np.minimum(idx + 1, nb - 1))) & (idx != nb - 1)
            idx += 1
            np.putmask(idx, x < lo, 0)
            np.putmask(idx, x > hi, nb + 1)
            if has_nan:
                np.putmask(idx, nan, nb + 2)
            idx += offsets
            self._counts += np.bincount(idx.ravel(), minlength=self._counts.size)
        return self

    def merge(self, other: "Histogram") -> "Histogram":
        """Combine with a Histogram of the same bins and ranges fed other rows; return self."""
        _check_other(self, other, "Histogram")
        _check_dims(self.dim, other.dim, "Histogram")
        if self.bins != other.bins:
            raise InvalidParameterError(f"Histogram.merge: both histograms must have the same bins; "
                                        f"got {self.bins} and {other.bins}.")
        dim = self.dim or other.dim
        if dim is not None:
            a_lo, a_hi = np.broadcast_to(self.lo, (dim,)), np.broadcast_to(self.hi, (dim,))
            b_lo, b_hi = np.broadcast_to(other.lo, (dim,)), np.broadcast_to(other.hi, (dim,))
            if not (np.array_equal(a_lo, b_lo) and np.array_equal(a_hi, b_hi)):
                raise InvalidParameterError("Histogram.merge: both histograms must have the same ranges (lo, hi).")
        if other._counts is None:
            return self
        if self._counts is None:
            self._setup(other.dim)
        self._counts += other._counts
        return self

    def result(self) -> HistogramResult:
        """Counts so far, with the edges."""
        if self._counts is None:
            if self.dim is None:
                raise InvalidParameterError("Histogram.result: no block was seen and lo/hi are scalars, "
                                            "so the number of components is unknown.")
            self._setup(self.dim)
        c = self._counts.reshape(self.dim, self.bins + 3)
        return HistogramResult(self.edges.copy(), c[:, 1:-2].copy(), c[:, 0].copy(), c[:, -2].copy(), c[:, -1].copy())
