"""Radial distributions: |z|, |z - mean|, Mahalanobis radius, and their references.

References (the generators of the blog series):

* :class:`CubeRadius` -- length of a vector uniform in the cube [-b, b]^N:
  mean about ``b sqrt(N / 3)``, spread about ``b / sqrt(15)``. Computed exactly (up
  to a fine lattice) by convolving the distribution of x^2 N times with FFTs.
* :class:`GaussianRadius` -- length of N(0, s^2 I): the chi distribution with N
  degrees of freedom scaled by s (mean about ``s sqrt(N - 1/2)``, spread ``s/sqrt(2)``);
  with s = 1 the reference of the Mahalanobis radius of a true multivariate normal.
* :class:`BallRadius` -- radius of a point uniform in the N-ball of radius R0
  (density ``N r^(N-1) / R0^N``, mean ``R0 N / (N + 1)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.special import gammainc, gammaincinv, gammaln

from .._validation import check_positive, check_rng
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, run_pass
from ._base import Analysis, ProgressFn, pass_progress
from ._passes import FirstPass, FirstPassResult, SecondPass, SecondPassResult
from ._pca import PCAFrame
from ._quantiles import FineHistogramResult

__all__ = [
    "RadiusReference", "CubeRadius", "GaussianRadius", "BallRadius", "RadialDistribution",
    "match_cube_halfwidth", "chi2_ppf",
]

RADIAL_KINDS = ("origin", "centered", "mahalanobis")
_SAMPLE_CHUNK = 1 << 14


def chi2_ppf(p: float, dof: int) -> float:
    """Quantile of the chi-square distribution (via the regularised gamma function)."""
    return float(2.0 * gammaincinv(dof / 2.0, p))


def _check_dim(dim: Any, owner: str) -> int:
    return int(check_positive(dim, "dim", owner=owner, integer=True, minimum=1))


class RadiusReference:
    """Distribution of the length of random vectors from a generator.

    Subclasses implement ``mean``, ``std``, ``pdf``, ``cdf`` and ``_draw`` (vectors).
    """

    name = ""
    dim: int

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """Lengths of ``n`` vectors drawn from the generator (Monte Carlo)."""
        n = int(check_positive(n, "n", owner=type(self).__name__, integer=True, minimum=0))
        gen = check_rng(rng)
        out = np.empty(n)
        for lo in range(0, n, _SAMPLE_CHUNK):
            hi = min(n, lo + _SAMPLE_CHUNK)
            out[lo:hi] = np.linalg.norm(self._draw(hi - lo, gen), axis=1)
        return out

    def quantile(self, q: Any) -> np.ndarray:
        """Inverse CDF by bisection on a fine grid."""
        q = np.asarray(q, dtype=np.float64)
        grid = self._grid()
        cdf = self.cdf(grid)
        return np.interp(q, cdf, grid)

    def _grid(self, n: int = 8192) -> np.ndarray:
        m, s = self.mean(), self.std()
        lo = max(0.0, m - 12 * s)
        hi = m + 12 * s
        return np.linspace(lo, hi, n)

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.name, "dim": self.dim, "mean": self.mean(), "std": self.std()}
        out.update({k: getattr(self, k) for k in ("halfwidth", "sigma", "radius") if hasattr(self, k)})
        return out


@lru_cache(maxsize=16)
def _cube_sum_lattice(dim: int) -> tuple[float, np.ndarray, float]:
    """Distribution of S = sum of dim squares of U(-1, 1) on a lattice ``offset + h k``.

    Returns (h, masses, offset). The per-variable lattice is chosen so that its mean
    is exact (1/3); masses of x^2 on [kh, (k+1)h) are exact (sqrt differences).
    """
    K = int(max(64, min(1 << 16, (1 << 18) // dim)))
    h = 1.0 / K
    k = np.arange(K)
    p = np.sqrt((k + 1) * h) - np.sqrt(k * h)
    c = 1.0 / 3.0 - float(np.sum(p * k * h))  # per-variable offset making the mean exact
    L = dim * (K - 1) + 1
    nfft = 1 << int(np.ceil(np.log2(L)))
    f = np.fft.rfft(p, nfft)
    masses = np.fft.irfft(f**dim, nfft)[:L]
    masses = np.clip(masses, 0.0, None)
    masses /= masses.sum()
    return h, masses, dim * c


@dataclass(frozen=True)
class CubeRadius(RadiusReference):
    """Length of a vector with independent components uniform in [-b, b] (``dim`` of them)."""

    halfwidth: float
    dim: int
    name = "cube"

    def __post_init__(self) -> None:
        _check_dim(self.dim, "CubeRadius")
        if not (np.isfinite(self.halfwidth) and self.halfwidth > 0):
            raise InvalidParameterError(f"CubeRadius: halfwidth must be a number > 0; got {self.halfwidth!r}.")

    def _lattice(self) -> tuple[np.ndarray, np.ndarray]:
        h, masses, off = _cube_sum_lattice(int(self.dim))
        r = self.halfwidth * np.sqrt(np.maximum(off + h * np.arange(masses.size), 0.0))
        return r, masses

    def mean(self) -> float:
        r, m = self._lattice()
        return float(np.sum(r * m))

    def std(self) -> float:
        r, m = self._lattice()
        mu = np.sum(r * m)
        return float(np.sqrt(max(np.sum(m * (r - mu) ** 2), 0.0)))

    @property
    def approx_mean(self) -> float:
        """The series' formula ``b sqrt(N / 3)``."""
        return float(self.halfwidth * np.sqrt(self.dim / 3.0))

    @property
    def approx_std(self) -> float:
        """The series' formula ``b / sqrt(15)``."""
        return float(self.halfwidth / np.sqrt(15.0))

    def cdf(self, r: Any) -> np.ndarray:
        rr, m = self._lattice()
        cum = np.cumsum(m) - m / 2  # each lattice mass counts half at its own point
        return np.interp(np.asarray(r, dtype=np.float64), rr, cum, left=0.0, right=1.0)

    def pdf(self, r: Any) -> np.ndarray:
        """Density, smoothed over a few lattice steps (the lattice is much finer than any plot)."""
        r = np.asarray(r, dtype=np.float64)
        s = self.std()
        step = max(s / 50.0, 1e-12)
        return (self.cdf(r + step) - self.cdf(r - step)) / (2 * step)

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-self.halfwidth, self.halfwidth, size=(n, self.dim))


