"""kNN-manifold metrics: improved precision/recall and density/coverage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .._validation import check_array, check_positive
from ..exceptions import InvalidParameterError
from ..neighbors import ball_counts, kth_neighbour_sqdist, resolve_engine
from ..stream import DEFAULT_MAX_BYTES

__all__ = ["PrecisionRecall", "DensityCoverage", "precision_recall", "density_coverage", "manifold_metrics"]


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Attributes
    ----------
    precision : float
        Share of generated points inside the real manifold (the union of the balls
        around real points whose radius is the distance to their k-th nearest real
        neighbour).
    recall : float
        Share of real points inside the generated manifold (same construction).
    k : int
    n_real, n_fake : int
    method : str
        ``"exact"`` (blockwise float64 distances) or ``"faiss"`` (exhaustive float32
        search: memberships within rounding distance of a ball's surface may flip).
    fake_inside : ndarray of shape (n_fake,), bool
        Whether each generated point lies in the real manifold (``precision`` is its
        mean); not part of the comparison or the repr.
    """

    precision: float
    recall: float
    k: int
    n_real: int
    n_fake: int
    method: str
    fake_inside: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class DensityCoverage:
    """Density and coverage (Naeem et al. 2020).

    Attributes
    ----------
    density : float
        ``(1 / (k M)) sum_j sum_i 1[fake_j in B(real_i, NND_k(real_i))]``: the average
        number of real balls holding a generated point, over k. Its expectation is
        exactly 1 when both sets come from one distribution; it exceeds 1 when the
        generated points crowd into dense real regions.
    coverage : float
        Share of real balls that contain at least one generated point. For one
        distribution and set sizes N (real), M (fake) its expectation is
        ``1 - prod_{i=1..k} (N - i) / (N + M - i)`` (about ``1 - 2^-k`` for M = N).
    k : int
    n_real, n_fake : int
    method : str
        ``"exact"`` or ``"faiss"`` (see :class:`PrecisionRecall`).
    """

    density: float
    coverage: float
    k: int
    n_real: int
    n_fake: int
    method: str


def _check_k(k: Any, name: str, owner: str, n_min: int) -> int:
    check_positive(k, name, owner=owner, integer=True, minimum=1)
    if k >= n_min:
        raise InvalidParameterError(
            f"{owner}: {name} must be smaller than the number of rows of each set it is used on ({n_min}); got {k}."
        )
    return int(k)


def _check_sets(real: Any, fake: Any, owner: str) -> tuple[np.ndarray, np.ndarray]:
    x = check_array(real, name="real", min_rows=2, owner=owner)
    y = check_array(fake, name="fake", min_rows=2, owner=owner)
    if x.shape[1] != y.shape[1]:
        raise InvalidParameterError(f"{owner}: real and fake must have the same dimension; got {x.shape[1]} and {y.shape[1]}.")
    return x, y


