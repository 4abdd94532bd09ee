"""Fréchet distance between two feature sets, from their means and covariances."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._validation import check_array
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, Covariance, CovarianceResult, run_reducers

__all__ = ["FeatureStats", "feature_stats", "frechet_distance"]


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Mean and covariance (ddof=1) of a feature set: all the Fréchet distance needs.

    Stream them once from a large set with :func:`feature_stats` and compare many
    generated sets against them.

    Attributes
    ----------
    n : int
        Number of rows the statistics summarise.
    mean : ndarray of shape (dim,), float64
    cov : ndarray of shape (dim, dim), float64
    """

    n: int
    mean: np.ndarray
    cov: np.ndarray

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64)
        cov = np.asarray(self.cov, dtype=np.float64)
        if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
            raise InvalidParameterError(
                f"FeatureStats: mean must have shape (dim,) and cov (dim, dim); got {mean.shape} and {cov.shape}."
            )
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise InvalidParameterError("FeatureStats: mean and cov must be finite (were at least 2 rows seen?).")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", (cov + cov.T) / 2.0)

    @property
    def dim(self) -> int:
        """Number of features."""
        return self.mean.shape[0]

    @classmethod
    def from_features(cls, X: Any) -> "FeatureStats":
        """Statistics of an in-memory array of shape (n, dim), n >= 2."""
        X = check_array(X, name="features", min_rows=2, owner="FeatureStats")
        return cls(X.shape[0], X.mean(axis=0), np.cov(X, rowvar=False, ddof=1).reshape(X.shape[1], X.shape[1]))

    @classmethod
    def from_covariance(cls, result: CovarianceResult) -> "FeatureStats":
        """Statistics from a streamed :class:`~latentscope.stream.CovarianceResult`."""
        if result.n < 2:
            raise InvalidParameterError(f"FeatureStats: at least 2 rows are needed; got {result.n}.")
        return cls(result.n, result.mean, result.cov(ddof=1))

    def save(self, path: str | Path) -> None:
        """Write ``path.json`` and ``path.h5`` (the one format of :mod:`latentscope._persist`)."""
        from .._persist import save_state  # noqa: PLC0415

        save_state(path, kind="FeatureStats", params={}, scalars={"n": self.n},
                   arrays={"mean": self.mean, "cov": self.cov})

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        """Read statistics written by :meth:`save`."""
        from .._persist import load_state  # noqa: PLC0415

        state = load_state(path, "FeatureStats")
        return cls(int(state.scalars["n"]), state.arrays["mean"], state.arrays["cov"])


def feature_stats(
    source: Any,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureStats:
    """Stream the mean and covariance of a store or array in one pass (float64).

    Parameters
    ----------
    source : ZStore, store path, ZSource or array-like of shape (n, dim)
        E.g. the store of encoded real images: their latent features.
    transform : callable, optional
        Applied to each block first (a feature map from z-points to features).
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Memory budget per block.
    progress : callable(rows_done, rows_total), optional

    Returns
    -------
    FeatureStats
    """
    (cov,) = run_reducers(source, [Covariance()], max_bytes=max_bytes, progress=progress, transform=transform)
    return FeatureStats.from_covariance(cov.result())


def _as_stats(x: Any, name: str) -> FeatureStats:
    if isinstance(x, FeatureStats):
        return x
    return FeatureStats.from_features(check_array(x, name=name, min_rows=2, owner="frechet_distance"))


def _trace_sqrt_product(c1: np.ndarray, c2: np.ndarray) -> float:
    """``Tr((C1 C2)^(1/2))`` for symmetric PSD C1, C2, through symmetric eigenproblems.

    ``C1 C2 = S S C2`` with ``S = C1^(1/2)`` has the eigenvalues of the symmetric PSD
    matrix ``S C2 S``, so the trace of the principal square root is the sum of their
    square roots. Unlike ``scipy.linalg.sqrtm(C1 @ C2)`` this never produces complex
    parts; eigenvalues that rounding pushes below zero are clipped to zero.
    """
    w, v = np.linalg.eigh(c1)
    s = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = s @ c2 @ s
    ev = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def frechet_distance(real: Any, fake: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``FD = |mu_r - mu_f|^2 + Tr(C_r + C_f - 2 (C_r C_f)^(1/2))``, the squared 2-Wasserstein
    distance between ``N(mu_r, C_r)`` and ``N(mu_f, C_f)`` (FID with the Inception
    network replaced by any feature map).

    Parameters
    ----------
    real, fake : array-like of shape (n, dim) or FeatureStats
        Feature sets (n >= 2; covariances with ddof=1) or their precomputed statistics.

    Returns
    -------
    float
        Non-negative; exactly 0.0 when both statistics are identical. The plug-in
        estimate is biased upwards for finite n (roughly by ``Tr`` terms of order
        dim/n), so compare values only at equal set sizes.

    Notes
    -----
    Computed in float64 with symmetric eigendecompositions (see ``_trace_sqrt_product``),
    which needs no regularising offset for singular covariances (n < dim).

    Examples
    --------
    >>> import numpy as np
    >>> from latentscope.metrics import FeatureStats, frechet_distance
    >>> a = FeatureStats(1, np.zeros(2), np.eye(2))
    >>> b = FeatureStats(1, np.array([3.0, 0.0]), 4 * np.eye(2))
    >>> round(frechet_distance(a, b), 6)  # 3^2 + 2 * (2 - 1)^2
    11.0
    """
    a, b = _as_stats(real, "real"), _as_stats(fake, "fake")
    if a.dim != b.dim:
        raise InvalidParameterError(f"frechet_distance: real and fake must have the same dimension; got {a.dim} and {b.dim}.")
    if np.array_equal(a.mean, b.mean) and np.array_equal(a.cov, b.cov):
        return 0.0
    diff = a.mean - b.mean
    fd = float(diff @ diff) + float(np.trace(a.cov) + np.trace(b.cov)) - 2.0 * _trace_sqrt_product(a.cov, b.cov)
    return max(fd, 0.0)
