"""The one block engine: reducer passes, threaded passes and threaded block maps.

Every pass over z-points goes through a :class:`~latentscope.stream.ZSource`
(:func:`~latentscope.stream.as_zsource`) and one of three runners:

:func:`run_reducers`
    one thread; each block converted to float64 once and fed to several reducers.
:func:`run_pass`
    reducers made by a factory, one per row range, fed in work units of at most
    :data:`WORK_UNIT_BYTES` and merged in a binary tree fixed by the range order
    (:mod:`latentscope.stream._ranges`), on one or several threads.
:func:`run_blocks`
    any function over a list of independent work items (disjoint outputs).

Threaded runners give each worker one BLAS thread (:func:`single_blas_thread`);
:func:`run_pass` does so on one thread too (float32 matrix products give other bits
on other BLAS thread counts, and a pass gives the same bits in every mode).

Inside ``with latentscope.stream.cluster(...)`` (or for a dask-array source on a
client) :func:`run_pass` and :func:`run_reducers` run as dask.distributed tasks
instead (:mod:`latentscope.stream._dask`): one task per chunk-aligned row range, the
partial reducers merged in a binary tree fixed by the range order.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..exceptions import InvalidParameterError
from ._policy import DEFAULT_MAX_BYTES, WORK_UNIT_BYTES, check_max_bytes, resolve_threads, single_blas_thread
from . import _dask
from ._ranges import RangeReader, TreeMerge, feed_range, task_ranges, unit_rows
from ._source import reading
from ._stats import _record

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

    Notes
    -----
    On an active cluster (:func:`~latentscope.stream.cluster`) a whole-source pass
    over reducers that hold no rows yet runs as tasks, each on a copy of the
    reducers; the merged state is copied back into ``reducers``.
    """
    for r in reducers:
        if not callable(getattr(r, "update", None)):
            raise InvalidParameterError(f"run_reducers: every reducer needs an update(block) method; got {type(r).__name__}.")
    with reading(source) as src:
        client = _dask.client_for(src)
        if (client is not None and src.n_rows > 0 and int(start) == 0 and stop is None
                and _dask.reducers_travel(reducers)):
            budget = check_max_bytes(max_bytes, owner="run_reducers")
            out = _dask.distributed_reducers(client, src, reducers, max_bytes=budget, transform=transform,
                                             progress=progress)
            if out is not NotImplemented:
                return out
        t0 = time.perf_counter()
        out = _reduce(src, reducers, max_bytes, progress, transform, start, stop)
        _record_local("run_reducers", src, start, stop, max_bytes, t0)
        return out


def _record_local(kind: str, src: Any, start: int, stop: int | None, max_bytes: int, t0: float) -> None:
    n = src.n_rows
    rows = max(0, min(n, n if stop is None else int(stop)) - max(0, int(start)))
    per = src.block_rows(max_bytes)
    _record(kind, False, rows, rows * src.dim * src.dtype.itemsize, -(-rows // max(1, per)), t0)


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
    """Feed every row of ``source`` to reducers made by ``make()``; return the merged one.

    Parameters
    ----------
    source : ZSource, ZStore or array-like of shape (n, dim)
    make : callable
        Makes an empty reducer with ``update(z, groups)`` and ``merge(other)``.
    max_bytes : int, default=DEFAULT_MAX_BYTES
        Upper bound on one read. The rows are cut into ranges
        (:func:`latentscope.stream._ranges.task_ranges`), each read and handed to
        its reducer in work units of at most ``min(max_bytes, WORK_UNIT_BYTES)``
        (whole chunks of a store); at most ``2 * n_threads`` ranges are in flight.
    group_of : callable, optional
        Maps a block of labels to the groups passed to ``update`` (default: the
        labels themselves; None when there are no labels).
    labels : array-like of shape (n,), optional
        Per-row labels of the source.
    column : str, optional
        A store column read along as the labels.
    progress : callable(rows_done, rows_total), optional
    n_threads : int or None, default=1
        With more than one thread, ranges go to a thread pool (numpy releases the
        GIL in its loops), with one BLAS thread each. Every range has its own
        reducer and the reducers are merged in a binary tree fixed by the range
        order, so the result does not depend on ``n_threads``. Ignored on a cluster
        (one thread per task).

    Returns
    -------
    reducer

    Notes
    -----
    On an active cluster (:func:`~latentscope.stream.cluster`), or for a dask-array
    source when dask has a default client, the same ranges run as dask tasks and
    their reducers are merged in the same tree: the same bits as in this process,
    on every run, whichever worker ran what.
    """
    max_bytes = check_max_bytes(max_bytes, owner="run_pass")
    n_threads = resolve_threads(n_threads, owner="run_pass")
    with reading(source, owner="run_pass") as src:
        client = _dask.client_for(src)
        if client is not None and src.n_rows > 0:
            out = _dask.distributed_pass(client, src, make, max_bytes=max_bytes, group_of=group_of, labels=labels,
                                         column=column, progress=progress)
            if out is not NotImplemented:
                return out
        t0 = time.perf_counter()
        if progress is not None:
            progress(0, src.n_rows)
        out, n_ranges = _pass(src, make, max_bytes, group_of, labels, column, progress, n_threads)
        n = src.n_rows
        _record("run_pass", False, n, n * src.dim * src.dtype.itemsize, n_ranges, t0)
        return out


def _pass(src: Any, make: Callable[[], Any], max_bytes: int, group_of: Callable[[np.ndarray], np.ndarray] | None,
          labels: Any, column: str | None, progress: ProgressCallback | None, n_threads: int) -> tuple[Any, int]:
    """The plan of :mod:`._ranges` in this process; returns ``(reducer, number of ranges)``."""
    n = src.n_rows
    lab = None if labels is None or column is not None else np.asarray(labels)
    if lab is not None and lab.shape[0] != n:
        raise InvalidParameterError(f"run_pass: labels must have one value per row ({n}); got {lab.shape[0]}.")
    if column is not None:
        src.column(column, slice(0, 0))  # a clear error for an array source or a missing column
    ranges = task_ranges(src, max_bytes)
    if not ranges:
        return make(), 0
    unit = unit_rows(src, max_bytes)

    read_lock = threading.Lock()  # threads compute in parallel; one of them reads at a time

    def reader(a: int, b: int) -> RangeReader:
        return RangeReader(src, a, b, labels=None if lab is None else lab[a:b], column=column, lock=read_lock)

    tree = TreeMerge()
    state = {"done": 0}
    if n_threads <= 1 or len(ranges) == 1:
        def tick(rows: int) -> None:
            state["done"] += rows
            if progress is not None:
                progress(state["done"], n)

        with single_blas_thread():  # as on the threads and the workers: float32 GEMM bits depend on BLAS threads
            for a, b in ranges:
                tree.push(feed_range(make, reader(a, b), unit, group_of, tick))
        return tree.result(), len(ranges)
    with single_blas_thread(), ThreadPoolExecutor(n_threads) as pool:
        futs = {}
        nxt = 0
        for i, (a, b) in enumerate(ranges):  # at most 2 * n_threads ranges in flight, merged in range order
            futs[i] = pool.submit(feed_range, make, reader(a, b), unit, group_of)
            while len(futs) > 2 * n_threads or (i == len(ranges) - 1 and futs):
                tree.push(futs.pop(nxt).result())
                state["done"] += ranges[nxt][1] - ranges[nxt][0]
                nxt += 1
                if progress is not None:
                    progress(state["done"], n)
    return tree.result(), len(ranges)


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