def manifold_metrics(
    real: Any,
    fake: Any,
    *,
    k_pr: int | None = 3,
    k_dc: int | None = 5,
    knn: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
    real_sqradii: Mapping[int, Any] | None = None,
) -> tuple[PrecisionRecall | None, DensityCoverage | None]:
    """Precision/recall and density/coverage from shared neighbour passes.

    Three passes in all: the k-th neighbour radii of the real set (for both ks at
    once), those of the generated set, and one pass of generated points against the
    real set that yields precision, recall, density and coverage together. Pass
    ``k_pr=None`` or ``k_dc=None`` to skip one pair.

    Parameters
    ----------
    real, fake : array-like of shape (n, dim)
    k_pr : int or None, default=3
        Neighbour rank of the precision/recall balls.
    k_dc : int or None, default=5
        Neighbour rank of the density/coverage balls (real set only).
    knn : {"auto", "exact", "faiss"}, default="auto"
        Neighbour engine (see :mod:`latentscope.neighbors`); "auto" is exact up to
        20 000 x 20 000 points.
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Memory budget of one block of distances (exact engine).
    real_sqradii : mapping of int to ndarray of shape (n_real,), optional
        Squared k-th neighbour radii of the real set for ``k_pr`` and ``k_dc``
        (:func:`latentscope.neighbors.kth_neighbour_sqdist`), when several generated
        sets are scored against one real set (skips that pass).

    Returns
    -------
    (PrecisionRecall or None, DensityCoverage or None)
    """
    owner = "manifold_metrics"
    x, y = _check_sets(real, fake, owner)
    if k_pr is None and k_dc is None:
        raise InvalidParameterError(f"{owner}: at least one of k_pr and k_dc must be given.")
    n, m = x.shape[0], y.shape[0]
    if k_pr is not None:
        k_pr = _check_k(k_pr, "k_pr", owner, min(n, m))
    if k_dc is not None:
        k_dc = _check_k(k_dc, "k_dc", owner, n)
    method = resolve_engine(knn, max(n * n, m * m, n * m), owner=owner)
    ks = [k for k in (k_pr, k_dc) if k is not None]
    if real_sqradii is None:
        real_r2 = dict(zip(ks, kth_neighbour_sqdist(x, ks, method=method, max_bytes=max_bytes)))
    else:
        missing = [k for k in ks if k not in real_sqradii]
        if missing:
            raise InvalidParameterError(f"{owner}: real_sqradii holds no radii for k = {missing[0]}.")
        real_r2 = {k: np.asarray(real_sqradii[k], dtype=np.float64) for k in ks}
        if any(r.shape != (n,) for r in real_r2.values()):
            raise InvalidParameterError(f"{owner}: real_sqradii must hold one radius per real row ({n}).")
    fake_r2 = kth_neighbour_sqdist(y, [k_pr], method=method, max_bytes=max_bytes)[0] if k_pr is not None else None
    counts = ball_counts(y, x, [real_r2[k] for k in ks], fake_r2, method=method, max_bytes=max_bytes)
    pr = dc = None
    if k_pr is not None:
        inside = counts.query_counts[0] > 0
        precision = float(np.mean(inside))
        recall = float(np.mean(counts.centre_in_query_balls))
        pr = PrecisionRecall(precision, recall, k_pr, n, m, counts.method, inside)
    if k_dc is not None:
        j = ks.index(k_dc)
        density = float(counts.query_counts[j].sum() / (k_dc * m))
        coverage = float(np.mean(counts.centre_counts[j] > 0))
        dc = DensityCoverage(density, coverage, k_dc, n, m, counts.method)
    return pr, dc


def precision_recall(
    real: Any, fake: Any, *, k: int = 3, knn: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES
) -> PrecisionRecall:
    """Improved precision and recall of a generated set against a real set.

    Each set's manifold is the union of balls around its points with radius the
    distance to the point's k-th nearest neighbour in the same set (the point itself
    excluded). Precision is the share of generated points inside the real manifold,
    recall the share of real points inside the generated manifold (Kynkäänniemi et
    al., NeurIPS 2019). Distances are computed blockwise; no full distance matrix is
    held.

    Parameters
    ----------
    real, fake : array-like of shape (n, dim)
        Features (both sets need more than ``k`` rows).
    k : int, default=3
    knn : {"auto", "exact", "faiss"}, default="auto"
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Memory budget of one block of distances.

    Returns
    -------
    PrecisionRecall

    Notes
    -----
    For two samples of one distribution both values are high but below 1, and they
    fall with the dimension of the data (the union of k = 3 balls leaves gaps).
    Membership uses ``<=`` (a point on a ball's surface is inside).

    Examples
    --------
    >>> import numpy as np
    >>> from latentscope.metrics import precision_recall
    >>> rng = np.random.default_rng(0)
    >>> real = rng.uniform(size=(1000, 2))
    >>> fake = real[real[:, 0] < 0.5]  # a subset of the real support
    >>> pr = precision_recall(real, fake)
    >>> pr.precision, round(pr.recall, 1)
    (1.0, 0.5)
    """
    pr, _ = manifold_metrics(real, fake, k_pr=k, k_dc=None, knn=knn, max_bytes=max_bytes)
    return pr


def density_coverage(
    real: Any, fake: Any, *, k: int = 5, knn: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES
) -> DensityCoverage:
    """Density and coverage of a generated set against a real set (Naeem et al., ICML 2020).

    Only real points carry balls (radius: distance to the k-th nearest other real
    point), which makes both measures robust to outliers among the generated points.
    Distances are computed blockwise; no full distance matrix is held.

    Parameters
    ----------
    real, fake : array-like of shape (n, dim)
        Features (the real set needs more than ``k`` rows).
    k : int, default=5
    knn : {"auto", "exact", "faiss"}, default="auto"
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)

    Returns
    -------
    DensityCoverage
    """
    _, dc = manifold_metrics(real, fake, k_pr=None, k_dc=k, knn=knn, max_bytes=max_bytes)
    return dc
