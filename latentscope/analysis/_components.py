"""Per-component statistics and histograms, of raw components or of PCA coordinates."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtr

from .._validation import check_positive
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, run_pass
from ._base import Analysis, ProgressFn, pairs_from_key, pairs_to_key, pass_progress
from ._passes import FirstPass, FirstPassResult, PairSpec, SecondPass, SecondPassResult, describe

__all__ = ["ComponentStats", "DEFAULT_LEVELS", "gaussian_ks_distance", "pair_density"]

#: Quantile levels reported by default.
DEFAULT_LEVELS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975, 0.99, 0.995, 0.999)


def gaussian_ks_distance(cdf: np.ndarray, edges: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """KS distance between binned data and the normal with the data's mean and std.

    ``max_j |F_data(e_j) - Phi((e_j - mean) / std)|`` over the fine bin edges: a
    lower bound of the exact Kolmogorov-Smirnov statistic that misses it by at most
    the largest fine-bin mass. NaN for zero-variance components.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (edges - mean[:, None]) / std[:, None]
        d = np.abs(cdf - ndtr(z)).max(axis=1)
    return np.where(std > 0, d, np.nan)


def pair_density(second: SecondPassResult, spec: PairSpec, which: str) -> dict:
    """{(i, j): (xedges, yedges, counts)} from a pass-2 result."""
    counts = second.raw_pairs if which == "raw" else second.pc_pairs
    out = {}
    for (i, j) in spec.pairs:
        xe = np.linspace(spec.lo[i], spec.hi[i], spec.bins + 1)
        ye = np.linspace(spec.lo[j], spec.hi[j], spec.bins + 1)
        out[(int(i), int(j))] = (xe, ye, counts[(i, j)])
    return out


def check_pairs(pairs: Any, dim: int, owner: str) -> list[tuple[int, int]]:
    if pairs is None:
        return []
    out = []
    for p in pairs:
        try:
            i, j = (int(v) for v in p)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"{owner}: pairs must be (i, j) index pairs; got {p!r}.") from None
        if not (0 <= i < dim and 0 <= j < dim) or i == j:
            raise InvalidParameterError(f"{owner}: pair indices must be two different integers in [0, {dim}); got {p!r}.")
        out.append((i, j))
    return out


