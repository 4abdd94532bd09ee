"""Bounding boxes of a z-point cloud: axis-aligned and PCA-aligned (the 'PCA fragment')."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._estimator import Estimator
from .._persist import load_state, save_state
from .._validation import check_is_fitted
from ..exceptions import InvalidParameterError
from ..regions import Box, OrientedBox
from ..stream import DEFAULT_MAX_BYTES, run_pass
from ._passes import FirstPass, FrameCache, SecondPass
from ._pca import PCAFrame

__all__ = ["BoundingBoxes"]

_EPS32 = float(np.finfo(np.float32).eps)


def _check_quantiles(q: Any, owner: str) -> tuple[float, float] | None:
    if q is None:
        return None
    try:
        lo, hi = (float(v) for v in q)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{owner}: quantiles must be None or a pair (lo, hi) with 0 <= lo < hi <= 1; got {q!r}.") from None
    if not (0.0 <= lo < hi <= 1.0):
        raise InvalidParameterError(f"{owner}: quantiles must be None or a pair (lo, hi) with 0 <= lo < hi <= 1; got {q!r}.")
    return lo, hi


def pca_margin(dim: int, max_centered_norm: float, dtype: Any = np.float32) -> float:
    """Padding of min/max boxes in PCA coordinates computed in the pass's precision.

    A dot product of length ``dim`` errs by at most ``gamma_dim |d| |v|``
    (``gamma_n = n u / (1 - n u)``, ``u`` the unit roundoff of ``dtype``, ``|v| = 1``);
    the box is widened by twice that bound at the largest ``|d| = |z - mean|`` so that
    :meth:`OrientedBox.contains` (float64) holds for every row.
    """
    u = float(np.finfo(dtype).eps) / 2
    gamma = (dim + 4) * u / (1 - (dim + 4) * u)
    return 2.0 * gamma * max_centered_norm + np.finfo(np.float64).tiny


def _inward32(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 bounds with ``x >= lo <=> x >= lo32`` and ``x <= hi <=> x <= hi32`` for float32 x."""
    lo32 = lo.astype(np.float32)
    lo32 = np.where(lo32.astype(np.float64) < lo, np.nextafter(lo32, np.float32(np.inf)), lo32)
    hi32 = hi.astype(np.float32)
    hi32 = np.where(hi32.astype(np.float64) > hi, np.nextafter(hi32, np.float32(-np.inf)), hi32)
    return lo32.astype(np.float32), hi32.astype(np.float32)


class _Membership:
    """Counts the rows inside an axis box and an oriented box (exactly as ``contains``)."""

    def __init__(self, axis_box: Box | None, pca_box: OrientedBox | None, cache: FrameCache | None, margin: float) -> None:
        self.axis_box, self.pca_box, self.cache, self.margin = axis_box, pca_box, cache, margin
        self.n = self.in_axis = self.in_pca = 0
        if axis_box is not None:
            self._alo32, self._ahi32 = _inward32(axis_box.lo, axis_box.hi)
        if pca_box is not None:
            dt = cache.dtype
            m = margin
            self._in_lo = (pca_box.lo + m).astype(dt)  # surely inside: well within the bounds
            self._in_hi = (pca_box.hi - m).astype(dt)
            self._out_lo = (pca_box.lo - m).astype(dt)  # maybe inside: within the padded bounds
            self._out_hi = (pca_box.hi + m).astype(dt)
            if dt == np.float32:  # round the float32 bounds so that both tests stay conservative
                self._in_lo = np.nextafter(self._in_lo, np.float32(np.inf))
                self._in_hi = np.nextafter(self._in_hi, np.float32(-np.inf))
                self._out_lo = np.nextafter(self._out_lo, np.float32(-np.inf))
                self._out_hi = np.nextafter(self._out_hi, np.float32(np.inf))

    def update(self, x: np.ndarray, group: Any = None) -> "_Membership":
        self.n += x.shape[0]
        if self.axis_box is not None:
            if x.dtype == np.float32:  # exact: the bounds were rounded inwards to float32
                inside = np.all((x >= self._alo32) & (x <= self._ahi32), axis=1)
            else:
                inside = np.all((x >= self.axis_box.lo) & (x <= self.axis_box.hi), axis=1)
            self.in_axis += int(np.count_nonzero(inside))
        if self.pca_box is not None:
            t = self.cache.rotate(self.cache.deviations(x))
            surely_in = np.all((t >= self._in_lo) & (t <= self._in_hi), axis=1)
            maybe = np.all((t >= self._out_lo) & (t <= self._out_hi), axis=1) & ~surely_in
            self.in_pca += int(np.count_nonzero(surely_in))
            if maybe.any():
                self.in_pca += int(np.count_nonzero(self.pca_box.contains(x[maybe])))
        return self

    def merge(self, other: "_Membership") -> "_Membership":
        self.n += other.n
        self.in_axis += other.in_axis
        self.in_pca += other.in_pca
        return self


