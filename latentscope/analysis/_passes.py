"""The two streaming passes shared by every analysis.

Pass 1 (:class:`FirstPass`): count, mean and float64 co-moment matrix, per-component
min and max (and per-group sums when the rows are split by an attribute).
Between the passes the covariance is diagonalised (:class:`PCAFrame`).
Pass 2 (:class:`SecondPass`): per block, the rows are transposed once (everything
runs column-wise, which keeps per-component reductions contiguous and histogram
counting in cache), centred once on a copy of the mean in the working precision
(the small offset is corrected exactly), rotated into the PCA frame with one GEMM,
and feed: fine histograms of the raw components and of the PCA coordinates, exact
power sums (moments 1-4, accumulated in float64), histograms of |z|, |z - mean| and
the Mahalanobis radius, 2-D pair densities, projections on a chosen direction, and
optionally the covariance of the rows inside a Mahalanobis radius (the first step of
the core covariance). The working precision is float32 unless the data's scales
need float64 (:func:`choose_precision`).

Both passes are mergeable reducers, so blocks may be processed in any order and by
several threads (:func:`run_pass`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..exceptions import InvalidParameterError, NonFiniteError
from ..stream import Covariance, CovarianceResult
from ._quantiles import FineHistogram, FineHistogramResult

__all__ = ["FirstPass", "FirstPassResult", "SecondPass", "SecondPassResult", "PowerSums", "SecondMoments",
           "run_pass", "iter_source", "choose_precision", "numerical_rank"]

#: Default block budget of the analyses: small blocks keep peak memory low.
DEFAULT_MAX_BYTES = 4 << 20


# -- sources --------------------------------------------------------------------------
def iter_source(source: Any, *, max_bytes: int = DEFAULT_MAX_BYTES, labels: Any = None,
                column: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(z_block, label_block)`` from a store or an array.

    ``column`` names a store column read alongside; ``labels`` is an array of
    per-row values for an in-memory source (or a store).
    """
    from ..store import ZStore

    if isinstance(source, ZStore):
        cols = (column,) if column is not None else ()
        for block in source.iter_blocks(max_bytes=max_bytes, columns=cols):
            lab = block.columns[column] if column is not None else (
                None if labels is None else np.asarray(labels)[block.start:block.stop])
            yield block.z, lab
        return
    arr = np.asarray(source)
    if arr.ndim != 2:
        raise InvalidParameterError(f"source must be a ZStore or a 2-D array; got shape {arr.shape}.")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    lab_all = None if labels is None else np.asarray(labels)
    step = max(1, int(max_bytes) // max(1, arr.shape[1] * arr.itemsize))
    for lo in range(0, arr.shape[0], step):
        hi = min(arr.shape[0], lo + step)
        yield arr[lo:hi], (None if lab_all is None else lab_all[lo:hi])


def run_pass(
    source: Any,
    make: Callable[[], Any],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    group_of: Callable[[np.ndarray], np.ndarray] | None = None,
    labels: Any = None,
    column: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    n_threads: int = 1,
) -> Any:
    """Feed every block of ``source`` to reducers made by ``make()``; return the merged one.

    With ``n_threads > 1`` blocks are handed to a thread pool, each thread
    accumulating into its own reducer; the reducers are merged at the end (numpy
    releases the GIL in its loops). BLAS threads are limited to one per worker.
    """
    from ..stream import source_shape

    n, _ = source_shape(source)
    blocks = iter_source(source, max_bytes=max_bytes, labels=labels, column=column)
    done = 0
    if n_threads <= 1:
        red = make()
        for z, lab in blocks:
            red.update(z, None if group_of is None else group_of(lab))
            done += z.shape[0]
            if progress is not None:
                progress(done, n)
        return red
    import threading

    from threadpoolctl import threadpool_limits

    local = threading.local()
    reducers: list[Any] = []
    lock = threading.Lock()

    def work(item: tuple[np.ndarray, np.ndarray | None]) -> int:
        red = getattr(local, "red", None)
        if red is None:
            red = local.red = make()
            with lock:
                reducers.append(red)
        z, lab = item
        red.update(z, None if group_of is None else group_of(lab))
        return z.shape[0]

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_threads) as pool:
        pending: list[Any] = []
        for item in blocks:
            pending.append(pool.submit(work, item))
            while len(pending) > n_threads:
                done += pending.pop(0).result()
                if progress is not None:
                    progress(done, n)
        for fut in pending:
            done += fut.result()
            if progress is not None:
                progress(done, n)
    if not reducers:
        return make()
    first = reducers[0]
    for other in reducers[1:]:
        first.merge(other)
    return first


