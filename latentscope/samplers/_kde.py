"""A smoothed bootstrap of the z-points (Gaussian KDE) with a bandwidth that does not memorise."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_fraction, check_positive
from ..exceptions import InvalidParameterError
from ._base import Sampler
from ._data import is_data, pca_of, subsample

__all__ = ["KDESampler"]

_H_MIN = 0.02


class KDESampler(Sampler):
    """Variance-preserving smoothed bootstrap: a training code, shrunk, plus Gaussian noise.

    Each sample picks a stored z-point ``z_i`` at random and returns

    ``z = mu + sqrt(1 - h^2) (z_i - mu) + h * eps``,  ``eps ~ N(0, Sigma)``,

    with the data mean ``mu`` and covariance ``Sigma`` (drawn exactly in the PCA frame).
    This is a Gaussian kernel density estimate with kernel covariance ``h^2 Sigma``
    whose centres are pulled towards the mean so that the samples have exactly the
    data's mean and covariance (Silverman's shrunk smoothed bootstrap): the
    Fréchet distance sees the same first two moments as the fitted normal, while the
    samples keep the data's clusters and non-Gaussian outer layers. ``h = 1`` is the
    multivariate normal (``mvn``); ``h -> 0`` copies the training codes.

    With ``bandwidth="auto"`` the bandwidth is the smallest ``h`` at which the samples
    are no nearer to a training code than the training codes are to each other, at
    the ``quantile`` of the nearest-neighbour distances:
    ``Q_q[d(sample, nearest centre)] >= target * Q_q[d(centre, nearest other centre)]``.
    Fresh draws from the data distribution sit at ratio about 1, copies at 0, so
    ``target=1`` keeps the share of samples below the q-quantile of the training
    codes' own neighbour distances at about q: the sampler does not memorise by
    construction (:func:`latentscope.metrics.memorisation` measures exactly this).
    The ratio is found by bisection on ``calibration_rows`` centres with
    ``n_calibration`` queries, using the same random draws for every ``h`` (exact
    nearest neighbours).

    Parameters
    ----------
    bandwidth : float in (0, 1] or "auto", default="auto"
        The noise scale ``h`` relative to the data's spread.
    target : float, default=1.0
        ``auto``: the ratio of nearest-neighbour distance quantiles to reach (> 0;
        larger is farther from the training codes).
    quantile : float in (0, 1), default=0.05
        ``auto``: the quantile of the nearest-neighbour distances compared (the
        lower tail, where copies would show; 0.5 compares medians).
    max_rows : int or None, default=50000
        Keep at most this many z-points as centres (a uniform random subset);
        None keeps all (``save`` writes them to the ``.npz`` file).
    n_calibration : int, default=1000
        ``auto``: queries per evaluation of the ratio.
    calibration_rows : int, default=10000
        ``auto``: centres used for the calibration (a random subset).

    Attributes
    ----------
    z_dim_ : int
    bandwidth_ : float
        The bandwidth ``h`` used.
    centers_ : ndarray of shape (n_centers, z_dim), float32
        The stored z-points.
    mean_ : ndarray of shape (z_dim,)
    components_ : ndarray of shape (z_dim, z_dim)
        Principal axes (rows) of the data's covariance.
    variances_ : ndarray of shape (z_dim,)
    n_centers_ : int
    calibration_ratio_ : float or None
        ``auto``: the ratio reached at ``bandwidth_``.
    train_nn_quantile_ : float or None
        ``auto``: the ``quantile`` of the calibration centres' nearest-other-centre
        distances.

    Examples
    --------
    >>> import numpy as np
    >>> from latentscope.samplers import make_sampler
    >>> Z = np.random.default_rng(0).normal(size=(500, 4))
    >>> s = make_sampler("kde", bandwidth=0.5).fit(Z, rng=0)
    >>> s.sample(3, rng=1).shape
    (3, 4)
    """

    name = "kde"
    description = "smoothed bootstrap: a stored code shrunk to the mean plus N(0, h^2 Sigma) noise (auto h: no memorising)"
    _array_attrs = ("centers_", "mean_", "components_", "variances_")
    _scalar_attrs = ("bandwidth_", "n_centers_", "calibration_ratio_", "train_nn_quantile_")

    def __init__(
        self,
        *,
        bandwidth: float | str = "auto",
        target: float = 1.0,
        quantile: float = 0.05,
        max_rows: int | None = 50000,
        n_calibration: int = 1000,
        calibration_rows: int = 10000,
    ) -> None:
        self.bandwidth = bandwidth
        self.target = target
        self.quantile = quantile
        self.max_rows = max_rows
        self.n_calibration = n_calibration
        self.calibration_rows = calibration_rows

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        owner = "KDESampler"
        h = self.bandwidth
        if not (isinstance(h, str) and h == "auto"):
            if isinstance(h, bool) or not isinstance(h, (int, float, np.integer, np.floating)) or not 0 < float(h) <= 1:
                raise InvalidParameterError(f"{owner}: bandwidth must be 'auto' or a number in (0, 1]; got {h!r}.")
        check_positive(self.target, "target", owner=owner)
        check_fraction(self.quantile, "quantile", owner=owner)
        check_positive(self.n_calibration, "n_calibration", owner=owner, integer=True)
        check_positive(self.calibration_rows, "calibration_rows", owner=owner, integer=True)
        if self.max_rows is not None:
            check_positive(self.max_rows, "max_rows", owner=owner, integer=True)
        if not is_data(source):
            raise InvalidParameterError(f"{owner}.fit: the centres are z-points; pass a store or an array.")
        n, dim = source.shape
        if n < 3:
            raise InvalidParameterError(f"{owner}: at least 3 z-points are needed; got {n}.")
        pca = pca_of(source, owner, pca)
        self.centers_ = subsample(source, self.max_rows, rng).astype(np.float32)
        self.mean_ = np.array(pca.mean_, dtype=np.float64)
        self.components_ = np.array(pca.components_, dtype=np.float64)
        self.variances_ = np.clip(np.array(pca.explained_variance_, dtype=np.float64), 0.0, None)
        self.z_dim_ = int(dim)
        self.n_centers_ = int(self.centers_.shape[0])
        self.calibration_ratio_ = self.train_nn_quantile_ = None
        if isinstance(h, str):
            self.bandwidth_, self.calibration_ratio_, self.train_nn_quantile_ = self._calibrate(rng)
        else:
            self.bandwidth_ = float(h)

    def _draw(self, centers: np.ndarray, idx: np.ndarray, xi: np.ndarray, h: float) -> np.ndarray:
        a = np.sqrt(max(1.0 - h * h, 0.0))
        noise = (xi * np.sqrt(self.variances_)) @ self.components_
        return self.mean_ + a * (centers[idx].astype(np.float64) - self.mean_) + h * noise

    def _calibrate(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """Bisection for the smallest h whose median NN-distance ratio reaches ``target``."""
        from ..neighbors import nearest_distances

        C = self.centers_
        if C.shape[0] > self.calibration_rows:
            C = C[np.sort(rng.choice(C.shape[0], int(self.calibration_rows), replace=False))]
        C = C.astype(np.float64)
        m = int(min(self.n_calibration, C.shape[0]))
        q = rng.choice(C.shape[0], m, replace=False)
        qq = float(self.quantile)
        d_train = float(np.quantile(nearest_distances(C[q], C, exclude=q)[:, 0], qq))
        idx = rng.integers(0, C.shape[0], m)
        xi = rng.standard_normal((m, self.z_dim_))

        def ratio(h: float) -> float:
            d = nearest_distances(self._draw(C, idx, xi, h), C)[:, 0]
            return float(np.quantile(d, qq)) / d_train if d_train > 0 else np.inf

        target = float(self.target)
        hi_r = ratio(1.0)
        if hi_r < target:
            return 1.0, hi_r, d_train
        lo, hi, r_hi = _H_MIN, 1.0, hi_r
        if ratio(lo) >= target:
            return lo, ratio(lo), d_train
        for _ in range(10):
            mid = 0.5 * (lo + hi)
            r = ratio(mid)
            if r >= target:
                hi, r_hi = mid, r
            else:
                lo = mid
            if hi - lo < 0.005:
                break
        return float(hi), float(r_hi), d_train

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((n, self.z_dim_))
        step = 8192
        for lo in range(0, n, step):
            m = min(step, n - lo)
            idx = rng.integers(0, self.n_centers_, m)
            xi = rng.standard_normal((m, self.z_dim_))
            out[lo : lo + m] = self._draw(self.centers_, idx, xi, self.bandwidth_)
        return out

    def _restore(self) -> None:
        self.centers_ = np.asarray(self.centers_, dtype=np.float32)
