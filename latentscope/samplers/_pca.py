"""Generators in the data's PCA frame: the PCA box, the truncated PCA Gaussian, the
series' confidence-ellipse method.

All three work in the coordinates ``t = (z - mean) @ V.T`` of the principal axes
``V`` (rows) of the data's covariance, and map back with ``z = mean + t @ V``.
With ``n_components = k`` only the first ``k`` axes vary; the others stay at the
mean (``t = 0``; where a shrunk box does not contain the mean, at the middle of the
box's range).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import chdtri, ndtr, ndtri

from .._validation import check_fraction, check_positive
from ..exceptions import InvalidParameterError
from ..regions import OrientedBox, PairedEllipses
from ._base import Sampler, rejection_sample
from ._data import check_quantiles, pca_box_of, pca_of

__all__ = ["PCABoxSampler", "PCAGaussSampler", "EllipseSampler", "truncated_normal"]


def truncated_normal(a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Standard normal truncated to ``[a, b]`` by inverse CDF of the uniforms ``u``.

    Intervals wholly above 0 are mirrored into the lower tail, where ``ndtr`` keeps
    its relative precision, so truncation far in a tail stays exact.
    """
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    flip = a > 0
    lo = np.where(flip, -b, a)
    hi = np.where(flip, -a, b)
    plo, phi = ndtr(lo), ndtr(hi)
    x = ndtri(plo + u * (phi - plo))
    x = np.clip(x, lo, hi)
    return np.where(flip, -x, x)


def _check_k(k: Any, dim: int, owner: str) -> int:
    if k is None:
        return dim
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= dim:
        raise InvalidParameterError(f"{owner}: n_components must be an integer in [1, z_dim={dim}]; got {k!r}.")
    return int(k)


class _PCAFrameSampler(Sampler):
    """Shared state: mean, principal axes and variances of the data."""

    _array_attrs = ("mean_", "components_", "variances_")
    _scalar_attrs = ("n_components_",)

    def _set_frame(self, pca: Any, owner: str) -> None:
        self.pca_ = pca
        self.mean_ = np.array(pca.mean_, dtype=np.float64)
        self.components_ = np.array(pca.components_, dtype=np.float64)
        self.variances_ = np.clip(np.array(pca.explained_variance_, dtype=np.float64), 0.0, None)
        self.z_dim_ = int(self.mean_.shape[0])
        self.n_components_ = _check_k(self.n_components, self.z_dim_, owner)

    def _to_z(self, T: np.ndarray) -> np.ndarray:
        return self.mean_ + T @ self.components_


class _BoxFrameSampler(_PCAFrameSampler):
    _array_attrs = ("mean_", "components_", "variances_", "lo_", "hi_")

    @classmethod
    def _params_from_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = dict(params)
        if p.get("quantiles") is not None:
            p["quantiles"] = tuple(p["quantiles"])
        return p

    def _fit_box(self, source: Any, owner: str, pca: Any = None) -> None:
        q = check_quantiles(self.quantiles, owner)
        check_positive(self.shrink, "shrink", owner=owner)
        if self.n_components is not None:
            _check_k(self.n_components, 10**9, owner)
        pca, box = pca_box_of(source, q, owner, pca)
        self._set_frame(pca, owner)
        if not np.allclose(box.axes, self.components_, atol=1e-8):
            raise InvalidParameterError(f"{owner}.fit: the PCA box's axes differ from its PCA frame.")
        box = box.shrink(float(self.shrink))
        self.lo_, self.hi_ = np.array(box.lo), np.array(box.hi)

    @property
    def fixed_(self) -> np.ndarray:
        """Frame coordinates of the axes that do not vary: 0 (the mean), or the middle of
        the box's range where the (shrunk) box does not contain the mean."""
        return np.where((self.lo_ <= 0.0) & (self.hi_ >= 0.0), 0.0, (self.lo_ + self.hi_) / 2.0)

    @property
    def region_(self) -> OrientedBox:
        """The (shrunk) PCA box."""
        return OrientedBox(self.mean_, self.components_, self.lo_, self.hi_)


