"""What fitted samplers read from their source: shapes, moments, PCA frames, boxes, radii."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ..stream import (
    DEFAULT_MAX_BYTES,
    CovarianceResult,
    Moments,
    MomentsResult,
    ZSource,
    as_zsource,
    run_pass,
    run_reducers,
)

__all__ = [
    "fitted_inputs", "fit_source", "is_data", "source_z_dim", "mean_of", "moments_of", "pca_of",
    "bounding_boxes_of", "radius_stats", "check_quantiles", "check_center", "pca_box_of", "subsample",
]


def fitted_inputs() -> tuple[type, ...]:
    """The fitted analysis results a sampler may be fitted from instead of the z-points."""
    from ..analysis import BoundingBoxes, CoreCovariance, PCAFrame

    return (PCAFrame, BoundingBoxes, CoreCovariance, MomentsResult, CovarianceResult)


def fit_source(source: Any, owner: str) -> Any:
    """What ``Sampler.fit`` hands to ``_fit``: None, a fitted analysis result as is, or a :class:`ZSource`."""
    if source is None or isinstance(source, fitted_inputs()):
        return source
    return as_zsource(source, owner=f"{owner}.fit")


def is_data(source: Any) -> bool:
    """True for the z-points themselves (a :class:`ZSource`), False for an analysis result."""
    return isinstance(source, ZSource)


def source_z_dim(source: Any, owner: str) -> int:
    """Latent dimension of the z-points or of a fitted analysis result."""
    from ..analysis import BoundingBoxes

    if isinstance(source, ZSource):
        return source.dim
    if isinstance(source, (MomentsResult, CovarianceResult)):
        return int(np.shape(source.mean)[-1])
    if isinstance(source, BoundingBoxes):
        return int(source.pca_.mean_.shape[0])
    if isinstance(source, fitted_inputs()):
        return int(np.shape(source.mean_)[-1])
    raise InvalidParameterError(
        f"{owner}.fit: source must be a ZStore, a path, an array of shape (n, z_dim) or a fitted analysis; "
        f"got {type(source).__name__}."
    )


def mean_of(source: Any, owner: str) -> np.ndarray:
    """The data mean: from a fitted frame or core covariance, from moments, or one streamed pass."""
    from ..analysis import CoreCovariance, PCAFrame

    if isinstance(source, (PCAFrame, CoreCovariance)):
        return np.array(source.mean_, dtype=np.float64)
    return moments_of(source, owner).mean.copy()


def _need_data(source: Any, owner: str, what: str) -> None:
    if not is_data(source):
        raise InvalidParameterError(
            f"{owner}.fit: {what} needs the z-points themselves; got a {type(source).__name__}. Pass a store or an array."
        )


def moments_of(source: Any, owner: str) -> MomentsResult:
    """Per-component moments: from a MomentsResult, or one streamed pass over the data."""
    if isinstance(source, MomentsResult):
        return source
    _need_data(source, owner, "per-component moments")
    (m,) = run_reducers(source, [Moments()])
    res = m.result()
    if res.n < 2:
        raise InvalidParameterError(f"{owner}.fit: at least 2 z-points are needed; got {res.n}.")
    return res


def pca_of(source: Any, owner: str, pca: Any = None) -> Any:
    """A fitted PCAFrame: ``pca`` (the frame given to ``fit``), the source itself, a BoundingBoxes' frame,
    one fitted on a CovarianceResult, or one fitted on the data."""
    from ..analysis import BoundingBoxes, PCAFrame

    if pca is not None:
        dim = source_z_dim(source, owner)
        if pca.mean_.shape[0] != dim:
            raise InvalidParameterError(f"{owner}.fit: pca has z_dim {pca.mean_.shape[0]}; the source has {dim}.")
        return pca
    if isinstance(source, PCAFrame):
        if getattr(source, "components_", None) is None:
            raise InvalidParameterError(f"{owner}.fit: the PCAFrame passed as source is not fitted.")
        return source
    if isinstance(source, BoundingBoxes) and getattr(source, "pca_", None) is not None:
        return source.pca_
    if isinstance(source, CovarianceResult):
        return PCAFrame().fit_covariance(source)
    _need_data(source, owner, "a PCA frame")
    return PCAFrame().fit(source)


def bounding_boxes_of(source: Any, quantiles: tuple[float, float] | None, owner: str, pca: Any = None) -> Any:
    """A fitted ``latentscope.analysis.BoundingBoxes`` (given, or fitted on the data)."""
    from ..analysis import BoundingBoxes

    if isinstance(source, BoundingBoxes):
        return source
    _need_data(source, owner, "a bounding box")
    return BoundingBoxes(quantiles=quantiles, pca=pca).fit(source)


class _RadiusSums:
    """Count, sum and sum of squares of ``|z - center|`` (a :func:`~latentscope.stream.run_pass` reducer)."""

    def __init__(self, center: np.ndarray) -> None:
        self.center = center
        self.n, self.s1, self.s2 = 0, 0.0, 0.0

    def update(self, z: np.ndarray, groups: Any = None) -> "_RadiusSums":
        r = np.linalg.norm(np.asarray(z, dtype=np.float64) - self.center, axis=1)
        self.n += r.size
        self.s1 += float(r.sum())
        self.s2 += float((r * r).sum())
        return self

    def merge(self, other: "_RadiusSums") -> "_RadiusSums":
        self.n, self.s1, self.s2 = self.n + other.n, self.s1 + other.s1, self.s2 + other.s2
        return self


def radius_stats(source: Any, center: np.ndarray, owner: str, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[float, float, float]:
    """Mean, standard deviation and root mean square of ``|z - center|`` over the data (one streamed pass)."""
    _need_data(source, owner, "matching the data's radii")
    sums = run_pass(source, partial(_RadiusSums, np.asarray(center, dtype=np.float64)), max_bytes=max_bytes)
    n, s1, s2 = sums.n, sums.s1, sums.s2
    if n < 2:
        raise InvalidParameterError(f"{owner}.fit: at least 2 z-points are needed; got {n}.")
    mean = s1 / n
    var = max(s2 / n - mean * mean, 0.0)
    return mean, float(np.sqrt(var)), float(np.sqrt(s2 / n))


def check_quantiles(q: Any, owner: str) -> tuple[float, float] | None:
    """``None`` (min/max) or a pair ``0 <= lo < hi <= 1``."""
    if q is None:
        return None
    try:
        lo, hi = (float(v) for v in q)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not (0.0 <= lo < hi <= 1.0):
        raise InvalidParameterError(f"{owner}: quantiles must be None or a pair 0 <= lo < hi <= 1; got {q!r}.")
    return (lo, hi)


def check_center(center: Any, z_dim: int | None, owner: str) -> np.ndarray | str | None:
    """``None`` (origin), ``"mean"`` (the data mean) or a finite vector of length z_dim."""
    if center is None or (isinstance(center, str) and center in ("origin", "mean")):
        return None if center in (None, "origin") else "mean"
    if isinstance(center, str):
        raise InvalidParameterError(f"{owner}: center must be None, 'origin', 'mean' or a vector; got {center!r}.")
    c = np.asarray(center, dtype=np.float64)
    if c.ndim != 1 or not np.isfinite(c).all() or (z_dim is not None and c.shape[0] != z_dim):
        want = f"of length {z_dim}" if z_dim is not None else "1-D"
        raise InvalidParameterError(f"{owner}: center must be a finite vector {want}; got shape {c.shape}.")
    return c


def pca_box_of(source: Any, quantiles: tuple[float, float] | None, owner: str, pca: Any = None) -> tuple[Any, Any]:
    """(PCAFrame, OrientedBox): the PCA-aligned bounding box of the data.

    A fitted ``BoundingBoxes`` passed as the source is used as it is (its own
    quantiles apply); otherwise one is fitted on the data with ``quantiles`` (in
    the frame ``pca`` when given).
    """
    from ..analysis import BoundingBoxes

    if isinstance(source, BoundingBoxes):
        return source.pca_, source.pca_box_
    if pca is not None:
        pca_of(source, owner, pca)  # checks z_dim
    bb = bounding_boxes_of(source, quantiles, owner, pca=pca)
    return bb.pca_, bb.pca_box_


def subsample(source: ZSource, max_rows: int | None, rng: np.random.Generator) -> np.ndarray:
    """All rows (``max_rows`` None or >= n_rows) or ``max_rows`` rows drawn without replacement, as float64.

    The rows are taken in increasing order, so the result does not depend on how
    the source stores them.
    """
    n = source.n_rows
    if max_rows is None or max_rows >= n:
        return np.asarray(source.read(), dtype=np.float64)
    rows = np.sort(rng.choice(n, size=int(max_rows), replace=False))
    return np.asarray(source.take(rows), dtype=np.float64)
