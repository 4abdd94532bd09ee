"""Geometric regions of the latent space as frozen dataclasses.

Every region has ``dim``, ``contains(Z) -> bool array``, ``sample(n, rng)`` (uniform
inside, float64), ``log_volume`` and ``to_dict``. Arrays passed in are copied to
float64 and made read-only, so a region never changes after construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import gammaln

from .._validation import check_positive, check_rng
from ..exceptions import InvalidParameterError
from ._base import Region

__all__ = ["Box", "OrientedBox", "Ball", "Ellipsoid"]


def _frozen(a: Any, name: str, owner: str, ndim: int = 1) -> np.ndarray:
    arr = np.array(a, dtype=np.float64)
    if arr.ndim != ndim:
        raise InvalidParameterError(f"{owner}: {name} must be {ndim}-D; got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise InvalidParameterError(f"{owner}: {name} must be finite.")
    arr.setflags(write=False)
    return arr


def _check_n(n: Any, owner: str) -> int:
    return int(check_positive(n, "n", owner=f"{owner}.sample", integer=True, minimum=0))


def _unit_ball(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    g = rng.standard_normal((n, dim))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    r = rng.random(n) ** (1.0 / dim)
    return g * r[:, None]


def _log_unit_ball_volume(dim: int) -> float:
    return 0.5 * dim * np.log(np.pi) - gammaln(0.5 * dim + 1.0)


@dataclass(frozen=True, eq=False)
class Box(Region):
    """Axis-aligned box ``lo <= z <= hi`` (per component).

    Parameters
    ----------
    lo, hi : array-like of shape (dim,)
        Lower and upper bounds; ``hi >= lo`` everywhere.
    """

    lo: np.ndarray
    hi: np.ndarray
    kind = "box"

    def __post_init__(self) -> None:
        lo = _frozen(self.lo, "lo", "Box")
        hi = _frozen(self.hi, "hi", "Box")
        if lo.shape != hi.shape or np.any(hi < lo):
            raise InvalidParameterError(f"Box: hi must have the shape of lo ({lo.shape}) and hi >= lo; got shape {hi.shape}.")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def dim(self) -> int:
        return self.lo.shape[0]

    @property
    def center(self) -> np.ndarray:
        return (self.lo + self.hi) / 2.0

    @property
    def widths(self) -> np.ndarray:
        return self.hi - self.lo

    @property
    def log_volume(self) -> float:
        """Natural log of the volume (-inf when a width is 0)."""
        with np.errstate(divide="ignore"):
            return float(np.log(self.widths).sum())

    def contains(self, Z: Any) -> np.ndarray:
        Z = self._check_points(Z)
        return np.all((Z >= self.lo) & (Z <= self.hi), axis=1)

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """``n`` points uniform in the box."""
        n = _check_n(n, "Box")
        return self.lo + check_rng(rng).random((n, self.dim)) * self.widths

    def shrink(self, factor: float) -> "Box":
        """The box scaled about its centre by ``factor`` (0 < factor)."""
        if not factor > 0:
            raise InvalidParameterError(f"Box.shrink: factor must be > 0; got {factor!r}.")
        half = self.widths * factor / 2.0
        return Box(self.center - half, self.center + half)


@dataclass(frozen=True, eq=False)
class OrientedBox(Region):
    """A box aligned with an orthonormal frame (e.g. the PCA frame of the data).

    A point z is inside when ``t = (z - origin) @ axes.T`` satisfies ``lo <= t <= hi``.

    Parameters
    ----------
    origin : array-like of shape (dim,)
        Origin of the frame (the data mean for a PCA box).
    axes : array-like of shape (dim, dim)
        Orthonormal rows (principal axes).
    lo, hi : array-like of shape (dim,)
        Bounds along each axis.
    """

    origin: np.ndarray
    axes: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    kind = "oriented-box"

    def __post_init__(self) -> None:
        origin = _frozen(self.origin, "origin", "OrientedBox")
        axes = _frozen(self.axes, "axes", "OrientedBox", ndim=2)
        d = origin.shape[0]
        if axes.shape != (d, d):
            raise InvalidParameterError(f"OrientedBox: axes must have shape ({d}, {d}); got {axes.shape}.")
        if not np.allclose(axes @ axes.T, np.eye(d), atol=1e-6):
            raise InvalidParameterError("OrientedBox: axes must be orthonormal rows.")
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "axes", axes)
        box = Box(self.lo, self.hi)
        if box.dim != d:
            raise InvalidParameterError(f"OrientedBox: lo and hi must have {d} entries; got {box.dim}.")
        object.__setattr__(self, "lo", box.lo)
        object.__setattr__(self, "hi", box.hi)

    @property
    def dim(self) -> int:
        return self.origin.shape[0]

    @property
    def frame_box(self) -> Box:
        """The same box in frame coordinates."""
        return Box(self.lo, self.hi)

    @property
    def log_volume(self) -> float:
        return self.frame_box.log_volume

    def to_frame(self, Z: Any) -> np.ndarray:
        return (self._check_points(Z) - self.origin) @ self.axes.T

    def from_frame(self, T: Any) -> np.ndarray:
        return self.origin + np.asarray(T, dtype=np.float64) @ self.axes

    def contains(self, Z: Any) -> np.ndarray:
        return self.frame_box.contains(self.to_frame(Z))

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """``n`` points uniform in the box (uniform marginals along each axis)."""
        return self.from_frame(self.frame_box.sample(_check_n(n, "OrientedBox"), rng))

    def shrink(self, factor: float) -> "OrientedBox":
        fb = self.frame_box.shrink(factor)
        return OrientedBox(self.origin, self.axes, fb.lo, fb.hi)


@dataclass(frozen=True, eq=False)
class Ball(Region):
    """Euclidean ball ``|z - center| <= radius``."""

    center: np.ndarray
    radius: float
    kind = "ball"

    def __post_init__(self) -> None:
        object.__setattr__(self, "center", _frozen(self.center, "center", "Ball"))
        r = float(self.radius)
        if not (np.isfinite(r) and r > 0):
            raise InvalidParameterError(f"Ball: radius must be a finite number > 0; got {self.radius!r}.")
        object.__setattr__(self, "radius", r)

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    @property
    def log_volume(self) -> float:
        return float(_log_unit_ball_volume(self.dim) + self.dim * np.log(self.radius))

    def contains(self, Z: Any) -> np.ndarray:
        Z = self._check_points(Z)
        return np.linalg.norm(Z - self.center, axis=1) <= self.radius

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """``n`` points uniform in the ball (radius density ~ r^(dim-1))."""
        n = _check_n(n, "Ball")
        return self.center + self.radius * _unit_ball(n, self.dim, check_rng(rng))


@dataclass(frozen=True, eq=False)
class Ellipsoid(Region):
    """Ellipsoid ``sum_k (t_k / scales_k)^2 <= 1`` with ``t = (z - center) @ axes.T``.

    With ``axes`` the PCA axes and ``scales = sqrt(chi2_ppf(p, dim) * eigenvalues)``
    this is the p-level confidence ellipsoid of a fitted normal distribution.
    """

    center: np.ndarray
    axes: np.ndarray
    scales: np.ndarray
    kind = "ellipsoid"

    def __post_init__(self) -> None:
        center = _frozen(self.center, "center", "Ellipsoid")
        axes = _frozen(self.axes, "axes", "Ellipsoid", ndim=2)
        scales = _frozen(self.scales, "scales", "Ellipsoid")
        d = center.shape[0]
        if axes.shape != (d, d) or scales.shape != (d,):
            raise InvalidParameterError(
                f"Ellipsoid: axes must have shape ({d}, {d}) and scales ({d},); got {axes.shape} and {scales.shape}."
            )
        if np.any(scales <= 0):
            raise InvalidParameterError("Ellipsoid: every scale must be > 0.")
        if not np.allclose(axes @ axes.T, np.eye(d), atol=1e-6):
            raise InvalidParameterError("Ellipsoid: axes must be orthonormal rows.")
        for name, v in (("center", center), ("axes", axes), ("scales", scales)):
            object.__setattr__(self, name, v)

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    @property
    def log_volume(self) -> float:
        return float(_log_unit_ball_volume(self.dim) + np.log(self.scales).sum())

    def radius(self, Z: Any) -> np.ndarray:
        """Scaled radius: <= 1 inside the ellipsoid."""
        T = (self._check_points(Z) - self.center) @ self.axes.T
        return np.sqrt(((T / self.scales) ** 2).sum(axis=1))

    def contains(self, Z: Any) -> np.ndarray:
        return self.radius(Z) <= 1.0

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        n = _check_n(n, "Ellipsoid")
        U = _unit_ball(n, self.dim, check_rng(rng)) * self.scales
        return self.center + U @ self.axes
