"""Linear correlations between components: covariance, Pearson matrix, ellipses."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_positive
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, CovarianceResult, run_pass
from ._base import Analysis, ProgressFn, pairs_from_key, pairs_to_key, pass_progress
from ._components import check_pairs, pair_density
from ._passes import FirstPass, FirstPassResult, PairSpec, SecondPass, SecondPassResult

__all__ = ["Correlations", "confidence_ellipse", "chi2_2_radius"]

#: Confidence levels of the ellipses drawn by default.
DEFAULT_ELLIPSE_LEVELS = (0.68, 0.95, 0.99)


def chi2_2_radius(p: Any) -> np.ndarray:
    """Radius ``k`` of the p-level confidence ellipse of a 2-D normal: ``sqrt(-2 ln(1 - p))``."""
    p = np.asarray(p, dtype=np.float64)
    return np.sqrt(-2.0 * np.log1p(-p))


def confidence_ellipse(mean: Any, cov: Any, levels: Any = DEFAULT_ELLIPSE_LEVELS) -> dict[str, Any]:
    """Confidence ellipses of a bivariate normal.

    Parameters
    ----------
    mean : array-like of shape (2,)
    cov : array-like of shape (2, 2)
    levels : sequence of float in (0, 1)

    Returns
    -------
    dict with ``mean``, ``cov``, ``levels``, ``angle_deg`` (inclination of the major
    axis against the first coordinate axis, in (-90, 90]), ``eigenvalues`` (major,
    minor), ``semi_axes`` (shape (n_levels, 2): major, minor) and ``correlation``.
    """
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    lv = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if np.any((lv <= 0) | (lv >= 1)):
        raise InvalidParameterError(f"confidence_ellipse: levels must lie in (0, 1); got {levels!r}.")
    evals, evecs = np.linalg.eigh(cov)
    evals = np.clip(evals[::-1], 0.0, None)
    major = evecs[:, 1]
    angle = float(np.degrees(np.arctan2(major[1], major[0])))
    if angle <= -90:
        angle += 180
    elif angle > 90:
        angle -= 180
    k = chi2_2_radius(lv)
    semi = k[:, None] * np.sqrt(evals)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    return {"mean": mean, "cov": cov, "levels": lv, "angle_deg": angle, "eigenvalues": evals,
            "semi_axes": semi, "correlation": float(r)}


class Correlations(Analysis):
    """Covariance and Pearson correlation matrices, |r| distribution, top pairs, ellipses.

    Pass 1 gives the matrices. When pairs are to be drawn (``pairs`` or
    ``n_pairs > 0``) pass 2 records their 2-D densities; the bivariate-normal
    confidence ellipses and their inclination angles come from the covariance.

    Parameters
    ----------
    pairs : sequence of (i, j), optional
        Component pairs for densities and ellipses; default: the ``n_pairs`` most
        correlated pairs.
    n_pairs : int, default=4
    n_top : int, default=20
        Number of most correlated pairs listed in ``top_pairs_``.
    levels : sequence of float, default=(0.68, 0.95, 0.99)
        Ellipse confidence levels.
    density_bins : int, default=64
    abs_bins : int, default=50
        Bins of the |r| histogram on [0, 1].
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
    n_threads : int, default=1

    Attributes
    ----------
    n_samples_seen_ : int
    mean_ : ndarray of shape (dim,)
    covariance_ : ndarray of shape (dim, dim)
        ddof=1, as numpy.cov.
    correlation_ : ndarray of shape (dim, dim)
        Pearson r; rows and columns of zero-variance components are NaN.
    abs_r_edges_, abs_r_counts_ : ndarray
        Histogram of |r| over the pairs i < j.
    abs_r_mean_, abs_r_median_, abs_r_max_ : float
    top_pairs_ : ndarray of shape (n_top, 2)
    top_r_ : ndarray of shape (n_top,)
    pairs_ : ndarray of shape (n_pairs, 2)
    ellipses_ : list of dict
        :func:`confidence_ellipse` of each pair.
    pair_density_ : dict of (i, j) -> (xedges, yedges, counts)
    """

    _kind = "Correlations"
    _arrays = ("mean", "covariance", "correlation", "abs_r_edges", "abs_r_counts", "top_pairs", "top_r", "pairs")
    _scalars = ("n_samples_seen", "abs_r_mean", "abs_r_median", "abs_r_max")

    def __init__(self, *, pairs: Any = None, n_pairs: int = 4, n_top: int = 20,
                 levels: Any = DEFAULT_ELLIPSE_LEVELS, density_bins: int = 64, abs_bins: int = 50,
                 max_bytes: int = DEFAULT_MAX_BYTES, n_threads: int = 1) -> None:
        self.pairs = pairs
        self.n_pairs = n_pairs
        self.n_top = n_top
        self.levels = levels
        self.density_bins = density_bins
        self.abs_bins = abs_bins
        self.max_bytes = max_bytes
        self.n_threads = n_threads

    def _validate(self) -> None:
        check_positive(self.n_pairs, "n_pairs", owner="Correlations", integer=True, minimum=0)
        check_positive(self.n_top, "n_top", owner="Correlations", integer=True, minimum=0)
        check_positive(self.density_bins, "density_bins", owner="Correlations", integer=True, minimum=2)
        check_positive(self.abs_bins, "abs_bins", owner="Correlations", integer=True, minimum=1)
        lv = np.atleast_1d(np.asarray(self.levels, dtype=np.float64))
        if np.any((lv <= 0) | (lv >= 1)):
            raise InvalidParameterError(f"Correlations: levels must lie in (0, 1); got {self.levels!r}.")

    def fit(self, source: Any, *, progress: ProgressFn | None = None) -> "Correlations":
        """Fit from a :class:`~latentscope.store.ZStore` or an array of shape (n, dim)."""
        self._validate()
        first = run_pass(source, FirstPass, max_bytes=self.max_bytes, progress=pass_progress(progress, "pass 1"),
                         n_threads=self.n_threads).result()
        self._from_first(first)
        spec = self.pair_spec(first)
        if spec is not None:
            sp = SecondPass(first, None, raw_bins=None, pc_bins=None, radial=False, raw_pairs=spec, track_norm=False)
            second = run_pass(source, sp.fork, max_bytes=self.max_bytes, progress=pass_progress(progress, "pass 2"),
                              n_threads=self.n_threads).result()
            self._from_second(second, spec)
        return self

    def _from_first(self, first: FirstPassResult) -> "Correlations":
        """Matrices, |r| distribution, top pairs and ellipses from pass 1."""
        self._validate()
        cov_res: CovarianceResult = first.cov
        if first.n < 2:
            raise InvalidParameterError(f"Correlations: at least 2 rows are needed; the source has {first.n}.")
        dim = cov_res.mean.shape[0]
        self.n_samples_seen_ = int(first.n)
        self.mean_ = cov_res.mean.copy()
        self.covariance_ = cov_res.cov(ddof=1)
        self.correlation_ = cov_res.corr()
        iu = np.triu_indices(dim, 1)
        r = self.correlation_[iu]
        ok = np.isfinite(r)
        a = np.abs(r[ok])
        self.abs_r_counts_, self.abs_r_edges_ = np.histogram(a, bins=self.abs_bins, range=(0.0, 1.0))
        self.abs_r_mean_ = float(a.mean()) if a.size else float("nan")
        self.abs_r_median_ = float(np.median(a)) if a.size else float("nan")
        self.abs_r_max_ = float(a.max()) if a.size else float("nan")
        order = np.argsort(-a, kind="stable")[: self.n_top]
        pi, pj = iu[0][ok][order], iu[1][ok][order]
        self.top_pairs_ = np.column_stack([pi, pj]).astype(np.int64).reshape(-1, 2)
        self.top_r_ = r[ok][order]
        chosen = check_pairs(self.pairs, dim, "Correlations") if self.pairs is not None else \
            [tuple(int(v) for v in p) for p in self.top_pairs_[: self.n_pairs]]
        if self.pairs is None and len(chosen) < self.n_pairs and dim >= 2:
            chosen += [(i, i + 1) for i in range(dim - 1) if (i, i + 1) not in chosen][: self.n_pairs - len(chosen)]
        self.pairs_ = np.asarray(chosen, dtype=np.int64).reshape(-1, 2)
        self.ellipses_ = [self.ellipse(i, j) for i, j in chosen]
        self.pair_density_ = {}
        return self

    def pair_spec(self, first: FirstPassResult) -> PairSpec | None:
        """Ranges and bins of the pair densities (pass 2), or None when no pair is drawn."""
        if len(self.pairs_) == 0:
            return None
        lo, hi = first.min.copy(), first.max.copy()
        same = hi <= lo
        lo[same] -= 0.5
        hi[same] += 0.5
        return PairSpec([tuple(int(v) for v in p) for p in self.pairs_], lo, hi, self.density_bins)

    def _from_second(self, second: SecondPassResult, spec: PairSpec) -> "Correlations":
        self.pair_density_ = pair_density(second, spec, "raw")
        return self

    def ellipse(self, i: int, j: int, levels: Any = None) -> dict[str, Any]:
        """Confidence ellipses of the fitted bivariate normal of components (i, j)."""
        self._check_fitted()
        idx = [int(i), int(j)]
        return confidence_ellipse(self.mean_[idx], self.covariance_[np.ix_(idx, idx)],
                                  self.levels if levels is None else levels)

    def summary(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "n_samples_seen": self.n_samples_seen_, "abs_r_mean": self.abs_r_mean_, "abs_r_median": self.abs_r_median_,
            "abs_r_max": self.abs_r_max_,
            "top_pairs": [[int(a), int(b), float(r)] for (a, b), r in zip(self.top_pairs_[:10], self.top_r_[:10])],
            "ellipses": [{"pair": [int(a), int(b)], "angle_deg": e["angle_deg"], "correlation": e["correlation"]}
                         for (a, b), e in zip(self.pairs_, self.ellipses_)],
        }

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return pairs_to_key(self.pair_density_)

    def _restore(self, scalars: dict, arrays: dict) -> None:
        self.pair_density_ = pairs_from_key(arrays)
        self.n_samples_seen_ = int(self.n_samples_seen_)
        self.ellipses_ = [self.ellipse(i, j) for i, j in self.pairs_]
