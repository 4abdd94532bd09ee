"""Geometric generators about a centre: uniform cube, ball, shell, isotropic normal.

These are the series' naive generators (S1, S2, S8). They need only ``z_dim`` (or a
centre); with ``"match"`` for their size or ``center="mean"`` they are fitted to a
store first (for instance the cube half-width whose mean squared radius equals the
data's, the series' radius matching).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_positive
from ..exceptions import InvalidParameterError
from ..regions import Ball, Box
from ._base import Sampler
from ._data import check_center, mean_of, radius_stats, source_z_dim

__all__ = ["CubeSampler", "BallSampler", "ShellSampler", "NormalSampler"]


def _size(value: Any, name: str, owner: str, *, allow_zero: bool = False) -> float | str:
    if isinstance(value, str) and value == "match":
        return "match"
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    v = float(value) if ok else float("nan")
    if not (np.isfinite(v) and (v >= 0 if allow_zero else v > 0)):
        rel = ">= 0" if allow_zero else "> 0"
        raise InvalidParameterError(f"{owner}: {name} must be a number {rel} or 'match'; got {value!r}.")
    return v


class _CenteredSampler(Sampler):
    """Shared fitting of the centre and the data's radius statistics."""

    _size_params: tuple[str, ...] = ()
    _array_attrs = ("center_",)

    @property
    def needs_data(self) -> bool:
        c = self.center
        return (isinstance(c, str) and c == "mean") or any(
            isinstance(getattr(self, p), str) and getattr(self, p) == "match" for p in self._size_params
        )

    def _fit_center(self, source: Any) -> tuple[int, np.ndarray, tuple[float, float, float] | None]:
        owner = type(self).__name__
        zd = self.z_dim
        if zd is not None:
            check_positive(zd, "z_dim", owner=owner, integer=True, minimum=1)
        center = check_center(self.center, None, owner)
        if source is not None:
            dim = source_z_dim(source, owner)
            if zd is not None and zd != dim:
                raise InvalidParameterError(f"{owner}: z_dim={zd} differs from the source's z_dim ({dim}).")
        elif zd is not None:
            dim = int(zd)
        elif isinstance(center, np.ndarray):
            dim = center.shape[0]
        else:
            raise InvalidParameterError(f"{owner}: z_dim is unknown; pass z_dim=... or a center, or call fit(store).")
        if isinstance(center, np.ndarray) and center.shape[0] != dim:
            raise InvalidParameterError(f"{owner}: center must have {dim} entries (z_dim); got {center.shape[0]}.")
        if isinstance(center, str):
            c = mean_of(source, owner)
        else:
            c = np.zeros(dim) if center is None else center.copy()
        stats = None
        if any(getattr(self, p) == "match" for p in self._size_params):
            stats = radius_stats(source, c, owner)
        return dim, c, stats


class CubeSampler(_CenteredSampler):
    """Uniform in the cube ``[c - b, c + b]^z_dim`` (the series' generator S1).

    Each component is independently uniform in ``[c_k - b, c_k + b]``. In
    ``z_dim = N`` dimensions the lengths concentrate at ``b * sqrt(N / 3)`` with
    spread about ``b / sqrt(15)`` (N = 256, b = 1: 9.24 +- 0.26).

    Parameters
    ----------
    halfwidth : float or "match", default=1.0
        Half the side ``b`` (> 0). ``"match"`` fits ``b = sqrt(3 <|z - c|^2> / N)``
        so that the mean squared length about the centre equals the data's.
    center : None, "origin", "mean" or array of shape (z_dim,), default=None
        Centre of the cube: the origin, the data mean (fitted) or a given point.
    z_dim : int, optional
        Latent dimension when no data is given.

    Attributes
    ----------
    z_dim_ : int
    center_ : ndarray of shape (z_dim,)
    halfwidth_ : float
    """

    name = "cube"
    description = "components iid uniform in [-b, b] about the origin or a centre"
    _size_params = ("halfwidth",)
    _scalar_attrs = ("halfwidth_",)

    def __init__(self, *, halfwidth: float | str = 1.0, center: Any = None, z_dim: int | None = None) -> None:
        self.halfwidth = halfwidth
        self.center = center
        self.z_dim = z_dim

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        b = _size(self.halfwidth, "halfwidth", "CubeSampler")
        dim, c, stats = self._fit_center(source)
        self.halfwidth_ = float(np.sqrt(3.0 * stats[2] ** 2 / dim)) if b == "match" else float(b)
        self.center_, self.z_dim_ = c, dim

    @property
    def region_(self) -> Box:
        return Box(self.center_ - self.halfwidth_, self.center_ + self.halfwidth_)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.center_ + self.halfwidth_ * (2.0 * rng.random((n, self.z_dim_)) - 1.0)


