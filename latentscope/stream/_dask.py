"""Passes as dask.distributed tasks: row-range map tasks and a fixed binary merge tree.

:func:`~latentscope.stream.run_pass`, :func:`~latentscope.stream.run_reducers` and the
neighbour scans of :mod:`latentscope.neighbors` come here when a cluster is active
(:func:`~latentscope.stream.cluster`) or the source is a dask array on a client. They
run the plan of :mod:`latentscope.stream._ranges` (the one a local pass runs): the
rows are split into chunk-aligned ranges (a function of the source only, not of the
cluster); one task per range reads its rows on the worker in work units and feeds a
fresh reducer (the caller's factory or copies of its reducers, shipped once with
cloudpickle); the partial results are merged pairwise in a binary tree fixed by the
range order (``(0+1)+(2+3)...``), never by completion order, so a pass gives the same
bits on every run whatever worker did what, and the same bits as the local pass.
Workers run BLAS on one thread (:func:`pin_blas`), like the local engine.

What travels to the workers:

* a Zarr store: its path (each worker opens it read-only once per process,
  :func:`_open_cached`) and the row range;
* an HDF5 store: the same, only when every worker runs on this host;
* a dask array: its own chunks (computed on the workers);
* an in-memory array: the rows of each task, scattered once.

Tasks have no side effects (merges copy their inputs), so the scheduler may re-run
any of them after losing a worker. dask and distributed are imported inside the
functions only.
"""

from __future__ import annotations

import copy
import os
import socket
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..exceptions import InvalidParameterError, StoreError
from ._cluster import active_client, distributed_module
from ._ranges import RangeReader, as_float, feed_range, is_dask_array, merge_into, task_ranges, unit_rows
from ._stats import _record

__all__ = [
    "client_for", "task_inputs", "task_reader", "task_ranges", "is_dask_array", "map_merge", "distributed_pass",
    "distributed_reducers", "reducers_travel", "workers_local", "pin_blas",
]

#: Retries of a task that raised (a lost worker's tasks are re-run by the scheduler anyway).
TASK_RETRIES = 1
#: Seconds to wait for a first worker on a scheduler that has none.
WORKER_WAIT_S = 30.0


# -- which client -------------------------------------------------------------------------
def client_for(src: Any) -> Any:
    """The client a pass over ``src`` runs on, or None (run locally).

    The active :func:`~latentscope.stream.cluster` wins; a dask-array source also
    uses dask's default client when there is one.
    """
    c = active_client()
    if c is not None:
        return c
    if src.store is None and is_dask_array(src._data):
        try:
            from distributed import default_client  # noqa: PLC0415 - optional extra

            return default_client()
        except (ImportError, ValueError):
            return None
    return None


# -- the worker side ---------------------------------------------------------------------
_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 8


def _open_cached(path: str, n_needed: int) -> Any:
    """A read-only store on ``path``, opened once per worker process (refreshed when short)."""
    from ..store import open_store  # noqa: PLC0415

    try:
        st = os.stat(path)
    except OSError as exc:
        raise StoreError(
            f"{path}: the dask worker on {socket.gethostname()} does not see this store; every worker must see "
            "the store at the same path (e.g. on a shared file system)."
        ) from exc
    key = (path, st.st_dev, st.st_ino, st.st_ctime_ns)  # a store replaced at the same path is opened anew
    with _CACHE_LOCK:
        store = _CACHE.get(key)
        if store is not None:
            _CACHE.move_to_end(key)
    if store is None:
        store = open_store(path, "r")
        with _CACHE_LOCK:
            _CACHE[key] = store
            while len(_CACHE) > _CACHE_SIZE:
                _, old = _CACHE.popitem(last=False)
                try:
                    old.close()
                except Exception:  # noqa: BLE001 - a stale handle
                    pass
    if store.n_rows < n_needed:
        store.refresh()
        if store.n_rows < n_needed:
            raise StoreError(f"{path}: the worker sees {store.n_rows} committed rows; the pass needs {n_needed}.")
    return store