class ComponentStats(Analysis):
    """Per-component statistics and histograms of a z-point cloud.

    For every component (or every PCA coordinate, with ``frame``): count, mean,
    variance and std (ddof=0), min, max, skewness and excess kurtosis (biased, as
    scipy.stats), quantiles, a ``bins``-bin histogram and the Gaussian-fit quality
    (KS distance to the normal with the same mean and std).

    Raw components take two passes (pass 1: min, max, mean; pass 2: fine histograms
    between min and max and exact power sums). With a ``frame`` one pass suffices:
    the PCA coordinates' histograms start at +-5 standard deviations and grow (bin
    pairs merge) when a value falls outside.

    Parameters
    ----------
    bins : int, default=100
        Bins of the display histograms. For raw components these equal
        ``numpy.histogram(z_k, bins=hist_edges_[k])`` between min and max.
    fine_bins : int, default=4096
        Bins of the fine histograms the quantiles and KS distances are read from
        (rounded up to a multiple of ``bins`` for raw components).
    quantiles : sequence of float, default=DEFAULT_LEVELS
    frame : PCAFrame, optional
        Analyse ``frame.transform(z)`` instead of z.
    pairs : sequence of (i, j), optional
        Also record 2-D densities (``pair_bins`` x ``pair_bins``) of these pairs of
        coordinates.
    pair_bins : int, default=64
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
    n_threads : int, default=1

    Attributes
    ----------
    n_samples_seen_ : int
    mean_, var_, std_, min_, max_, skewness_, excess_kurtosis_ : ndarray of shape (dim,)
    quantile_levels_ : ndarray of shape (n_levels,)
    quantiles_ : ndarray of shape (n_levels, dim)
    hist_edges_ : ndarray of shape (dim, bins + 1)
    hist_counts_ : ndarray of shape (dim, bins)
    fine_lo_, fine_hi_ : ndarray of shape (dim,)
    fine_counts_ : ndarray of shape (dim, fine_bins)
    ks_distance_ : ndarray of shape (dim,)
        Gaussian-fit quality (0 = perfect).
    pair_density_ : dict of (i, j) -> (xedges, yedges, counts)
    coordinates_ : str
        ``"raw"`` or ``"pca"``.
    """

    _kind = "ComponentStats"
    _arrays = ("mean", "var", "std", "min", "max", "skewness", "excess_kurtosis", "quantile_levels", "quantiles",
               "hist_edges", "hist_counts", "fine_lo", "fine_hi", "fine_counts", "ks_distance")
    _scalars = ("n_samples_seen", "coordinates")

    def __init__(self, *, bins: int = 100, fine_bins: int = 4096, quantiles: Any = DEFAULT_LEVELS,
                 frame: Any = None, pairs: Any = None, pair_bins: int = 64,
                 max_bytes: int = DEFAULT_MAX_BYTES, n_threads: int = 1) -> None:
        self.bins = bins
        self.fine_bins = fine_bins
        self.quantiles = quantiles
        self.frame = frame
        self.pairs = pairs
        self.pair_bins = pair_bins
        self.max_bytes = max_bytes
        self.n_threads = n_threads

    def _validate(self) -> None:
        check_positive(self.bins, "bins", owner="ComponentStats", integer=True, minimum=1)
        check_positive(self.fine_bins, "fine_bins", owner="ComponentStats", integer=True, minimum=16)
        check_positive(self.pair_bins, "pair_bins", owner="ComponentStats", integer=True, minimum=2)
        q = np.atleast_1d(np.asarray(self.quantiles, dtype=np.float64))
        if q.ndim != 1 or not np.all((q >= 0) & (q <= 1)):
            raise InvalidParameterError(f"ComponentStats: quantiles must be levels in [0, 1]; got {self.quantiles!r}.")
        if self.frame is not None and getattr(self.frame, "components_", None) is None:
            raise InvalidParameterError("ComponentStats: frame must be a fitted PCAFrame.")

    def raw_fine_bins(self) -> int:
        """Fine bins used for raw components: a multiple of ``bins`` >= ``fine_bins``."""
        return int(self.bins * -(-self.fine_bins // self.bins))

    def pc_fine_bins(self) -> int:
        """Fine bins used for PCA coordinates: ``fine_bins`` rounded up to a multiple of 4."""
        return int(-(-self.fine_bins // 4) * 4)

    def fit(self, source: Any, *, progress: ProgressFn | None = None) -> "ComponentStats":
        """Fit from a :class:`~latentscope.store.ZStore` or an array of shape (n, dim)."""
        self._validate()
        if self.frame is None:
            first = run_pass(source, lambda: FirstPass(covariance=False), max_bytes=self.max_bytes,
                             progress=pass_progress(progress, "pass 1"), n_threads=self.n_threads).result()
            spec = self._pair_spec(first.min, first.max, first.mean.shape[0])
            sp = SecondPass(first, None, raw_bins=self.raw_fine_bins(), pc_bins=None, radial=False,
                            raw_pairs=spec, track_norm=False)
            second = run_pass(source, sp.fork, max_bytes=self.max_bytes, progress=pass_progress(progress, "pass 2"),
                              n_threads=self.n_threads).result()
            return self._from_passes(first, second, spec)
        frame = self.frame
        dim = frame.mean_.shape[0]
        nan = np.full(dim, np.nan)
        first = FirstPassResult(None, 0, np.asarray(frame.mean_, np.float64), nan, nan, np.zeros(1, np.int64), nan[None])
        spec = self._pair_spec(None, None, frame.components_.shape[0])
        sp = SecondPass(first, frame, raw_bins=None, pc_bins=self.pc_fine_bins(), radial=False, pc_pairs=spec,
                        track_norm=False)
        second = run_pass(source, sp.fork, max_bytes=self.max_bytes, progress=pass_progress(progress, "pass 1"),
                          n_threads=self.n_threads).result()
        if second.n == 0:
            raise InvalidParameterError("the source has no rows; nothing to analyse.")
        return self._from_passes(first, second, spec)

    def _pair_spec(self, lo: np.ndarray | None, hi: np.ndarray | None, dim: int) -> PairSpec | None:
        pairs = check_pairs(self.pairs, dim, "ComponentStats")
        if not pairs:
            return None
        if self.frame is not None:
            sd = np.sqrt(np.maximum(self.frame.explained_variance_, 0.0))
            sd = np.where(sd > 0, sd, 1.0)
            return PairSpec(pairs, -5 * sd, 5 * sd, self.pair_bins)
        lo2, hi2 = lo.copy(), hi.copy()
        same = hi2 <= lo2
        lo2[same] -= 0.5
        hi2[same] += 0.5
        return PairSpec(pairs, lo2, hi2, self.pair_bins)

    def _from_passes(self, first: FirstPassResult, second: SecondPassResult, spec: PairSpec | None = None,
                     group: int | None = None) -> "ComponentStats":
        """Build the statistics from shared pass results (raw, or PCA when ``frame``)."""
        self._validate()
        pca = self.frame is not None
        hist = second.pc_hist if pca else second.raw_hist
        sums = second.pc_sums if pca else second.raw_sums
        c = sums.central(group)
        if c["n"] == 0:
            raise InvalidParameterError("the source has no rows; nothing to analyse.")
        d = describe(c)
        self.n_samples_seen_ = int(c["n"])
        self.coordinates_ = "pca" if pca else "raw"
        self.mean_ = c["mean"]
        self.var_, self.std_ = d["var"], d["std"]
        self.skewness_, self.excess_kurtosis_ = d["skewness"], d["excess_kurtosis"]
        g = 0 if group is None else group
        tot = hist.total()
        src = tot if group is None else hist
        self.min_ = src.vmin[g].copy()
        self.max_ = src.vmax[g].copy()
        self.quantile_levels_ = np.atleast_1d(np.asarray(self.quantiles, dtype=np.float64))
        self.quantiles_ = hist.quantiles(self.quantile_levels_, group)
        self.hist_edges_, self.hist_counts_ = hist.coarse(self.bins, group)
        self.fine_lo_, self.fine_hi_ = hist.lo.copy(), hist.hi.copy()
        self.fine_counts_ = src.counts[g].copy()
        self.ks_distance_ = hist.ks_normal(self.mean_, self.std_, group)
        self.pair_density_ = pair_density(second, spec, "pc" if pca else "raw") if spec is not None else {}
        return self

    @property
    def dim(self) -> int:
        self._check_fitted()
        return self.mean_.shape[0]

    def gaussian_pdf(self, component: int, x: Any) -> np.ndarray:
        """Density of the fitted normal of one component at ``x``."""
        self._check_fitted()
        m, s = self.mean_[component], self.std_[component]
        x = np.asarray(x, dtype=np.float64)
        if not s > 0:
            return np.full_like(x, np.nan)
        return np.exp(-0.5 * ((x - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))

    def summary(self) -> dict[str, Any]:
        """Headline numbers: how Gaussian the components are, their spread."""
        self._check_fitted()
        ks = self.ks_distance_[np.isfinite(self.ks_distance_)]
        return {
            "coordinates": self.coordinates_, "n_samples_seen": self.n_samples_seen_, "dim": int(self.mean_.shape[0]),
            "ks_distance_median": float(np.median(ks)) if ks.size else float("nan"),
            "ks_distance_max": float(ks.max()) if ks.size else float("nan"),
            "n_components_ks_below_0.02": int(np.sum(ks < 0.02)),
            "abs_skewness_median": float(np.nanmedian(np.abs(self.skewness_))) if np.isfinite(self.skewness_).any() else float("nan"),
            "excess_kurtosis_median": float(np.nanmedian(self.excess_kurtosis_)) if np.isfinite(self.excess_kurtosis_).any() else float("nan"),
            "std_min": float(self.std_.min()), "std_max": float(self.std_.max()),
            "n_zero_variance": int(np.sum(self.std_ == 0)),
        }

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return pairs_to_key(self.pair_density_)

    def _restore(self, scalars: dict, arrays: dict) -> None:
        self.pair_density_ = pairs_from_key(arrays)
        self.n_samples_seen_ = int(self.n_samples_seen_)
