"""Where samples land relative to the data's fragment.

For a set of generated z-points this measures, against a data store:

* the radial distribution ``|z|`` (histogram next to the data's);
* the Mahalanobis radius under the data's mean and covariance (histogram next to
  the data's; a normal cloud in N dimensions sits near ``sqrt(N)``);
* the fraction inside the data's PCA box (min/max along every principal axis by
  default) and inside the ``level`` (0.99) confidence ellipsoid of the fitted
  normal (Mahalanobis radius squared below the chi-square(N) quantile);
* the in-fragment rate: the share of samples whose distance to the nearest data
  point is below the ``nn_quantile`` (0.95) quantile of the data's own
  nearest-neighbour distances. Those are measured on ``n_reference`` random data
  rows against the full data, each row's own point excluded; all nearest
  neighbours are exact (:mod:`latentscope.neighbors`). A sample drawn from the
  data's own distribution scores about ``nn_quantile``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy.special import chdtri

from .._validation import check_array, check_fraction, check_positive, check_rng
from ..exceptions import InvalidParameterError
from ..neighbors import KNN_METHOD, nearest_distances, reference_distances
from ..regions import Ellipsoid, OrientedBox
from ..stream import iter_array_blocks, source_shape

__all__ = ["LandingReport", "LandingReference", "landing_report"]


@dataclass(frozen=True, eq=False)
class LandingReport:
    """Landing figures of one set of samples (see :func:`landing_report`).

    Attributes
    ----------
    name : str
        The sampler (region) name, if known.
    n_samples, z_dim : int
    radius_mean, radius_std : float
        Mean and standard deviation of the samples' lengths ``|z|``.
    data_radius_mean, data_radius_std : float
        The same for the data.
    mahalanobis_mean, mahalanobis_median : float
        Of the samples' Mahalanobis radii under the data's mean and covariance.
    data_mahalanobis_mean, data_mahalanobis_median : float
    frac_in_pca_box, data_frac_in_pca_box : float
        Fractions inside the data's PCA box (1 for the data with a min/max box).
    frac_in_ellipsoid, data_frac_in_ellipsoid : float
        Fractions inside the ``level`` confidence ellipsoid of the fitted normal.
    in_fragment_rate : float
        Share of samples whose nearest-data distance is below ``nn_threshold``.
    nn_median : float
        Median nearest-data distance of the samples.
    nn_threshold : float
        The ``nn_quantile`` quantile of the data's own nearest-neighbour distances.
    data_nn_median : float
        Median of the data's own nearest-neighbour distances.
    level, nn_quantile : float
    n_reference : int
        Data rows used for the data's own nearest-neighbour distances.
    knn : str
        How neighbours were found ("exact (blockwise BLAS, float64)").
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
    in_fragment_rate: float
    nn_median: float
    nn_threshold: float
    data_nn_median: float
    level: float
    nn_quantile: float
    n_reference: int
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
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    def to_dict(self, *, per_sample: bool = False) -> dict[str, Any]:
        """JSON form: the scalars, the histograms, and optionally the per-sample values."""
        out = self.summary()
        out["histograms"] = {name: getattr(self, name).tolist() for name in self._ARRAYS}
        if per_sample:
            out["per_sample"] = {name: getattr(self, name).tolist() for name in self._PER_SAMPLE}
        return out

    def __repr__(self) -> str:
        return (f"LandingReport(name={self.name!r}, n_samples={self.n_samples}, in_fragment_rate={self.in_fragment_rate:.3f}, "
                f"frac_in_pca_box={self.frac_in_pca_box:.3f}, frac_in_ellipsoid={self.frac_in_ellipsoid:.3f}, "
                f"radius={self.radius_mean:.3g}+-{self.radius_std:.2g} (data {self.data_radius_mean:.3g}))")


