"""Where samples land relative to the data's fragment.

All figures are measured in the fragment's own metric and calibrated on held-out
data rows (:class:`~latentscope.analysis.HeldOutWhitening`): the data is split once
into fit rows (mean, PCA axes and variances come from them) and ``n_reference``
held-out rows. Held-out rows and fresh draws of the data's law are exchangeable,
so every threshold set on the held-out rows holds for fresh draws at its nominal
rate. For a set of generated z-points this measures:

* the radial distribution ``|z|`` (histogram next to the data's);
* the Mahalanobis radius (length of the whitened coordinates; histogram next to
  the held-out rows');
* the fraction inside the fit rows' min/max PCA box, next to the held-out rows'
  fraction (the same box, rows it was not built from);
* the fraction inside the ``level`` (0.99) ellipsoid, whose squared radius is the
  Hotelling T^2 prediction bound ``p (n-1)(n+1) / (n (n-p)) F_{p,n-p}(level)`` for
  n fit rows and rank p (a fresh draw lands inside with probability ``level``; the
  chi-square quantile would hold only 0.84 of them at n = 2,000, p = 256);
* the in-fragment rate: the share of samples that pass two tests, both in whitened
  coordinates. *Typical*: the Mahalanobis radius lies in the central
  ``1 - (1 - nn_quantile) / 5`` (0.99) band of the held-out rows' radii (a point at the mean is
  dense but not typical: no data point lies there in 256-D). *Near*: the distance
  to the nearest fit row is at most ``nn_threshold``, chosen so that exactly
  ``nn_quantile`` (0.95) of the held-out rows pass both tests (the conformal order
  statistic ``ceil((m + 1) q)`` of m held-out scores). Fresh draws of the data's
  law therefore score about ``nn_quantile``.

Why whitened: between two data points ``|x - y|^2 ~ 2 tr(Sigma)``, from any point c
``|c - x|^2 ~ |c - mu|^2 + tr(Sigma)``; so in Euclidean coordinates every c with
``|c - mu|^2 < tr(Sigma)`` is "closer to the data than the data are to each other",
whatever the fragment's shape (a uniform cube around the origin scored 1.0 on a
256-D cloud with |mu| = 45). In whitened coordinates ``tr(Sigma) = p`` and
``|c - mu|^2`` is the squared Mahalanobis radius, so only points as typical as the
data come as close as the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import numpy as np

from .._estimator import Estimator
from .._validation import check_array, check_fraction, check_positive, check_rng
from ..exceptions import InvalidParameterError
from ..neighbors import KNN_METHOD
from ..regions import Ellipsoid, OrientedBox
from ..stream import DEFAULT_MAX_BYTES, run_pass, source_shape

__all__ = ["LandingReport", "LandingReference", "landing_report"]

#: The metric of the in-fragment test (recorded in every report).
METRIC = "whitened PCA coordinates of the fit rows; thresholds calibrated on held-out rows"


@dataclass(frozen=True, eq=False)
class LandingReport:
    """Landing figures of one set of samples (see :func:`landing_report`).

    Fields named ``data_*`` are measured on the held-out data rows (not used to
    fit the metric, the box or the ellipsoid), so a perfect generator scores
    about the same as they do.

    Attributes
    ----------
    name : str
        The sampler (region) name, if known.
    n_samples, z_dim : int
    radius_mean, radius_std : float
        Mean and standard deviation of the samples' lengths ``|z|``.
    data_radius_mean, data_radius_std : float
        The same for all data rows.
    mahalanobis_mean, mahalanobis_median : float
        Of the samples' Mahalanobis radii (whitened lengths).
    data_mahalanobis_mean, data_mahalanobis_median : float
        The same for the held-out rows.
    frac_in_pca_box, data_frac_in_pca_box : float
        Fractions inside the PCA box (samples, held-out rows).
    frac_in_ellipsoid, data_frac_in_ellipsoid : float
        Fractions inside the ``level`` prediction ellipsoid (samples, held-out rows).
    ellipsoid_bound : float
        Its squared Mahalanobis radius (Hotelling T^2 prediction bound).
    in_fragment_rate : float
        Share of samples that are typical and near (see the module docstring).
    data_in_fragment_rate : float
        The same for the held-out rows (``nn_quantile`` up to ties).
    typical_rate : float
        Share of samples whose Mahalanobis radius lies in ``typical_band``.
    typical_band : tuple of float
        The held-out rows' central ``1 - (1 - nn_quantile) / 5`` band of radii.
    near_rate : float
        Share of samples within ``nn_threshold`` of a fit row (typical or not).
    nn_median : float
        Median whitened distance of the samples to the nearest fit row.
    nn_threshold : float
        The calibrated whitened distance.
    data_nn_median : float
        Median whitened nearest-fit-row distance of the held-out rows.
    level, nn_quantile : float
    n_reference, n_fit : int
        Held-out rows and fit rows.
    metric, knn : str
        The metric of the tests and how neighbours were found.
    radius_edges, radius_counts, data_radius_counts : ndarray
        Histograms of the lengths on common edges.
    mahalanobis_edges, mahalanobis_counts, data_mahalanobis_counts : ndarray
        Histograms of the Mahalanobis radii on common (logarithmic) edges.
    radii, mahalanobis, nn_distances : ndarray of shape (n_samples,)
        The per-sample values.
    """

    name: str
    n_samples: int
    z_dim: int
    radius_mean: float
    radius_std: float
    data_radius_mean: float
    data_radius_std: float
    mahalanobis_mean: float
    mahalanobis_median: float
    data_mahalanobis_mean: float
    data_mahalanobis_median: float
    frac_in_pca_box: float
    data_frac_in_pca_box: float
    frac_in_ellipsoid: float
    data_frac_in_ellipsoid: float
    ellipsoid_bound: float
    in_fragment_rate: float
    data_in_fragment_rate: float
    typical_rate: float
    typical_band: tuple
    near_rate: float
    nn_median: float
    nn_threshold: float
    data_nn_median: float
    level: float
    nn_quantile: float
    n_reference: int
    n_fit: int
    metric: str
    knn: str
    radius_edges: np.ndarray
    radius_counts: np.ndarray
    data_radius_counts: np.ndarray
    mahalanobis_edges: np.ndarray
    mahalanobis_counts: np.ndarray
    data_mahalanobis_counts: np.ndarray
    radii: np.ndarray
    mahalanobis: np.ndarray
    nn_distances: np.ndarray

    _ARRAYS = ("radius_edges", "radius_counts", "data_radius_counts", "mahalanobis_edges",
               "mahalanobis_counts", "data_mahalanobis_counts")
    _PER_SAMPLE = ("radii", "mahalanobis", "nn_distances")

    def summary(self) -> dict[str, Any]:
        """The scalar figures as a dict (one table row)."""
        skip = set(self._ARRAYS) | set(self._PER_SAMPLE)
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        out["typical_band"] = [float(v) for v in self.typical_band]
        return out

    def to_dict(self, *, per_sample: bool = False) -> dict[str, Any]:
        """JSON form: the scalars, the histograms, and optionally the per-sample values."""
        out = self.summary()
        out["histograms"] = {name: getattr(self, name).tolist() for name in self._ARRAYS}
        if per_sample:
            out["per_sample"] = {name: getattr(self, name).tolist() for name in self._PER_SAMPLE}
        return out

    def line(self) -> str:
        """One line of the main figures, each next to the held-out rows' value."""
        return (f"in-fragment {self.in_fragment_rate:.1%} (held-out data {self.data_in_fragment_rate:.1%}), "
                f"in PCA box {self.frac_in_pca_box:.1%} (data {self.data_frac_in_pca_box:.1%}), "
                f"in {self.level:g} ellipsoid {self.frac_in_ellipsoid:.1%} (data {self.data_frac_in_ellipsoid:.1%}), "
                f"Mahalanobis {self.mahalanobis_median:.3g} (data {self.data_mahalanobis_median:.3g}), "
                f"|z| {self.radius_mean:.3g} +- {self.radius_std:.2g} (data {self.data_radius_mean:.3g})")

    def _repr_html_(self) -> str:
        import html

        from .._html import kv_table

        pct = lambda a, b: f"{a:.1%} (held-out data {b:.1%})"  # noqa: E731
        return (f"<strong>LandingReport {html.escape(str(self.name or ''))}</strong> ({self.n_samples} samples, z_dim {self.z_dim})"
                + kv_table([("in-fragment", pct(self.in_fragment_rate, self.data_in_fragment_rate)),
                            ("in PCA box", pct(self.frac_in_pca_box, self.data_frac_in_pca_box)),
                            (f"in {self.level:g} ellipsoid", pct(self.frac_in_ellipsoid, self.data_frac_in_ellipsoid)),
                            ("median Mahalanobis radius", f"{self.mahalanobis_median:.3g} (data {self.data_mahalanobis_median:.3g})"),
                            ("|z|", f"{self.radius_mean:.3g} ± {self.radius_std:.2g} (data {self.data_radius_mean:.3g})")]))

    def __repr__(self) -> str:
        return (f"LandingReport(name={self.name!r}, n_samples={self.n_samples}, in_fragment_rate={self.in_fragment_rate:.3f}, "
                f"frac_in_pca_box={self.frac_in_pca_box:.3f}, frac_in_ellipsoid={self.frac_in_ellipsoid:.3f}, "
                f"radius={self.radius_mean:.3g}+-{self.radius_std:.2g} (data {self.data_radius_mean:.3g}))")


