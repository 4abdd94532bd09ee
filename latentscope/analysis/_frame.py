"""The PCA frame in the working precision of a pass, and the choice of that precision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FrameCache", "choose_precision", "numerical_rank"]


@dataclass
class FrameCache:
    """The pieces of a PCA frame used to rotate blocks, in the pass's precision.

    Blocks are centred on ``center`` (the frame mean rounded to the working dtype);
    ``tshift`` corrects the rotated coordinates for that rounding exactly.
    """

    mean: np.ndarray  # float64 (dim,)
    center: np.ndarray  # the mean in the working dtype: the centring reference
    inv_scale: np.ndarray | None
    axes: np.ndarray  # (k, dim) principal axes in the working dtype
    tshift: np.ndarray  # (k,) ((mean - center) / scale) @ axes.T
    inv_var: np.ndarray  # (k,) float64, 1/eigenvalue on the numerical rank, 0 beyond
    rank: int
    dtype: Any = np.float32

    @classmethod
    def from_frame(cls, frame: Any, dtype: Any = np.float32) -> "FrameCache":
        mean = np.asarray(frame.mean_, np.float64)
        c = mean.astype(dtype)
        scale = np.asarray(frame.scale_, np.float64)
        inv_scale = None if np.all(scale == 1.0) else (1.0 / scale).astype(dtype)
        axes = np.asarray(frame.components_, np.float64)
        tshift = ((mean - c.astype(np.float64)) / scale) @ axes.T
        ev = np.asarray(frame.explained_variance_, np.float64)
        rank = numerical_rank(ev)
        inv_var = np.zeros_like(ev)
        inv_var[:rank] = 1.0 / ev[:rank]
        return cls(mean, c, inv_scale, np.ascontiguousarray(axes.astype(dtype)), tshift.astype(dtype), inv_var,
                   rank, dtype)

    @property
    def center32(self) -> np.ndarray:  # kept for callers that centre float32 blocks
        return self.center

    def deviations(self, x: np.ndarray) -> np.ndarray:
        """``x - center`` in the working dtype, shape (n, dim)."""
        if x.dtype == self.dtype:
            return x - self.center
        return x.astype(self.dtype) - self.center

    def rotate(self, d: np.ndarray) -> np.ndarray:
        """PCA coordinates (shape (n, k)) of deviations ``d = x - center`` (n, dim)."""
        if self.inv_scale is not None:
            d = d * self.inv_scale
        t = d @ self.axes.T
        t -= self.tshift
        return t

    def rotate_columns(self, dT: np.ndarray) -> np.ndarray:
        """The same for column-wise deviations (dim, n); returns (k, n)."""
        if self.inv_scale is not None:
            dT = dT * self.inv_scale[:, None]
        t = self.axes @ dT
        t -= self.tshift[:, None]
        return t


def choose_precision(first: Any, frame: Any = None) -> Any:
    """float32 when the data's scales suit it, else float64.

    The float32 block path (fast) needs the per-component ranges within [1e-7, 1e9]
    (so that fourth powers of deviations neither overflow nor underflow) and, with a
    frame, eigenvalues of the numerical rank within a ratio of 1e-6 of the largest
    (so that the float32 rotation error stays well below each axis's spread).
    """
    r = np.asarray(first.max, np.float64) - np.asarray(first.min, np.float64)
    if np.isfinite(r).all():
        r = r[r > 0]
        if r.size and (r.min() < 1e-7 or r.max() > 1e9):
            return np.float64
    if frame is not None:
        ev = np.asarray(frame.explained_variance_, np.float64)
        k = numerical_rank(ev)
        if k:
            sd = np.sqrt(ev[:k])
            if ev[k - 1] / ev[0] < 1e-6 or sd[0] * 10 > 1e9 or sd[k - 1] < 1e-7:
                return np.float64
    return np.float32


def numerical_rank(eigenvalues: np.ndarray) -> int:
    """Number of eigenvalues above ``dim * eps * max``: the directions the data spans."""
    ev = np.asarray(eigenvalues, np.float64)
    if ev.size == 0 or not ev[0] > 0:
        return 0
    tol = ev.size * np.finfo(np.float64).eps * 64 * ev[0]
    return int(np.sum(ev > tol))