class _StoreRows:
    """Picklable reference to a store's rows: the worker opens the store itself (once per process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._store = None

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path, self._store = state["path"], None

    def opened(self, n_needed: int) -> "_StoreRows":
        self._store = _open_cached(self.path, n_needed)
        return self

    def read(self, u: int, v: int) -> np.ndarray:
        return self._store.read(slice(u, v))

    def column(self, name: str, rows: Any) -> np.ndarray:
        return self._store.read_column(name, rows)


class _ArrayRows:
    """A lazy array-like that pickles small (e.g. a zarr array): workers slice it themselves."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def opened(self, n_needed: int) -> "_ArrayRows":
        return self

    def read(self, u: int, v: int) -> np.ndarray:
        return as_float(self.data[u:v])

    def column(self, name: str, rows: Any) -> np.ndarray:
        raise InvalidParameterError(f"run_pass: column {name!r} needs a store; the source is an array.")


def _on_worker(data: Any, b: int) -> Any:
    """What a task reads from: an opened store or array reference, or the rows themselves."""
    return data.opened(b) if isinstance(data, (_StoreRows, _ArrayRows)) else data


def task_reader(data: Any, a: int, b: int, *, labels: Any = None, column: str | None = None) -> RangeReader:
    """The reader of rows ``a:b`` inside a task, from the task's input (see :func:`task_inputs`)."""
    return RangeReader(_on_worker(data, b), a, b, labels=labels, column=column)


