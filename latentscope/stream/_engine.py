"""Run reducers over a store or an in-memory array in one pass."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["iter_array_blocks", "run_reducers", "source_shape"]

ProgressCallback = Callable[[int, int], None]


def _is_store(source: Any) -> bool:
    from ..store import ZStore

    return isinstance(source, ZStore)


def _lazy_2d(source: Any) -> bool:
    """An array-like that can be sliced by rows without loading it (h5py, memmap, ...)."""
    return hasattr(source, "shape") and hasattr(source, "__getitem__") and len(getattr(source, "shape", ())) == 2


def source_shape(source: Any) -> tuple[int, int]:
    """``(n_rows, dim)`` of a :class:`~latentscope.store.ZStore` or a 2-D array-like."""
    if _is_store(source):
        return source.shape
    if _lazy_2d(source):
        return (int(source.shape[0]), int(source.shape[1]))
    arr = np.asarray(source)
    if arr.ndim != 2:
        raise InvalidParameterError(f"source must be a ZStore or a 2-D array; got shape {arr.shape}.")
    return arr.shape


def _check_max_bytes(max_bytes: Any) -> int:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise InvalidParameterError(f"max_bytes must be a positive integer; got {max_bytes!r}.")
    return int(max_bytes)


def iter_array_blocks(
    source: Any, *, max_bytes: int = 64 << 20, start: int = 0, stop: int | None = None
) -> Iterator[np.ndarray]:
    """Yield consecutive row blocks (2-D arrays) of a store or an array-like.

    Parameters
    ----------
    source : ZStore, ndarray, h5py.Dataset or other 2-D array-like
        Array-likes with ``shape`` and ``__getitem__`` are read block by block.
    max_bytes : int, default=64 MiB
        Memory budget of one block (chunk-aligned for stores).
    start, stop : int
        Row range.
    """
    max_bytes = _check_max_bytes(max_bytes)
    if _is_store(source):
        for block in source.iter_blocks(max_bytes=max_bytes, start=start, stop=stop):
            yield block.z
        return
    arr = source if _lazy_2d(source) else np.asarray(source)
    if arr.ndim != 2:
        raise InvalidParameterError(f"source must be a ZStore or a 2-D array; got shape {arr.shape}.")
    n = int(arr.shape[0])
    stop = n if stop is None else min(int(stop), n)
    start = int(start)
    if start < 0 or stop < start:
        raise InvalidParameterError(f"iter_array_blocks: need 0 <= start <= stop; got start={start}, stop={stop}.")
    itemsize = np.dtype(getattr(arr, "dtype", np.float64)).itemsize
    step = max(1, max_bytes // max(1, int(arr.shape[1]) * itemsize))
    for lo in range(start, stop, step):
        yield np.asarray(arr[lo : min(stop, lo + step)])


def run_reducers(
    source: Any,
    reducers: Sequence[Any],
    *,
    max_bytes: int = 64 << 20,
    progress: ProgressCallback | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Sequence[Any]:
    """Feed every block of ``source`` to each reducer in one pass; return the reducers.

    Each block is converted to float64 once and shared by the reducers.

    Parameters
    ----------
    source : ZStore or array-like of shape (n, dim)
    reducers : sequence of reducers (objects with ``update``)
    max_bytes : int, default=64 MiB
        Memory budget per block of z-points (as stored; float64 copies are transient).
    progress : callable(rows_done, rows_total), optional
        Called once before the first block and after each block.
    transform : callable, optional
        Applied to each float64 block before the reducers see it (e.g. a PCA rotation).
    start, stop : int
        Row range of the source.

    Returns
    -------
    sequence
        ``reducers``, updated.
    """
    for r in reducers:
        if not callable(getattr(r, "update", None)):
            raise InvalidParameterError(f"run_reducers: every reducer needs an update(block) method; got {type(r).__name__}.")
    n, dim = source_shape(source)
    lo = max(0, int(start))
    total = max(0, min(n, n if stop is None else int(stop)) - lo)
    done = 0
    if progress is not None:
        progress(0, total)
    seen = False
    for block in iter_array_blocks(source, max_bytes=max_bytes, start=start, stop=stop):
        x = np.asarray(block, dtype=np.float64)
        if transform is not None:
            x = transform(x)
        for r in reducers:
            r.update(x)
        seen = True
        done += block.shape[0]
        if progress is not None:
            progress(done, total)
    if not seen:  # fix the reducers' dimension even when there are no rows
        x = np.empty((0, dim), dtype=np.float64)
        if transform is not None:
            x = transform(x)
        for r in reducers:
            r.update(x)
    return reducers
