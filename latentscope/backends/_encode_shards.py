"""Encoding at scale: an image source split into shards, each encoded into its own part of a Zarr store.

:func:`encode_sharded` cuts the source's items into ``shards`` contiguous ranges,
creates a sharded Zarr store with one part per range
(:func:`latentscope.store.create_sharded_store`) and runs one task per shard that is
not complete yet. A task loads the model once per process (a per-process cache keyed
by backend name, model directory and fingerprint), opens its part with
:func:`latentscope.store.open_shard` (which resumes after the part's last committed
append), runs the one encoding loop of :func:`~._encode.encode_range` over the
shard's remaining items and marks the part complete. Tasks run one after another in
this process, or on a dask.distributed cluster (``client=``, or the client of an
enclosing :func:`latentscope.stream.cluster` block): one shard task per worker thread,
one per GPU worker when the workers advertise a ``GPU`` resource, and never two at a
time on one process whose model computes on a GPU. A run killed at any point, or a
worker lost mid-shard, is resumed per shard: complete parts are never encoded again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._validation import check_positive
from ..exceptions import BackendError, DataSourceError, InvalidParameterError, StoreError
from ._encode import (
    EncodeResult,
    _check_existing,
    _image_size_text,
    _read_skipped,
    check_encode_options,
    encode_range,
    open_image_source,
    resume_position,
    skipped_path,
)

__all__ = ["encode_sharded", "ShardedEncodeResult", "plan_shards", "shard_skipped_path", "backend_device",
           "GPU_RESOURCE"]

#: The dask worker resource that marks a GPU (``dask worker --resources GPU=1``).
GPU_RESOURCE = "GPU"
#: Seconds between two progress reports of one shard task (and between client polls).
_REPORT_SECONDS = 0.25

#: Models a process keeps loaded (the most recently used ones).
CACHED_MODELS = 2
_MODELS: dict[tuple[str, str, str], Any] = {}  # the per-process model cache, oldest first
_MODELS_LOCK = threading.Lock()
_GPU_LOCK = threading.Lock()  # one shard at a time on a process whose model computes on a GPU


@dataclass(frozen=True)
class ShardedEncodeResult(EncodeResult):
    """What :func:`encode_sharded` did: an :class:`EncodeResult` plus the shards.

    Attributes
    ----------
    n_shards : int
        Shards of the store.
    shards_encoded : tuple of int
        The shards this run encoded (the others were complete already).
    shard_rows : tuple of int
        Rows of each shard after the run.
    """

    n_shards: int = 1
    shards_encoded: tuple = ()
    shard_rows: tuple = ()


def plan_shards(n_items: int, shards: int) -> list[int]:
    """Sizes of ``shards`` contiguous shards over ``n_items`` items (the first ones one item larger).

    Parameters
    ----------
    n_items : int
        Items of the source.
    shards : int
        Shards wanted, ``1 <= shards <= n_items``.

    Returns
    -------
    list of int

    Raises
    ------
    InvalidParameterError
        ``shards`` is not an integer in ``[1, n_items]``.

    Examples
    --------
    >>> plan_shards(10, 3)
    [4, 3, 3]
    """
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or not 1 <= shards <= max(n_items, 1):
        raise InvalidParameterError(f"encode_sharded: shards must be an integer from 1 to the number of images "
                                    f"({n_items}); got {shards!r}.")
    base, extra = divmod(int(n_items), int(shards))
    return [base + (i < extra) for i in range(int(shards))]


def shard_skipped_path(store_path: str | os.PathLike, index: int) -> Path:
    """The list of unreadable items of shard ``index``: ``STORE.skipped.d/NNNNN.txt`` beside the store."""
    p = Path(store_path)
    return p.with_name(p.name + ".skipped.d") / f"{int(index):05d}.txt"


def backend_device(backend: Any) -> str:
    """``"gpu"`` when the backend's optional ``device()`` says it computes on a GPU (or TPU), else ``"cpu"``."""
    method = getattr(backend, "device", None)
    try:
        value = method() if callable(method) else method
    except Exception:  # noqa: BLE001 - a backend that cannot tell computes where it computes
        value = None
    return "gpu" if str(value or "cpu").lower().startswith(("gpu", "cuda", "tpu")) else "cpu"