# -- power sums -----------------------------------------------------------------------
@dataclass
class PowerSums:
    """Float64 sums of x, x^2, x^3, x^4 per group and component, about a fixed shift."""

    shift: np.ndarray  # (dim,)
    n: np.ndarray  # (groups,)
    s: np.ndarray  # (4, groups, dim)

    @classmethod
    def empty(cls, shift: np.ndarray, groups: int) -> "PowerSums":
        dim = shift.shape[0]
        return cls(np.asarray(shift, np.float64), np.zeros(groups, np.int64), np.zeros((4, groups, dim)))

    def add(self, d: np.ndarray, d2: np.ndarray, g: int, axis: int = 0) -> None:
        """Add deviations ``d`` (about ``shift``) and their squares; ``axis`` runs over the rows."""
        self.n[g] += d.shape[axis]
        self.s[0, g] += d.sum(axis, dtype=np.float64)
        self.s[1, g] += d2.sum(axis, dtype=np.float64)
        self.s[2, g] += (d2 * d).sum(axis, dtype=np.float64)
        self.s[3, g] += (d2 * d2).sum(axis, dtype=np.float64)

    def merge(self, other: "PowerSums") -> None:
        self.n += other.n
        self.s += other.s

    def central(self, group: int | None = None) -> dict[str, np.ndarray]:
        """Count, mean, central sums m2..m4 (as in :class:`~latentscope.stream.MomentsResult`)."""
        if group is None:
            n = float(self.n.sum())
            s1, s2, s3, s4 = (self.s[k].sum(0) for k in range(4))
        else:
            n = float(self.n[group])
            s1, s2, s3, s4 = (self.s[k, group] for k in range(4))
        if n == 0:
            nan = np.full_like(s1, np.nan)
            return {"n": 0, "mean": nan, "m2": nan, "m3": nan, "m4": nan}
        m = s1 / n
        m2 = s2 - n * m * m
        m3 = s3 - 3 * m * s2 + 2 * n * m**3
        m4 = s4 - 4 * m * s3 + 6 * m * m * s2 - 3 * n * m**4
        return {"n": int(n), "mean": self.shift + m, "m2": np.maximum(m2, 0.0), "m3": m3, "m4": np.maximum(m4, 0.0)}


class SecondMoments:
    """Streamed mean and co-moments of coordinates that are nearly centred and decorrelated.

    Used for PCA coordinates (the core covariance): each block's ``T^T T`` is one GEMM
    in the block's precision, accumulated in float64. In a PCA frame there is no
    cancellation between large and small directions, so float32 blocks keep each
    entry's relative precision; the result is exact up to that rounding.
    """

    def __init__(self) -> None:
        self.n = 0
        self.s1: np.ndarray | None = None
        self.s2: np.ndarray | None = None

    def update_columns(self, tT: np.ndarray) -> "SecondMoments":
        """Add a block of coordinates given column-wise, shape (k, n)."""
        if tT.shape[1] == 0:
            return self
        if self.s1 is None:
            k = tT.shape[0]
            self.s1, self.s2 = np.zeros(k), np.zeros((k, k))
        self.n += tT.shape[1]
        self.s1 += tT.sum(1, dtype=np.float64)
        self.s2 += tT @ tT.T
        return self

    def update(self, t: np.ndarray) -> "SecondMoments":
        """Add a block of coordinates given row-wise, shape (n, k)."""
        if t.shape[0] == 0:
            return self
        if self.s1 is None:
            k = t.shape[1]
            self.s1, self.s2 = np.zeros(k), np.zeros((k, k))
        self.n += t.shape[0]
        self.s1 += t.sum(0, dtype=np.float64)
        self.s2 += t.T @ t
        return self

    def merge(self, other: "SecondMoments") -> "SecondMoments":
        if other.n == 0:
            return self
        if self.s1 is None:
            self.s1, self.s2 = other.s1.copy(), other.s2.copy()
        else:
            self.s1 += other.s1
            self.s2 += other.s2
        self.n += other.n
        return self

    def result(self) -> CovarianceResult | None:
        if self.n == 0:
            return None
        m = self.s1 / self.n
        com = self.s2 - self.n * np.outer(m, m)
        return CovarianceResult(self.n, m, (com + com.T) / 2)