class BoundingBoxes(Estimator):
    """Axis-aligned and PCA-aligned bounding boxes of a z-point cloud.

    The PCA-aligned box (the series' "PCA fragment") is an
    :class:`~latentscope.regions.OrientedBox` in the full PCA frame: origin = the data
    mean, axes = ``pca_.components_``, bounds = the min and max (or the chosen
    quantiles) of each principal coordinate. The axis box bounds each raw component
    the same way. Both are regions the samplers build on.

    Passes over the data: pass 1 (mean, covariance, min/max), pass 2 (PCA
    coordinates; fine histograms when quantiles are asked for); with quantiles a
    third, light pass counts the rows inside both boxes. Min/max boxes contain every
    row by construction (their fractions are 1). Quantile bounds come from 4096-bin
    histograms and are exact to within ``range / bins`` per axis (see
    :func:`streaming_quantiles`).

    Parameters
    ----------
    quantiles : None or (lo, hi), default=None
        None: min/max boxes. A pair such as ``(0.005, 0.995)``: per-axis quantile
        bounds.
    pca : PCAFrame, optional
        A fitted covariance frame to use (it must not be a correlation frame);
        default: fitted here from the same pass 1.
    bins : int, default=4096
        Fine histogram bins per axis for quantiles.
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Block budget.
    n_threads : int, default=1
        Worker threads per pass.

    Attributes
    ----------
    axis_box_ : Box
    pca_box_ : OrientedBox
    pca_ : PCAFrame
    fraction_inside_axis_, fraction_inside_pca_ : float
    log_volume_axis_, log_volume_pca_ : float
        Natural log of the volumes (``-inf`` when a width is 0).
    n_samples_seen_ : int
    n_passes_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from latentscope.analysis import BoundingBoxes
    >>> Z = np.random.default_rng(0).normal(size=(2000, 4)) @ np.diag([3, 2, 1, 0.5])
    >>> bb = BoundingBoxes().fit(Z)
    >>> bool(bb.pca_box_.contains(Z).all()), bb.fraction_inside_pca_
    (True, 1.0)
    """

    def __init__(self, *, quantiles: Any = None, pca: PCAFrame | None = None, bins: int = 4096,
                 max_bytes: int = DEFAULT_MAX_BYTES, n_threads: int = 1) -> None:
        self.quantiles = quantiles
        self.pca = pca
        self.bins = bins
        self.max_bytes = max_bytes
        self.n_threads = n_threads

    def _validate(self) -> tuple[float, float] | None:
        q = _check_quantiles(self.quantiles, "BoundingBoxes")
        if isinstance(self.bins, bool) or not isinstance(self.bins, (int, np.integer)) or self.bins < 16 or self.bins % 4:
            raise InvalidParameterError(f"BoundingBoxes: bins must be an integer >= 16 and a multiple of 4; got {self.bins!r}.")
        if self.pca is not None:
            if not isinstance(self.pca, PCAFrame):
                raise InvalidParameterError(f"BoundingBoxes: pca must be a fitted PCAFrame or None; got {type(self.pca).__name__}.")
            check_is_fitted(self.pca, "components_")
            if self.pca.correlation:
                raise InvalidParameterError("BoundingBoxes: pca must be a covariance frame (correlation=False); "
                                            "a box in standardised coordinates is not an oriented box of the latent space.")
        return q

    def fit(self, source: Any, *, progress: Callable[[str, int, int], None] | None = None) -> "BoundingBoxes":
        """Fit from a :class:`~latentscope.store.ZStore` or an array of shape (n, z_dim).

        ``progress(pass_name, rows_done, rows_total)`` is called after each block.
        """
        q = self._validate()
        cb = (lambda name: (lambda d, t: progress(name, d, t))) if progress is not None else (lambda name: None)
        first = run_pass(source, lambda: FirstPass(covariance=self.pca is None), max_bytes=self.max_bytes,
                         progress=cb("pass 1"), n_threads=self.n_threads).result()
        frame = self.pca if self.pca is not None else _frame_from(first)
        if frame.mean_.shape[0] != first.mean.shape[0]:
            raise InvalidParameterError(f"BoundingBoxes: pca has z_dim {frame.mean_.shape[0]}; the source has {first.mean.shape[0]}.")
        bins_raw = self.bins if q else None
        sp = SecondPass(first, frame, raw_bins=bins_raw, pc_bins=self.bins, radial=False)
        second = run_pass(source, sp.fork, max_bytes=self.max_bytes, progress=cb("pass 2"), n_threads=self.n_threads).result()
        self._from_passes(first, frame, second)
        self.n_passes_ = 2
        if q is not None:
            self._count_inside(source, progress=cb("pass 3"))
            self.n_passes_ = 3
        return self

    def _from_passes(self, first: Any, frame: PCAFrame, second: Any) -> "BoundingBoxes":
        """Build the boxes from shared pass results (used by :func:`analyze`)."""
        q = self._validate()
        dim = first.mean.shape[0]
        dtype = np.dtype(second.precision)
        if q is None:
            alo, ahi = first.min.copy(), first.max.copy()
            m = pca_margin(dim, second.max_centered_norm, dtype)
            plo, phi = second.pc_min - m, second.pc_max + m
        else:
            aq = second.raw_hist.quantiles(q)
            pq = second.pc_hist.quantiles(q)
            alo, ahi = aq[0], aq[1]
            plo, phi = pq[0], pq[1]
        self.pca_ = frame
        self._cache = FrameCache.from_frame(frame, dtype)
        self._margin = pca_margin(dim, second.max_centered_norm, dtype)
        self.precision_ = dtype.name
        self.axis_box_ = Box(alo, np.maximum(ahi, alo))
        self.pca_box_ = OrientedBox(frame.mean_, frame.components_, plo, np.maximum(phi, plo))
        self.log_volume_axis_ = self.axis_box_.log_volume
        self.log_volume_pca_ = self.pca_box_.log_volume
        self.n_samples_seen_ = int(first.n)
        self.quantiles_ = q
        if q is None:
            self.fraction_inside_axis_ = 1.0
            self.fraction_inside_pca_ = 1.0
        else:
            self.fraction_inside_axis_ = float("nan")
            self.fraction_inside_pca_ = float("nan")
        self.n_passes_ = 2
        return self

    def _membership(self) -> _Membership:
        return _Membership(self.axis_box_, self.pca_box_, self._cache, self._margin)

    def _count_inside(self, source: Any, progress: Callable[[int, int], None] | None = None) -> None:
        m = run_pass(source, self._membership, max_bytes=self.max_bytes, progress=progress, n_threads=self.n_threads)
        self._set_membership(m)

    def _set_membership(self, m: _Membership) -> None:
        self.fraction_inside_axis_ = m.in_axis / m.n if m.n else float("nan")
        self.fraction_inside_pca_ = m.in_pca / m.n if m.n else float("nan")

    # -- persistence --------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Scalars of the fit as a plain dict."""
        check_is_fitted(self, "axis_box_")
        return {
            "n_samples_seen": self.n_samples_seen_, "quantiles": self.quantiles_,
            "fraction_inside_axis": self.fraction_inside_axis_, "fraction_inside_pca": self.fraction_inside_pca_,
            "log_volume_axis": self.log_volume_axis_, "log_volume_pca": self.log_volume_pca_,
            "n_passes": self.n_passes_, "precision": self.precision_,
        }

    def save(self, path: str | Path) -> None:
        """Save to ``path.json`` / ``path.h5`` (and the frame to ``path_pca.*``)."""
        check_is_fitted(self, "axis_box_")
        stem = Path(path)
        params = {k: v for k, v in self.get_params().items() if k != "pca"}  # the frame is saved beside
        save_state(stem, kind="BoundingBoxes", params=params, scalars=self.summary(),
                   arrays={"axis_lo": self.axis_box_.lo, "axis_hi": self.axis_box_.hi,
                           "pca_origin": self.pca_box_.origin, "pca_axes": self.pca_box_.axes,
                           "pca_lo": self.pca_box_.lo, "pca_hi": self.pca_box_.hi, "margin": np.asarray(self._margin)})
        self.pca_.save(stem.parent / (stem.name + "_pca"))

    @classmethod
    def load(cls, path: str | Path) -> "BoundingBoxes":
        """Load boxes written by :meth:`save`."""
        stem = Path(path)
        state = load_state(stem, "BoundingBoxes")
        params, scalars, arrays = state.params, state.scalars, state.arrays
        self = cls(**{k: v for k, v in params.items() if k in cls._param_names() and k != "pca"})
        self.axis_box_ = Box(arrays["axis_lo"], arrays["axis_hi"])
        self.pca_box_ = OrientedBox(arrays["pca_origin"], arrays["pca_axes"], arrays["pca_lo"], arrays["pca_hi"])
        self.pca_ = PCAFrame.load(stem.parent / (stem.name + "_pca"))
        self.precision_ = scalars.get("precision", "float32")
        self._cache = FrameCache.from_frame(self.pca_, np.dtype(self.precision_))
        self._margin = float(arrays["margin"])
        q = scalars.get("quantiles")
        self.quantiles_ = None if q is None else tuple(q)
        for k in ("fraction_inside_axis", "fraction_inside_pca", "log_volume_axis", "log_volume_pca"):
            setattr(self, k + "_", float(scalars[k]) if scalars[k] is not None else float("nan"))
        self.n_samples_seen_ = int(scalars["n_samples_seen"])
        self.n_passes_ = int(scalars["n_passes"])
        return self


def _frame_from(first: Any) -> PCAFrame:
    if first.n < 2:
        raise InvalidParameterError(f"at least 2 rows are needed for a PCA frame; the source has {first.n}.")
    return PCAFrame().fit_covariance(first.cov)
