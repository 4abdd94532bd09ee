"""Block iteration over stores and arrays, and the (threaded) pass runner."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["DEFAULT_MAX_BYTES", "iter_source", "run_pass"]


#: Default block budget of the analyses: small blocks keep peak memory low.
DEFAULT_MAX_BYTES = 4 << 20


# -- sources --------------------------------------------------------------------------
def iter_source(source: Any, *, max_bytes: int = DEFAULT_MAX_BYTES, labels: Any = None,
                column: str | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield ``(z_block, label_block)`` from a store or an array.

    ``column`` names a store column read alongside; ``labels`` is an array of
    per-row values for an in-memory source (or a store).
    """
    from ..store import ZStore

    if isinstance(source, ZStore):
        cols = (column,) if column is not None else ()
        for block in source.iter_blocks(max_bytes=max_bytes, columns=cols):
            lab = block.columns[column] if column is not None else (
                None if labels is None else np.asarray(labels)[block.start:block.stop])
            yield block.z, lab
        return
    arr = np.asarray(source)
    if arr.ndim != 2:
        raise InvalidParameterError(f"source must be a ZStore or a 2-D array; got shape {arr.shape}.")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    lab_all = None if labels is None else np.asarray(labels)
    step = max(1, int(max_bytes) // max(1, arr.shape[1] * arr.itemsize))
    for lo in range(0, arr.shape[0], step):
        hi = min(arr.shape[0], lo + step)
        yield arr[lo:hi], (None if lab_all is None else lab_all[lo:hi])


def run_pass(
    source: Any,
    make: Callable[[], Any],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    group_of: Callable[[np.ndarray], np.ndarray] | None = None,
    labels: Any = None,
    column: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    n_threads: int = 1,
) -> Any:
    """Feed every block of ``source`` to reducers made by ``make()``; return the merged one.

    With ``n_threads > 1`` blocks are handed to a thread pool, each thread
    accumulating into its own reducer; the reducers are merged at the end (numpy
    releases the GIL in its loops). BLAS threads are limited to one per worker.
    """
    from ..stream import source_shape

    n, _ = source_shape(source)
    blocks = iter_source(source, max_bytes=max_bytes, labels=labels, column=column)
    done = 0
    if n_threads <= 1:
        red = make()
        for z, lab in blocks:
            red.update(z, None if group_of is None else group_of(lab))
            done += z.shape[0]
            if progress is not None:
                progress(done, n)
        return red
    import threading

    from threadpoolctl import threadpool_limits

    local = threading.local()
    reducers: list[Any] = []
    lock = threading.Lock()

    def work(item: tuple[np.ndarray, np.ndarray | None]) -> int:
        red = getattr(local, "red", None)
        if red is None:
            red = local.red = make()
            with lock:
                reducers.append(red)
        z, lab = item
        red.update(z, None if group_of is None else group_of(lab))
        return z.shape[0]

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_threads) as pool:
        pending: list[Any] = []
        for item in blocks:
            pending.append(pool.submit(work, item))
            while len(pending) > n_threads:
                done += pending.pop(0).result()
                if progress is not None:
                    progress(done, n)
        for fut in pending:
            done += fut.result()
            if progress is not None:
                progress(done, n)
    if not reducers:
        return make()
    first = reducers[0]
    for other in reducers[1:]:
        first.merge(other)
    return first
