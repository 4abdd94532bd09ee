"""Fine streaming histograms and the quantiles read from them.

A :class:`FineHistogram` keeps, per component, a histogram with many equal bins
(default 4096). Quantiles interpolated in it are exact to within one bin width,
``(hi - lo) / bins``, and usually far better (the rank is interpolated inside the
bin). With ranges from a first pass (the data's min and max) the first and last
levels (0 and 1) are exact. :func:`streaming_quantiles` runs the two passes.

Bin assignment is exact: a value ``x`` lands in bin ``j`` when
``edges[j] <= x < edges[j + 1]`` (the last bin includes its right edge), with
``edges = lo + j (hi - lo) / bins`` (as numpy.linspace), so any coarse histogram whose edges are
a subset of the fine edges equals :func:`numpy.histogram` on those edges. The bin of
each value is computed in the block's precision and values within about 0.2 % of a bin
width of an edge are re-checked against the float64 edges.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..exceptions import InvalidParameterError, NonFiniteError
from ..stream import DEFAULT_MAX_BYTES, iter_array_blocks, source_shape
from ._binning import _check_bins, _check_levels, aligned_coarse, fine_edges, quantiles_from_counts
from ._histogram import FineHistogram, FineHistogramResult

__all__ = ["FineHistogram", "FineHistogramResult", "streaming_quantiles", "quantiles_from_counts", "aligned_coarse",
           "fine_edges"]


def streaming_quantiles(
    source: Any,
    qs: Any,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    bins: int = 4096,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[int, int], None] | None = None,
    return_histogram: bool = False,
) -> np.ndarray | tuple[np.ndarray, FineHistogramResult]:
    """Per-component quantiles of a store or array in two streaming passes.

    Pass 1 finds each component's min and max; pass 2 fills a fine histogram of
    ``bins`` bins between them, in which the quantiles are interpolated
    (:func:`quantiles_from_counts`). The error is at most ``(max - min) / bins`` per
    component (levels 0 and 1 are exact) and is independent of the block size.

    Parameters
    ----------
    source : ZStore or array-like of shape (n, dim)
    qs : float or sequence of floats in [0, 1]
    transform : callable, optional
        Applied to each block first (e.g. ``pca.transform``): quantiles of the
        transformed coordinates.
    bins : int, default=4096
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Block size budget.
    progress : callable(rows_done, rows_total), optional
        Called after each block of each pass (rows of both passes count).
    return_histogram : bool, default=False
        Also return the :class:`FineHistogramResult`.

    Returns
    -------
    ndarray of shape (len(qs), dim)

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.random.default_rng(0).normal(size=(10_000, 3))
    >>> q = streaming_quantiles(Z, [0.5])
    >>> bool(np.allclose(q, np.quantile(Z, [0.5], axis=0), atol=0.01))
    True
    """
    levels = _check_levels(qs, "streaming_quantiles")
    bins = _check_bins(bins, "streaming_quantiles")
    n, _ = source_shape(source)
    if n == 0:
        raise InvalidParameterError("streaming_quantiles: the source has no rows.")
    vmin = vmax = None
    done = 0
    for block in iter_array_blocks(source, max_bytes=max_bytes):
        x = transform(block) if transform is not None else block
        x = np.asarray(x)
        bmin, bmax = x.min(0).astype(np.float64), x.max(0).astype(np.float64)
        vmin = bmin if vmin is None else np.minimum(vmin, bmin)
        vmax = bmax if vmax is None else np.maximum(vmax, bmax)
        done += block.shape[0]
        if progress is not None:
            progress(done, 2 * n)
    if not (np.isfinite(vmin).all() and np.isfinite(vmax).all()):
        raise NonFiniteError("streaming_quantiles: the source holds non-finite values.")
    hist = FineHistogram(vmin, vmax, bins)
    for block in iter_array_blocks(source, max_bytes=max_bytes):
        x = transform(block) if transform is not None else block
        hist.update(x)
        done += block.shape[0]
        if progress is not None:
            progress(done, 2 * n)
    res = hist.result()
    out = res.quantiles(levels)
    return (out, res) if return_histogram else out
