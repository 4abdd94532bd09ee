"""The one block engine: reducer passes, threaded passes and threaded block maps.

Every pass over z-points goes through a :class:`~latentscope.stream.ZSource`
(:func:`~latentscope.stream.as_zsource`) and one of three runners:

:func:`run_reducers`
    one thread; each block converted to float64 once and fed to several reducers.
:func:`run_pass`
    reducers made by a factory, one per thread, merged at the end; blocks read
    under ``max_bytes`` are cut into work units of :data:`WORK_UNIT_BYTES`.
:func:`run_blocks`
    any function over a list of independent work items (disjoint outputs).

Threaded runners give each worker one BLAS thread (:func:`single_blas_thread`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..exceptions import InvalidParameterError
from ._policy import DEFAULT_MAX_BYTES, WORK_UNIT_BYTES, check_max_bytes, resolve_threads, single_blas_thread
from ._source import as_zsource, reading

__all__ = [
    "DEFAULT_MAX_BYTES", "WORK_UNIT_BYTES", "iter_array_blocks", "run_reducers", "run_pass", "run_blocks",
    "source_shape", "single_blas_thread", "resolve_threads", "check_max_bytes",
]

ProgressCallback = Callable[[int, int], None]

def source_shape(source: Any) -> tuple[int, int]:
    """``(n_rows, dim)`` of anything :func:`~latentscope.stream.as_zsource` accepts."""
    with reading(source) as src:
        return src.shape


def iter_array_blocks(
    source: Any, *, max_bytes: int = DEFAULT_MAX_BYTES, start: int = 0, stop: int | None = None
) -> Iterator[np.ndarray]:
    """Yield consecutive row blocks (2-D arrays) of anything :func:`as_zsource` accepts.

    Parameters
    ----------
    source : ZSource, ZStore, ndarray, h5py.Dataset or other 2-D array-like
    max_bytes : int, default=DEFAULT_MAX_BYTES
        Memory budget of one block (chunk-aligned for stores).
    start, stop : int
        Row range.
    """
    with reading(source) as src:
        for block in src.iter_blocks(max_bytes=max_bytes, start=start, stop=stop):
            yield block.z


def run_reducers(
    source: Any,
    reducers: Sequence[Any],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: ProgressCallback | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Sequence[Any]:
    """Feed every block of ``source`` to each reducer in one pass; return the reducers.

    Each block is converted to float64 once and shared by the reducers.

    Parameters
    ----------
    source : ZSource, ZStore or array-like of shape (n, dim)
    reducers : sequence of reducers (objects with ``update``)
    max_bytes : int, default=DEFAULT_MAX_BYTES
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
    with reading(source) as src:
        return _reduce(src, reducers, max_bytes, progress, transform, start, stop)


def _reduce(src: Any, reducers: Sequence[Any], max_bytes: int, progress: ProgressCallback | None,
            transform: Callable[[np.ndarray], np.ndarray] | None, start: int, stop: int | None) -> Sequence[Any]:
    n, dim = src.shape
    lo = max(0, int(start))
    total = max(0, min(n, n if stop is None else int(stop)) - lo)
    done = 0
    if progress is not None:
        progress(0, total)
    seen = False
    for block in src.iter_blocks(max_bytes=max_bytes, start=start, stop=stop):
        x = np.asarray(block.z, dtype=np.float64)
        if transform is not None:
            x = transform(x)
        for r in reducers:
            r.update(x)
        seen = True
        done += len(block)
        if progress is not None:
            progress(done, total)
    if not seen:  # fix the reducers' dimension even when there are no rows
        x = np.empty((0, dim), dtype=np.float64)
        if transform is not None:
            x = transform(x)
        for r in reducers:
            r.update(x)
    return reducers


