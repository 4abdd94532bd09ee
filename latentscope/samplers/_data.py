"""What fitted samplers read from their source: shapes, moments, PCA frames, boxes, radii."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ..stream import Moments, MomentsResult, run_reducers, source_shape

__all__ = [
    "is_data", "source_z_dim", "moments_of", "pca_of", "bounding_boxes_of", "radius_stats",
    "check_quantiles", "check_center", "pca_box_of",
]


def is_data(source: Any) -> bool:
    """True for a store or an array of z-points (not an analysis result)."""
    from ..store import ZStore

    return isinstance(source, (ZStore, np.ndarray, list, tuple))


def source_z_dim(source: Any, owner: str) -> int:
    """Latent dimension of a store, an array, or a fitted analysis result."""
    if is_data(source):
        return int(source_shape(source)[1])
    for attr in ("mean_", "mean"):
        m = getattr(source, attr, None)
        if m is not None:
            return int(np.shape(m)[-1])
    pca = getattr(source, "pca_", None)
    if pca is not None:
        return int(pca.mean_.shape[0])
    raise InvalidParameterError(
        f"{owner}.fit: source must be a ZStore, a path, an array of shape (n, z_dim) or a fitted analysis; "
        f"got {type(source).__name__}."
    )


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


def pca_of(source: Any, owner: str, hint: Any = None) -> Any:
    """A fitted PCAFrame: ``hint``, the source itself, a BoundingBoxes' frame, or fitted on the data."""
    from ..analysis import PCAFrame

    if hint is not None:
        dim = source_z_dim(source, owner)
        if hint.mean_.shape[0] != dim:
            raise InvalidParameterError(f"{owner}.fit: pca has z_dim {hint.mean_.shape[0]}; the source has {dim}.")
        return hint
    if isinstance(source, PCAFrame):
        if getattr(source, "components_", None) is None:
            raise InvalidParameterError(f"{owner}.fit: the PCAFrame passed as source is not fitted.")
        return source
    pca = getattr(source, "pca_", None)
    if pca is not None and getattr(pca, "components_", None) is not None:
        return pca
    cov = getattr(source, "comoment", None)
    if cov is not None:  # a CovarianceResult
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


def radius_stats(source: Any, center: np.ndarray, owner: str, max_bytes: int = 64 << 20) -> tuple[float, float, float]:
    """Mean, standard deviation and root mean square of ``|z - center|`` over the data."""
    from ..stream import iter_array_blocks

    _need_data(source, owner, "matching the data's radii")
    n = 0
    s1 = s2 = 0.0
    for block in iter_array_blocks(source, max_bytes=max_bytes):
        r = np.linalg.norm(np.asarray(block, dtype=np.float64) - center, axis=1)
        n += r.size
        s1 += float(r.sum())
        s2 += float((r * r).sum())
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


def pca_box_of(source: Any, quantiles: tuple[float, float] | None, owner: str, hint: Any = None) -> tuple[Any, Any]:
    """(PCAFrame, OrientedBox): the PCA-aligned bounding box of the data.

    A fitted ``BoundingBoxes`` passed as the source is used as it is (its own
    quantiles apply); otherwise one is fitted on the data with ``quantiles`` (in
    the frame ``hint`` when given).
    """
    box = getattr(source, "pca_box_", None)
    if box is not None:
        return source.pca_, box
    if hint is not None:
        pca_of(source, owner, hint)  # checks z_dim
    bb = bounding_boxes_of(source, quantiles, owner, pca=hint)
    return bb.pca_, bb.pca_box_