class LandingReference:
    """The data-side quantities of landing reports, computed once for many sample sets.

    Parameters
    ----------
    level : float, default=0.99
        Level of the confidence ellipsoid.
    nn_quantile : float, default=0.95
        Quantile of the data's own nearest-neighbour distances used as the
        in-fragment threshold.
    n_reference : int, default=2000
        Random data rows whose nearest-neighbour distances (to all other rows) set
        the threshold.
    bins : int, optional
        Histogram bins (default: ``2 sqrt(n_samples)`` clipped to [10, 60]).
    box : OrientedBox or Box, optional
        The box to test against; default: the data's min/max PCA box.
    max_bytes : int, default=64 MiB
        Memory budget per block.

    Attributes
    ----------
    pca_ : PCAFrame
    box_ : OrientedBox
    ellipsoid_ : Ellipsoid
    nn_threshold_ : float
    reference_rows_ : ndarray of int
    reference_nn_ : ndarray of shape (n_reference,)
    data_radii_, data_mahalanobis_ : ndarray of shape (n_rows,), float32
    data_frac_in_box_, data_frac_in_ellipsoid_ : float
    """

    def __init__(
        self,
        *,
        level: float = 0.99,
        nn_quantile: float = 0.95,
        n_reference: int = 2000,
        bins: int | None = None,
        box: Any = None,
        max_bytes: int = 64 << 20,
    ) -> None:
        self.level = level
        self.nn_quantile = nn_quantile
        self.n_reference = n_reference
        self.bins = bins
        self.box = box
        self.max_bytes = max_bytes

    def fit(self, source: Any, *, rng: Any = None, pca: Any = None) -> "LandingReference":
        """Measure the data: PCA frame, box, ellipsoid, radii, own nearest-neighbour distances.

        Parameters
        ----------
        source : ZStore or array of shape (n, z_dim)
        rng : None, int, SeedSequence or Generator
            Picks the reference rows.
        pca : PCAFrame, optional
            An already fitted frame of the same data (saves one pass).
        """
        from ..analysis import PCAFrame

        owner = "LandingReference"
        check_fraction(self.level, "level", owner=owner)
        check_fraction(self.nn_quantile, "nn_quantile", owner=owner)
        check_positive(self.n_reference, "n_reference", owner=owner, integer=True)
        if self.bins is not None:
            check_positive(self.bins, "bins", owner=owner, integer=True)
        gen = check_rng(rng)
        n, dim = source_shape(source)
        if n < 2:
            raise InvalidParameterError(f"{owner}.fit: the data needs at least 2 rows; got {n}.")
        self.pca_ = pca if pca is not None else PCAFrame(max_bytes=self.max_bytes).fit(source)
        if self.pca_.correlation:
            raise InvalidParameterError(f"{owner}.fit: pca must diagonalise the covariance (correlation=False).")
        lam = self.pca_.explained_variance_
        floor = 1e-12 * max(float(lam[0]), 1e-12)
        bound = float(chdtri(dim, 1.0 - self.level))
        self.ellipsoid_ = Ellipsoid(self.pca_.mean_, self.pca_.components_, np.sqrt(bound * np.maximum(lam, floor)))
        radii, maha = [], []
        tmin = np.full(dim, np.inf)
        tmax = np.full(dim, -np.inf)
        in_box = 0
        for block in iter_array_blocks(source, max_bytes=self.max_bytes):
            Z = np.asarray(block, dtype=np.float64)
            T = self.pca_.transform(Z)
            tmin = np.minimum(tmin, T.min(axis=0))
            tmax = np.maximum(tmax, T.max(axis=0))
            radii.append(np.linalg.norm(Z, axis=1).astype(np.float32))
            maha.append(np.sqrt((T * T / np.maximum(lam, floor)).sum(axis=1)).astype(np.float32))
            if self.box is not None:
                in_box += int(self.box.contains(Z).sum())
        self.data_radii_ = np.concatenate(radii)
        self.data_mahalanobis_ = np.concatenate(maha)
        if self.box is None:
            self.box_ = OrientedBox(self.pca_.mean_, self.pca_.components_, tmin, tmax)
            self.data_frac_in_box_ = 1.0
        else:
            if getattr(self.box, "dim", None) != dim:
                raise InvalidParameterError(f"{owner}: box must have dim {dim} (z_dim); got {getattr(self.box, 'dim', None)}.")
            self.box_ = self.box
            self.data_frac_in_box_ = in_box / n
        self.data_frac_in_ellipsoid_ = float(np.mean(self.data_mahalanobis_.astype(np.float64) ** 2 <= bound))
        self.reference_rows_, nn = reference_distances(source, int(self.n_reference), rng=gen, max_bytes=self.max_bytes)
        self.reference_nn_ = nn[:, 0]
        self.nn_threshold_ = float(np.quantile(self.reference_nn_, self.nn_quantile))
        self.z_dim_ = dim
        self.n_rows_ = n
        self._source = source
        return self

    def report(self, samples: Any, *, name: str = "", source: Any = None) -> LandingReport:
        """Landing figures of ``samples`` (array of shape (n, z_dim)).

        ``source`` defaults to the data the reference was fitted on; pass it again
        when that was a store that has since been closed and reopened.
        """
        if getattr(self, "pca_", None) is None:
            from ..exceptions import NotFittedError

            raise NotFittedError("LandingReference is not fitted yet; call fit(store) first.")
        Z = check_array(samples, name="samples", dtype=np.float64, owner="landing_report", min_rows=1)
        if Z.shape[1] != self.z_dim_:
            raise InvalidParameterError(f"landing_report: samples must have {self.z_dim_} columns (z_dim); got {Z.shape[1]}.")
        src = self._source if source is None else source
        radii = np.linalg.norm(Z, axis=1)
        maha = self.pca_.mahalanobis(Z)
        nn = nearest_distances(Z, src, 1, max_bytes=self.max_bytes)[:, 0]
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
            frac_in_ellipsoid=float(self.ellipsoid_.contains(Z).mean()),
            data_frac_in_ellipsoid=float(self.data_frac_in_ellipsoid_),
            in_fragment_rate=float(np.mean(nn < self.nn_threshold_)),
            nn_median=float(np.median(nn)),
            nn_threshold=float(self.nn_threshold_),
            data_nn_median=float(np.median(self.reference_nn_)),
            level=float(self.level),
            nn_quantile=float(self.nn_quantile),
            n_reference=int(self.reference_rows_.size),
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
    max_bytes: int = 64 << 20,
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
        Quantile of the data's own nearest-neighbour distances that defines "in
        the fragment".
    n_reference : int, default=2000
        Random data rows used for the data's own nearest-neighbour distances
        (each against the full data, itself excluded).
    bins : int, optional
        Histogram bins (default: ``2 sqrt(n_samples)`` clipped to [10, 60]).
    box : OrientedBox or Box, optional
        Box to test against (default: the data's min/max PCA box).
    rng : None, int, SeedSequence or Generator
        Picks the reference rows.
    max_bytes : int, default=64 MiB

    Returns
    -------
    LandingReport

    Notes
    -----
    Several sample sets against the same data: fit a :class:`LandingReference`
    once and call its ``report`` for each. Nearest neighbours are exact
    (``LandingReport.knn``); the cost is ``2 (n_samples + n_reference) n_rows
    z_dim`` flops.
    """
    ref = LandingReference(level=level, nn_quantile=nn_quantile, n_reference=n_reference, bins=bins, box=box,
                           max_bytes=max_bytes).fit(source, rng=rng)
    return ref.report(samples, name=name)