class PCABoxSampler(_BoxFrameSampler):
    """Uniform in the PCA-aligned bounding box of the data (the "PCA fragment").

    Each frame coordinate ``t_i`` is uniform in ``[lo_i, hi_i]``: the min/max or the
    quantiles of the data along principal axis ``i``, scaled about the box centre
    by ``shrink``.

    Parameters
    ----------
    quantiles : None or (float, float), default=(0.01, 0.99)
        ``None`` uses min/max along each axis; a pair trims the tails.
    shrink : float, default=1.0
        Scale factor of the box about its centre (> 0).
    n_components : int, optional
        Vary only the first k axes; the others stay at the mean (default: all).

    Attributes
    ----------
    z_dim_, n_components_ : int
    mean_ : ndarray of shape (z_dim,)
    components_ : ndarray of shape (z_dim, z_dim)
        Principal axes as rows.
    variances_ : ndarray of shape (z_dim,)
        Eigenvalues of the covariance.
    lo_, hi_ : ndarray of shape (z_dim,)
        Box bounds in frame coordinates (after ``shrink``).
    pca_ : PCAFrame
        The frame used by ``fit`` (not saved; absent after :func:`load_sampler`).
    """

    name = "pca-box"
    description = "uniform in the PCA-aligned bounding box (quantile-trimmed, optionally shrunk)"

    def __init__(
        self,
        *,
        quantiles: tuple[float, float] | None = (0.01, 0.99),
        shrink: float = 1.0,
        n_components: int | None = None,
    ) -> None:
        self.quantiles = quantiles
        self.shrink = shrink
        self.n_components = n_components

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        self._fit_box(source, "PCABoxSampler", pca)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = self.n_components_
        T = np.broadcast_to(self.fixed_, (n, self.z_dim_)).copy()
        lo, hi = self.lo_[:k], self.hi_[:k]
        T[:, :k] = lo + rng.random((n, k)) * (hi - lo)
        return self._to_z(T)


class PCAGaussSampler(_BoxFrameSampler):
    """Independent normals along the principal axes, truncated to the PCA box.

    ``t_i ~ N(0, (scale * sqrt(lambda_i))^2)`` restricted to ``[lo_i, hi_i]``, drawn
    exactly by inverse CDF (no rejection). Without truncation this is the
    multivariate normal.

    Parameters
    ----------
    quantiles : None or (float, float), default=(0.01, 0.99)
        The PCA box the Gaussian is truncated to (``None``: min/max).
    shrink : float, default=1.0
        Scale factor of the box about its centre (> 0).
    scale : float, default=1.0
        Factor on the standard deviations (> 0).
    n_components : int, optional
        Vary only the first k axes (default: all).

    Attributes
    ----------
    As :class:`PCABoxSampler`.
    """

    name = "pca-gauss"
    description = "Gaussian in PCA coordinates, truncated to the PCA box"

    def __init__(
        self,
        *,
        quantiles: tuple[float, float] | None = (0.01, 0.99),
        shrink: float = 1.0,
        scale: float = 1.0,
        n_components: int | None = None,
    ) -> None:
        self.quantiles = quantiles
        self.shrink = shrink
        self.scale = scale
        self.n_components = n_components

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        check_positive(self.scale, "scale", owner="PCAGaussSampler")
        self._fit_box(source, "PCAGaussSampler", pca)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = self.n_components_
        T = np.broadcast_to(self.fixed_, (n, self.z_dim_)).copy()
        sd = self.scale * np.sqrt(self.variances_[:k])
        pos = sd > 0
        safe = np.where(pos, sd, 1.0)
        U = truncated_normal(self.lo_[:k] / safe, self.hi_[:k] / safe, rng.random((n, k)))
        T[:, :k] = np.where(pos, U * safe, self.fixed_[:k])
        return self._to_z(T)


