"""Streamed power sums and second moments (float64 accumulation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stream import CovarianceResult

__all__ = ["PowerSums", "SecondMoments", "describe"]


@dataclass
class PowerSums:
    """Float64 sums of x, x^2, x^3, x^4 per group and component, about a fixed shift."""

    shift: np.ndarray  # (dim,)
    n: np.ndarray  # (groups,)
    s: np.ndarray  # (4, groups, dim)

    @classmethod
    def empty(cls, shift: np.ndarray, groups: int) -> "PowerSums":
        dim = shift.shape[0]
        return cls(np.asarray(shift, np.float64), np.zeros(groups, np.int64), np.zeros((4, groups, dim)))

    def add(self, d: np.ndarray, d2: np.ndarray, g: int, axis: int = 0) -> None:
        """Add deviations ``d`` (about ``shift``) and their squares; ``axis`` runs over the rows."""
        self.n[g] += d.shape[axis]
        self.s[0, g] += d.sum(axis, dtype=np.float64)
        self.s[1, g] += d2.sum(axis, dtype=np.float64)
        self.s[2, g] += (d2 * d).sum(axis, dtype=np.float64)
        self.s[3, g] += (d2 * d2).sum(axis, dtype=np.float64)

    def merge(self, other: "PowerSums") -> None:
        self.n += other.n
        self.s += other.s

    def central(self, group: int | None = None) -> dict[str, np.ndarray]:
        """Count, mean, central sums m2..m4 (as in :class:`~latentscope.stream.MomentsResult`)."""
        if group is None:
            n = float(self.n.sum())
            s1, s2, s3, s4 = (self.s[k].sum(0) for k in range(4))
        else:
            n = float(self.n[group])
            s1, s2, s3, s4 = (self.s[k, group] for k in range(4))
        if n == 0:
            nan = np.full_like(s1, np.nan)
            return {"n": 0, "mean": nan, "m2": nan, "m3": nan, "m4": nan}
        m = s1 / n
        m2 = s2 - n * m * m
        m3 = s3 - 3 * m * s2 + 2 * n * m**3
        m4 = s4 - 4 * m * s3 + 6 * m * m * s2 - 3 * n * m**4
        return {"n": int(n), "mean": self.shift + m, "m2": np.maximum(m2, 0.0), "m3": m3, "m4": np.maximum(m4, 0.0)}


class SecondMoments:
    """Streamed mean and co-moments of coordinates that are nearly centred and decorrelated.

    Used for PCA coordinates (the core covariance): each block's ``T^T T`` is one GEMM
    in the block's precision, accumulated in float64. In a PCA frame there is no
    cancellation between large and small directions, so float32 blocks keep each
    entry's relative precision; the result is exact up to that rounding.
    """

    def __init__(self) -> None:
        self.n = 0
        self.s1: np.ndarray | None = None
        self.s2: np.ndarray | None = None

    def update_columns(self, tT: np.ndarray) -> "SecondMoments":
        """Add a block of coordinates given column-wise, shape (k, n)."""
        if tT.shape[1] == 0:
            return self
        if self.s1 is None:
            k = tT.shape[0]
            self.s1, self.s2 = np.zeros(k), np.zeros((k, k))
        self.n += tT.shape[1]
        self.s1 += tT.sum(1, dtype=np.float64)
        self.s2 += tT @ tT.T
        return self

    def update(self, t: np.ndarray) -> "SecondMoments":
        """Add a block of coordinates given row-wise, shape (n, k)."""
        if t.shape[0] == 0:
            return self
        if self.s1 is None:
            k = t.shape[1]
            self.s1, self.s2 = np.zeros(k), np.zeros((k, k))
        self.n += t.shape[0]
        self.s1 += t.sum(0, dtype=np.float64)
        self.s2 += t.T @ t
        return self

    def merge(self, other: "SecondMoments") -> "SecondMoments":
        if other.n == 0:
            return self
        if self.s1 is None:
            self.s1, self.s2 = other.s1.copy(), other.s2.copy()
        else:
            self.s1 += other.s1
            self.s2 += other.s2
        self.n += other.n
        return self

    def result(self) -> CovarianceResult | None:
        if self.n == 0:
            return None
        m = self.s1 / self.n
        com = self.s2 - self.n * np.outer(m, m)
        return CovarianceResult(self.n, m, (com + com.T) / 2)


def describe(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """var (ddof=0), std, skewness (g1) and excess kurtosis (g2) from central sums."""
    n = c["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = c["m2"] / n if n else np.full_like(c["m2"], np.nan)
        pos = c["m2"] > 0
        skew = np.where(pos, np.sqrt(n) * c["m3"] / np.where(pos, c["m2"], 1.0) ** 1.5, np.nan)
        kurt = np.where(pos, n * c["m4"] / np.where(pos, c["m2"], 1.0) ** 2 - 3.0, np.nan)
    return {"var": var, "std": np.sqrt(var), "skewness": skew, "excess_kurtosis": kurt}