@dataclass(frozen=True)
class GaussianRadius(RadiusReference):
    """Length of a N(0, sigma^2 I) vector: sigma times chi with ``dim`` degrees of freedom."""

    sigma: float
    dim: int
    name = "gaussian"

    def __post_init__(self) -> None:
        _check_dim(self.dim, "GaussianRadius")
        if not (np.isfinite(self.sigma) and self.sigma > 0):
            raise InvalidParameterError(f"GaussianRadius: sigma must be a number > 0; got {self.sigma!r}.")

    def mean(self) -> float:
        k = self.dim
        return float(self.sigma * np.sqrt(2.0) * np.exp(gammaln((k + 1) / 2.0) - gammaln(k / 2.0)))

    def std(self) -> float:
        m = self.mean()
        return float(np.sqrt(max(self.sigma**2 * self.dim - m * m, 0.0)))

    def cdf(self, r: Any) -> np.ndarray:
        r = np.maximum(np.asarray(r, dtype=np.float64), 0.0)
        return gammainc(self.dim / 2.0, r * r / (2.0 * self.sigma**2))

    def pdf(self, r: Any) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        k, s = self.dim, self.sigma
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = ((k - 1) * np.log(r / s) - r * r / (2 * s * s) - (k / 2.0 - 1) * np.log(2.0)
                    - gammaln(k / 2.0) - np.log(s))
        return np.where(r > 0, np.exp(logp), 1.0 / s * np.sqrt(2 / np.pi) if k == 1 else 0.0)

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0.0, self.sigma, size=(n, self.dim))


