"""Whitened PCA coordinates fitted on one part of the data, with held-out rows for calibration.

In 256-D every distance-based test needs the fragment's own metric (Euclidean
distances are dominated by the few wide axes) and a calibration on rows the metric
was *not* fitted on: the sample covariance of n rows underestimates the thin axes,
so in-sample rows look more typical than fresh draws of the same law.
:class:`HeldOutWhitening` splits the data once: a random set of held-out rows
(``holdout_rows_``) and the fit rows (all others). Mean, principal axes and
variances come from the fit rows only; held-out rows and fresh draws of the data's
law are then exchangeable, so any threshold set on the held-out rows holds for
fresh draws at the same rate.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Iterator

import numpy as np
from scipy.stats import f as f_dist

from .._estimator import Estimator
from .._validation import check_fraction, check_is_fitted, check_positive, check_rng
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, Covariance, iter_array_blocks, reading, run_pass, source_shape
from ._frame import numerical_rank
from ._pca import PCAFrame

__all__ = ["HeldOutWhitening", "hotelling_bound"]


class _FitCovariance:
    """Covariance of the rows whose mask is True (a :func:`run_pass` reducer: ``update(z, is_fit)``)."""

    def __init__(self, dim: int) -> None:
        self.cov = Covariance(dim)

    def update(self, z: np.ndarray, is_fit: np.ndarray) -> "_FitCovariance":
        if is_fit.any():
            self.cov.update(np.asarray(z, dtype=np.float64)[is_fit])
        return self

    def merge(self, other: "_FitCovariance") -> "_FitCovariance":
        self.cov.merge(other.cov)
        return self


def hotelling_bound(level: float, n: int, p: int) -> float:
    """Squared Mahalanobis radius that a *new* point of the law stays below with probability ``level``.

    For mean and covariance (ddof=1) estimated from ``n`` rows of a p-variate normal,
    a new independent row x has ``(x - mean)' S^-1 (x - mean) ~ p (n-1)(n+1) / (n (n-p)) F(p, n-p)``
    (the Hotelling T^2 prediction region). The chi-square quantile is its limit for
    n >> p; at n = 2,000 and p = 256 the chi-square ellipsoid of level 0.99 holds
    only about 0.84 of fresh draws.

    Parameters
    ----------
    level : float in (0, 1)
    n : int
        Rows the mean and covariance were estimated from (n > p).
    p : int
        Dimension (the numerical rank of the covariance).
    """
    check_fraction(level, "level", owner="hotelling_bound")
    if not (isinstance(n, (int, np.integer)) and isinstance(p, (int, np.integer)) and 1 <= p < n):
        raise InvalidParameterError(f"hotelling_bound: need integers 1 <= p < n; got n={n!r}, p={p!r}.")
    n, p = int(n), int(p)
    return float(p * (n - 1) * (n + 1) / (n * (n - p)) * f_dist.ppf(level, p, n - p))


class HeldOutWhitening(Estimator):
    """Whitening (mean, PCA axes, variances) of the fit rows; held-out rows kept apart.

    Parameters
    ----------
    n_holdout : int, default=2000
        Held-out rows; at most ``holdout_share`` of the data, and never so many
        that the fit rows fall below ``z_dim + 2``.
    holdout_share : float, default=1/3
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Memory budget per block.

    Attributes
    ----------
    holdout_rows_ : ndarray of int64, sorted
        Row indices of the held-out rows.
    holdout_ : ndarray of shape (n_holdout, z_dim)
        The held-out rows (float64).
    frame_ : PCAFrame
        Principal axes of the fit rows (covariance, ddof=1).
    scales_ : ndarray of shape (z_dim,)
        Standard deviations along the axes (floored at ``1e-6 sqrt(lambda_1)``).
    rank_ : int
        Numerical rank of the fit rows' covariance.
    n_fit_, n_rows_, z_dim_ : int

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.random.default_rng(0).normal(size=(900, 3)) * [4.0, 1.0, 0.1]
    >>> w = HeldOutWhitening(n_holdout=300).fit(Z, rng=0)
    >>> w.n_fit_, w.holdout_rows_.size
    (600, 300)
    >>> bool(abs(w.transform(w.holdout_).std() - 1) < 0.1)
    True
    """

    def __init__(self, *, n_holdout: int = 2000, holdout_share: float = 1 / 3, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.n_holdout = n_holdout
        self.holdout_share = holdout_share
        self.max_bytes = max_bytes

    def fit(self, source: Any, *, rng: Any = None) -> "HeldOutWhitening":
        """Pick the held-out rows at random and fit the whitening on the others (one pass).

        Parameters
        ----------
        source : ZStore or array of shape (n, z_dim)
        rng : None, int, SeedSequence or Generator
            Picks the held-out rows.
        """
        owner = "HeldOutWhitening"
        check_positive(self.n_holdout, "n_holdout", owner=owner, integer=True)
        check_fraction(self.holdout_share, "holdout_share", owner=owner)
        gen = check_rng(rng)
        n, dim = source_shape(source)
        m = min(int(self.n_holdout), int(n * self.holdout_share), n - dim - 2)
        if m < 10:
            raise InvalidParameterError(
                f"{owner}.fit: the data needs at least z_dim + 12 = {dim + 12} rows (fit rows beyond z_dim plus "
                f"10 held-out rows); got {n}.")
        rows = np.sort(gen.choice(n, size=m, replace=False)).astype(np.int64)
        self.holdout_rows_ = rows
        is_fit = np.ones(n, bool)
        is_fit[rows] = False
        # one streamed pass over the fit rows (on the active dask cluster when there is one)
        cov = run_pass(source, partial(_FitCovariance, dim), labels=is_fit, max_bytes=self.max_bytes)
        with reading(source, owner=owner) as src:
            self.holdout_ = np.asarray(src.take(rows), dtype=np.float64)
        self.frame_ = PCAFrame().fit_covariance(cov.cov.result())
        lam = self.frame_.explained_variance_
        self.rank_ = numerical_rank(lam)
        if self.rank_ == 0:
            raise InvalidParameterError(f"{owner}.fit: the data has no variance; there is nothing to whiten.")
        self.scales_ = np.sqrt(np.maximum(lam, 1e-12 * lam[0]))
        self.n_fit_ = int(n - m)
        self.n_rows_ = int(n)
        self.z_dim_ = int(dim)
        return self

    def transform(self, Z: Any) -> np.ndarray:
        """Whitened coordinates ``((Z - mean) @ axes.T) / scales`` of shape (n, z_dim)."""
        check_is_fitted(self, "frame_")
        return self.frame_.transform(Z) / self.scales_

    def mahalanobis(self, Z: Any) -> np.ndarray:
        """Mahalanobis radius (length of the whitened coordinates) of each row."""
        W = self.transform(Z)
        return np.sqrt(np.einsum("ij,ij->i", W, W))

    def bound(self, level: float) -> float:
        """Squared Mahalanobis radius holding ``level`` of fresh draws (:func:`hotelling_bound`)."""
        check_is_fitted(self, "frame_")
        return hotelling_bound(level, self.n_fit_, self.rank_)

    def iter_blocks(self, source: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Blocks ``(X, is_fit)`` of ``source``: float64 rows and a mask, False on held-out rows."""
        rows = self.holdout_rows_
        start = 0
        for block in iter_array_blocks(source, max_bytes=self.max_bytes):
            X = np.asarray(block, dtype=np.float64)
            stop = start + X.shape[0]
            lo, hi = np.searchsorted(rows, [start, stop])
            mask = np.ones(X.shape[0], bool)
            mask[rows[lo:hi] - start] = False
            yield X, mask
            start = stop

    def iter_fit_blocks(self, source: Any) -> Iterator[np.ndarray]:
        """Whitened blocks of the fit rows of ``source`` (the data it was fitted on)."""
        check_is_fitted(self, "frame_")
        for X, mask in self.iter_blocks(source):
            if mask.any():
                yield self.transform(X[mask])

    def nearest(self, Z: Any, source: Any, k: int = 1) -> np.ndarray:
        """Distances in whitened coordinates from ``Z`` to its ``k`` nearest fit rows of ``source``.

        Exact (:func:`latentscope.neighbors.nearest_distances` with the held-out
        rows skipped); returns an array of shape (n, k).
        """
        from ..neighbors import nearest_distances

        check_is_fitted(self, "frame_")
        return nearest_distances(Z, source, k, skip=self.holdout_rows_, transform=self.transform,
                                 max_bytes=self.max_bytes)
