"""The PCA frame: exact principal axes from the streamed covariance."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._estimator import Estimator
from .._persist import load_state, save_state
from .._validation import check_is_fitted
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, Covariance, CovarianceResult, run_reducers

__all__ = ["PCAFrame"]


class PCAFrame(Estimator):
    """Principal axes of a z-point cloud, computed exactly from its covariance.

    One streaming pass accumulates the mean and the float64 co-moment matrix; the
    axes come from ``numpy.linalg.eigh``. Unlike incremental SVD this is exact and
    independent of the block size. Memory is O(z_dim^2).

    Parameters
    ----------
    n_components : int, optional
        Number of axes kept for ``transform`` (default: all ``z_dim``).
    correlation : bool, default=False
        Diagonalise the correlation matrix instead of the covariance (components
        are standardised first).
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Memory budget per block when fitting from a store.

    Attributes
    ----------
    mean_ : ndarray of shape (z_dim,)
    scale_ : ndarray of shape (z_dim,)
        Per-component standard deviations used for standardising (ones unless
        ``correlation``).
    components_ : ndarray of shape (z_dim, z_dim)
        Orthonormal principal axes as rows, by decreasing eigenvalue.
    explained_variance_ : ndarray of shape (z_dim,)
        Eigenvalues (variances along the axes, ddof=1).
    explained_variance_ratio_ : ndarray of shape (z_dim,)
    effective_dimension_ : float
        Participation ratio ``(sum lambda)^2 / sum lambda^2``.
    covariance_ : ndarray of shape (z_dim, z_dim)
        The covariance (ddof=1) of the data.
    n_samples_seen_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from latentscope.analysis import PCAFrame
    >>> Z = np.random.default_rng(0).normal(size=(500, 4)) * [5, 2, 1, 0.5]
    >>> pca = PCAFrame().fit(Z)
    >>> np.round(pca.explained_variance_ratio_[0], 1)
    np.float64(0.8)
    """

    def __init__(self, *, n_components: int | None = None, correlation: bool = False, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.n_components = n_components
        self.correlation = correlation
        self.max_bytes = max_bytes

    def fit(self, source: Any, *, progress: Callable[[int, int], None] | None = None) -> "PCAFrame":
        """Fit from a :class:`~latentscope.store.ZStore` or an array of shape (n, z_dim)."""
        (cov,) = run_reducers(source, [Covariance()], max_bytes=self.max_bytes, progress=progress)
        return self.fit_covariance(cov.result())

    def fit_covariance(self, result: CovarianceResult) -> "PCAFrame":
        """Fit from an already streamed :class:`~latentscope.stream.CovarianceResult`."""
        if result.n < 2:
            raise InvalidParameterError(f"PCAFrame: at least 2 rows are needed to fit; got {result.n}.")
        dim = result.mean.shape[0]
        k = dim if self.n_components is None else self.n_components
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= dim:
            raise InvalidParameterError(f"PCAFrame: n_components must be an integer in [1, z_dim={dim}]; got {self.n_components!r}.")
        cov = result.cov(ddof=1)
        if self.correlation:
            sd = np.sqrt(np.diag(cov))
            scale = np.where(sd > 0, sd, 1.0)
            mat = cov / np.outer(scale, scale)
        else:
            scale = np.ones(dim)
            mat = cov
        evals, evecs = np.linalg.eigh(mat)
        order = np.argsort(evals)[::-1]
        evals = np.clip(evals[order], 0.0, None)
        axes = evecs[:, order].T
        # deterministic sign: the largest-magnitude entry of each axis is positive
        signs = np.sign(axes[np.arange(dim), np.argmax(np.abs(axes), axis=1)])
        axes *= np.where(signs == 0, 1.0, signs)[:, None]
        total = evals.sum()
        self.mean_ = result.mean.copy()
        self.scale_ = scale
        self.covariance_ = cov
        self.components_ = axes
        self.explained_variance_ = evals
        self.explained_variance_ratio_ = evals / total if total > 0 else np.full(dim, np.nan)
        self.effective_dimension_ = float(total**2 / np.sum(evals**2)) if total > 0 else 0.0
        self.n_components_ = int(k)
        self.n_samples_seen_ = int(result.n)
        return self

    @property
    def z_dim(self) -> int:
        check_is_fitted(self, "components_")
        return self.mean_.shape[0]

    def _check_Z(self, Z: Any, width: int, name: str) -> np.ndarray:
        Z = np.asarray(Z, dtype=np.float64)
        squeeze = Z.ndim == 1
        Z = np.atleast_2d(Z)
        if Z.shape[1] != width:
            raise InvalidParameterError(f"PCAFrame: {name} must have {width} columns; got shape {Z.shape}.")
        return Z, squeeze

    def transform(self, Z: Any, *, n_components: int | None = None) -> np.ndarray:
        """Coordinates of ``Z`` in the frame: ``((Z - mean) / scale) @ components.T``."""
        check_is_fitted(self, "components_")
        Z, squeeze = self._check_Z(Z, self.z_dim, "Z")
        k = self.n_components_ if n_components is None else n_components
        T = ((Z - self.mean_) / self.scale_) @ self.components_[:k].T
        return T[0] if squeeze else T

    def inverse_transform(self, T: Any) -> np.ndarray:
        """Map frame coordinates (the first k axes) back to the latent space."""
        check_is_fitted(self, "components_")
        T = np.asarray(T, dtype=np.float64)
        squeeze = T.ndim == 1
        T = np.atleast_2d(T)
        k = T.shape[1]
        if k > self.z_dim:
            raise InvalidParameterError(f"PCAFrame: T must have at most {self.z_dim} columns; got {k}.")
        Z = (T @ self.components_[:k]) * self.scale_ + self.mean_
        return Z[0] if squeeze else Z

    def mahalanobis(self, Z: Any, *, floor: float = 1e-12) -> np.ndarray:
        """Mahalanobis radius of each row under the fitted mean and covariance."""
        check_is_fitted(self, "components_")
        Z, squeeze = self._check_Z(Z, self.z_dim, "Z")
        T = ((Z - self.mean_) / self.scale_) @ self.components_.T
        var = np.maximum(self.explained_variance_, floor * max(self.explained_variance_[0], floor))
        r = np.sqrt((T * T / var).sum(axis=1))
        return r[0] if squeeze else r

    def save(self, path: str | Path) -> None:
        """Save to ``path.json`` and ``path.h5``."""
        check_is_fitted(self, "components_")
        save_state(
            path, kind="PCAFrame", params=self.get_params(),
            scalars={"n_samples_seen": self.n_samples_seen_, "effective_dimension": self.effective_dimension_,
                     "n_components_": self.n_components_},
            arrays={"mean": self.mean_, "scale": self.scale_, "components": self.components_,
                    "explained_variance": self.explained_variance_, "covariance": self.covariance_},
        )

    @classmethod
    def load(cls, path: str | Path) -> "PCAFrame":
        """Load a frame written by :meth:`save`."""
        state = load_state(path, "PCAFrame")
        scalars, arrays = state.scalars, state.arrays
        self = cls(**{k: v for k, v in state.params.items() if k in cls._param_names()})
        self.mean_, self.scale_ = arrays["mean"], arrays["scale"]
        self.components_, self.explained_variance_ = arrays["components"], arrays["explained_variance"]
        self.covariance_ = arrays["covariance"]
        total = self.explained_variance_.sum()
        self.explained_variance_ratio_ = self.explained_variance_ / total if total > 0 else np.full_like(total, np.nan)
        self.effective_dimension_ = float(scalars["effective_dimension"])
        self.n_components_ = int(scalars["n_components_"])
        self.n_samples_seen_ = int(scalars["n_samples_seen"])
        return self
