"""Fine streaming histograms (:class:`FineHistogram`) and their results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_positive
from ..exceptions import InvalidParameterError, NonFiniteError
from ._binning import (
    _CHUNK_COMPONENTS,
    _EPS32,
    _check_bins,
    _check_levels,
    _edge_at,
    _widen_degenerate,
    aligned_coarse,
    fine_edges,
    quantiles_from_counts,
)

__all__ = ["FineHistogram", "FineHistogramResult"]


@dataclass(frozen=True)
class FineHistogramResult:
    """Counts of a :class:`FineHistogram`.

    Attributes
    ----------
    lo, hi : ndarray of shape (dim,)
        Range of each component's histogram.
    counts : ndarray of shape (groups, dim, bins), int32 (int64 past 2**31 rows)
        Counts per group (one group unless the histogram was split by groups).
    underflow, overflow : ndarray of shape (groups, dim), int64
        Values below ``lo`` or above ``hi`` (always 0 for growing histograms and for
        ranges taken from the data).
    vmin, vmax : ndarray of shape (groups, dim)
        Exact smallest and largest value seen (``+inf``/``-inf`` for empty groups).
    """

    lo: np.ndarray
    hi: np.ndarray
    counts: np.ndarray
    underflow: np.ndarray
    overflow: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray

    @property
    def bins(self) -> int:
        return self.counts.shape[-1]

    @property
    def dim(self) -> int:
        return self.counts.shape[1]

    @property
    def edges(self) -> np.ndarray:
        """Fine bin edges, shape (dim, bins + 1) (:func:`fine_edges`)."""
        return fine_edges(self.lo, self.hi, self.bins)

    def total(self) -> "FineHistogramResult":
        """The histogram summed over groups (one group)."""
        if self.counts.shape[0] == 1:
            return self
        return FineHistogramResult(
            self.lo, self.hi, self.counts.sum(0, keepdims=True), self.underflow.sum(0, keepdims=True),
            self.overflow.sum(0, keepdims=True), self.vmin.min(0, keepdims=True), self.vmax.max(0, keepdims=True),
        )

    def _pick(self, group: int | None) -> tuple["FineHistogramResult", int]:
        return (self.total(), 0) if group is None else (self, group)

    def quantiles(self, qs: Any, group: int | None = None) -> np.ndarray:
        """Quantiles at levels ``qs``, shape (len(qs), dim); see :func:`quantiles_from_counts`."""
        r, g = self._pick(group)
        levels = _check_levels(qs, "quantiles")
        out = np.empty((levels.size, self.dim))
        for c0 in range(0, self.dim, _CHUNK_COMPONENTS):
            sl = slice(c0, c0 + _CHUNK_COMPONENTS)
            out[:, sl] = quantiles_from_counts(r.counts[g, sl], self.lo[sl], self.hi[sl], levels, r.vmin[g, sl],
                                               r.vmax[g, sl], r.underflow[g, sl], r.overflow[g, sl])
        return out

    def cdf(self, group: int | None = None) -> np.ndarray:
        """Empirical CDF at the fine edges, shape (dim, bins + 1)."""
        r, g = self._pick(group)
        c = r.counts[g]
        n = c.sum(1, dtype=np.int64) + r.underflow[g] + r.overflow[g]
        cum = np.zeros((c.shape[0], c.shape[1] + 1), np.int64)
        np.cumsum(c, axis=1, dtype=np.int64, out=cum[:, 1:])
        cum += r.underflow[g][:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return cum / n[:, None]

    def ks_normal(self, mean: np.ndarray, std: np.ndarray, group: int | None = None) -> np.ndarray:
        """``max_j |F(e_j) - Phi((e_j - mean) / std)|`` over the fine edges, per component."""
        from scipy.special import ndtr

        r, g = self._pick(group)
        out = np.full(self.dim, np.nan)
        for c0 in range(0, self.dim, _CHUNK_COMPONENTS):
            sl = slice(c0, c0 + _CHUNK_COMPONENTS)
            c = r.counts[g, sl]
            n = c.sum(1, dtype=np.int64) + r.underflow[g, sl] + r.overflow[g, sl]
            cum = np.zeros((c.shape[0], c.shape[1] + 1), np.int64)
            np.cumsum(c, axis=1, dtype=np.int64, out=cum[:, 1:])
            cum += r.underflow[g, sl][:, None]
            e = fine_edges(self.lo[sl], self.hi[sl], self.bins)
            with np.errstate(invalid="ignore", divide="ignore"):
                z = (e - mean[sl, None]) / std[sl, None]
                d = np.abs(cum / n[:, None] - ndtr(z)).max(axis=1)
            out[sl] = np.where(std[sl] > 0, d, np.nan)
        return out

    def coarse(self, bins: int, group: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``bins`` coarse bins over the occupied range, aggregated exactly from fine bins.

        Returns ``(edges, counts)`` of shapes (dim, bins + 1) and (dim, bins); see
        :func:`aligned_coarse`.
        """
        r = self.total()
        edges, start, m = aligned_coarse(r.counts[0], self.lo, self.hi, bins)
        src = r.counts[0] if group is None else self.counts[group]
        out = np.zeros((self.dim, bins), np.int64)
        fine = self.bins
        for c0 in range(0, self.dim, _CHUNK_COMPONENTS):
            sl = slice(c0, c0 + _CHUNK_COMPONENTS)
            c = src[sl]
            cum = np.zeros((c.shape[0], fine + 1), np.int64)
            np.cumsum(c, axis=1, dtype=np.int64, out=cum[:, 1:])
            k = np.clip(start[sl, None] + m[sl, None] * np.arange(bins + 1)[None, :], 0, fine)
            ck = np.take_along_axis(cum, k, axis=1)
            out[sl] = np.diff(ck, axis=1)
        return edges, out


