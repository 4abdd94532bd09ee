"""Run reducers over a store or an in-memory array in one pass."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["iter_array_blocks", "run_reducers", "source_shape"]

ProgressCallback = Callable[[int, int], None]


def source_shape(source: Any) -> tuple[int, int]:
    """(n_rows, z_dim) of a :class:`~latentscope.store.ZStore` or a 2-D array."""
    from ..store import ZStore

    if isinstance(source, ZStore):
        return source.shape
    arr = np.asarray(source)
    if arr.ndim != 2:
        raise InvalidParameterError(f"source must be a ZStore or a 2-D array; got shape {arr.shape}.")
    return arr.shape


def iter_array_blocks(source: Any, *, max_bytes: int = 64 << 20, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Yield consecutive row blocks (2-D arrays) of a store or an array."""
    from ..store import ZStore

    if isinstance(source, ZStore):
        for block in source.iter_blocks(max_bytes=max_bytes, start=start, stop=stop):
            yield block.z
        return
    arr = np.asarray(source)
    if arr.ndim != 2:
        raise InvalidParameterError(f"source must be a ZStore or a 2-D array; got shape {arr.shape}.")
    stop = arr.shape[0] if stop is None else min(stop, arr.shape[0])
    step = max(1, int(max_bytes) // max(1, arr.shape[1] * arr.itemsize))
    for lo in range(start, stop, step):
        yield arr[lo : min(stop, lo + step)]


def run_reducers(
    source: Any,
    reducers: Sequence[Any],
    *,
    max_bytes: int = 64 << 20,
    progress: ProgressCallback | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Sequence[Any]:
    """Feed every block of ``source`` to each reducer in one pass; return the reducers.

    Parameters
    ----------
    source : ZStore or array-like of shape (n, dim)
    reducers : sequence of reducers (objects with ``update``)
    max_bytes : int, default=64 MiB
        Memory budget per block of z-points.
    progress : callable(rows_done, rows_total), optional
        Called after each block.
    transform : callable, optional
        Applied to each float block before the reducers see it (e.g. a PCA rotation).
    """
    n, _ = source_shape(source)
    done = 0
    for block in iter_array_blocks(source, max_bytes=max_bytes):
        x = transform(block) if transform is not None else block
        for r in reducers:
            r.update(x)
        done += block.shape[0]
        if progress is not None:
            progress(done, n)
    return reducers