def _units(source: Any, max_bytes: int, labels: Any, column: str | None
           ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``(z, labels)`` work units of at most :data:`WORK_UNIT_BYTES`, cut from blocks read under ``max_bytes``."""
    src = as_zsource(source)  # already a ZSource: the caller owns it
    cols = (column,) if column is not None else ()
    unit = max(1, WORK_UNIT_BYTES // max(1, src.dim * src.dtype.itemsize))
    for block in src.iter_blocks(max_bytes=max_bytes, columns=cols, labels=None if column else labels):
        lab = block.columns.get(column if column is not None else "labels")
        for a in range(0, len(block), unit):
            yield block.z[a:a + unit], (None if lab is None else lab[a:a + unit])


def run_pass(
    source: Any,
    make: Callable[[], Any],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    group_of: Callable[[np.ndarray], np.ndarray] | None = None,
    labels: Any = None,
    column: str | None = None,
    progress: ProgressCallback | None = None,
    n_threads: int | None = 1,
) -> Any:
    """Feed every block of ``source`` to reducers made by ``make()``; return the merged one.

    Parameters
    ----------
    source : ZSource, ZStore or array-like of shape (n, dim)
    make : callable
        Makes an empty reducer with ``update(z, groups)`` and ``merge(other)``.
    max_bytes : int, default=DEFAULT_MAX_BYTES
        Upper bound on one read block. The pass reads at most ``2 * n_threads``
        work units of :data:`WORK_UNIT_BYTES` at a time (more would only hold
        memory) and hands the reducers one unit at a time.
    group_of : callable, optional
        Maps a block of labels to the groups passed to ``update``.
    labels : array-like of shape (n,), optional
        Per-row labels of the source.
    column : str, optional
        A store column read along as the labels.
    progress : callable(rows_done, rows_total), optional
    n_threads : int or None, default=1
        With more than one thread, work units go to a thread pool, each thread
        accumulating into its own reducer (numpy releases the GIL in its loops),
        with one BLAS thread each; the reducers are merged at the end.

    Returns
    -------
    reducer
    """
    max_bytes = check_max_bytes(max_bytes, owner="run_pass")
    n_threads = resolve_threads(n_threads, owner="run_pass")
    with reading(source, owner="run_pass") as src:
        return _pass(src, make, min(max_bytes, 2 * n_threads * WORK_UNIT_BYTES), group_of, labels, column,
                     progress, n_threads)


def _pass(src: Any, make: Callable[[], Any], max_bytes: int, group_of: Callable[[np.ndarray], np.ndarray] | None,
          labels: Any, column: str | None, progress: ProgressCallback | None, n_threads: int) -> Any:
    n = src.n_rows
    units = _units(src, max_bytes, labels, column)
    done = 0
    if n_threads <= 1:
        red = make()
        for z, lab in units:
            red.update(z, None if group_of is None else group_of(lab))
            done += z.shape[0]
            if progress is not None:
                progress(done, n)
        return red
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

    with single_blas_thread(), ThreadPoolExecutor(n_threads) as pool:
        pending: list[Any] = []
        for item in units:
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


def run_blocks(
    fn: Callable[[Any], None],
    blocks: Sequence[Any],
    *,
    sizes: Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
    n_threads: int | None = None,
    workers: int | None = None,
) -> None:
    """Call ``fn`` on every work item, in a thread pool with one BLAS thread each.

    Many small BLAS/LAPACK calls run far better as independent single-threaded
    calls in parallel than one after another on a multi-threaded BLAS. ``fn`` must
    write to disjoint outputs.

    Parameters
    ----------
    fn : callable
    blocks : sequence
        The work items.
    sizes : sequence of int, optional
        Weight of each item for ``progress`` (default 1 each).
    progress : callable(done, total), optional
    n_threads : int or None
        Threads (None: :func:`resolve_threads`).
    workers : int or None
        Former name of ``n_threads``.
    """
    n_workers = resolve_threads(n_threads if n_threads is not None else (workers or None), owner="run_blocks")
    sizes = list(sizes) if sizes is not None else [1] * len(blocks)
    total = int(sum(sizes))
    state = {"done": 0}
    lock = threading.Lock()

    def one(i: int) -> None:
        fn(blocks[i])
        if progress is not None:
            with lock:
                state["done"] += sizes[i]
                progress(state["done"], total)

    with single_blas_thread():
        if n_workers == 1 or len(blocks) <= 1:
            for i in range(len(blocks)):
                one(i)
        else:
            with ThreadPoolExecutor(n_workers) as ex:
                for _ in ex.map(one, range(len(blocks))):
                    pass
