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

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..exceptions import InvalidParameterError, NonFiniteError
from ..stream import Covariance, CovarianceResult
from ._frame import FrameCache, choose_precision, numerical_rank
from ._quantiles import FineHistogram, FineHistogramResult
from ._sums import PowerSums, SecondMoments, describe

__all__ = ["FirstPass", "FirstPassResult", "SecondPass", "SecondPassResult", "PairSpec",
           # re-exported helpers of the passes
           "FrameCache", "choose_precision", "numerical_rank",
           "PowerSums", "SecondMoments", "describe"]


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