class _Payload:
    """What every task of one pass shares (sent once, as one scattered object)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


_PINNED: list = []


def pin_blas() -> None:
    """One BLAS thread in this worker process, for good (the engine's policy; float32 GEMM bits depend on it).

    A context would race between tasks running in threads of one worker; the limit is
    set once per process instead and never undone.
    """
    if _PINNED:
        return
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - a scikit-learn dependency

        _PINNED.append(threadpool_limits(limits=1, user_api="blas"))
    except ImportError:  # pragma: no cover - depends on the environment
        _PINNED.append(None)


def _map_pass(p: _Payload, data: Any, a: int, b: int, lab: Any) -> Any:
    """One task of :func:`distributed_pass`: a fresh reducer fed rows ``a:b`` in work units (:func:`feed_range`)."""
    pin_blas()
    return feed_range(p.make, task_reader(data, a, b, labels=lab, column=p.column), p.unit, p.group_of)


def _map_reducers(p: _Payload, data: Any, a: int, b: int, lab: Any) -> list:
    """One task of :func:`distributed_reducers`: copies of the (empty) reducers fed rows ``a:b``."""
    pin_blas()
    reds = copy.deepcopy(p.reducers)
    for z, _ in task_reader(data, a, b).units(p.unit):
        x = np.asarray(z, dtype=np.float64)
        if p.transform is not None:
            x = p.transform(x)
        for r in reds:
            r.update(x)
    return reds


def _merge_pair(left: Any, right: Any, merge: Callable[[Any, Any], Any] | None = None) -> Any:
    """Merge task: ``left`` (copied, so a re-run of this task sees its input unchanged) merged with ``right``."""
    pin_blas()
    left = copy.deepcopy(left)
    if merge is not None:
        return merge(left, right)
    if isinstance(left, list):
        for x, y in zip(left, right):
            x.merge(y)
        return left
    return merge_into(left, right)


# -- the driver side ---------------------------------------------------------------------
_LOCAL_HOSTS: dict = {}


def _this_host() -> str:
    """The host name this process runs on (what the workers' host names are compared with)."""
    return socket.gethostname()


def workers_local(client: Any) -> bool:
    """Whether every worker of ``client`` runs on this host (same host name; cached per set of workers)."""
    here = _this_host()
    key = (here, tuple(sorted(client.scheduler_info().get("workers", {}))))
    if key not in _LOCAL_HOSTS:
        names = client.run(socket.gethostname)
        _LOCAL_HOSTS[key] = bool(names) and all(h == here for h in names.values())
    return _LOCAL_HOSTS[key]


def _ensure_workers(client: Any) -> None:
    if client.scheduler_info().get("workers"):
        return
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except (TimeoutError, OSError) as exc:
        raise InvalidParameterError(
            f"cluster: no worker joined the scheduler at {client.scheduler.address} within {WORKER_WAIT_S:g} s."
        ) from exc


def _store_rows(client: Any, src: Any) -> "_StoreRows":
    from ..store import ZStore  # noqa: PLC0415

    path = str(Path(src.store.path).resolve())
    if isinstance(src.store, ZStore) and not workers_local(client):
        raise InvalidParameterError(
            f"{src.store.path}: an HDF5 store is read only by workers on this host, and some workers of the "
            f"cluster run elsewhere; convert it with: latentscope export {src.store.path} --out "
            f"{Path(src.store.path).with_suffix('.zarr').name}")
    return _StoreRows(path)


def _portable(data: Any) -> bool:
    """Whether a lazy array-like pickles to a small reference (zarr arrays do; h5py datasets do not)."""
    try:
        import cloudpickle  # noqa: PLC0415 - a dependency of distributed

        return len(cloudpickle.dumps(data)) < (1 << 20)
    except Exception:  # noqa: BLE001 - anything that does not pickle stays local
        return False


def task_inputs(client: Any, src: Any, ranges: list[tuple[int, int]]) -> list[Any] | None:
    """What each task reads: a store reference, a dask chunk (delayed), a sliceable reference or scattered rows.

    None when the source cannot travel (e.g. an h5py dataset): the pass then runs locally.
    """
    _ensure_workers(client)
    if src.store is not None:
        ref = _store_rows(client, src)
        return [ref] * len(ranges)
    data = src._data
    if is_dask_array(data):
        x = data.rechunk({1: -1}) if len(data.chunks[1]) > 1 else data
        return list(x.to_delayed().ravel())
    if isinstance(data, np.ndarray):
        futs = client.scatter([data[a:b] for a, b in ranges], hash=False)
        n_workers = len(client.scheduler_info().get("workers", {}))
        if n_workers > 1:  # a second copy of every piece survives the loss of one worker
            client.replicate(futs, n=2)
        return futs
    if _portable(data):
        return [_ArrayRows(data)] * len(ranges)
    return None


def map_merge(
    client: Any,
    src: Any,
    map_fn: Callable[..., Any],
    payload: _Payload,
    *,
    ranges: list[tuple[int, int]],
    labels: Any = None,
    merge: Callable[[Any, Any], Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    kind: str = "run_pass",
    row_bytes: int | None = None,
    inputs: list[Any] | None = None,
) -> Any:
    """Run ``map_fn(payload, data, a, b, labels)`` per range, merge in the fixed tree; return the root result.

    Parameters
    ----------
    client : distributed.Client
    src : ZSource
    map_fn : callable
        Module-level task function returning a partial result.
    payload : _Payload
        Shared by every task (scattered once).
    ranges : list of (start, stop)
    labels : ndarray of shape (n_rows,), optional
        Sliced along with each range.
    merge : callable(left, right), optional
        Combines two partial results (default: their ``merge`` methods).
    progress : callable(rows_done, rows_total), optional
        Called as map tasks finish (in completion order).
    kind : str
        Name of the pass in :class:`~latentscope.stream.PassStats`.
    row_bytes : int, optional
        Bytes read per row (default: the source's z row).
    inputs : list, optional
        :func:`task_inputs` of ``ranges`` when the caller already made them.
    """
    distributed = distributed_module()
    t0 = time.perf_counter()
    _ensure_workers(client)
    total = sum(b - a for a, b in ranges)
    if progress is not None:
        progress(0, total)
    if inputs is None:
        inputs = task_inputs(client, src, ranges)
    shared = client.scatter(payload, broadcast=True, hash=False)  # every worker holds a copy
    lab = None if labels is None else np.asarray(labels)
    if src.store is None and is_dask_array(src._data):
        import dask  # noqa: PLC0415

        tasks = [dask.delayed(map_fn, pure=False)(shared, d, a, b, None if lab is None else lab[a:b])
                 for d, (a, b) in zip(inputs, ranges)]
        futs = client.compute(tasks, retries=TASK_RETRIES)
    else:
        futs = [client.submit(map_fn, shared, d, a, b, None if lab is None else lab[a:b], pure=False,
                              retries=TASK_RETRIES) for d, (a, b) in zip(inputs, ranges)]
    level = list(futs)
    while len(level) > 1:
        nxt = [client.submit(_merge_pair, level[i], level[i + 1], merge, pure=False, retries=TASK_RETRIES)
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    rows_of = {f.key: b - a for f, (a, b) in zip(futs, ranges)}
    done = 0
    try:
        for fut in distributed.as_completed(futs, loop=client.loop):
            if fut.status == "error":
                fut.result()  # raises the task's error
            done += rows_of[fut.key]
            if progress is not None:
                progress(done, total)
        out = level[0].result()
    finally:
        for f in [*futs, *level, shared, *inputs]:
            if isinstance(f, distributed.Future):
                f.release()
    rb = row_bytes if row_bytes is not None else src.dim * src.dtype.itemsize
    _record(kind, True, total, total * rb, len(ranges), t0)
    return out


def _label_bytes(src: Any, labels: Any, column: str | None) -> int:
    if column is not None and src.store is not None:
        info = src.store.column_info
        dt, shape = (info() if callable(info) else info)[column]
        return int(np.dtype(dt).itemsize * int(np.prod(shape, dtype=np.int64)))
    if labels is not None:
        return int(np.asarray(labels).dtype.itemsize)
    return 0


def distributed_pass(client: Any, src: Any, make: Callable[[], Any], *, max_bytes: int,
                     group_of: Any, labels: Any, column: str | None, progress: Any) -> Any:
    """:func:`~latentscope.stream.run_pass` on ``client``: a reducer from ``make`` per task, merged in a fixed tree.

    Returns NotImplemented (the caller runs locally) when the source cannot travel.
    """
    if column is not None and src.store is None:
        raise InvalidParameterError(f"run_pass: column {column!r} needs a store; the source is an array.")
    if labels is not None and np.asarray(labels).shape[0] != src.n_rows:
        raise InvalidParameterError(
            f"iter_blocks: labels must have one value per row ({src.n_rows}); got {np.asarray(labels).shape[0]}.")
    ranges = task_ranges(src, max_bytes)
    inputs = task_inputs(client, src, ranges)
    if inputs is None:
        return NotImplemented
    payload = _Payload(make=make, group_of=group_of, column=column, unit=unit_rows(src, max_bytes))
    return map_merge(client, src, _map_pass, payload, ranges=ranges, labels=None if column else labels,
                     progress=progress, kind="run_pass", inputs=inputs,
                     row_bytes=src.dim * src.dtype.itemsize + _label_bytes(src, labels, column))


def _blank(r: Any) -> bool:
    """Whether a reducer holds no rows yet (only such reducers are copied into tasks)."""
    if getattr(r, "_counts", "absent") is None:  # Histogram before its first block
        return True
    n = getattr(r, "n", None)
    return isinstance(n, (int, np.integer)) and int(n) == 0


def reducers_travel(reducers: Sequence[Any]) -> bool:
    """Whether :func:`distributed_reducers` can run these reducers (all still empty)."""
    return all(_blank(r) for r in reducers)


def distributed_reducers(client: Any, src: Any, reducers: Sequence[Any], *, max_bytes: int,
                         transform: Any, progress: Any) -> Sequence[Any]:
    """:func:`~latentscope.stream.run_reducers` on ``client``; the merged state is copied into ``reducers``.

    Returns NotImplemented (the caller runs locally) when the source cannot travel.
    """
    ranges = task_ranges(src, max_bytes)
    inputs = task_inputs(client, src, ranges)
    if inputs is None:
        return NotImplemented
    payload = _Payload(reducers=list(reducers), transform=transform, unit=unit_rows(src, max_bytes))
    merged = map_merge(client, src, _map_reducers, payload, ranges=ranges, progress=progress, kind="run_reducers",
                       inputs=inputs)
    for mine, theirs in zip(reducers, merged):
        mine.__dict__.update(theirs.__dict__)
    return reducers