class _RadiiAndRanges:
    """Radii of every row (in row order) and PCA-coordinate ranges of the fit rows: a run_pass reducer.

    ``update(z, is_fit)`` takes a block of rows and its mask of fit rows; merging a
    reducer of later rows appends their radii, so the tree merge keeps row order.
    """

    def __init__(self, frame: Any, dim: int, ranges: bool) -> None:
        self.frame, self.ranges = frame, ranges
        self.radii: list[np.ndarray] = []
        self.tmin = np.full(dim, np.inf)
        self.tmax = np.full(dim, -np.inf)
        self.tnorm = 0.0

    def update(self, z: np.ndarray, is_fit: np.ndarray) -> "_RadiiAndRanges":
        X = np.asarray(z, dtype=np.float64)
        self.radii.append(np.linalg.norm(X, axis=1).astype(np.float32))
        if self.ranges and is_fit.any():
            T = self.frame.transform(X[is_fit])
            self.tmin = np.minimum(self.tmin, T.min(axis=0))
            self.tmax = np.maximum(self.tmax, T.max(axis=0))
            self.tnorm = max(self.tnorm, float(np.sqrt(np.einsum("ij,ij->i", T, T).max())))
        return self

    def merge(self, other: "_RadiiAndRanges") -> "_RadiiAndRanges":
        self.radii = self.radii + other.radii
        self.tmin = np.minimum(self.tmin, other.tmin)
        self.tmax = np.maximum(self.tmax, other.tmax)
        self.tnorm = max(self.tnorm, other.tnorm)
        return self

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """The ranges widened by the rounding of a rotation (a few ulps of the largest radius per dimension),
        so that the fit rows lie inside however their coordinates are computed again."""
        pad = 4.0 * self.tmin.size * np.finfo(np.float64).eps * self.tnorm
        return self.tmin - pad, self.tmax + pad


