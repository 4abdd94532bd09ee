"""Generators fitted to the data's per-component statistics and covariance: box, gauss, mvn."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_positive
from ..exceptions import InvalidParameterError
from ..regions import Box
from ..stream import CovarianceResult, MomentsResult
from ._base import Sampler
from ._data import bounding_boxes_of, check_quantiles, fitted_inputs, is_data, moments_of, pca_of

__all__ = ["BoxSampler", "GaussSampler", "MVNSampler"]


class BoxSampler(Sampler):
    """Uniform in the data's axis-aligned box: each component iid uniform in its range.

    The range of component k is ``[min_k, max_k]`` of the data, or the
    ``quantiles`` (lo, hi) of its values; the box is then scaled about its centre
    by ``shrink``. This is the series' "per-component range" generator (S3).

    Parameters
    ----------
    quantiles : None or (float, float), default=None
        ``None`` uses min/max; ``(0.01, 0.99)`` trims 1 % at each end (streaming
        quantiles of :class:`latentscope.analysis.BoundingBoxes`).
    shrink : float, default=1.0
        Scale factor of the box about its centre (> 0; < 1 shrinks).

    Attributes
    ----------
    z_dim_ : int
    lo_, hi_ : ndarray of shape (z_dim,)
        The sampled box (after ``shrink``).
    """

    name = "box"
    description = "iid uniform within the data's per-component ranges (min/max or quantiles)"
    _array_attrs = ("lo_", "hi_")

    def __init__(self, *, quantiles: tuple[float, float] | None = None, shrink: float = 1.0) -> None:
        self.quantiles = quantiles
        self.shrink = shrink

    @classmethod
    def _params_from_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = dict(params)
        if p.get("quantiles") is not None:
            p["quantiles"] = tuple(p["quantiles"])
        return p

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        owner = "BoxSampler"
        q = check_quantiles(self.quantiles, owner)
        check_positive(self.shrink, "shrink", owner=owner)
        from ..analysis import BoundingBoxes

        if isinstance(source, BoundingBoxes):
            box = source.axis_box_
        elif q is None and (is_data(source) or isinstance(source, MomentsResult)):
            m = moments_of(source, owner)
            box = Box(m.min, m.max)
        else:
            box = bounding_boxes_of(source, q, owner).axis_box_
        box = box.shrink(float(self.shrink))
        self.lo_, self.hi_ = np.array(box.lo), np.array(box.hi)
        self.z_dim_ = int(self.lo_.shape[0])

    @property
    def region_(self) -> Box:
        return Box(self.lo_, self.hi_)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.lo_ + rng.random((n, self.z_dim_)) * (self.hi_ - self.lo_)


class GaussSampler(Sampler):
    """Independent per-component normals ``N(mean_k, (scale * sd_k)^2)``.

    Matches every component's histogram but ignores the correlations between
    components (the series' generator S4).

    Parameters
    ----------
    scale : float, default=1.0
        Factor on every standard deviation (> 0).

    Attributes
    ----------
    z_dim_ : int
    mean_, std_ : ndarray of shape (z_dim,)
        Per-component mean and sample standard deviation (ddof=1) of the data.
    """

    name = "gauss"
    description = "independent N(mean_k, sd_k^2) per component (ignores correlations)"
    _array_attrs = ("mean_", "std_")

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = scale

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        owner = "GaussSampler"
        check_positive(self.scale, "scale", owner=owner)
        if isinstance(source, CovarianceResult):
            mean, var = source.mean, np.diag(source.cov(ddof=1))
        elif isinstance(source, fitted_inputs()) and getattr(source, "covariance_", None) is not None:
            mean, var = source.mean_, np.diag(source.covariance_)  # a PCAFrame or a CoreCovariance
        else:
            m = moments_of(source, owner)
            mean, var = m.mean, m.var_unbiased
        self.mean_ = np.array(mean, dtype=np.float64)
        self.std_ = np.sqrt(np.clip(np.asarray(var, dtype=np.float64), 0.0, None))
        self.z_dim_ = int(self.mean_.shape[0])

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean_ + (self.scale * self.std_) * rng.standard_normal((n, self.z_dim_))


class MVNSampler(Sampler):
    """The fitted multivariate normal ``N(mu, scale^2 Sigma)`` (the series' S6; RAE's "N").

    Sampled as ``z = mu + (scale * sqrt(lambda) * xi) @ V`` with the eigenvalues
    ``lambda`` and orthonormal eigenvector rows ``V`` of ``Sigma`` (exact, also for
    a singular covariance).

    Parameters
    ----------
    covariance : {"full", "core"}, default="full"
        ``"full"``: the mean and covariance (ddof=1) of all z-points. ``"core"``:
        the robust, iteratively trimmed core covariance of
        :class:`latentscope.analysis.CoreCovariance`.
    scale : float, default=1.0
        Factor on the standard deviations (> 0).

    Attributes
    ----------
    z_dim_ : int
    mean_ : ndarray of shape (z_dim,)
    components_ : ndarray of shape (z_dim, z_dim)
        Eigenvectors of the covariance as rows, by decreasing eigenvalue.
    variances_ : ndarray of shape (z_dim,)
        Eigenvalues (clipped at 0).
    pca_ : PCAFrame
        With ``covariance="full"``: the frame used by ``fit`` (not saved).
    """

    name = "mvn"
    description = "the fitted multivariate normal (full or robust core covariance)"
    _array_attrs = ("mean_", "components_", "variances_")

    def __init__(self, *, covariance: str = "full", scale: float = 1.0) -> None:
        self.covariance = covariance
        self.scale = scale

    @property
    def covariance_(self) -> np.ndarray:
        """The covariance matrix the sampler draws from (before ``scale``)."""
        return (self.components_.T * self.variances_) @ self.components_

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        owner = "MVNSampler"
        check_positive(self.scale, "scale", owner=owner)
        if self.covariance == "full":
            pca = pca_of(source, owner, pca)
            self.pca_ = pca
            mean, cov = pca.mean_, pca.covariance_
        elif self.covariance == "core":
            mean, cov = _core_covariance(source, owner)
        else:
            raise InvalidParameterError(f"{owner}: covariance must be 'full' or 'core'; got {self.covariance!r}.")
        cov = (np.asarray(cov, dtype=np.float64) + np.asarray(cov, dtype=np.float64).T) / 2.0
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1]
        self.mean_ = np.array(mean, dtype=np.float64)
        self.variances_ = np.clip(evals[order], 0.0, None)
        self.components_ = np.ascontiguousarray(evecs[:, order].T)
        self.z_dim_ = int(self.mean_.shape[0])

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        xi = rng.standard_normal((n, self.z_dim_))
        return self.mean_ + (xi * (self.scale * np.sqrt(self.variances_))) @ self.components_


def _core_covariance(source: Any, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """Location and covariance of the robust core (latentscope.analysis.CoreCovariance)."""
    try:
        from ..analysis import CoreCovariance
    except ImportError as exc:
        raise InvalidParameterError(
            f"{owner}: covariance='core' needs latentscope.analysis.CoreCovariance, which is not available."
        ) from exc
    core = source if isinstance(source, CoreCovariance) else CoreCovariance().fit(source)
    loc = getattr(core, "location_", None)
    if loc is None:
        loc = core.mean_
    return np.asarray(loc), np.asarray(core.covariance_)
