"""Core and outer layers: a robust covariance of the MVN-like core by iterative trimming."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.special import gammainc

from .._validation import check_fraction
from ..exceptions import InvalidParameterError
from ..stream import CovarianceResult
from ._base import Analysis, ProgressFn, check_int, pass_progress
from ._passes import (
    DEFAULT_MAX_BYTES,
    FirstPass,
    FrameCache,
    SecondMoments,
    choose_precision,
    numerical_rank,
    run_pass,
)
from ._pca import PCAFrame
from ._radial import chi2_ppf

__all__ = ["CoreCovariance"]


class _CorePass:
    """One trimming step: covariance of the rows inside the radius, outer-layer sums."""

    def __init__(self, cache: FrameCache, threshold: float, extra: Any = None) -> None:
        self.cache = cache
        self.threshold = threshold
        self.inv_var = cache.inv_var.astype(cache.dtype)
        self.cov = SecondMoments()
        self.n = 0
        self.kept = 0
        k = cache.axes.shape[0]
        self.out_n = 0
        self.out_s = np.zeros((3, k))
        self.out_pos = np.zeros(k, np.int64)
        self.extra = extra

    def update(self, x: np.ndarray, group: Any = None) -> "_CorePass":
        self.n += x.shape[0]
        t = self.cache.rotate(self.cache.deviations(x))
        t2 = np.square(t)
        keep = (t2 @ self.inv_var) <= self.threshold
        del t2  # temporaries are dropped early: peak memory per block stays small
        nk = int(np.count_nonzero(keep))
        self.kept += nk
        if nk:
            self.cov.update(t[keep])
        if nk < x.shape[0]:
            to = t[~keep].astype(np.float64)
            self.out_n += to.shape[0]
            to2 = to * to
            self.out_s[0] += to.sum(0)
            self.out_s[1] += to2.sum(0)
            self.out_s[2] += (to2 * to).sum(0)
            self.out_pos += np.count_nonzero(to > 0, axis=0)
            del to, to2
        del t
        if self.extra is not None:
            self.extra.update(x)
        return self

    def merge(self, other: "_CorePass") -> "_CorePass":
        self.n += other.n
        self.kept += other.kept
        self.cov.merge(other.cov)
        self.out_n += other.out_n
        self.out_s += other.out_s
        self.out_pos += other.out_pos
        if self.extra is not None and other.extra is not None:
            self.extra.merge(other.extra)
        return self


def _frame(mean: np.ndarray, cov: np.ndarray, n: int) -> PCAFrame:
    return PCAFrame().fit_covariance(CovarianceResult(int(n), mean, cov * (n - 1)))


class CoreCovariance(Analysis):
    """Robust covariance of the core of the cloud, by iterative trimming.

    Start from the full mean and covariance; in each iteration keep the rows whose
    squared Mahalanobis radius under the current estimate is at most
    ``c = chi2_ppf(trim, r)`` (r = numerical rank) and refit mean and covariance
    from them, scaled by the consistency factor ``trim / P(chi2_{r+2} <= c)`` so that
    a true multivariate normal is a fixed point (the kept fraction is then ``trim``).
    Stop when the relative change of the covariance (Frobenius) and the shift of the
    mean (Mahalanobis units) are below ``tol``, or after ``max_iter`` iterations.

    Every iteration is one extra streaming pass (after the pass that gives the full
    covariance); :func:`analyze` folds the first iteration into its second pass.
    The rows outside the final radius form the outer layers; their asymmetry is
    measured along each principal axis of the core.

    Parameters
    ----------
    trim : float, default=0.9
        Nominal kept fraction (chi-square probability of the radius).
    max_iter : int, default=10
    tol : float, default=1e-3
    max_bytes : int, default=4 MiB
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
        Squared-radius cut c.
    consistency_factor_ : float
    n_iter_ : int
        Trimming iterations done (= extra passes, minus one when folded into pass 2).
    converged_ : bool
    core_fraction_ : float
        Fraction of rows inside the radius in the last pass.
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
    _params = ("trim", "max_iter", "tol", "max_bytes", "n_threads")
    _arrays = ("mean", "covariance", "full_mean", "full_eigenvalues", "core_eigenvalues", "eigenvalue_ratio",
               "outer_asymmetry", "outer_skewness")
    _scalars = ("n_samples_seen", "rank", "mean_shift", "threshold", "consistency_factor", "n_iter", "converged",
                "core_fraction", "outer_fraction", "history", "n_passes")

    def __init__(self, *, trim: float = 0.9, max_iter: int = 10, tol: float = 1e-3,
                 max_bytes: int = DEFAULT_MAX_BYTES, n_threads: int = 1) -> None:
        self.trim = trim
        self.max_iter = max_iter
        self.tol = tol
        self.max_bytes = max_bytes
        self.n_threads = n_threads

    def _validate(self) -> None:
        check_fraction(self.trim, "trim", owner="CoreCovariance")
        check_int(self.max_iter, "max_iter", "CoreCovariance", 1)
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
        self.rank_ = rank
        self.n_samples_seen_ = int(n)
        self._full = full
        self.full_mean_ = full.mean_.copy()
        self.full_eigenvalues_ = full.explained_variance_.copy()
        self.threshold_ = chi2_ppf(float(self.trim), rank)
        self.consistency_factor_ = float(self.trim / gammainc((rank + 2) / 2.0, self.threshold_ / 2.0))
        self._mean, self._cov = full.mean_.copy(), full.covariance_.copy()
        self._current = full
        self.history_ = []
        self.n_iter_ = 0
        self.n_passes_ = 1
        self.converged_ = False
        self._outer = None

    def _step(self, kept: int, n: int, res: CovarianceResult | None) -> bool:
        """Update from the kept rows (coordinates in the current frame); True when converged."""
        if res is None or kept < 2:
            raise InvalidParameterError(
                f"CoreCovariance: only {kept} of {n} rows lie inside the trimming radius; raise trim.")
        frame = self._current
        new_mean = frame.mean_ + res.mean @ frame.components_
        new_cov = self.consistency_factor_ * (frame.components_.T @ res.cov(ddof=1) @ frame.components_)
        new_cov = (new_cov + new_cov.T) / 2
        norm = np.linalg.norm(self._cov)
        change = float(np.linalg.norm(new_cov - self._cov) / norm) if norm > 0 else 0.0
        dm = (new_mean - self._mean) @ frame.components_.T
        r = numerical_rank(frame.explained_variance_)  # the current estimate may have lost rank
        shift = float(np.sqrt(np.sum(dm[:r] ** 2 / frame.explained_variance_[:r])))
        self.n_iter_ += 1
        self.history_.append({"iteration": self.n_iter_, "kept_fraction": kept / n, "cov_change": change,
                              "mean_shift": shift})
        self.core_fraction_ = kept / n
        self._mean, self._cov = new_mean, new_cov
        self._current = _frame(new_mean, new_cov, kept)
        return change < self.tol and shift < self.tol

    def _from_second(self, full: PCAFrame, n: int, kept: int, res: CovarianceResult | None,
                     precision: Any = np.float32) -> None:
        """First iteration from the core accumulation of :class:`SecondPass` (analyze)."""
        self._start(full, n, precision)
        self.converged_ = self._step(kept, n, res)

    def _iterate(self, source: Any, *, progress: ProgressFn | None = None, extra_factory: Callable | None = None,
                 first_pass_index: int = 3) -> Any:
        """Run trimming passes until convergence; ``extra_factory`` rides on the first pass."""
        extra_result = None
        k = first_pass_index
        while True:
            # the last pass (converged or at max_iter) still measures the outer layers
            cache = FrameCache.from_frame(self._current, self._dtype)
            use_extra = extra_factory is not None and extra_result is None

            def make(cache=cache, use_extra=use_extra) -> _CorePass:
                return _CorePass(cache, self.threshold_, extra_factory() if use_extra else None)

            cp = run_pass(source, make, max_bytes=self.max_bytes, progress=pass_progress(progress, f"pass {k}"),
                          n_threads=self.n_threads)
            self.n_passes_ += 1
            k += 1
            if use_extra:
                extra_result = cp.extra
            frame_used = self._current
            if self.converged_ or self.n_iter_ >= self.max_iter:
                self._finish(cp, frame_used)
                break
            self.converged_ = self._step(cp.kept, cp.n, cp.cov.result())
            if self.converged_ or self.n_iter_ >= self.max_iter:
                self._finish(cp, frame_used)
                break
        return extra_result

    def _finish(self, cp: _CorePass, frame_used: PCAFrame) -> None:
        n = cp.n
        self.core_fraction_ = cp.kept / n if n else float("nan")
        self.outer_fraction_ = cp.out_n / n if n else float("nan")
        dim = frame_used.components_.shape[0]
        if cp.out_n:
            m2 = cp.out_s[1] / cp.out_n
            m3 = cp.out_s[2] / cp.out_n
            with np.errstate(invalid="ignore", divide="ignore"):
                self.outer_skewness_ = np.where(m2 > 0, m3 / np.where(m2 > 0, m2, 1) ** 1.5, np.nan)
            self.outer_asymmetry_ = (2 * cp.out_pos - cp.out_n) / cp.out_n
        else:
            self.outer_skewness_ = np.full(dim, np.nan)
            self.outer_asymmetry_ = np.full(dim, np.nan)
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