def describe(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """var (ddof=0), std, skewness (g1) and excess kurtosis (g2) from central sums."""
    n = c["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = c["m2"] / n if n else np.full_like(c["m2"], np.nan)
        pos = c["m2"] > 0
        skew = np.where(pos, np.sqrt(n) * c["m3"] / np.where(pos, c["m2"], 1.0) ** 1.5, np.nan)
        kurt = np.where(pos, n * c["m4"] / np.where(pos, c["m2"], 1.0) ** 2 - 3.0, np.nan)
    return {"var": var, "std": np.sqrt(var), "skewness": skew, "excess_kurtosis": kurt}


# -- pass 1 ---------------------------------------------------------------------------
@dataclass
class FirstPassResult:
    """What pass 1 found: the covariance, min/max and per-group means."""

    cov: CovarianceResult | None
    n: int
    mean: np.ndarray
    min: np.ndarray
    max: np.ndarray
    group_n: np.ndarray
    group_sum: np.ndarray  # (groups, dim)

    @property
    def group_mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.group_sum / self.group_n[:, None]


class FirstPass:
    """Pass 1: mean and co-moments (float64, Chan merges), min and max, group sums.

    Parameters
    ----------
    covariance : bool, default=True
        Accumulate the co-moment matrix (a float64 GEMM per block); otherwise only
        the sums.
    groups : int, default=1
    """

    def __init__(self, *, covariance: bool = True, groups: int = 1) -> None:
        self.covariance = covariance
        self.groups = groups
        self._cov = Covariance() if covariance else None
        self.n = 0
        self.sum = None
        self.min = None
        self.max = None
        self.group_n = np.zeros(groups, np.int64)
        self.group_sum = None

    def update(self, x: np.ndarray, group: np.ndarray | None = None) -> "FirstPass":
        if x.shape[0] == 0:
            return self
        bmin, bmax = x.min(0).astype(np.float64), x.max(0).astype(np.float64)
        if self.min is None:
            dim = x.shape[1]
            self.min, self.max = bmin, bmax
            self.sum = np.zeros(dim)
            self.group_sum = np.zeros((self.groups, dim))
        else:
            np.minimum(self.min, bmin, out=self.min)
            np.maximum(self.max, bmax, out=self.max)
        self.n += x.shape[0]
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite input is reported by result()
            if self._cov is not None:
                self._cov.update(x)
            else:
                self.sum += x.sum(0, dtype=np.float64)
        if self.groups > 1:
            self._group_sums(x, group)
        else:
            self.group_n[0] += x.shape[0]
        return self

    def _group_sums(self, x: np.ndarray, group: np.ndarray) -> None:
        onehot = np.zeros((self.groups, x.shape[0]))
        onehot[group, np.arange(x.shape[0])] = 1.0
        self.group_n += np.bincount(group, minlength=self.groups)
        self.group_sum += onehot @ x.astype(np.float64)

    def merge(self, other: "FirstPass") -> "FirstPass":
        if other.n == 0:
            return self
        if self.n == 0:
            for k, v in other.__dict__.items():
                setattr(self, k, v.copy() if isinstance(v, np.ndarray) else v)
            if other._cov is not None:
                self._cov = Covariance().merge(other._cov)
            return self
        self.n += other.n
        np.minimum(self.min, other.min, out=self.min)
        np.maximum(self.max, other.max, out=self.max)
        if self._cov is not None:
            self._cov.merge(other._cov)
        else:
            self.sum += other.sum
        self.group_n += other.group_n
        self.group_sum += other.group_sum
        return self

    def result(self) -> FirstPassResult:
        if self.n == 0:
            raise InvalidParameterError("the source has no rows; nothing to analyse.")
        if not (np.isfinite(self.min).all() and np.isfinite(self.max).all()):
            bad = int(np.flatnonzero(~(np.isfinite(self.min) & np.isfinite(self.max)))[0])
            raise NonFiniteError(
                f"the source holds non-finite values (NaN or inf), e.g. in component {bad}; "
                "stores refuse them on append (on_nonfinite='skip' drops such rows)."
            )
        if self._cov is not None:
            cov = self._cov.result()
            mean = cov.mean
        else:
            cov = None
            mean = self.sum / self.n
        group_sum = self.group_sum if self.groups > 1 else (mean * self.n)[None, :]
        return FirstPassResult(cov, self.n, mean, self.min, self.max, self.group_n.copy(), group_sum)


# -- pass 2 ---------------------------------------------------------------------------
@dataclass
class FrameCache:
    """The pieces of a PCA frame used to rotate blocks, in the pass's precision.

    Blocks are centred on ``center`` (the frame mean rounded to the working dtype);
    ``tshift`` corrects the rotated coordinates for that rounding exactly.
    """

    mean: np.ndarray  # float64 (dim,)
    center: np.ndarray  # the mean in the working dtype: the centring reference
    inv_scale: np.ndarray | None
    axes: np.ndarray  # (k, dim) principal axes in the working dtype
    tshift: np.ndarray  # (k,) ((mean - center) / scale) @ axes.T
    inv_var: np.ndarray  # (k,) float64, 1/eigenvalue on the numerical rank, 0 beyond
    rank: int
    dtype: Any = np.float32

    @classmethod
    def from_frame(cls, frame: Any, dtype: Any = np.float32) -> "FrameCache":
        mean = np.asarray(frame.mean_, np.float64)
        c = mean.astype(dtype)
        scale = np.asarray(frame.scale_, np.float64)
        inv_scale = None if np.all(scale == 1.0) else (1.0 / scale).astype(dtype)
        axes = np.asarray(frame.components_, np.float64)
        tshift = ((mean - c.astype(np.float64)) / scale) @ axes.T
        ev = np.asarray(frame.explained_variance_, np.float64)
        rank = numerical_rank(ev)
        inv_var = np.zeros_like(ev)
        inv_var[:rank] = 1.0 / ev[:rank]
        return cls(mean, c, inv_scale, np.ascontiguousarray(axes.astype(dtype)), tshift.astype(dtype), inv_var,
                   rank, dtype)

    @property
    def center32(self) -> np.ndarray:  # kept for callers that centre float32 blocks
        return self.center

    def deviations(self, x: np.ndarray) -> np.ndarray:
        """``x - center`` in the working dtype, shape (n, dim)."""
        if x.dtype == self.dtype:
            return x - self.center
        return x.astype(self.dtype) - self.center

    def rotate(self, d: np.ndarray) -> np.ndarray:
        """PCA coordinates (shape (n, k)) of deviations ``d = x - center`` (n, dim)."""
        if self.inv_scale is not None:
            d = d * self.inv_scale
        t = d @ self.axes.T
        t -= self.tshift
        return t

    def rotate_columns(self, dT: np.ndarray) -> np.ndarray:
        """The same for column-wise deviations (dim, n); returns (k, n)."""
        if self.inv_scale is not None:
            dT = dT * self.inv_scale[:, None]
        t = self.axes @ dT
        t -= self.tshift[:, None]
        return t


def choose_precision(first: Any, frame: Any = None) -> Any:
    """float32 when the data's scales suit it, else float64.

    The float32 block path (fast) needs the per-component ranges within [1e-7, 1e9]
    (so that fourth powers of deviations neither overflow nor underflow) and, with a
    frame, eigenvalues of the numerical rank within a ratio of 1e-6 of the largest
    (so that the float32 rotation error stays well below each axis's spread).
    """
    r = np.asarray(first.max, np.float64) - np.asarray(first.min, np.float64)
    if np.isfinite(r).all():
        r = r[r > 0]
        if r.size and (r.min() < 1e-7 or r.max() > 1e9):
            return np.float64
    if frame is not None:
        ev = np.asarray(frame.explained_variance_, np.float64)
        k = numerical_rank(ev)
        if k:
            sd = np.sqrt(ev[:k])
            if ev[k - 1] / ev[0] < 1e-6 or sd[0] * 10 > 1e9 or sd[k - 1] < 1e-7:
                return np.float64
    return np.float32


def numerical_rank(eigenvalues: np.ndarray) -> int:
    """Number of eigenvalues above ``dim * eps * max``: the directions the data spans."""
    ev = np.asarray(eigenvalues, np.float64)
    if ev.size == 0 or not ev[0] > 0:
        return 0
    tol = ev.size * np.finfo(np.float64).eps * 64 * ev[0]
    return int(np.sum(ev > tol))


@dataclass
class SecondPassResult:
    """What pass 2 accumulated (fields are None when not requested)."""

    raw_hist: FineHistogramResult | None = None
    raw_sums: PowerSums | None = None
    pc_hist: FineHistogramResult | None = None
    pc_sums: PowerSums | None = None
    pc_min: np.ndarray | None = None
    pc_max: np.ndarray | None = None
    radial: dict[str, FineHistogramResult] = field(default_factory=dict)
    radial_sums: dict[str, np.ndarray] = field(default_factory=dict)
    closer_than_origin: dict[str, int] = field(default_factory=dict)
    max_centered_norm: float = 0.0
    raw_pairs: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    pc_pairs: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    projection: FineHistogramResult | None = None
    core: CovarianceResult | None = None
    core_n: int = 0
    n: int = 0
    precision: str = "float32"


@dataclass
class PairSpec:
    """2-D density of component pairs: ranges per component, bins per axis."""

    pairs: Sequence[tuple[int, int]]
    lo: np.ndarray
    hi: np.ndarray
    bins: int = 64


class SecondPass:
    """Pass 2: everything that needs the mean, ranges or PCA frame from pass 1.

    Parameters
    ----------
    first : FirstPassResult
    frame : PCAFrame or None
        Needed for PCA coordinates, Mahalanobis radii and the core step.
    raw_bins : int or None
        Fine bins of the raw-component histograms (ranges: pass 1 min/max); None: none.
    pc_bins : int or None
        Fine bins of the PCA-coordinate histograms (growing ranges); None: none.
    radial : bool
        Histograms of |z|, |z - mean|, Mahalanobis radius.
    raw_pairs, pc_pairs : PairSpec or None
    direction : ndarray of shape (dim,) or None
        Unit vector; histogram of the projections ``(z - mean) . direction`` per group.
    core_threshold : float or None
        Accumulate the covariance (PCA coordinates) of rows with squared Mahalanobis
        radius <= this.
    groups : int
    radial_bins : int
        Fine bins of the radial histograms.
    track_norm : bool
        Track max |z - mean| (for the padding of min/max PCA boxes) even without ``radial``.
    precision : dtype, optional
        Working precision of the block arithmetic; default :func:`choose_precision`.
    """

    def __init__(
        self,
        first: FirstPassResult,
        frame: Any = None,
        *,
        raw_bins: int | None = 4100,
        pc_bins: int | None = 4096,
        radial: bool = True,
        raw_pairs: PairSpec | None = None,
        pc_pairs: PairSpec | None = None,
        direction: np.ndarray | None = None,
        core_threshold: float | None = None,
        groups: int = 1,
        radial_bins: int = 4096,
        track_norm: bool = True,
        precision: Any = None,
        _cache: FrameCache | None = None,
    ) -> None:
        self.first = first
        self.frame = frame
        self.groups = groups
        self.track_norm = track_norm
        dim = first.mean.shape[0]
        self.dim = dim
        if _cache is not None:
            self.cache = _cache
            self.dtype = _cache.dtype
        else:
            self.dtype = np.dtype(precision) if precision is not None else np.dtype(choose_precision(first, frame))
            self.cache = FrameCache.from_frame(frame, self.dtype) if frame is not None else None
        # blocks are centred on the frame mean (or the data mean) rounded to the working dtype;
        # delta = data mean - centre is corrected for exactly
        ref = np.asarray(frame.mean_, np.float64) if frame is not None else first.mean
        self.center = ref.astype(self.dtype)
        self.delta = first.mean - self.center.astype(np.float64)
        need_frame = pc_bins is not None or radial or pc_pairs is not None or core_threshold is not None
        if need_frame and self.cache is None:
            raise InvalidParameterError("SecondPass: a PCA frame is needed for PCA coordinates and radii.")
        self.raw_hist = FineHistogram(first.min, first.max, raw_bins, groups=groups) if raw_bins else None
        self.raw_sums = PowerSums.empty(self.center.astype(np.float64), groups)
        self.pc_hist = None
        self.pc_sums = None
        if pc_bins:
            sd = np.sqrt(np.maximum(np.asarray(frame.explained_variance_, np.float64), 0.0))
            half = 5.0 * np.where(sd > 0, sd, max(float(sd.max()) * 1e-6, 1e-12))
            self.pc_hist = FineHistogram(-half, half, pc_bins, grow=True, groups=groups)
            self.pc_sums = PowerSums.empty(np.zeros(frame.components_.shape[0]), groups)
        self.pc_min = None
        self.pc_max = None
        self.radial = radial
        self.radial_hist: dict[str, FineHistogram] = {}
        self.radial_sums: dict[str, np.ndarray] = {}
        self.closer: dict[str, int] = {"centered": 0, "mahalanobis": 0}
        self.max_cnorm = 0.0
        if radial:
            c = self.cache
            tot = float(np.sum(frame.explained_variance_)) if frame is not None else 1.0
            rc = np.sqrt(max(tot, 1e-300))
            r0 = float(np.linalg.norm(first.mean))
            self.origin_norm = r0
            t0 = (np.asarray(frame.mean_, np.float64) / frame.scale_) @ frame.components_.T  # minus the origin's coordinates
            self.origin_maha = float(np.sqrt(np.sum(t0**2 * c.inv_var)))
            guess = {"origin": (0.0, 2.0 * (rc + r0) + 1e-12), "centered": (0.0, 2.0 * rc + 1e-12),
                     "mahalanobis": (0.0, 2.0 * np.sqrt(max(c.rank, 1)) + 1e-12)}
            for name, (a, b) in guess.items():
                self.radial_hist[name] = FineHistogram(a, b, radial_bins, grow=True, groups=groups)
                self.radial_sums[name] = np.zeros((groups, 2))
        self.raw_pairs = raw_pairs
        self.pc_pairs = pc_pairs
        self.raw_pair_counts = {p: np.zeros((raw_pairs.bins, raw_pairs.bins), np.int64) for p in raw_pairs.pairs} if raw_pairs else {}
        self.pc_pair_counts = {p: np.zeros((pc_pairs.bins, pc_pairs.bins), np.int64) for p in pc_pairs.pairs} if pc_pairs else {}
        self.direction = None if direction is None else np.asarray(direction, np.float64)
        self.projection = None
        if self.direction is not None:
            sd = float(np.sqrt(max(self.direction @ (first.cov.cov(0) if first.cov is not None else np.eye(dim)) @ self.direction, 1e-24)))
            self.projection = FineHistogram(-5 * sd, 5 * sd, 1024, grow=True, groups=groups)
            self.dir_shift = float(self.delta @ self.direction)
            self.dir32 = self.direction.astype(self.dtype)
        self.core_threshold = core_threshold
        self.core = SecondMoments() if core_threshold is not None else None
        self.core_n = 0
        self.n = 0

    # -- per block ----------------------------------------------------------------------
    def update(self, x: np.ndarray, group: np.ndarray | None = None) -> "SecondPass":
        n = x.shape[0]
        if n == 0:
            return self
        self.n += n
        # everything runs column-wise (dim, n): contiguous per-component reductions and
        # cache-friendly histogram counting; one transposed copy per block. Temporaries are
        # dropped as soon as possible to keep the peak memory per block small.
        xT = np.array(x.T, order="C")  # a copy: it is overwritten below
        if self.raw_hist is not None:
            self.raw_hist.update_columns(xT, group)
        if self.raw_pairs:
            self._pairs(xT, self.raw_pairs, self.raw_pair_counts)
        # deviations about the centre (the offset delta to the data mean is corrected exactly)
        if xT.dtype == self.dtype:
            dT = np.subtract(xT, self.center[:, None], out=xT)
        elif self.dtype == np.float64:
            dT = xT.astype(np.float64) - self.center[:, None]
        else:
            dT = (xT - self.center.astype(np.float64)[:, None]).astype(np.float32)
        del xT
        d2 = dT * dT
        self._sums(self.raw_sums, dT, d2, group)
        radial = self.radial or self.track_norm
        if radial:
            s2 = d2.sum(0, dtype=np.float64)  # |x - center|^2
            dot_delta = (self.delta.astype(self.dtype) @ dT).astype(np.float64)
            dot_c = (self.center @ dT).astype(np.float64) if self.radial else None
        del d2
        if self.projection is not None:
            p = (self.dir32 @ dT).astype(np.float64) - self.dir_shift
            self.projection.update_columns(p[None, :], group)
        need_t = self.cache is not None and (self.pc_hist is not None or self.radial or self.pc_pairs
                                             or self.core is not None)
        t = self.cache.rotate_columns(dT) if need_t else None
        del dT
        if self.pc_hist is not None:
            self.pc_hist.update_columns(t, group)
        if self.pc_pairs:
            self._pairs(t, self.pc_pairs, self.pc_pair_counts)
        rm2 = None
        if t is not None:
            t2 = t * t
            if self.pc_hist is not None:
                self._sums(self.pc_sums, t, t2, group)
            if self.radial or self.core is not None:
                rm2 = self.cache.inv_var.astype(self.dtype) @ t2
            del t2
            if self.core is not None:
                keep = rm2 <= self.core_threshold
                self.core_n += int(np.count_nonzero(keep))
                self.core.update_columns(t[:, keep])
        del t
        if radial:
            self._radial(s2, dot_delta, dot_c, rm2, group)
        return self

    def _sums(self, sums: PowerSums, dT: np.ndarray, d2: np.ndarray, group: np.ndarray | None) -> None:
        if self.groups == 1:
            sums.add(dT, d2, 0, axis=1)
            return
        for g in range(self.groups):
            sel = group == g
            if sel.any():
                sums.add(dT[:, sel], d2[:, sel], g, axis=1)

    def _radial(self, s2: np.ndarray, dot_delta: np.ndarray, dot_c: np.ndarray | None, rm2: np.ndarray | None,
                group: np.ndarray | None) -> None:
        """Radii from |x - center|^2 and the dot products of the deviations (all rows of a block)."""
        dshift = self.delta  # data mean - center
        rc2 = np.maximum(s2 - 2.0 * dot_delta + float(dshift @ dshift), 0.0)  # |z - mean|^2
        self.max_cnorm = max(self.max_cnorm, float(np.sqrt(rc2.max())))
        if not self.radial:
            return
        c = self.center.astype(np.float64)
        ro2 = np.maximum(s2 + 2.0 * dot_c + float(c @ c), 0.0)  # |z|^2 = |d + center|^2
        rm2 = np.maximum(rm2.astype(np.float64), 0.0)
        vals = {"origin": np.sqrt(ro2), "centered": np.sqrt(rc2), "mahalanobis": np.sqrt(rm2)}
        self.closer["centered"] += int(np.count_nonzero(vals["centered"] < self.origin_norm))
        self.closer["mahalanobis"] += int(np.count_nonzero(vals["mahalanobis"] < self.origin_maha))
        for name, v in vals.items():
            self.radial_hist[name].update_columns(v[None, :], group)
            acc = self.radial_sums[name]
            if self.groups == 1:
                acc[0, 0] += v.sum()
                acc[0, 1] += (v * v).sum()
            else:
                acc[:, 0] += np.bincount(group, weights=v, minlength=self.groups)
                acc[:, 1] += np.bincount(group, weights=v * v, minlength=self.groups)

    @staticmethod
    def _pairs(xT: np.ndarray, spec: PairSpec, out: dict) -> None:
        """2-D counts of coordinate pairs from a column-wise block (dim, n)."""
        B = spec.bins
        for (i, j) in spec.pairs:
            xi, xj = xT[i], xT[j]
            a = np.floor((xi - spec.lo[i]) * (B / (spec.hi[i] - spec.lo[i]))).astype(np.intp)
            b = np.floor((xj - spec.lo[j]) * (B / (spec.hi[j] - spec.lo[j]))).astype(np.intp)
            a[xi == spec.hi[i]] = B - 1
            b[xj == spec.hi[j]] = B - 1
            ok = (a >= 0) & (a < B) & (b >= 0) & (b < B)
            out[(i, j)] += np.bincount(a[ok] * B + b[ok], minlength=B * B).reshape(B, B)

    # -- merge / result -----------------------------------------------------------------
    def merge(self, other: "SecondPass") -> "SecondPass":
        self.n += other.n
        if self.raw_hist is not None:
            self.raw_hist.merge(other.raw_hist)
        self.raw_sums.merge(other.raw_sums)
        if self.pc_hist is not None:
            self.pc_hist.merge(other.pc_hist)
            self.pc_sums.merge(other.pc_sums)
        for name, h in self.radial_hist.items():
            h.merge(other.radial_hist[name])
            self.radial_sums[name] += other.radial_sums[name]
        for k in self.closer:
            self.closer[k] += other.closer[k]
        self.max_cnorm = max(self.max_cnorm, other.max_cnorm)
        for p in self.raw_pair_counts:
            self.raw_pair_counts[p] += other.raw_pair_counts[p]
        for p in self.pc_pair_counts:
            self.pc_pair_counts[p] += other.pc_pair_counts[p]
        if self.projection is not None:
            self.projection.merge(other.projection)
        if self.core is not None:
            self.core.merge(other.core)
            self.core_n += other.core_n
        return self

    def fork(self) -> "SecondPass":
        """A fresh reducer with the same configuration (for worker threads)."""
        return SecondPass(
            self.first, self.frame,
            raw_bins=self.raw_hist.bins if self.raw_hist is not None else None,
            pc_bins=self.pc_hist.bins if self.pc_hist is not None else None,
            radial=self.radial, raw_pairs=self.raw_pairs, pc_pairs=self.pc_pairs,
            direction=self.direction, core_threshold=self.core_threshold, groups=self.groups,
            radial_bins=next(iter(self.radial_hist.values())).bins if self.radial_hist else 4096,
            track_norm=self.track_norm, precision=self.dtype, _cache=self.cache,
        )

    def result(self) -> SecondPassResult:
        r = SecondPassResult(n=self.n, precision=np.dtype(self.dtype).name)
        if self.raw_hist is not None:
            r.raw_hist = self.raw_hist.result()
        r.raw_sums = self.raw_sums
        if self.pc_hist is not None:
            h = self.pc_hist.result()
            r.pc_hist, r.pc_sums = h, self.pc_sums
            r.pc_min, r.pc_max = h.vmin.min(0), h.vmax.max(0)
        for name, h in self.radial_hist.items():
            r.radial[name] = h.result()
            r.radial_sums[name] = self.radial_sums[name].copy()
        r.closer_than_origin = dict(self.closer)
        r.max_centered_norm = self.max_cnorm
        r.raw_pairs = {p: c.copy() for p, c in self.raw_pair_counts.items()}
        r.pc_pairs = {p: c.copy() for p, c in self.pc_pair_counts.items()}
        if self.projection is not None:
            r.projection = self.projection.result()
        if self.core is not None:
            r.core = self.core.result()
            r.core_n = self.core_n
        return r