def _order_statistic(scores: np.ndarray, q: float) -> float:
    """The conformal threshold: the ceil((m + 1) q)-th smallest of m scores (capped at m)."""
    s = np.sort(scores)
    k = min(max(math.ceil((s.size + 1) * q), 1), s.size)
    t = float(s[k - 1])
    if not np.isfinite(t):
        finite = s[np.isfinite(s)]
        t = float(finite.max()) if finite.size else 0.0
    return t


class LandingReference(Estimator):
    """The data-side quantities of landing reports, computed once for many sample sets.

    Parameters
    ----------
    level : float, default=0.99
        Level of the prediction ellipsoid.
    nn_quantile : float, default=0.95
        Nominal in-fragment rate of fresh draws of the data's law.
    n_reference : int, default=2000
        Held-out rows (at most a third of the data, and leaving at least
        ``z_dim + 2`` fit rows).
    bins : int, optional
        Histogram bins (default: ``2 sqrt(n_samples)`` clipped to [10, 60]).
    box : OrientedBox or Box, optional
        The box to test against; default: the fit rows' min/max PCA box. A box
        built from all the data includes the held-out rows, so their fraction is
        then an in-sample figure.
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Memory budget per block.

    Attributes
    ----------
    whitening_ : HeldOutWhitening
        The split and the metric (``whitening_.frame_`` is the fit rows' PCA).
    pca_ : PCAFrame
        Same as ``whitening_.frame_``.
    box_ : OrientedBox
    ellipsoid_ : Ellipsoid
    ellipsoid_bound_ : float
    typical_band_ : tuple of float
    nn_threshold_ : float
    reference_rows_ : ndarray of int
        The held-out rows.
    reference_nn_ : ndarray of shape (n_reference,)
        Their whitened distances to the nearest fit row.
    data_radii_ : ndarray of shape (n_rows,), float32
        Lengths of all data rows.
    data_mahalanobis_ : ndarray of shape (n_reference,), float32
        Mahalanobis radii of the held-out rows.
    data_frac_in_box_, data_frac_in_ellipsoid_, data_in_fragment_rate_ : float
        Of the held-out rows.
    """

    def __init__(
        self,
        *,
        level: float = 0.99,
        nn_quantile: float = 0.95,
        n_reference: int = 2000,
        bins: int | None = None,
        box: Any = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.level = level
        self.nn_quantile = nn_quantile
        self.n_reference = n_reference
        self.bins = bins
        self.box = box
        self.max_bytes = max_bytes

    def fit(self, source: Any, *, rng: Any = None) -> "LandingReference":
        """Split the data, fit the metric, box and ellipsoid, and calibrate on the held-out rows.

        Parameters
        ----------
        source : ZStore or array of shape (n, z_dim)
        rng : None, int, SeedSequence or Generator
            Picks the held-out rows.
        """
        from ..analysis import HeldOutWhitening

        owner = "LandingReference"
        check_fraction(self.level, "level", owner=owner)
        check_fraction(self.nn_quantile, "nn_quantile", owner=owner)
        check_positive(self.n_reference, "n_reference", owner=owner, integer=True)
        if self.bins is not None:
            check_positive(self.bins, "bins", owner=owner, integer=True)
        gen = check_rng(rng)
        n, dim = source_shape(source)
        if self.box is not None and getattr(self.box, "dim", None) != dim:
            raise InvalidParameterError(f"{owner}: box must have dim {dim} (z_dim); got {getattr(self.box, 'dim', None)}.")
        w = HeldOutWhitening(n_holdout=int(self.n_reference), max_bytes=self.max_bytes).fit(source, rng=gen)
        frame = w.frame_
        self.whitening_ = w
        self.pca_ = frame
        is_fit = np.ones(n, bool)
        is_fit[w.holdout_rows_] = False
        # one streamed pass (on the active dask cluster when there is one): every radius, the fit rows' PCA ranges
        scan = run_pass(source, partial(_RadiiAndRanges, frame, dim, self.box is None), labels=is_fit,
                        max_bytes=self.max_bytes)
        tmin, tmax = scan.padded()
        self.data_radii_ = np.concatenate(scan.radii) if scan.radii else np.zeros(0, np.float32)
        held = w.holdout_
        self.box_ = OrientedBox(frame.mean_, frame.components_, tmin, tmax) if self.box is None else self.box
        self.data_frac_in_box_ = float(self.box_.contains(held).mean())
        self.ellipsoid_bound_ = w.bound(float(self.level))
        self.ellipsoid_ = Ellipsoid(frame.mean_, frame.components_, np.sqrt(self.ellipsoid_bound_) * w.scales_)
        r = w.mahalanobis(held)
        self.data_mahalanobis_ = r.astype(np.float32)
        self.data_frac_in_ellipsoid_ = float(np.mean(r * r <= self.ellipsoid_bound_))
        band = 1.0 - (1.0 - float(self.nn_quantile)) / 5.0
        lo, hi = np.quantile(r, [(1.0 - band) / 2.0, (1.0 + band) / 2.0])
        self.typical_band_ = (float(lo), float(hi))
        self.reference_rows_ = w.holdout_rows_
        self.reference_nn_ = w.nearest(held, source)[:, 0]
        scores = np.where(self._typical(r), self.reference_nn_, np.inf)
        self.nn_threshold_ = _order_statistic(scores, float(self.nn_quantile))
        self.data_in_fragment_rate_ = float(np.mean(scores <= self.nn_threshold_))
        self.z_dim_ = dim
        self.n_rows_ = n
        self._source = source
        return self

    def _typical(self, r: np.ndarray) -> np.ndarray:
        lo, hi = self.typical_band_
        return (r >= lo) & (r <= hi)

    def in_fragment(self, samples: Any, *, source: Any = None) -> np.ndarray:
        """Boolean mask: which rows of ``samples`` are typical and near (the in-fragment test)."""
        rep = self.report(samples, source=source)
        return self._typical(rep.mahalanobis) & (rep.nn_distances <= self.nn_threshold_)

    def report(self, samples: Any, *, name: str = "", source: Any = None) -> LandingReport:
        """Landing figures of ``samples`` (array of shape (n, z_dim)).

        ``source`` defaults to the data the reference was fitted on; pass it again
        when that was a store that has since been closed and reopened.
        """
        if getattr(self, "whitening_", None) is None:
            from ..exceptions import NotFittedError

            raise NotFittedError("LandingReference is not fitted yet; call fit(store) first.")
        Z = check_array(samples, name="samples", dtype=np.float64, owner="landing_report", min_rows=1)
        if Z.shape[1] != self.z_dim_:
            raise InvalidParameterError(f"landing_report: samples must have {self.z_dim_} columns (z_dim); got {Z.shape[1]}.")
        src = self._source if source is None else source
        w = self.whitening_
        radii = np.linalg.norm(Z, axis=1)
        maha = w.mahalanobis(Z)
        nn = w.nearest(Z, src)[:, 0]
        typical = self._typical(maha)
        near = nn <= self.nn_threshold_
        dr = self.data_radii_.astype(np.float64)
        dm = self.data_mahalanobis_.astype(np.float64)
        r_lo, r_hi = min(radii.min(), dr.min()), max(radii.max(), dr.max())
        if r_hi <= r_lo:
            r_hi = r_lo + 1.0
        bins = int(self.bins) if self.bins is not None else int(np.clip(2 * np.sqrt(Z.shape[0]), 10, 60))
        r_edges = np.linspace(r_lo, r_hi, bins + 1)
        pos = np.concatenate([maha[maha > 0], dm[dm > 0]])
        m_lo, m_hi = (pos.min(), pos.max()) if pos.size else (1e-3, 1.0)
        if m_hi <= m_lo:
            m_hi = m_lo * 2.0
        m_edges = np.geomspace(m_lo, m_hi, bins + 1)
        return LandingReport(
            name=str(name),
            n_samples=int(Z.shape[0]),
            z_dim=int(self.z_dim_),
            radius_mean=float(radii.mean()),
            radius_std=float(radii.std()),
            data_radius_mean=float(dr.mean()),
            data_radius_std=float(dr.std()),
            mahalanobis_mean=float(maha.mean()),
            mahalanobis_median=float(np.median(maha)),
            data_mahalanobis_mean=float(dm.mean()),
            data_mahalanobis_median=float(np.median(dm)),
            frac_in_pca_box=float(self.box_.contains(Z).mean()),
            data_frac_in_pca_box=float(self.data_frac_in_box_),
            frac_in_ellipsoid=float(np.mean(maha * maha <= self.ellipsoid_bound_)),
            data_frac_in_ellipsoid=float(self.data_frac_in_ellipsoid_),
            ellipsoid_bound=float(self.ellipsoid_bound_),
            in_fragment_rate=float(np.mean(typical & near)),
            data_in_fragment_rate=float(self.data_in_fragment_rate_),
            typical_rate=float(np.mean(typical)),
            typical_band=tuple(self.typical_band_),
            near_rate=float(np.mean(near)),
            nn_median=float(np.median(nn)),
            nn_threshold=float(self.nn_threshold_),
            data_nn_median=float(np.median(self.reference_nn_)),
            level=float(self.level),
            nn_quantile=float(self.nn_quantile),
            n_reference=int(self.reference_rows_.size),
            n_fit=int(w.n_fit_),
            metric=METRIC,
            knn=KNN_METHOD,
            radius_edges=r_edges,
            radius_counts=np.histogram(np.clip(radii, r_lo, r_hi), r_edges)[0],
            data_radius_counts=np.histogram(np.clip(dr, r_lo, r_hi), r_edges)[0],
            mahalanobis_edges=m_edges,
            mahalanobis_counts=np.histogram(np.clip(maha, m_lo, m_hi), m_edges)[0],
            data_mahalanobis_counts=np.histogram(np.clip(dm, m_lo, m_hi), m_edges)[0],
            radii=radii,
            mahalanobis=maha,
            nn_distances=nn,
        )


def landing_report(
    samples: Any,
    source: Any,
    *,
    name: str = "",
    level: float = 0.99,
    nn_quantile: float = 0.95,
    n_reference: int = 2000,
    bins: int | None = None,
    box: Any = None,
    rng: Any = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LandingReport:
    """Measure where ``samples`` land relative to the data in ``source``.

    Parameters
    ----------
    samples : array-like of shape (n_samples, z_dim)
    source : ZStore or array-like of shape (n_rows, z_dim)
        The data (streamed).
    name : str, optional
        Label of the samples (e.g. the region name).
    level : float, default=0.99
        Level of the confidence ellipsoid.
    nn_quantile : float, default=0.95
        Nominal in-fragment rate of fresh draws of the data's law (the
        calibration target on the held-out rows).
    n_reference : int, default=2000
        Held-out data rows (at most a third of the data); the rest fit the
        metric, the box and the ellipsoid.
    bins : int, optional
        Histogram bins (default: ``2 sqrt(n_samples)`` clipped to [10, 60]).
    box : OrientedBox or Box, optional
        Box to test against (default: the fit rows' min/max PCA box).
    rng : None, int, SeedSequence or Generator
        Picks the held-out rows.
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)

    Returns
    -------
    LandingReport

    Notes
    -----
    Several sample sets against the same data: fit a :class:`LandingReference`
    once and call its ``report`` for each. Nearest neighbours are exact
    (``LandingReport.knn``) in whitened coordinates; the cost is ``2 (n_samples +
    n_reference) n_rows z_dim`` flops plus one whitening per row block.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> data = rng.normal(size=(3000, 8)) * np.geomspace(5, 0.1, 8) + 3.0
    >>> rep = landing_report(rng.normal(size=(500, 8)), data, rng=1)   # N(0, I): off the fragment
    >>> rep.in_fragment_rate
    0.0
    >>> fresh = rng.normal(size=(500, 8)) * np.geomspace(5, 0.1, 8) + 3.0
    >>> bool(0.9 < landing_report(fresh, data, rng=1).in_fragment_rate < 1.0)
    True
    """
    ref = LandingReference(level=level, nn_quantile=nn_quantile, n_reference=n_reference, bins=bins, box=box,
                           max_bytes=max_bytes).fit(source, rng=rng)
    return ref.report(samples, name=name)