@dataclass(frozen=True)
class _ModelRef:
    """How a task finds the model: loaded from ``path`` by backend ``name``, or ``model`` itself."""

    name: str
    path: str | None
    fingerprint: str
    model: Any = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.path or "", self.fingerprint)


def _model_for(ref: _ModelRef) -> Any:
    """The model of ``ref``, loaded once per process."""
    with _MODELS_LOCK:
        model = _MODELS.get(ref.key)
        if model is None:
            if ref.path is None:
                model = ref.model
            else:
                from ._registry import get_backend

                model = get_backend(ref.name).load(ref.path)
            found = model.fingerprint()
            if found != ref.fingerprint:
                raise BackendError(f"{ref.path or ref.name}: the model here is {found}, the encode was started with "
                                   f"{ref.fingerprint}; every worker must see the same model directory.")
            _remember(ref.key, model)
        else:
            _MODELS[ref.key] = _MODELS.pop(ref.key)  # most recently used last
        return model


def _remember(key: tuple[str, str, str], model: Any) -> None:
    """Keep ``model`` in the per-process cache (call with ``_MODELS_LOCK`` held)."""
    _MODELS.pop(key, None)
    _MODELS[key] = model
    while len(_MODELS) > CACHED_MODELS:
        _MODELS.pop(next(iter(_MODELS)))


@dataclass(frozen=True)
class _ShardJob:
    """Everything one shard task needs (pickled to a worker)."""

    model: _ModelRef
    source: Any  # a source spec (reopened where the task runs) or an ImageSource
    strict: bool
    path: str
    index: int
    start: int
    stop: int
    batch_size: int | None
    commit_rows: int | None
    workers: int | None
    prefetch: int
    from_cache: bool
    topic: str | None = None  # progress events on a cluster


def _event_reporter(topic: str | None) -> Callable[..., None]:
    """Progress of a task on a dask worker: throttled events on ``topic`` (nothing without one)."""
    if topic is None:
        return lambda *report: None
    from distributed import get_worker

    worker = get_worker()
    last = [0.0]

    def report(index: int, position: int, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - last[0] >= _REPORT_SECONDS:
            last[0] = now
            worker.log_event(topic, (int(index), int(position)))

    return report


def _run_shard(job: _ShardJob, model: Any = None, report: Callable[..., None] | None = None) -> dict:
    """Encode the remaining items of one shard and mark it complete (runs where the task runs)."""
    from ..store import open_shard

    model = _model_for(job.model) if model is None else model
    batch_size, commit = check_encode_options(model, job.batch_size, job.commit_rows, owner="encode_sharded")
    src = open_image_source(model, job.source, job.strict)
    report = _event_reporter(job.topic) if report is None else report
    path = Path(job.path)
    sidecar = shard_skipped_path(path, job.index)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    device = backend_device(model)
    with _GPU_LOCK if device == "gpu" else contextlib.nullcontext():
        with open_shard(path, job.index) as store:
            position = resume_position(store, path, job.start)
            n_start = store.n_rows
            run = encode_range(model, src, store, start=position, stop=job.stop, batch_size=batch_size, commit=commit,
                               sidecar=sidecar, progress=lambda done, total: report(job.index, position + done),
                               workers=job.workers, prefetch=job.prefetch, from_cache=job.from_cache)
            store.mark_complete()
            n_rows = store.n_rows
    report(job.index, job.stop, True)
    return {"index": job.index, "n_rows": n_rows, "n_written": n_rows - n_start, "n_skipped": len(run.skipped),
            "seconds": run.seconds, "n_from_cache": run.n_from_cache, "device": device}


def _shard_task(job: _ShardJob) -> dict:
    """The dask task of one shard."""
    return _run_shard(job)


class _Tally:
    """Items covered across the shards, for ``progress(done, total)`` on the client."""

    def __init__(self, starts: list[int], status: list[dict], n_items: int, progress: Callable | None) -> None:
        self.starts = starts
        stops = starts[1:] + [n_items]
        # a lower bound for incomplete shards until their task reports (rows <= items covered)
        self.positions = [stop if s["complete"] else start + int(s["rows"])
                          for start, stop, s in zip(starts, stops, status)]
        self.n_items = n_items
        self.progress = progress
        self.lock = threading.Lock()
        self.shown = -1

    def update(self, index: int, position: int) -> None:
        with self.lock:
            self.positions[index] = max(self.positions[index], int(position))

    def on_event(self, event: Any) -> None:
        """Handler of the progress topic (runs in the client's event loop thread)."""
        index, position = event[1]
        self.update(index, position)

    def show(self) -> None:
        if self.progress is None:
            return
        with self.lock:
            done = sum(p - s for p, s in zip(self.positions, self.starts))
        if done != self.shown:
            self.shown = done
            self.progress(done, self.n_items)


def _gpu_resources(client: Any) -> dict | None:
    """``{"GPU": 1}`` when a worker of ``client`` advertises a GPU resource, else None."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    if any(GPU_RESOURCE in (w.get("resources") or {}) for w in workers.values()):
        return {GPU_RESOURCE: 1}
    return None


def _run_on_cluster(client: Any, jobs: list[_ShardJob], tally: _Tally) -> list[dict]:
    """One task per job on ``client``; progress from the tasks' events; the first error cancels the rest."""
    from ..stream._cluster import distributed_module

    distributed_module("encode_sharded")
    resources = _gpu_resources(client)
    topic = jobs[0].topic
    client.subscribe_topic(topic, tally.on_event)
    token = topic.rsplit("-", 1)[-1]
    futures = [client.submit(_shard_task, job, key=f"latentscope-encode-shard-{job.index}-{token}", pure=False,
                             resources=resources) for job in jobs]
    stops = {job.index: job.stop for job in jobs}
    results: list[dict] = []
    try:
        pending = list(futures)
        while pending:
            for fut in [f for f in pending if f.done()]:
                pending.remove(fut)
                results.append(fut.result())  # a task's error is raised here
                tally.update(results[-1]["index"], stops[results[-1]["index"]])
            tally.show()
            if pending:
                time.sleep(_REPORT_SECONDS / 2)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)
    return results