class EllipseSampler(_PCAFrameSampler):
    """The series' final method: PCA coordinates restricted by 2-D confidence ellipses.

    The rule (Part X of the series, made exact here): in the PCA frame
    ``y = (z - mean) @ V.T`` each coordinate is ``y_i ~ N(0, lambda_i)``
    independently, and a vector is kept only if, for every chosen pair
    ``(i, j)``, ``y_i^2 / lambda_i + y_j^2 / lambda_j <= -2 ln(1 - level)``: the
    pair lies inside the 2-D confidence ellipse of level ``level`` of its
    bivariate normal (radius 2.45 standard units for 0.95, 3.03 for 0.99).
    Varying axes in no pair are kept inside their 1-D interval of the same level,
    ``|y_i| <= Phi^-1((1 + level) / 2) sqrt(lambda_i)``. Axes beyond
    ``n_components`` stay at the mean. For disjoint pairs each pair is drawn
    exactly (squared radius from the chi-square(2) law truncated at the bound,
    uniform angle); overlapping pairs are drawn by rejection, which fails with
    :class:`~latentscope.exceptions.SamplerError` when the acceptance rate is
    below ``min_acceptance``.

    Parameters
    ----------
    level : float, default=0.95
        Confidence level p of the ellipses, in (0, 1).
    pairs : "disjoint", "chain" or sequence of (int, int), default="disjoint"
        ``"disjoint"``: (0, 1), (2, 3), ...; ``"chain"``: (0, 1), (1, 2), ...
        (overlapping; rejection); or explicit pairs of principal-axis indices.
    n_components : int, optional
        Number of leading axes that vary (default: all).
    min_acceptance : float, default=1e-3
        Smallest acceptance rate tolerated by rejection sampling.

    Attributes
    ----------
    z_dim_, n_components_ : int
    mean_, components_, variances_ : ndarray
        The PCA frame of the data.
    groups_ : list of tuple
        The constrained groups: the pairs plus the single unpaired varying axes.
    pca_ : PCAFrame
        The frame used by ``fit`` (not saved; absent after :func:`load_sampler`).
    """

    name = "ellipse"
    description = "PCA coordinates restricted by 2-D confidence ellipses of level p (the series' method)"
    _scalar_attrs = ("n_components_", "groups_")

    def __init__(
        self,
        *,
        level: float = 0.95,
        pairs: Any = "disjoint",
        n_components: int | None = None,
        min_acceptance: float = 1e-3,
    ) -> None:
        self.level = level
        self.pairs = pairs
        self.n_components = n_components
        self.min_acceptance = min_acceptance

    @classmethod
    def _params_from_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = dict(params)
        if isinstance(p.get("pairs"), list):
            p["pairs"] = [tuple(x) for x in p["pairs"]]
        return p

    def _groups(self, k: int, owner: str) -> list[tuple[int, ...]]:
        if isinstance(self.pairs, str):
            if self.pairs == "disjoint":
                pairs = [(i, i + 1) for i in range(0, k - 1, 2)]
            elif self.pairs == "chain":
                pairs = [(i, i + 1) for i in range(k - 1)]
            else:
                raise InvalidParameterError(f"{owner}: pairs must be 'disjoint', 'chain' or a list of (i, j); got {self.pairs!r}.")
        else:
            pairs = []
            try:
                for p in self.pairs:
                    i, j = (int(v) for v in p)
                    pairs.append((i, j))
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(f"{owner}: pairs must be 'disjoint', 'chain' or a list of (i, j); got {self.pairs!r}.") from exc
            for i, j in pairs:
                if i == j or min(i, j) < 0 or max(i, j) >= k:
                    raise InvalidParameterError(
                        f"{owner}: every pair must hold two different axes in [0, n_components={k}); got ({i}, {j})."
                    )
        covered = {i for p in pairs for i in p}
        return pairs + [(i,) for i in range(k) if i not in covered]

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        owner = "EllipseSampler"
        check_fraction(self.level, "level", owner=owner)
        check_fraction(self.min_acceptance, "min_acceptance", owner=owner)
        self._set_frame(pca_of(source, owner, pca), owner)
        self.groups_ = self._groups(self.n_components_, owner)

    def _restore(self) -> None:
        self.groups_ = [tuple(g) for g in self.groups_]

    @property
    def region_(self) -> PairedEllipses:
        v = self.variances_
        floor = max(float(v.max()) if v.size else 1.0, 1e-300) * 1e-12
        return PairedEllipses(self.mean_, self.components_, np.sqrt(np.maximum(v, floor)), self.groups_, float(self.level))

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = self.n_components_
        region = self.region_
        if region.is_disjoint:
            U = np.zeros((n, self.z_dim_))
            for g in self.groups_:
                bound = float(chdtri(len(g), 1.0 - self.level))
                if len(g) == 1:
                    c = np.sqrt(bound)
                    U[:, g[0]] = truncated_normal(-c, c, rng.random(n))
                else:
                    # squared radius ~ chi2(2) truncated to [0, bound]: inverse CDF
                    r2 = -2.0 * np.log1p(-rng.random(n) * -np.expm1(-bound / 2.0))
                    r = np.sqrt(np.minimum(r2, bound))
                    phi = 2.0 * np.pi * rng.random(n)
                    U[:, g[0]] = r * np.cos(phi)
                    U[:, g[1]] = r * np.sin(phi)
        else:
            def draw(m: int, gen: np.random.Generator) -> np.ndarray:
                U = np.zeros((m, self.z_dim_))
                U[:, :k] = gen.standard_normal((m, k))
                return U

            U = rejection_sample(draw, region.contains_standard, n, rng,
                                 min_acceptance=float(self.min_acceptance), owner="EllipseSampler")
            U = U.reshape(n, self.z_dim_)
        return self._to_z(U * region.scales)