class FineHistogram:
    """Per-component histograms with many equal-width bins, streamed (mergeable).

    Parameters
    ----------
    lo, hi : float or array-like of shape (dim,)
        Range of each component. Zero-width ranges get numpy's width of 1.
    bins : int, default=4096
        Fine bins per component (a multiple of 4 when ``grow``).
    grow : bool, default=False
        When a value falls outside a component's range, double the range about its
        centre (merging pairs of bins) until it fits; there is then no under- or
        overflow. Histograms grown from the same start merge exactly. Values within
        rounding of a merged edge may fall on either side of it.
    groups : int, default=1
        Number of row groups; :meth:`update` then takes a group index per row.

    Notes
    -----
    Memory is ``groups * dim * bins`` int32 counts (4 MiB for 256 components and
    4096 bins; promoted to int64 before 2**31 rows). Blocks are binned a run of
    components at a time, so temporaries stay small.
    """

    def __init__(self, lo: Any, hi: Any, bins: int = 4096, *, grow: bool = False, groups: int = 1) -> None:
        self.bins = _check_bins(bins, "FineHistogram", 4 if grow else 1)
        lo = np.atleast_1d(np.asarray(lo, dtype=np.float64))
        hi = np.atleast_1d(np.asarray(hi, dtype=np.float64))
        lo, hi = np.broadcast_arrays(lo, hi)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise InvalidParameterError("FineHistogram: lo and hi must be finite.")
        if np.any(hi < lo):
            raise InvalidParameterError("FineHistogram: every hi must be >= its lo.")
        check_positive(groups, "groups", owner="FineHistogram", integer=True, minimum=1)
        self.grow = bool(grow)
        self.groups = int(groups)
        self.lo, self.hi = _widen_degenerate(lo, hi)
        self.dim = self.lo.shape[0]
        self.counts = None
        self._prepared = False

    # -- set-up -------------------------------------------------------------------------
    def _allocate(self, dim: int) -> None:
        if self.dim == 1 and dim > 1:
            self.lo = np.full(dim, self.lo[0])
            self.hi = np.full(dim, self.hi[0])
            self.dim = dim
        # layout (dim, groups, bins): a run of components is one contiguous slice (column chunks);
        # int32 counters (promoted to int64 before they could overflow)
        self.counts = np.zeros((self.dim, self.groups, self.bins), dtype=np.int32)
        self.n_seen = 0
        self.underflow = np.zeros((self.groups, self.dim), np.int64)
        self.overflow = np.zeros((self.groups, self.dim), np.int64)
        self.vmin = np.full((self.groups, self.dim), np.inf)
        self.vmax = np.full((self.groups, self.dim), -np.inf)
        self._level = np.zeros(self.dim, np.int64)  # doublings of each growing range
        self._prepare()

    def _prepare(self) -> None:
        B = self.bins
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            self._step = (self.hi - self.lo) / B
            self._scale = B / (self.hi - self.lo)
            lo32 = self.lo.astype(np.float32)
            self._lo32 = lo32
            self._scale32 = self._scale.astype(np.float32)
            shift = (lo32.astype(np.float64) - self.lo) * self._scale
            self._shift32 = shift.astype(np.float32)
            # bound of the rounding error of the float32 bin position ((x - lo32) * scale + shift), in
            # bins: a few float32 roundings of quantities up to B + |shift|, with a factor 2 to spare
            err32 = 2 * (_EPS32 / 2) * (4 * B + 2 * np.abs(shift) + 4)
        ok32 = (np.isfinite(self._scale32).all() and np.isfinite(self._shift32).all()
                and np.isfinite(lo32).all() and np.all(self._scale32 > 0) and np.all(self._step > 0))
        thr = 0.5 - max(1e-3, float(err32.max())) if ok32 else 0.0
        # float32 too coarse or out of range for these ranges: use float64 throughout
        self._thr32 = np.float32(thr) if thr > 0.05 else None
        self._thr64 = 0.499
        self._prepared = True

    # -- growing ------------------------------------------------------------------------
    def _double(self, c: int) -> None:
        """Double component ``c``'s range about its centre, merging pairs of bins."""
        B = self.bins
        lo, hi = self.lo[c], self.hi[c]
        w = hi - lo
        pairs = self.counts[c].reshape(self.groups, B // 2, 2).sum(2)
        new = np.zeros((self.groups, B), self.counts.dtype)
        new[:, B // 4: B // 4 + B // 2] = pairs
        self.counts[c] = new
        self.lo[c], self.hi[c] = lo - w / 2, hi + w / 2
        self._level[c] += 1

    def _grow_to(self, bmin: np.ndarray, bmax: np.ndarray) -> None:
        """Double ranges (symmetrically, so that histograms grown from the same start stay mergeable)."""
        need = (bmin < self.lo) | (bmax > self.hi)
        if not need.any():
            return
        for c in np.flatnonzero(need):
            while bmin[c] < self.lo[c] or bmax[c] > self.hi[c]:
                self._double(c)
        self._prepare()

    def _grow_level(self, level: np.ndarray) -> None:
        """Double until every component reaches ``level`` doublings."""
        need = np.flatnonzero(self._level < level)
        for c in need:
            while self._level[c] < level[c]:
                self._double(c)
        if need.size:
            self._prepare()

    # -- update -------------------------------------------------------------------------
    def update(self, block: Any, group: np.ndarray | None = None) -> "FineHistogram":
        """Add the rows of a block of shape (n, dim); ``group`` gives each row's group index."""
        x = np.asarray(block)
        if x.ndim != 2:
            raise InvalidParameterError(f"FineHistogram.update: block must be 2-D; got shape {x.shape}.")
        return self.update_columns(np.ascontiguousarray(x.T), group)

    def update_columns(self, xT: Any, group: np.ndarray | None = None) -> "FineHistogram":
        """Add a block given column-wise, shape (dim, n) (the fast layout: no transpose)."""
        xT = np.asarray(xT)
        if xT.ndim != 2:
            raise InvalidParameterError(f"FineHistogram.update: block must be 2-D; got shape {xT.shape}.")
        if xT.dtype not in (np.float32, np.float64):
            xT = xT.astype(np.float64)
        if not xT.flags.c_contiguous:
            xT = np.ascontiguousarray(xT)
        d = xT.shape[0]
        if self.counts is None:
            if self.dim not in (1, d):
                raise InvalidParameterError(f"FineHistogram.update: block must have {self.dim} columns; got {d}.")
            self._allocate(d)
        elif d != self.dim:
            raise InvalidParameterError(f"FineHistogram.update: block must have {self.dim} columns; got {d}.")
        n = xT.shape[1]
        if n == 0:
            return self
        if self.groups > 1:
            if group is None:
                raise InvalidParameterError("FineHistogram.update: group indices are required when groups > 1.")
            group = np.asarray(group, dtype=np.intp)
            if group.shape != (n,) or (group.size and (group.min() < 0 or group.max() >= self.groups)):
                raise InvalidParameterError(f"FineHistogram.update: group must hold {n} indices in [0, {self.groups}).")
        bmin = xT.min(1).astype(np.float64)
        bmax = xT.max(1).astype(np.float64)
        if not (np.isfinite(bmin).all() and np.isfinite(bmax).all()):
            raise NonFiniteError("FineHistogram.update: the block holds non-finite values.")
        if self.grow:
            self._grow_to(bmin, bmax)
        inside = bool(np.all(bmin >= self.lo) and np.all(bmax <= self.hi))
        self._update_extremes(xT, bmin, bmax, group)
        self._bin(xT, group, inside)
        return self

    def _update_extremes(self, xT: np.ndarray, bmin: np.ndarray, bmax: np.ndarray, group: np.ndarray | None) -> None:
        if self.groups == 1:
            np.minimum(self.vmin[0], bmin, out=self.vmin[0])
            np.maximum(self.vmax[0], bmax, out=self.vmax[0])
            return
        for g in range(self.groups):
            sel = group == g
            if sel.any():
                xs = xT[:, sel]
                np.minimum(self.vmin[g], xs.min(1), out=self.vmin[g])
                np.maximum(self.vmax[g], xs.max(1), out=self.vmax[g])

    #: Values per chunk of components binned at once (keeps temporaries small and in cache).
    CHUNK_VALUES = 1 << 18

    def _bin(self, xT: np.ndarray, group: np.ndarray | None, inside: bool) -> None:
        """Count a (dim, n) block, a run of components at a time.

        Column-major indices keep each component's bins in cache while counting.
        """
        dim, n = xT.shape
        self.n_seen += n
        if self.counts.dtype == np.int32 and self.n_seen >= np.iinfo(np.int32).max:
            self.counts = self.counts.astype(np.int64)
        step = max(1, self.CHUNK_VALUES // max(n, 1))
        gofs = None
        if self.groups > 1:
            gofs = group * self.bins
        for c0 in range(0, dim, step):
            c1 = min(dim, c0 + step)
            self._bin_chunk(xT[c0:c1], c0, gofs, group, inside)

    def _bin_chunk(self, xT: np.ndarray, c0: int, gofs: np.ndarray | None, group: np.ndarray | None,
                   inside: bool) -> None:
        B, G = self.bins, self.groups
        k, n = xT.shape
        sl = slice(c0, c0 + k)
        use32 = xT.dtype == np.float32 and self._thr32 is not None
        total = k * G * B  # local bins; index total is the trash slot
        with np.errstate(invalid="ignore", over="ignore"):
            if use32:
                t = np.subtract(xT, self._lo32[sl, None])
                t *= self._scale32[sl, None]
                t += self._shift32[sl, None]
                eps = np.float32(0.5) - self._thr32
            else:
                t = np.subtract(xT, self.lo[sl, None], dtype=np.float64)
                t *= self._scale[sl, None]
                eps = 0.5 - self._thr64
            f = np.floor(t)
            np.subtract(t, f, out=t)  # position inside the bin, in [0, 1)
            flag = t < eps
            flag |= t > 1 - eps
            if not inside:
                flag |= f < 0
                flag |= f > B - 1
            del t
            offs = np.arange(k, dtype=np.intp) * (G * B)
            if total < (1 << 24) if f.dtype == np.float32 else total < (1 << 52):
                f += offs.astype(f.dtype)[:, None]  # integers: exact in this precision
                if gofs is not None:
                    f += gofs.astype(f.dtype)[None, :]
                if not inside:
                    f[flag] = 0
                idx = f.astype(np.intp)
            else:
                if not inside:
                    f[flag] = 0
                idx = f.astype(np.intp)
                idx += offs[:, None]
                if gofs is not None:
                    idx += gofs[None, :]
        del f
        flat = np.flatnonzero(flag)
        if flat.size:
            cols, rows = np.divmod(flat, n)
            self._fix(xT, idx, flat, rows, cols, c0, group, inside)
        bc = np.bincount(idx.ravel(), minlength=total + 1)
        self.counts[sl] += bc[:total].reshape(k, G, B).astype(self.counts.dtype, copy=False)

    def _fix(self, xT: np.ndarray, idx: np.ndarray, flat: np.ndarray, rows: np.ndarray, lcols: np.ndarray, c0: int,
             group: np.ndarray | None, inside: bool = False) -> None:
        """Exact bins (against the float64 edges) for values near an edge or outside the range."""
        B, G = self.bins, self.groups
        k = xT.shape[0]
        cols = lcols + c0 if c0 else lcols
        xe = xT.ravel()[flat].astype(np.float64)
        lo, hi, step = self.lo[cols], self.hi[cols], self._step[cols]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            jf = np.floor((xe - lo) / step)
        if inside:  # every value lies in [lo, hi]: the estimate is off by at most one bin
            j = np.clip(jf, 0, B - 1).astype(np.intp)
        else:
            j = np.clip(np.nan_to_num(jf, nan=0.0, posinf=B, neginf=-1), -1, B).astype(np.intp)
        for _ in range(1 if inside else 2):  # correct the estimate against the exact edges
            j -= (j >= 0) & (xe < _edge_at(np.maximum(j, 0), lo, hi, step, B))
            j += (j < B - (1 if inside else 0)) & (xe >= _edge_at(np.minimum(j + 1, B), lo, hi, step, B))
        if inside:
            under = over = None
            j = np.clip(j, 0, B - 1)
        else:
            under = xe < lo
            over = xe > hi
            j = np.where(xe == hi, B - 1, np.clip(j, 0, B - 1))
        ok = (_edge_at(j, lo, hi, step, B) <= xe) & ((xe < _edge_at(j + 1, lo, hi, step, B)) | (j == B - 1))
        if under is not None:
            ok |= under | over
        for q in np.flatnonzero(~ok):  # pathological ranges only: search the column's edges
            c = cols[q]
            j[q] = min(B - 1, max(0, int(np.searchsorted(fine_edges(self.lo[c:c + 1], self.hi[c:c + 1], B)[0],
                                                         xe[q], side="right")) - 1))
        fl = j + lcols * (G * B)
        g = None
        if group is not None:
            g = group[rows]
            fl += g * B
        if under is None:
            idx.ravel()[flat] = fl
            return
        idx.ravel()[flat] = np.where(under | over, k * G * B, fl)
        g = np.zeros(rows.size, np.intp) if g is None else g
        if under.any():
            np.add.at(self.underflow, (g[under], cols[under]), 1)
        if over.any():
            np.add.at(self.overflow, (g[over], cols[over]), 1)

    # -- merge / result -----------------------------------------------------------------
    def merge(self, other: "FineHistogram") -> "FineHistogram":
        """Add the counts of a histogram fed other rows (same bins, groups and ranges)."""
        if other.counts is None:
            return self
        if self.counts is None:
            self._allocate(other.dim)
        if self.bins != other.bins or self.groups != other.groups or self.dim != other.dim:
            raise InvalidParameterError("FineHistogram.merge: both histograms must have the same bins, groups and dim.")
        if self.grow:
            level = np.maximum(self._level, other._level)
            self._grow_level(level)
            if np.any(other._level < level):
                other = other._copy()
                other._grow_level(level)
        if not (np.array_equal(self.lo, other.lo) and np.array_equal(self.hi, other.hi)):
            raise InvalidParameterError("FineHistogram.merge: both histograms must have the same ranges.")
        if other.counts.dtype == np.int64 or self.n_seen + other.n_seen >= np.iinfo(np.int32).max:
            self.counts = self.counts.astype(np.int64)
        self.counts += other.counts
        self.n_seen += other.n_seen
        self.underflow += other.underflow
        self.overflow += other.overflow
        np.minimum(self.vmin, other.vmin, out=self.vmin)
        np.maximum(self.vmax, other.vmax, out=self.vmax)
        return self

    def _copy(self) -> "FineHistogram":
        new = FineHistogram.__new__(FineHistogram)
        new.__dict__.update(self.__dict__)
        for name in ("lo", "hi", "counts", "underflow", "overflow", "vmin", "vmax", "_level"):
            setattr(new, name, getattr(self, name).copy())
        new._prepare()
        return new

    def result(self) -> FineHistogramResult:
        if self.counts is None:
            raise InvalidParameterError("FineHistogram.result: no block was seen, so the number of components is unknown.")
        c = np.ascontiguousarray(self.counts.transpose(1, 0, 2))
        return FineHistogramResult(self.lo.copy(), self.hi.copy(), c, self.underflow.copy(), self.overflow.copy(),
                                   self.vmin.copy(), self.vmax.copy())