@dataclass(frozen=True)
class BallRadius(RadiusReference):
    """Radius of a point uniform in the ``dim``-ball of radius ``radius``."""

    radius: float
    dim: int
    name = "ball"

    def __post_init__(self) -> None:
        _check_dim(self.dim, "BallRadius")
        if not (np.isfinite(self.radius) and self.radius > 0):
            raise InvalidParameterError(f"BallRadius: radius must be a number > 0; got {self.radius!r}.")

    def mean(self) -> float:
        return float(self.radius * self.dim / (self.dim + 1.0))

    def std(self) -> float:
        n = self.dim
        return float(self.radius * np.sqrt(n / (n + 2.0) - (n / (n + 1.0)) ** 2))

    def cdf(self, r: Any) -> np.ndarray:
        r = np.clip(np.asarray(r, dtype=np.float64) / self.radius, 0.0, 1.0)
        return r**self.dim

    def pdf(self, r: Any) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        x = r / self.radius
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            p = self.dim / self.radius * np.exp((self.dim - 1) * np.log(np.maximum(x, 1e-300)))
        return np.where((x >= 0) & (x <= 1), p, 0.0)

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        g = rng.standard_normal((n, self.dim))
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        return g * (self.radius * rng.random(n) ** (1.0 / self.dim))[:, None]


def _radius_quantiles(source: Any, levels: np.ndarray) -> np.ndarray:
    if isinstance(source, RadialDistribution):
        source._check_fitted()
        h = source.fine_["origin"]
        return h.quantiles(levels)[:, 0]
    if isinstance(source, FineHistogramResult):
        return source.quantiles(levels)[:, 0]
    r = np.asarray(source, dtype=np.float64).ravel()
    if r.size == 0 or not np.isfinite(r).all():
        raise InvalidParameterError("match_cube_halfwidth: radii must be a non-empty finite array.")
    return np.quantile(r, levels)


def match_cube_halfwidth(source: Any, dim: int | None = None, *, method: str = "wasserstein") -> float:
    """Half-width b of the cube [-b, b]^N whose vector lengths best match the data's |z|.

    Parameters
    ----------
    source : RadialDistribution, FineHistogramResult or array of radii
    dim : int, optional
        N; taken from a RadialDistribution when omitted.
    method : {"wasserstein", "mean"}, default="wasserstein"
        ``"wasserstein"`` minimises the 1-Wasserstein distance between the data's
        length distribution and the cube's (lengths scale with b, so the optimum is
        a weighted median of quantile ratios; exact); ``"mean"`` matches the means.

    Returns
    -------
    float
    """
    if dim is None:
        if not isinstance(source, RadialDistribution):
            raise InvalidParameterError("match_cube_halfwidth: dim is required unless source is a RadialDistribution.")
        dim = source.z_dim_
    dim = _check_dim(dim, "match_cube_halfwidth")
    if method not in ("wasserstein", "mean"):
        raise InvalidParameterError(f"match_cube_halfwidth: method must be 'wasserstein' or 'mean'; got {method!r}.")
    unit = CubeRadius(1.0, dim)
    if method == "mean":
        if isinstance(source, RadialDistribution):
            m = source.stats_["origin"]["mean"]
        else:
            levels = (np.arange(2000) + 0.5) / 2000
            m = float(np.mean(_radius_quantiles(source, levels)))
        return float(m / unit.mean())
    levels = (np.arange(2000) + 0.5) / 2000
    qd = _radius_quantiles(source, levels)
    q1 = unit.quantile(levels)
    ok = q1 > 0
    ratio, w = qd[ok] / q1[ok], q1[ok]
    order = np.argsort(ratio)
    cw = np.cumsum(w[order])
    return float(ratio[order][np.searchsorted(cw, cw[-1] / 2.0)])