def _check_plan(path: Path, model: Any, src: Any, sizes: list[int]) -> list[dict]:
    """The shards of the existing store at ``path``; one-line errors when it is another encode's."""
    from ..store import open_store, shard_status

    hint = "write to a new store, or pass --overwrite (overwrite=True) to replace it"
    try:
        status = shard_status(path)
    except StoreError:
        raise StoreError(f"{path}: exists and is not a sharded store (encode without --shards continues it); "
                         f"{hint}.") from None
    with open_store(path) as store:
        _check_existing(store, model, src, path)
    planned = [int(s["planned"]) for s in status]
    if planned != sizes:
        raise StoreError(f"{path}: the store was planned as {len(planned)} shards of {_sizes_text(planned)} items, "
                         f"this run plans {len(sizes)} shards of {_sizes_text(sizes)}; rerun with --shards "
                         f"{len(planned)} (shards={len(planned)}), or {hint}.")
    return status


def _sizes_text(sizes: list[int]) -> str:
    low, high = min(sizes), max(sizes)
    return str(low) if low == high else f"{low}-{high}"


def _remove_outputs(path: Path, *, store: bool) -> None:
    """Remove the lists of skipped items of the store at ``path`` (and the store, when ``store``)."""
    from ..store import is_zarr_store

    for p in ((path,) if store and is_zarr_store(path) else ()) + (shard_skipped_path(path, 0).parent, skipped_path(path)):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _merge_skipped(path: Path, n_shards: int) -> dict[str, str]:
    """Every shard's unreadable items, in source order, into ``STORE.skipped.txt`` (written atomically)."""
    merged: dict[str, str] = {}
    for i in range(n_shards):
        merged.update(_read_skipped(shard_skipped_path(path, i)))
    target = skipped_path(path)
    if merged:
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text("".join(f"{item}\t{reason}\n" for item, reason in merged.items()), encoding="utf-8")
        os.replace(tmp, target)
    elif target.exists():
        target.unlink()
    return merged


