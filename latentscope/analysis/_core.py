"""Core and outer layers: a robust covariance of the MVN-like core with a fixed kept share.

The estimate follows the concentration steps ("C-steps") of the Minimum Covariance
Determinant (Rousseeuw and Van Driessen 1999): keep the h = ``trim * n`` rows of
smallest Mahalanobis radius under the current mean and covariance, refit mean and
covariance from exactly those rows, repeat until the kept set stops moving. Each
C-step cannot increase the determinant of the kept rows' covariance, and the kept
share stays ``trim`` whatever the tails do. (Trimming at a fixed chi-square radius
instead lets the kept share shrink at every step on heavy tails: on a multivariate t
with 5 dof it ended at 17 %.)

Streaming: one pass per C-step. The h-th smallest radius under the current estimate
is predicted from a systematic subsample of up to 20,000 rows held in memory;
the pass accumulates the co-moments of the rows inside, and of 24 thin shells of
0.25 % of the rows each around the prediction, so that the refit keeps the
h rows up to half a shell (0.125 % of n).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
from scipy.special import gammainc

from .._validation import check_fraction, check_positive
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, CovarianceResult, as_zsource, run_pass
from ._base import Analysis, ProgressFn, pass_progress
from ._passes import FirstPass, FrameCache, SecondMoments, choose_precision, numerical_rank
from ._pca import PCAFrame
from ._radial import chi2_ppf

__all__ = ["CoreCovariance", "CoreConvergenceWarning"]

#: Rows of the systematic subsample that predicts the kept radius.
_SUBSAMPLE = 20_000
#: Shells (probability offsets from ``trim``) accumulated around the predicted radius.
_SHELLS = np.linspace(-0.03, 0.03, 25)


class CoreConvergenceWarning(RuntimeWarning):
    """The core covariance stopped at ``max_iter`` before its C-steps reached a fixed point."""


class _CStepPass:
    """One C-step: co-moments of the rows inside the predicted radius and of thin shells around it."""

    def __init__(self, cache: FrameCache, edges: np.ndarray, extra: Any = None) -> None:
        self.cache = cache
        self.edges = np.asarray(edges, np.float64)  # increasing squared radii; bins [0,e0), [e0,e1), ..., [eB, inf)
        nb = self.edges.size + 1
        self.inv_var = cache.inv_var.astype(cache.dtype)
        self.covs = [SecondMoments() for _ in range(nb - 1)]  # the last bin is never kept
        self.counts = np.zeros(nb, np.int64)
        k = cache.axes.shape[0]
        self.out_s = np.zeros((nb, 3, k))
        self.out_pos = np.zeros((nb, k), np.int64)
        self.n = 0
        self.extra = extra

    def update(self, x: np.ndarray, group: Any = None) -> "_CStepPass":
        self.n += x.shape[0]
        t = self.cache.rotate(self.cache.deviations(x))
        d2 = np.square(t) @ self.inv_var
        b = np.searchsorted(self.edges, d2, side="right")
        self.counts += np.bincount(b, minlength=self.counts.size)
        for j in np.unique(b):
            rows = t[b == j]
            if j < len(self.covs):
                self.covs[j].update(rows)
            if j > 0:  # a possible outer row: keep its sums along the core axes
                to = rows.astype(np.float64)
                to2 = to * to
                self.out_s[j, 0] += to.sum(0)
                self.out_s[j, 1] += to2.sum(0)
                self.out_s[j, 2] += (to2 * to).sum(0)
                self.out_pos[j] += np.count_nonzero(to > 0, axis=0)
        del t
        if self.extra is not None:
            self.extra.update(x)
        return self

    def merge(self, other: "_CStepPass") -> "_CStepPass":
        self.n += other.n
        self.counts += other.counts
        for a, b in zip(self.covs, other.covs):
            a.merge(b)
        self.out_s += other.out_s
        self.out_pos += other.out_pos
        if self.extra is not None and other.extra is not None:
            self.extra.merge(other.extra)
        return self

    def select(self, h: int) -> tuple[int, CovarianceResult | None, int, np.ndarray, np.ndarray]:
        """Keep the bins whose cumulative count is nearest ``h``; (kept, moments, n_out, out_sums, out_pos)."""
        cum = np.cumsum(self.counts[:-1])
        j = int(np.argmin(np.abs(cum - h)))  # keep bins 0..j
        acc = SecondMoments()
        for c in self.covs[: j + 1]:
            acc.merge(c)
        out_s = self.out_s[j + 1:].sum(0)
        out_pos = self.out_pos[j + 1:].sum(0)
        return int(cum[j]), acc.result(), int(self.counts[j + 1:].sum()), out_s, out_pos


def _frame(mean: np.ndarray, cov: np.ndarray, n: int) -> PCAFrame:
    return PCAFrame().fit_covariance(CovarianceResult(int(n), mean, cov * (n - 1)))


class CoreCovariance(Analysis):
    """Robust covariance of the core of the cloud: C-steps with a fixed kept share.

    Start from the full mean and covariance; each iteration keeps the
    ``h = trim * n`` rows of smallest Mahalanobis radius under the current
    estimate and refits mean and covariance (ddof=1) from exactly those rows (the
    concentration step of the Minimum Covariance Determinant). The covariance is
    scaled by the chi-square consistency factor ``a / P(chi2_{r+2} <= chi2_r^-1(a))``
    at the kept share a (r = numerical rank), which makes a normal cloud a fixed
    point with the right scale for n -> infinity, and, once converged, by the
    small-sample correction ``q_{a/2}(d^2) / chi2_r^-1(a/2)``: the median squared
    radius of the kept rows against the value a normal law gives it (FastMCD
    corrects with the median of all rows; the kept rows' median stays valid when up
    to 1 - a of the rows are outliers). The kept rows fitted the estimate, so their
    radii are in-sample and the asymptotic factor alone is slightly off at finite
    n. On a heavy-tailed cloud this second factor also matches the core's radii to
    those of a normal law with this covariance (``mvn`` samples then land at the
    data's typical radius). Iterate until the relative change of
    the covariance (Frobenius) and the shift of the mean (Mahalanobis units) are
    below ``tol``; after ``max_iter`` iterations without that, warn
    (:class:`CoreConvergenceWarning`) and leave ``converged_ = False``.

    Why C-steps and not an M-estimator: the kept share is fixed by construction
    (the failure of radius trimming on heavy tails was a shrinking share); the
    estimate is affine equivariant, assumes no tail model, needs only co-moment
    sums per streaming pass, and keeps "core" and "outer layers" a hard split whose
    outer rows can be described (their asymmetry). Tyler's M-estimator gives the
    shape only (no scale) and a multivariate-t fit assumes symmetric elliptical
    tails; the outer layers of AE latents are asymmetric.

    Every iteration is one streaming pass (after the pass that gives the full
    covariance); :func:`analyze` folds a first, radius-trimmed start into its
    second pass. The rows outside the final radius form the outer layers; their
    asymmetry is measured along each principal axis of the core.

    Parameters
    ----------
    trim : float, default=0.9
        Kept share h / n.
    max_iter : int, default=10
    tol : float, default=1e-3
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
    n_threads : int, default=1

    Attributes
    ----------
    mean_ : ndarray of shape (dim,)
    covariance_ : ndarray of shape (dim, dim)
    frame_ : PCAFrame
        Principal axes of the core covariance.
    full_mean_ : ndarray of shape (dim,)
    full_eigenvalues_, core_eigenvalues_ : ndarray of shape (dim,)
        Descending eigenvalues of the full and the core covariance.
    eigenvalue_ratio_ : ndarray of shape (dim,)
        ``core_eigenvalues_ / full_eigenvalues_`` (rank by rank).
    mean_shift_ : float
        Mahalanobis distance (full covariance) between the full and the core mean.
    threshold_ : float
        Squared radius of the kept rows in the last pass (under the estimate before it).
    consistency_factor_ : float
        The chi-square factor at the kept share.
    small_sample_factor_ : float
        ``q_{a/2}(d^2) / chi2_r^-1(a/2)`` under the converged estimate (on the
        subsample); 1 when not converged.
    n_iter_ : int
        Iterations done (= extra passes, minus one when folded into pass 2).
    converged_ : bool
    core_fraction_ : float
        Share of rows kept in the last pass (``trim`` to within 0.2 %).
    history_ : list of dict
        Per iteration: kept fraction and change.
    outer_fraction_ : float
    outer_asymmetry_ : ndarray of shape (dim,)
        Per core axis, ``(n_plus - n_minus) / n_outer`` of the outer rows' signs.
    outer_skewness_ : ndarray of shape (dim,)
        Per core axis, the skewness of the outer rows' coordinates about the core
        mean, ``E[t^3] / E[t^2]^(3/2)``.
    n_samples_seen_ : int
    """

    _kind = "CoreCovariance"
    _arrays = ("mean", "covariance", "full_mean", "full_eigenvalues", "core_eigenvalues", "eigenvalue_ratio",
               "outer_asymmetry", "outer_skewness")
    _scalars = ("n_samples_seen", "rank", "mean_shift", "threshold", "consistency_factor", "small_sample_factor",
                "n_iter", "converged", "core_fraction", "outer_fraction", "history", "n_passes")

    def __init__(self, *, trim: float = 0.9, max_iter: int = 10, tol: float = 1e-3,
                 max_bytes: int = DEFAULT_MAX_BYTES, n_threads: int = 1) -> None:
        self.trim = trim
        self.max_iter = max_iter
        self.tol = tol
        self.max_bytes = max_bytes
        self.n_threads = n_threads

    def _validate(self) -> None:
        check_fraction(self.trim, "trim", owner="CoreCovariance")
        check_positive(self.max_iter, "max_iter", owner="CoreCovariance", integer=True, minimum=1)
        if not (isinstance(self.tol, (int, float, np.floating)) and self.tol > 0):
            raise InvalidParameterError(f"CoreCovariance: tol must be a number > 0; got {self.tol!r}.")

    def fit(self, source: Any, *, progress: ProgressFn | None = None) -> "CoreCovariance":
        """Fit from a :class:`~latentscope.store.ZStore` or an array of shape (n, dim)."""
        self._validate()
        first = run_pass(source, FirstPass, max_bytes=self.max_bytes, progress=pass_progress(progress, "pass 1"),
                         n_threads=self.n_threads).result()
        if first.n < 2:
            raise InvalidParameterError(f"CoreCovariance: at least 2 rows are needed; the source has {first.n}.")
        full = PCAFrame().fit_covariance(first.cov)
        self._start(full, first.n, choose_precision(first, full))
        self._iterate(source, progress=progress, first_pass_index=2)
        return self

    # -- steps --------------------------------------------------------------------------
    def _start(self, full: PCAFrame, n: int, precision: Any = np.float32) -> None:
        self._validate()
        self._dtype = np.dtype(precision)
        rank = numerical_rank(full.explained_variance_)
        if rank == 0:
            raise InvalidParameterError("CoreCovariance: the data has no variance; there is no core to fit.")
        h = int(round(float(self.trim) * n))
        if h < 2:
            raise InvalidParameterError(f"CoreCovariance: trim * n must keep at least 2 rows; got {self.trim} * {n}.")
        self.rank_ = rank
        self.n_samples_seen_ = int(n)
        self._h = h
        self._full = full
        self.full_mean_ = full.mean_.copy()
        self.full_eigenvalues_ = full.explained_variance_.copy()
        self.threshold_ = chi2_ppf(float(self.trim), rank)
        self.consistency_factor_ = self._consistency(float(self.trim))
        self.small_sample_factor_ = 1.0
        self._mean, self._cov = full.mean_.copy(), full.covariance_.copy()
        self._current = full
        self.history_ = []
        self.n_iter_ = 0
        self.n_passes_ = 1
        self.converged_ = False
        self._subsample = None

    def _consistency(self, share: float) -> float:
        c = chi2_ppf(share, self.rank_)
        return float(share / gammainc((self.rank_ + 2) / 2.0, c / 2.0))

    def _step(self, kept: int, n: int, res: CovarianceResult | None, *, c_step: bool = True) -> bool:
        """Update from the kept rows (coordinates in the current frame); True when converged."""
        if res is None or kept < 2:
            raise InvalidParameterError(
                f"CoreCovariance: only {kept} of {n} rows lie inside the trimming radius; raise trim.")
        frame = self._current
        share = kept / n
        self.consistency_factor_ = self._consistency(min(max(share, 1e-6), 1 - 1e-9))
        new_mean = frame.mean_ + res.mean @ frame.components_
        new_cov = self.consistency_factor_ * (frame.components_.T @ res.cov(ddof=1) @ frame.components_)
        new_cov = (new_cov + new_cov.T) / 2
        norm = np.linalg.norm(self._cov)
        change = float(np.linalg.norm(new_cov - self._cov) / norm) if norm > 0 else 0.0
        dm = (new_mean - self._mean) @ frame.components_.T
        r = numerical_rank(frame.explained_variance_)  # the current estimate may have lost rank
        shift = float(np.sqrt(np.sum(dm[:r] ** 2 / frame.explained_variance_[:r])))
        self.n_iter_ += 1
        self.history_.append({"iteration": self.n_iter_, "kept_fraction": share, "cov_change": change,
                              "mean_shift": shift, "c_step": bool(c_step)})
        self.core_fraction_ = share
        self._mean, self._cov = new_mean, new_cov
        self._current = _frame(new_mean, new_cov, kept)
        return c_step and change < self.tol and shift < self.tol and abs(share - float(self.trim)) <= 0.01

    def _from_second(self, full: PCAFrame, n: int, kept: int, res: CovarianceResult | None,
                     precision: Any = np.float32) -> None:
        """A radius-trimmed start from the core accumulation of :class:`SecondPass` (analyze)."""
        self._start(full, n, precision)
        self._step(kept, n, res, c_step=False)

    def _subsample_d2(self, source: Any) -> np.ndarray:
        """Squared radii of the systematic subsample under the current estimate."""
        if self._subsample is None:
            n = self.n_samples_seen_
            m = min(n, _SUBSAMPLE)
            rows = np.unique((np.arange(m) * (n / m)).astype(np.int64))
            self._subsample = as_zsource(source, owner="CoreCovariance").take(rows).astype(np.float32)
        cache = FrameCache.from_frame(self._current, self._dtype)
        out = []
        for lo in range(0, self._subsample.shape[0], 2048):  # small temporaries: peak memory stays low
            t = cache.rotate(cache.deviations(self._subsample[lo : lo + 2048]))
            out.append(np.square(t, dtype=np.float64) @ cache.inv_var)
        return np.concatenate(out)

    def _edges(self, source: Any) -> np.ndarray:
        d2 = self._subsample_d2(source)
        probs = np.clip(float(self.trim) + _SHELLS, 0.5 / d2.size, 1 - 0.5 / d2.size)
        return np.unique(np.quantile(d2, probs))

    def _iterate(self, source: Any, *, progress: ProgressFn | None = None, extra_factory: Callable | None = None,
                 first_pass_index: int = 3) -> Any:
        """Run C-step passes until convergence; ``extra_factory`` rides on the first pass."""
        extra_result = None
        k = first_pass_index
        while True:
            cache = FrameCache.from_frame(self._current, self._dtype)
            edges = self._edges(source)
            use_extra = extra_factory is not None and extra_result is None

            def make(cache=cache, edges=edges, use_extra=use_extra) -> _CStepPass:
                return _CStepPass(cache, edges, extra_factory() if use_extra else None)

            cp = run_pass(source, make, max_bytes=self.max_bytes, progress=pass_progress(progress, f"pass {k}"),
                          n_threads=self.n_threads)
            self.n_passes_ += 1
            k += 1
            if use_extra:
                extra_result = cp.extra
            frame_used = self._current
            kept, res, n_out, out_s, out_pos = cp.select(self._h)
            j = int(np.searchsorted(np.cumsum(cp.counts[:-1]), kept))
            self.threshold_ = float(cp.edges[min(j, cp.edges.size - 1)])
            self.converged_ = self._step(kept, cp.n, res)
            if self.converged_ or self.n_iter_ >= self.max_iter:
                self._finish(cp.n, kept, n_out, out_s, out_pos, frame_used, source)
                break
        return extra_result

    def _finish(self, n: int, kept: int, n_out: int, out_s: np.ndarray, out_pos: np.ndarray,
                frame_used: PCAFrame, source: Any) -> None:
        self.core_fraction_ = kept / n if n else float("nan")
        self.outer_fraction_ = n_out / n if n else float("nan")
        dim = frame_used.components_.shape[0]
        if n_out:
            m2 = out_s[1] / n_out
            m3 = out_s[2] / n_out
            with np.errstate(invalid="ignore", divide="ignore"):
                self.outer_skewness_ = np.where(m2 > 0, m3 / np.where(m2 > 0, m2, 1) ** 1.5, np.nan)
            self.outer_asymmetry_ = (2 * out_pos - n_out) / n_out
        else:
            self.outer_skewness_ = np.full(dim, np.nan)
            self.outer_asymmetry_ = np.full(dim, np.nan)
        if self.converged_:
            # the median radius of the kept rows (the a/2 quantile of all rows) against the chi-square's
            a = self.core_fraction_
            d2 = self._subsample_d2(source)
            self.small_sample_factor_ = float(np.quantile(d2, a / 2) / chi2_ppf(a / 2, self.rank_))
            self._cov = self._cov * self.small_sample_factor_
            self._current = _frame(self._mean, self._cov, kept)
        else:
            warnings.warn(
                f"CoreCovariance: the C-steps did not reach a fixed point in max_iter={self.max_iter} iterations "
                f"(last covariance change {self.history_[-1]['cov_change']:.2g}, kept {self.core_fraction_:.1%}); "
                f"converged_ is False. Raise max_iter or tol.", CoreConvergenceWarning, stacklevel=3)
        self._subsample = None
        self.mean_ = self._mean
        self.covariance_ = self._cov
        self.frame_ = self._current
        self.core_eigenvalues_ = self.frame_.explained_variance_.copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            self.eigenvalue_ratio_ = np.where(self.full_eigenvalues_ > 0, self.core_eigenvalues_ / self.full_eigenvalues_, np.nan)
        dm = (self.mean_ - self.full_mean_) @ self._full.components_.T
        r = self.rank_
        self.mean_shift_ = float(np.sqrt(np.sum(dm[:r] ** 2 / self.full_eigenvalues_[:r])))

    def summary(self) -> dict[str, Any]:
        self._check_fitted()
        ratio = self.eigenvalue_ratio_[np.isfinite(self.eigenvalue_ratio_)]
        return {
            "trim": self.trim, "rank": self.rank_, "n_iter": self.n_iter_, "converged": bool(self.converged_),
            "n_passes": self.n_passes_, "core_fraction": self.core_fraction_, "outer_fraction": self.outer_fraction_,
            "threshold_squared_radius": self.threshold_, "consistency_factor": self.consistency_factor_,
            "small_sample_factor": self.small_sample_factor_,
            "trace_ratio": float(np.trace(self.covariance_) / max(float(np.sum(self.full_eigenvalues_)), 1e-300)),
            "mean_shift_mahalanobis": self.mean_shift_,
            "eigenvalue_ratio_first": float(ratio[0]) if ratio.size else float("nan"),
            "eigenvalue_ratio_median": float(np.median(ratio)) if ratio.size else float("nan"),
            "outer_asymmetry_max_abs": float(np.nanmax(np.abs(self.outer_asymmetry_))) if np.isfinite(self.outer_asymmetry_).any() else float("nan"),
            "history": self.history_,
        }

    def _restore(self, scalars: dict, arrays: dict) -> None:
        for k in ("n_samples_seen", "rank", "n_iter", "n_passes"):
            setattr(self, k + "_", int(getattr(self, k + "_")))
        self.converged_ = bool(self.converged_)
        self.frame_ = _frame(self.mean_, self.covariance_, max(self.n_samples_seen_, 2))