class RadialDistribution(Analysis):
    """Distributions of |z|, |z - mean| and the Mahalanobis radius, with references.

    Pass 1 gives the mean and covariance; pass 2 the three radii of every row
    (|z - mean|^2 = |t|^2 in the PCA frame; Mahalanobis^2 = sum t_k^2 / lambda_k over the
    numerical rank r of the covariance) into growing fine histograms.

    References: the cube of the best-matching half-width (:func:`match_cube_halfwidth`),
    N(0, s^2 I) with the data's mean square length (``s^2 = E|z|^2 / N``), the ball
    whose mean radius equals the data's, and chi with r degrees of freedom for the
    Mahalanobis radius. Where the origin lies: its Mahalanobis radius and the
    fractions of rows closer to the mean than the origin.

    Parameters
    ----------
    bins : int, default=100
    fine_bins : int, default=4096
    quantiles : sequence of float, default=(0.01, 0.5, 0.99)
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
    n_threads : int, default=1

    Attributes
    ----------
    n_samples_seen_ : int
    z_dim_ : int
    rank_ : int
        Numerical rank of the covariance (degrees of freedom of the Mahalanobis radius).
    stats_ : dict
        For each kind in ("origin", "centered", "mahalanobis"): mean, std, min, max
        and the quantiles.
    hist_edges_, hist_counts_ : dict of kind -> ndarray
    fine_ : dict of kind -> FineHistogramResult
    cube_halfwidth_ : float
    references_ : dict of name -> RadiusReference
        ``cube``, ``gaussian``, ``ball`` (for |z|) and ``chi`` (Mahalanobis).
    origin_distance_ : float
        |mean|.
    origin_mahalanobis_ : float
        Mahalanobis radius of the origin.
    fraction_closer_than_origin_ : float
        Fraction of rows with a smaller Mahalanobis radius than the origin.
    fraction_closer_than_origin_euclidean_ : float
        Fraction of rows with |z - mean| < |mean|.
    chi_fraction_below_origin_ : float
        The same fraction for a true multivariate normal: P(chi_r < origin radius).
    """

    _kind = "RadialDistribution"
    _scalars = ("n_samples_seen", "z_dim", "rank", "cube_halfwidth", "origin_distance", "origin_mahalanobis",
                "fraction_closer_than_origin", "fraction_closer_than_origin_euclidean", "chi_fraction_below_origin")

    def __init__(self, *, bins: int = 100, fine_bins: int = 4096, quantiles: Any = (0.01, 0.5, 0.99),
                 max_bytes: int = DEFAULT_MAX_BYTES, n_threads: int = 1) -> None:
        self.bins = bins
        self.fine_bins = fine_bins
        self.quantiles = quantiles
        self.max_bytes = max_bytes
        self.n_threads = n_threads

    def fit(self, source: Any, *, progress: ProgressFn | None = None) -> "RadialDistribution":
        """Fit from a :class:`~latentscope.store.ZStore` or an array of shape (n, dim)."""
        check_positive(self.bins, "bins", owner="RadialDistribution", integer=True, minimum=1)
        first = run_pass(source, FirstPass, max_bytes=self.max_bytes, progress=pass_progress(progress, "pass 1"),
                         n_threads=self.n_threads).result()
        if first.n < 2:
            raise InvalidParameterError(f"RadialDistribution: at least 2 rows are needed; the source has {first.n}.")
        frame = PCAFrame().fit_covariance(first.cov)
        sp = SecondPass(first, frame, raw_bins=None, pc_bins=None, radial=True, radial_bins=self.fine_bins_())
        second = run_pass(source, sp.fork, max_bytes=self.max_bytes, progress=pass_progress(progress, "pass 2"),
                          n_threads=self.n_threads).result()
        return self._from_passes(first, frame, second)

    def fine_bins_(self) -> int:
        fine = int(check_positive(self.fine_bins, "fine_bins", owner="RadialDistribution", integer=True, minimum=16))
        return -(-fine // 4) * 4

    def _from_passes(self, first: FirstPassResult, frame: PCAFrame, second: SecondPassResult) -> "RadialDistribution":
        from ._passes import numerical_rank

        n = second.n
        dim = first.mean.shape[0]
        self.n_samples_seen_ = int(n)
        self.z_dim_ = int(dim)
        self.rank_ = numerical_rank(frame.explained_variance_)
        levels = np.atleast_1d(np.asarray(self.quantiles, dtype=np.float64))
        self.quantile_levels_ = levels
        self.fine_ = {}
        self.stats_ = {}
        self.hist_edges_, self.hist_counts_ = {}, {}
        for kind in RADIAL_KINDS:
            h = second.radial[kind].total()
            s1, s2 = second.radial_sums[kind].sum(0)
            mean = s1 / n
            std = float(np.sqrt(max(s2 / n - mean * mean, 0.0)))
            q = h.quantiles(levels)[:, 0]
            self.fine_[kind] = h
            self.stats_[kind] = {"mean": float(mean), "std": std, "min": float(h.vmin[0, 0]), "max": float(h.vmax[0, 0]),
                                 "quantiles": {f"{lv:g}": float(v) for lv, v in zip(levels, q)}}
            e, c = h.coarse(self.bins)
            self.hist_edges_[kind], self.hist_counts_[kind] = e[0], c[0]
        self.origin_distance_ = float(np.linalg.norm(first.mean))
        t0 = -(frame.mean_ / frame.scale_) @ frame.components_.T  # the origin in frame coordinates
        ev = frame.explained_variance_
        r = self.rank_
        self.origin_mahalanobis_ = float(np.sqrt(np.sum(t0[:r] ** 2 / ev[:r]))) if r else float("nan")
        self.fraction_closer_than_origin_ = second.closer_than_origin["mahalanobis"] / n
        self.fraction_closer_than_origin_euclidean_ = second.closer_than_origin["centered"] / n
        self.chi_fraction_below_origin_ = float(GaussianRadius(1.0, max(r, 1)).cdf(self.origin_mahalanobis_)) if r else float("nan")
        self._make_references()
        return self

    def _make_references(self) -> None:
        dim = self.z_dim_
        so = self.stats_["origin"]
        ms = so["std"] ** 2 + so["mean"] ** 2  # E|z|^2
        refs: dict[str, RadiusReference] = {}
        try:
            self.cube_halfwidth_ = match_cube_halfwidth(self.fine_["origin"], dim)
            refs["cube"] = CubeRadius(self.cube_halfwidth_, dim)
        except InvalidParameterError:
            self.cube_halfwidth_ = float("nan")
        if ms > 0:
            refs["gaussian"] = GaussianRadius(float(np.sqrt(ms / dim)), dim)
        if so["mean"] > 0:
            refs["ball"] = BallRadius(so["mean"] * (dim + 1.0) / dim, dim)
        if self.rank_ > 0:
            refs["chi"] = GaussianRadius(1.0, self.rank_)
        self.references_ = refs

    def summary(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "n_samples_seen": self.n_samples_seen_, "z_dim": self.z_dim_, "rank": self.rank_,
            "radii": self.stats_, "cube_halfwidth": self.cube_halfwidth_,
            "origin_distance": self.origin_distance_, "origin_mahalanobis": self.origin_mahalanobis_,
            "fraction_closer_than_origin": self.fraction_closer_than_origin_,
            "fraction_closer_than_origin_euclidean": self.fraction_closer_than_origin_euclidean_,
            "chi_fraction_below_origin": self.chi_fraction_below_origin_,
            "references": {k: v.to_dict() for k, v in self.references_.items()},
        }

    def _extra_scalars(self) -> dict[str, Any]:
        return {"stats": self.stats_, "quantile_levels": list(map(float, self.quantile_levels_))}

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for kind, h in self.fine_.items():
            out[f"{kind}_edges"] = self.hist_edges_[kind]
            out[f"{kind}_counts"] = self.hist_counts_[kind]
            out[f"{kind}_fine_lo"], out[f"{kind}_fine_hi"] = h.lo, h.hi
            out[f"{kind}_fine_counts"] = h.counts[0, 0]
            out[f"{kind}_fine_minmax"] = np.array([h.vmin[0, 0], h.vmax[0, 0]])
        return out

    def _restore(self, scalars: dict, arrays: dict) -> None:
        self.stats_ = scalars["stats"]
        self.quantile_levels_ = np.asarray(scalars["quantile_levels"])
        self.fine_, self.hist_edges_, self.hist_counts_ = {}, {}, {}
        z = np.zeros((1, 1), np.int64)
        for kind in RADIAL_KINDS:
            mm = arrays[f"{kind}_fine_minmax"]
            self.fine_[kind] = FineHistogramResult(arrays[f"{kind}_fine_lo"], arrays[f"{kind}_fine_hi"],
                                                   arrays[f"{kind}_fine_counts"][None, None, :], z, z.copy(),
                                                   mm[:1][None], mm[1:][None])
            self.hist_edges_[kind], self.hist_counts_[kind] = arrays[f"{kind}_edges"], arrays[f"{kind}_counts"]
        for k in ("n_samples_seen", "z_dim", "rank"):
            setattr(self, k + "_", int(getattr(self, k + "_")))
        self._make_references()