class BallSampler(_CenteredSampler):
    """Uniform in the ball ``|z - c| <= R`` (a control; almost all points lie at the rim).

    Parameters
    ----------
    radius : float or "match", default=1.0
        Ball radius ``R`` (> 0). ``"match"`` fits ``R`` so that the mean squared
        length about the centre equals the data's: ``R^2 N / (N + 2) = <|z - c|^2>``.
    center : None, "origin", "mean" or array of shape (z_dim,), default=None
    z_dim : int, optional

    Attributes
    ----------
    z_dim_ : int
    center_ : ndarray of shape (z_dim,)
    radius_ : float
    """

    name = "ball"
    description = "uniform in a ball about the origin or a centre"
    _size_params = ("radius",)
    _scalar_attrs = ("radius_",)

    def __init__(self, *, radius: float | str = 1.0, center: Any = None, z_dim: int | None = None) -> None:
        self.radius = radius
        self.center = center
        self.z_dim = z_dim

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        r = _size(self.radius, "radius", "BallSampler")
        dim, c, stats = self._fit_center(source)
        self.radius_ = float(stats[2] * np.sqrt((dim + 2.0) / dim)) if r == "match" else float(r)
        self.center_, self.z_dim_ = c, dim

    @property
    def region_(self) -> Ball:
        return Ball(self.center_, self.radius_)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.region_.sample(n, rng)


class ShellSampler(_CenteredSampler):
    """Uniform direction about a centre, radius from a given distribution.

    ``z = c + r u`` with ``u`` uniform on the unit sphere and ``r`` drawn from
    ``distribution``: ``"normal"`` gives ``r ~ N(radius, spread^2)`` folded at 0
    (``|r|``), ``"uniform"`` gives ``r ~ U(radius - spread, radius + spread)``.
    ``spread = 0`` is the sphere of radius ``radius``.

    Parameters
    ----------
    radius : float or "match", default=1.0
        Mean radius (> 0); ``"match"``: the data's mean length about the centre.
    spread : float or "match", default=0.0
        Standard deviation (normal) or half-range (uniform) of the radius (>= 0);
        ``"match"``: the standard deviation of the data's lengths.
    distribution : {"normal", "uniform"}, default="normal"
    center : None, "origin", "mean" or array of shape (z_dim,), default=None
    z_dim : int, optional

    Attributes
    ----------
    z_dim_ : int
    center_ : ndarray of shape (z_dim,)
    radius_, spread_ : float
    """

    name = "shell"
    description = "uniform direction, radius from a normal or uniform distribution"
    _size_params = ("radius", "spread")
    _scalar_attrs = ("radius_", "spread_")

    def __init__(
        self,
        *,
        radius: float | str = 1.0,
        spread: float | str = 0.0,
        distribution: str = "normal",
        center: Any = None,
        z_dim: int | None = None,
    ) -> None:
        self.radius = radius
        self.spread = spread
        self.distribution = distribution
        self.center = center
        self.z_dim = z_dim

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        owner = "ShellSampler"
        r = _size(self.radius, "radius", owner)
        s = _size(self.spread, "spread", owner, allow_zero=True)
        if self.distribution not in ("normal", "uniform"):
            raise InvalidParameterError(f"{owner}: distribution must be 'normal' or 'uniform'; got {self.distribution!r}.")
        dim, c, stats = self._fit_center(source)
        self.radius_ = float(stats[0]) if r == "match" else float(r)
        self.spread_ = float(stats[1]) if s == "match" else float(s)
        if self.distribution == "uniform" and self.spread_ > self.radius_:
            raise InvalidParameterError(
                f"{owner}: with distribution='uniform' spread must be <= radius ({self.radius_:g}); got {self.spread_:g}."
            )
        self.center_, self.z_dim_ = c, dim

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.standard_normal((n, self.z_dim_))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        if self.distribution == "normal":
            r = np.abs(self.radius_ + self.spread_ * rng.standard_normal(n))
        else:
            r = self.radius_ + self.spread_ * (2.0 * rng.random(n) - 1.0)
        return self.center_ + u * r[:, None]


class NormalSampler(_CenteredSampler):
    """Isotropic normal ``N(c, s^2 I)`` (``N(0, I)`` by default; the VAE prior).

    Lengths concentrate at ``s * sqrt(N - 1/2)`` (N = 256: 15.98 s) with spread
    about ``s / sqrt(2)``.

    Parameters
    ----------
    scale : float or "match", default=1.0
        Standard deviation ``s`` of every component (> 0); ``"match"`` fits
        ``s = sqrt(<|z - c|^2> / N)``.
    center : None, "origin", "mean" or array of shape (z_dim,), default=None
    z_dim : int, optional

    Attributes
    ----------
    z_dim_ : int
    center_ : ndarray of shape (z_dim,)
    scale_ : float
    """

    name = "normal"
    description = "isotropic normal N(0, s^2 I) about the origin or a centre"
    _size_params = ("scale",)
    _scalar_attrs = ("scale_",)

    def __init__(self, *, scale: float | str = 1.0, center: Any = None, z_dim: int | None = None) -> None:
        self.scale = scale
        self.center = center
        self.z_dim = z_dim

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        s = _size(self.scale, "scale", "NormalSampler")
        dim, c, stats = self._fit_center(source)
        self.scale_ = float(stats[2] / np.sqrt(dim)) if s == "match" else float(s)
        self.center_, self.z_dim_ = c, dim

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.center_ + self.scale_ * rng.standard_normal((n, self.z_dim_))