def _model_ref(backend: Any, model_dir: str | os.PathLike | None) -> tuple[_ModelRef, Any]:
    """The reference tasks load the model by, and the model loaded here."""
    if isinstance(backend, (str, os.PathLike)):
        from ._registry import load_model

        backend, model_dir = load_model(backend), backend
    check_encode_options(backend, None, None, owner="encode_sharded")
    name = getattr(backend, "name", type(backend).__name__)
    if model_dir is None:
        return _ModelRef(name, None, backend.fingerprint(), backend), backend
    return _ModelRef(name, os.path.abspath(os.fspath(model_dir)), backend.fingerprint()), backend


def encode_sharded(
    backend: Any,
    source: Any,
    store_path: str | os.PathLike,
    *,
    shards: int,
    model_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    workers: int | None = None,
    prefetch: int = 2,
    from_cache: bool = False,
    commit_rows: int | None = None,
    client: Any = None,
) -> ShardedEncodeResult:
    """Encode an image source into a sharded Zarr store, one task per shard (resumable per shard).

    Parameters
    ----------
    backend : Backend or str or Path
        A loaded model, or a model directory (loaded with the backend its
        ``config.json`` names).
    source : ImageSource or str
        The images (a spec such as ``"celeba:/data/celeba"`` or a source object); on
        a cluster the built-in sources are reopened from their spec on the workers,
        so their files must be readable there at the same path.
    store_path : str or Path
        The Zarr store (a name ending in ``.zarr``). A missing one is created with
        one part per shard; an existing one is continued when it was written by the
        same backend, model (fingerprint), source, sizes and shard plan, and refused
        otherwise.
    shards : int
        Contiguous shards the source's items are cut into, from 1 to ``len(source)``
        (see :func:`plan_shards`).
    model_dir : str or Path, optional
        The directory a loaded ``backend`` was loaded from. Tasks on other processes
        load the model from the directory (once per process; on a cluster every
        worker must see it at the same path) and check its fingerprint; a loaded
        model without one is pickled to them.
    batch_size : int, optional
        Items per batch; default: the backend's preference on the hardware each task
        runs on (``keras-ae``: 1024 on a GPU, 256 on CPUs).
    progress : callable(done, total), optional
        Called in this process with the items of the source covered so far across
        all shards (complete shards count in full; a resumed run starts where the
        store stands) and ``len(source)``.
    overwrite : bool, default=False
        Replace an existing store (and its lists of skipped items).
    strict : bool, optional
        Override the source's ``strict``: raise on the first unreadable item.
    workers : int, optional
        Decoder threads of each task (default: :func:`latentscope.data.default_workers`
        where the task runs).
    prefetch : int, default=2
        Batches decoded ahead of the model.
    from_cache : bool, default=False
        Read the items the backend's training image cache holds from it (see
        :func:`~latentscope.backends.encode_to_store`).
    commit_rows : int, optional
        Rows per commit of a shard (default ``max(batch_size, 4096)``).
    client : distributed.Client, optional
        Run the shard tasks on this cluster; default: the client of the enclosing
        :func:`latentscope.stream.cluster` block, else this process, one shard after
        another.

    Returns
    -------
    ShardedEncodeResult

    Notes
    -----
    Reading the store (:func:`latentscope.store.open_store`) gives the shards
    concatenated in order: the same rows, ids, columns (``source_index`` and the
    source's attributes) and provenance as :func:`encode_to_store` of the same source.
    Unreadable items are listed per shard in :func:`shard_skipped_path` while the
    shards run and, once all are complete, together in ``STORE.skipped.txt``. Shard
    tasks ask for one ``GPU`` resource when a worker advertises one; a process whose
    model reports a GPU (an optional ``device()`` method returning ``"gpu"``) runs one
    shard at a time.

    Raises
    ------
    InvalidParameterError
        ``store_path`` does not end in ``.zarr``, ``shards`` is out of range, or a bad
        option; dask/distributed missing when a client is used.
    StoreError
        The existing store is not sharded or has another shard plan.
    BackendError
        The existing store belongs to another model, backend, source or size.
    DataSourceError
        No item of the source is readable, or an item is unreadable in strict mode.
    """
    from ..store import create_sharded_store, open_store, shard_status

    path = Path(os.path.abspath(os.fspath(store_path)))
    if path.suffix != ".zarr":
        raise InvalidParameterError(f"encode_sharded: a sharded store is a Zarr store, so store_path must end in "
                                    f".zarr; got {os.fspath(store_path)!r}.")
    ref, model = _model_ref(backend, model_dir)
    check_encode_options(model, batch_size, commit_rows, owner="encode_sharded")
    check_positive(prefetch, "prefetch", owner="encode_sharded", integer=True, minimum=0)
    if workers is not None:
        check_positive(workers, "workers", owner="encode_sharded", integer=True, minimum=0)
    if from_cache:
        from ._protocol import training_image_cache

        training_image_cache(model)
    src = open_image_source(model, source, strict)
    n_items = len(src)
    sizes = plan_shards(n_items, shards)
    if client is None:
        from ..stream import active_client

        client = active_client()
    resumed = path.exists() and not overwrite
    if resumed:
        status = _check_plan(path, model, src, sizes)
    else:
        _remove_outputs(path, store=False)  # the store itself is replaced by create_sharded_store(overwrite=)
        create_sharded_store(path, int(model.z_dim), shard_sizes=sizes, backend=ref.name,
                             model_fingerprint=ref.fingerprint, source=src.spec, overwrite=overwrite,
                             source_items=n_items, image_size=_image_size_text(model.image_shape),
                             source_attributes=list(src.attribute_names))
        status = shard_status(path)
    starts = [int(s) for s in np.concatenate([[0], np.cumsum(sizes)[:-1]])]
    n_start = sum(int(s["rows"]) for s in status)
    tally = _Tally(starts, status, n_items, progress)
    builtin = type(src).__module__.startswith("latentscope.data.") and bool(src.spec)
    topic = f"latentscope-encode-{uuid.uuid4().hex}" if client is not None else None
    jobs = [_ShardJob(model=ref, source=src.spec if builtin and client is not None else src, strict=bool(src.strict),
                      path=str(path), index=i, start=starts[i], stop=starts[i] + sizes[i], batch_size=batch_size,
                      commit_rows=commit_rows, workers=workers, prefetch=prefetch, from_cache=from_cache, topic=topic)
            for i, s in enumerate(status) if not s["complete"]]
    t0 = time.perf_counter()
    try:
        if client is None:
            results = []
            for job in jobs:
                results.append(_run_shard(job, model, lambda i, p, final=False: (tally.update(i, p), tally.show())))
        elif jobs:
            results = _run_on_cluster(client, jobs, tally)
        else:
            results = []
    except DataSourceError:
        # strict mode: a store this run created and left without rows goes (on a cluster other
        # tasks may still be writing, so it stays)
        if client is None and not resumed and sum(int(s["rows"]) for s in shard_status(path)) == 0:
            _remove_outputs(path, store=True)
        raise
    seconds = time.perf_counter() - t0
    tally.show()
    skipped = _merge_skipped(path, len(sizes))
    status = shard_status(path)
    n_rows = sum(int(s["rows"]) for s in status)
    if n_rows == 0 and skipped:
        if not resumed:
            _remove_outputs(path, store=True)
        item, reason = next(iter(skipped.items()))
        raise DataSourceError(f"{src.spec}: none of the {n_items} items could be read (first: {item}: {reason}).")
    extra = {"encode_items_per_second": round((n_rows - n_start) / seconds, 2)} if n_rows > n_start else {}
    with open_store(path, "a") as store:
        store.set_provenance(n_skipped=len(skipped), skipped_list=skipped_path(path).name if skipped else "",
                             **extra)
    return ShardedEncodeResult(
        path=path, n_rows=n_rows, n_written=n_rows - n_start, n_skipped=len(skipped), resumed=resumed,
        seconds=seconds, skipped_file=skipped_path(path) if skipped else None,
        n_from_cache=sum(r["n_from_cache"] for r in results), n_shards=len(sizes),
        shards_encoded=tuple(sorted(r["index"] for r in results)), shard_rows=tuple(int(s["rows"]) for s in status))
