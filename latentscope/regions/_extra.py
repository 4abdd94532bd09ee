"""Regions defined by groups of frame coordinates: the series' confidence-ellipse rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import chdtri, gammaln

from .._validation import check_rng
from ..exceptions import InvalidParameterError
from ._base import Region
from ._shapes import _check_n, _frozen

__all__ = ["PairedEllipses"]


@dataclass(frozen=True, eq=False)
class PairedEllipses(Region):
    """Points whose frame coordinates fall inside per-group confidence ellipses.

    With ``t = (z - center) @ axes.T`` and ``u = t / scales`` (standardised frame
    coordinates), a point is inside when, for every group ``g`` of axes,
    ``sum_{i in g} u_i^2 <= chi2.ppf(level, len(g))``. A group of two axes is the
    2-D confidence ellipse of level ``level`` of a normal distribution with
    variances ``scales**2`` along those axes (radius ``sqrt(-2 ln(1 - level))`` in
    standard units, 2.45 for 0.95); a group of one axis is the interval
    ``|u_i| <= Phi^-1((1 + level) / 2)``. Axes in no group are unconstrained.

    Parameters
    ----------
    center : array-like of shape (dim,)
        Origin of the frame (the data mean).
    axes : array-like of shape (dim, dim)
        Orthonormal rows (principal axes).
    scales : array-like of shape (dim,)
        Standard deviations along the axes (> 0).
    groups : sequence of sequences of int
        The constrained groups (pairs, or single axes), possibly overlapping.
    level : float
        Confidence level in (0, 1).
    """

    center: np.ndarray
    axes: np.ndarray
    scales: np.ndarray
    groups: tuple
    level: float
    kind = "paired-ellipses"

    def __post_init__(self) -> None:
        owner = "PairedEllipses"
        center = _frozen(self.center, "center", owner)
        axes = _frozen(self.axes, "axes", owner, ndim=2)
        scales = _frozen(self.scales, "scales", owner)
        d = center.shape[0]
        if axes.shape != (d, d) or scales.shape != (d,):
            raise InvalidParameterError(f"{owner}: axes must have shape ({d}, {d}) and scales ({d},); got {axes.shape} and {scales.shape}.")
        if np.any(scales <= 0):
            raise InvalidParameterError(f"{owner}: every scale must be > 0.")
        if not np.allclose(axes @ axes.T, np.eye(d), atol=1e-6):
            raise InvalidParameterError(f"{owner}: axes must be orthonormal rows.")
        level = float(self.level)
        if not 0.0 < level < 1.0:
            raise InvalidParameterError(f"{owner}: level must lie in (0, 1); got {self.level!r}.")
        groups = []
        for g in self.groups:
            g = tuple(int(i) for i in np.atleast_1d(g))
            if not 1 <= len(g) <= 2 or len(set(g)) != len(g) or min(g) < 0 or max(g) >= d:
                raise InvalidParameterError(f"{owner}: groups must be pairs or single axes in [0, {d}); got {g!r}.")
            groups.append(g)
        for name, v in (("center", center), ("axes", axes), ("scales", scales), ("groups", tuple(groups)), ("level", level)):
            object.__setattr__(self, name, v)

    @property
    def dim(self) -> int:
        return self.center.shape[0]

    def bound(self, size: int) -> float:
        """``chi2.ppf(level, size)``: the bound on the squared standard radius of a group."""
        return float(chdtri(size, 1.0 - self.level))

    @property
    def is_disjoint(self) -> bool:
        """Whether no axis belongs to two groups."""
        flat = [i for g in self.groups for i in g]
        return len(flat) == len(set(flat))

    def standard_coords(self, Z: Any) -> np.ndarray:
        """``u = ((z - center) @ axes.T) / scales``."""
        return ((self._check_points(Z) - self.center) @ self.axes.T) / self.scales

    def group_radii(self, Z: Any) -> np.ndarray:
        """Squared standard radius of each group, shape (n, n_groups)."""
        U = self.standard_coords(Z)
        return np.stack([(U[:, list(g)] ** 2).sum(axis=1) for g in self.groups], axis=1) if self.groups else np.zeros((U.shape[0], 0))

    def contains_standard(self, U: np.ndarray) -> np.ndarray:
        """Membership for points already in standard frame coordinates."""
        ok = np.ones(U.shape[0], dtype=bool)
        for g in self.groups:
            ok &= (U[:, list(g)] ** 2).sum(axis=1) <= self.bound(len(g))
        return ok

    def contains(self, Z: Any) -> np.ndarray:
        return self.contains_standard(self.standard_coords(Z))

    @property
    def log_volume(self) -> float:
        """Natural log of the volume; ``inf`` unless disjoint groups cover every axis."""
        covered = sorted(i for g in self.groups for i in g)
        if not self.is_disjoint or covered != list(range(self.dim)):
            return float("inf")
        total = 0.0
        for g in self.groups:
            k = len(g)
            r = np.sqrt(self.bound(k))
            total += 0.5 * k * np.log(np.pi) - gammaln(0.5 * k + 1.0) + k * np.log(r) + np.log(self.scales[list(g)]).sum()
        return float(total)

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """``n`` points uniform inside (needs disjoint groups covering every axis)."""
        n = _check_n(n, "PairedEllipses")
        if not np.isfinite(self.log_volume):
            raise InvalidParameterError(
                "PairedEllipses.sample: uniform sampling needs disjoint groups that cover every axis (finite volume)."
            )
        gen = check_rng(rng)
        U = np.empty((n, self.dim))
        for g in self.groups:
            r = np.sqrt(self.bound(len(g)))
            if len(g) == 1:
                U[:, g[0]] = r * (2.0 * gen.random(n) - 1.0)
            else:
                phi = 2.0 * np.pi * gen.random(n)
                rad = r * np.sqrt(gen.random(n))
                U[:, g[0]] = rad * np.cos(phi)
                U[:, g[1]] = rad * np.sin(phi)
        return self.center + (U * self.scales) @ self.axes

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["groups"] = [list(g) for g in self.groups]
        return out
