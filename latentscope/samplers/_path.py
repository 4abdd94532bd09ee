"""Deterministic z-points along paths and grids (the series' Part VI)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import check_positive
from ..exceptions import InvalidParameterError, SamplerError
from ..stream import Covariance, run_reducers
from ._base import Sampler
from ._data import is_data, mean_of, moments_of, pca_of, source_z_dim

__all__ = ["PathSampler"]

_MODES = ("plane", "pc", "interp", "pc-grid")
_METHODS = ("linear", "slerp", "slerp-mean")


def _pair(value: Any, name: str, owner: str) -> tuple[int, int]:
    try:
        i, j = (int(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{owner}: {name} must be a pair of integers (i, j); got {value!r}.") from exc
    return i, j


class PathSampler(Sampler):
    """Z-points along a straight segment, an interpolation, or a grid (deterministic).

    ``sample(n)`` returns ``n`` points at evenly spaced positions ``t`` in [0, 1]
    (row-major grid points for ``"pc-grid"``); ``rng`` is not used.

    Modes
    -----
    ``"plane"``
        A segment in the coordinate plane ``(i, j) = plane`` with every other
        component at the data mean (the series' Part VI). From ``start`` to
        ``end`` (values of ``(z_i, z_j)``) when given, else through the mean along
        the major axis of the 2-D covariance ellipse of ``(z_i, z_j)``, from
        ``-extent`` to ``+extent`` standard deviations along that axis.
    ``"pc"``
        Along principal axis ``axis`` through the mean, ``t`` from ``-extent`` to
        ``+extent`` standard deviations (``sqrt(lambda_axis)``).
    ``"interp"``
        Between the stored z-points of rows ``endpoints = (a, b)``: ``"linear"``,
        ``"slerp"`` (spherical about the origin) or ``"slerp-mean"`` (spherical
        about the data mean).
    ``"pc-grid"``
        A square grid in the plane of principal axes ``plane = (i, j)``, each from
        ``-extent`` to ``+extent`` standard deviations; ``n`` must be a square
        (rows follow axis j from top to bottom, columns axis i from left to right).

    Parameters
    ----------
    mode : {"plane", "pc", "interp", "pc-grid"}, default="plane"
    plane : (int, int), default=(0, 1)
        Coordinate indices (``"plane"``) or principal-axis indices (``"pc-grid"``).
    axis : int, default=0
        Principal axis (``"pc"``).
    endpoints : (int, int), default=(0, 1)
        Store rows to interpolate between (``"interp"``).
    start, end : (float, float), optional
        Segment ends in the plane (``"plane"``); both or neither.
    extent : float, default=3.0
        Half-length in standard deviations (> 0).
    method : {"linear", "slerp", "slerp-mean"}, default="linear"
        Interpolation (``"interp"``).

    Attributes
    ----------
    z_dim_ : int
    mean_ : ndarray of shape (z_dim,)
    start_, end_ : ndarray of shape (z_dim,)
        Ends of the path (not for ``"pc-grid"``).
    grid_axes_ : ndarray of shape (2, z_dim)
        Grid directions scaled to ``extent`` standard deviations (``"pc-grid"``).
    """

    name = "path"
    description = "points along a segment in a coordinate plane or PC axis, interpolations, PC-plane grids"
    _array_attrs = ("mean_", "start_", "end_", "grid_axes_")

    def __init__(
        self,
        *,
        mode: str = "plane",
        plane: tuple[int, int] = (0, 1),
        axis: int = 0,
        endpoints: tuple[int, int] = (0, 1),
        start: tuple[float, float] | None = None,
        end: tuple[float, float] | None = None,
        extent: float = 3.0,
        method: str = "linear",
    ) -> None:
        self.mode = mode
        self.plane = plane
        self.axis = axis
        self.endpoints = endpoints
        self.start = start
        self.end = end
        self.extent = extent
        self.method = method

    @classmethod
    def _params_from_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        p = dict(params)
        for key in ("plane", "endpoints", "start", "end"):
            if isinstance(p.get(key), list):
                p[key] = tuple(p[key])
        return p

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:
        owner = "PathSampler"
        if self.mode not in _MODES:
            raise InvalidParameterError(f"{owner}: mode must be one of {', '.join(_MODES)}; got {self.mode!r}.")
        if self.method not in _METHODS:
            raise InvalidParameterError(f"{owner}: method must be one of {', '.join(_METHODS)}; got {self.method!r}.")
        extent = float(check_positive(self.extent, "extent", owner=owner))
        dim = source_z_dim(source, owner)
        self.start_ = self.end_ = self.grid_axes_ = None
        if self.mode == "plane":
            i, j = _pair(self.plane, "plane", owner)
            self._check_axes((i, j), dim, "plane", "z_dim")
            if (self.start is None) != (self.end is None):
                raise InvalidParameterError(f"{owner}: give both start and end, or neither.")
            if self.start is None:
                self.mean_, ends = self._plane_ends(source, i, j, extent, owner, pca)
            else:
                self.mean_ = mean_of(source, owner)
                ends = (np.asarray(self.start, dtype=np.float64), np.asarray(self.end, dtype=np.float64))
                if ends[0].shape != (2,) or ends[1].shape != (2,):
                    raise InvalidParameterError(f"{owner}: start and end must be pairs of numbers (z_i, z_j).")
            self.start_, self.end_ = self.mean_.copy(), self.mean_.copy()
            self.start_[[i, j]], self.end_[[i, j]] = ends
        elif self.mode == "pc":
            a = self.axis
            if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
                raise InvalidParameterError(f"{owner}: axis must be an integer; got {a!r}.")
            self._check_axes((int(a),), dim, "axis", "z_dim")
            pca = pca_of(source, owner, pca)
            self.mean_ = np.array(pca.mean_)
            step = extent * np.sqrt(max(pca.explained_variance_[a], 0.0)) * pca.components_[a]
            self.start_, self.end_ = self.mean_ - step, self.mean_ + step
        elif self.mode == "interp":
            a, b = _pair(self.endpoints, "endpoints", owner)
            if not is_data(source):
                raise InvalidParameterError(f"{owner}.fit: mode='interp' reads z-points; pass a store or an array.")
            n = source.n_rows
            for r in (a, b):
                if not 0 <= r < n:
                    raise InvalidParameterError(f"{owner}: endpoints must be rows in [0, {n}); got {r}.")
            rows = np.asarray(source.take(np.array([a, b])), dtype=np.float64)
            self.start_, self.end_ = rows[0], rows[1]
            self.mean_ = moments_of(source, owner).mean.copy() if self.method == "slerp-mean" else np.zeros(dim)
        else:  # pc-grid
            i, j = _pair(self.plane, "plane", owner)
            self._check_axes((i, j), dim, "plane", "z_dim")
            pca = pca_of(source, owner, pca)
            self.mean_ = np.array(pca.mean_)
            sd = np.sqrt(np.clip(pca.explained_variance_[[i, j]], 0.0, None))
            self.grid_axes_ = extent * sd[:, None] * pca.components_[[i, j]]
        self.z_dim_ = int(dim)

    @staticmethod
    def _check_axes(idx: tuple[int, ...], dim: int, name: str, what: str) -> None:
        for k in idx:
            if not 0 <= k < dim:
                raise InvalidParameterError(f"PathSampler: {name} indices must lie in [0, {what}={dim}); got {k}.")
        if len(set(idx)) != len(idx):
            raise InvalidParameterError(f"PathSampler: {name} must name two different indices; got {idx}.")

    def _plane_ends(self, source: Any, i: int, j: int, extent: float, owner: str,
                    pca: Any = None) -> tuple[np.ndarray, tuple]:
        if is_data(source):
            mean = moments_of(source, owner).mean.copy()
            (cov,) = run_reducers(source, [Covariance()], transform=lambda b: np.asarray(b, np.float64)[:, [i, j]])
            c2 = cov.result().cov(ddof=1)
        else:
            pca = pca_of(source, owner, pca)
            mean = np.array(pca.mean_)
            c2 = pca.covariance_[np.ix_([i, j], [i, j])]
        evals, evecs = np.linalg.eigh(c2)
        e = evecs[:, -1] * (1.0 if evecs[np.argmax(np.abs(evecs[:, -1])), -1] >= 0 else -1.0)
        step = extent * np.sqrt(max(evals[-1], 0.0)) * e
        centre = mean[[i, j]]
        return mean, (centre - step, centre + step)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.mode == "pc-grid":
            side = math.isqrt(n)
            if side * side != n:
                raise SamplerError(f"PathSampler: mode='pc-grid' needs a square n (e.g. {max(side, 1) ** 2} or {(side + 1) ** 2}); got {n}.")
            s = np.linspace(-1.0, 1.0, side) if side > 1 else np.zeros(1)
            gx, gy = np.meshgrid(s, -s)  # columns: axis i left to right; rows: axis j top to bottom
            return self.mean_ + gx.reshape(-1, 1) * self.grid_axes_[0] + gy.reshape(-1, 1) * self.grid_axes_[1]
        t = np.linspace(0.0, 1.0, n)[:, None] if n > 1 else np.zeros((n, 1))
        if self.mode == "interp" and self.method != "linear":
            c = self.mean_
            p0, p1 = self.start_ - c, self.end_ - c
            n0, n1 = np.linalg.norm(p0), np.linalg.norm(p1)
            if n0 > 0 and n1 > 0:
                omega = float(np.arccos(np.clip(p0 @ p1 / (n0 * n1), -1.0, 1.0)))
                if omega > 1e-8:
                    so = np.sin(omega)
                    return c + (np.sin((1.0 - t) * omega) / so) * p0 + (np.sin(t * omega) / so) * p1
        return self.start_ + t * (self.end_ - self.start_)

