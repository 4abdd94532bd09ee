"""The generic encoding pipeline: image source -> backend -> z-point store, resumable.

Batches of images are decoded in worker threads ahead of the model (see
:meth:`latentscope.data.ImageSource.iter_batches`), encoded by any backend and appended
to a z-point store (HDF5, or Zarr for a ``.zarr`` path) together with the item ids, the per-item attributes and the item's
index in the source (column ``source_index``). Three stages overlap: decoder threads
prepare the next batches, the calling thread runs the model, and one writer thread
appends the rows gathered so far (``commit_rows`` at a time). With ``from_cache=True``
the items the backend's training image cache holds are copied from it instead of
decoded. Each append commits atomically, so a run killed at any point is resumed by
running it again: the store is reopened, its
backend, model fingerprint, source and sizes are checked, and encoding continues
after the last committed item. :func:`encode_range` is the one encoding loop; the
sharded encode (:mod:`._encode_shards`) runs it once per shard.
"""

from __future__ import annotations

import copy
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._validation import check_positive
from ..exceptions import BackendError, DataSourceError, InvalidParameterError, StoreError
from ._protocol import preferred_batch_size, training_image_cache

__all__ = ["encode_to_store", "EncodeResult", "skipped_path", "SOURCE_INDEX", "encode_range", "check_encode_options",
           "open_image_source", "resume_position", "remove_if_empty", "RangeRun"]

#: Store column holding each row's index in the source (drives resuming).
SOURCE_INDEX = "source_index"
#: Rows gathered into one store append by default (see ``commit_rows``).
COMMIT_ROWS = 4096


def skipped_path(store_path: str | os.PathLike) -> Path:
    """The sidecar file listing unreadable items: ``STORE.skipped.txt`` beside the store."""
    p = Path(store_path)
    return p.with_name(p.name + ".skipped.txt")


@dataclass(frozen=True)
class EncodeResult:
    """What :func:`encode_to_store` did.

    Attributes
    ----------
    path : Path
        The store.
    n_rows : int
        Rows in the store after the run.
    n_written : int
        Rows written by this run.
    n_skipped : int
        Unreadable items of the source so far (listed in :attr:`skipped_file`).
    resumed : bool
        The run continued an existing store.
    seconds : float
        Wall time of the encoding loop.
    skipped_file : Path or None
        The sidecar list of unreadable items, when there are any.
    n_from_cache : int
        Rows of this run whose images were read from the backend's image cache
        (``from_cache=True``) instead of decoded.
    """

    path: Path
    n_rows: int
    n_written: int
    n_skipped: int
    resumed: bool
    seconds: float
    skipped_file: Path | None = None
    n_from_cache: int = 0

    @property
    def items_per_second(self) -> float:
        return self.n_written / self.seconds if self.seconds > 0 else float("nan")


def _image_size_text(shape: Any) -> str:
    return f"{int(shape[0])}x{int(shape[1])}"


def _read_skipped(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item, _, reason = line.partition("\t")
            out[item] = reason
    return out


def _check_existing(store: Any, backend: Any, source: Any, path: Path) -> None:
    """One-line errors when an existing store was written by another model or source."""
    prov = store.provenance
    name = getattr(backend, "name", type(backend).__name__)
    hint = "write to a new store, or pass --overwrite (overwrite=True) to replace it"
    if store.z_dim != backend.z_dim:
        raise BackendError(f"{path}: the store holds z_dim {store.z_dim} but the model encodes z_dim {backend.z_dim}; {hint}.")
    size = prov.get("image_size")
    if size and size != _image_size_text(backend.image_shape):
        raise BackendError(f"{path}: the store was encoded from {size} images but the model takes "
                           f"{_image_size_text(backend.image_shape)}; {hint}.")
    if prov.get("backend") != name:
        raise BackendError(f"{path}: the store was written by backend {prov.get('backend')!r}, not {name!r}; {hint}.")
    if prov.get("model_fingerprint") != backend.fingerprint():
        raise BackendError(f"{path}: the store was written by model {prov.get('model_fingerprint')}, "
                           f"this model is {backend.fingerprint()}; {hint}.")
    if prov.get("source") != source.spec:
        raise BackendError(f"{path}: the store was encoded from {prov.get('source')!r}, not {source.spec!r}; {hint}.")
    n_items = prov.get("source_items")
    if n_items is not None and int(n_items) != len(source):
        raise DataSourceError(f"{path}: the source {source.spec!r} held {n_items} items when the store was started and "
                              f"holds {len(source)} now; {hint}.")


def check_encode_options(backend: Any, batch_size: int | None, commit_rows: int | None, *,
                         owner: str) -> tuple[int, int]:
    """Check that ``backend`` follows the protocol; the batch size and the rows per commit to use."""
    for attr in ("z_dim", "image_shape", "encode", "fingerprint"):
        if not hasattr(backend, attr):
            raise InvalidParameterError(f"{owner}: backend must implement the Backend protocol; "
                                        f"{type(backend).__name__} has no {attr!r}.")
    batch_size = preferred_batch_size(backend, "encode", batch_size, owner=owner)
    if commit_rows is None:
        return batch_size, max(int(batch_size), COMMIT_ROWS)
    check_positive(commit_rows, "commit_rows", owner=owner, integer=True, minimum=1)
    return batch_size, int(commit_rows)


def open_image_source(backend: Any, source: Any, strict: bool | None) -> Any:
    """``source`` opened at the model's image size, with ``strict`` applied (never the caller's object)."""
    from ..data import open_source

    size = tuple(int(s) for s in backend.image_shape[:2])
    src = open_source(source, image_size=size, strict=bool(strict))
    if strict is not None and src.strict != bool(strict):
        src = copy.copy(src)  # never change the caller's source
        src.strict = bool(strict)
    return src


def resume_position(store: Any, path: Path, start: int) -> int:
    """The source index after the last committed row of ``store`` (``start`` when it has none)."""
    if not store.n_rows:
        return int(start)
    if SOURCE_INDEX not in store.column_names:
        raise StoreError(f"{path}: the store has no {SOURCE_INDEX!r} column, so it cannot be resumed; "
                         "write to a new store or pass --overwrite.")
    return int(store.read_column(SOURCE_INDEX, slice(store.n_rows - 1, store.n_rows))[0]) + 1


def remove_if_empty(path: Path) -> None:
    """Remove the store at ``path`` when it holds no rows (a run that found nothing readable)."""
    import shutil

    from ..store import open_store

    if not path.exists():
        return
    try:
        with open_store(path) as check:
            empty = check.n_rows == 0
    except StoreError:
        return
    if empty:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _refuse_sharded(path: Path) -> None:
    """A sharded Zarr store is continued by the sharded encode only (its parts have their own writers)."""
    if not path.is_dir():
        return
    from ..store import shard_status

    try:
        parts = shard_status(path)
    except StoreError:
        return  # not sharded
    raise StoreError(f"{path}: the store was written in {len(parts)} shards; continue it with --shards {len(parts)} "
                     "(encode_sharded(shards=...)), or pass --overwrite to replace it.")


@dataclass
class RangeRun:
    """What :func:`encode_range` did: the wall time, the skipped items, the rows read from a cache."""

    seconds: float
    skipped: dict
    n_from_cache: int = 0


def encode_range(
    backend: Any,
    src: Any,
    store: Any,
    *,
    start: int,
    stop: int,
    batch_size: int,
    commit: int,
    sidecar: Path,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    prefetch: int = 2,
    from_cache: bool = False,
) -> RangeRun:
    """The one encoding loop: items ``start .. stop`` of ``src`` encoded into the open writer ``store``.

    Three stages overlap: decoder threads prepare the next batches
    (:meth:`~latentscope.data.ImageSource.iter_batches`), the calling thread runs the
    model, and one writer thread appends ``commit`` rows at a time (each append one
    commit). Unreadable items are appended to ``sidecar`` as ``id<TAB>reason`` lines
    before the rows of their group. ``progress(done, total)`` counts the items of the
    range. On an exception (a failing batch, Ctrl-C, ``progress`` raising) every batch
    already encoded is committed before the exception goes on. Used by
    :func:`encode_to_store` (one range: the whole source) and by the sharded encode
    (one range per shard).
    """
    n_from_cache = 0
    cached = None
    if from_cache:
        from ..data import CachedSource

        src = cached = CachedSource(src, training_image_cache(backend))
        n_from_cache = int(np.count_nonzero(cached.rows[start:stop] >= 0))
    name = getattr(backend, "name", type(backend).__name__)
    skipped = _read_skipped(sidecar)
    total = stop - start

    def write(group: list[tuple[Any, np.ndarray | None]]) -> None:
        """The writer thread: the group's skipped names, then its rows in one commit."""
        new = [(item, reason) for batch, _ in group for _, item, reason in batch.skipped if item not in skipped]
        if new:
            # the sidecar is written before the rows: a kill in between repeats the group
            with open(sidecar, "a", encoding="utf-8") as fh:
                fh.writelines(f"{item}\t{' '.join(reason.split())}\n" for item, reason in new)
                fh.flush()
                os.fsync(fh.fileno())
            skipped.update(new)
        full = [(batch, z) for batch, z in group if z is not None]
        if full:
            columns = {k: np.concatenate([b.attributes[k] for b, _ in full]) for k in full[0][0].attributes}
            columns[SOURCE_INDEX] = np.concatenate([b.indices for b, _ in full])
            store.append(np.concatenate([z for _, z in full]), ids=np.concatenate([b.ids for b, _ in full]),
                         columns=columns)

    buffer: list[tuple[Any, np.ndarray | None]] = []  # encoded, not yet handed to the writer
    buffered = 0
    writing: Future | None = None

    def hand_off() -> None:
        nonlocal buffer, buffered, writing
        if writing is not None:
            job, writing = writing, None
            job.result()  # the previous group is committed (or its error raised here)
        if buffer:
            writing = writer.submit(write, buffer)
            buffer, buffered = [], 0

    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="latentscope-append") as writer:
            try:
                for batch in src.iter_batches(batch_size, start=start, stop=stop, workers=workers, prefetch=prefetch):
                    z = None
                    if len(batch):
                        # a copy: the writer thread holds it while the backend encodes the next batches
                        z = np.array(backend.encode(batch.images, batch_size=batch_size), copy=True)
                        if z.shape != (len(batch), store.z_dim):
                            raise BackendError(f"backend {name!r} returned z-points of shape {z.shape} for "
                                               f"{len(batch)} images; expected ({len(batch)}, {store.z_dim}).")
                    buffer.append((batch, z))
                    buffered += len(batch)
                    if buffered >= commit:
                        hand_off()
                    if progress is not None:
                        progress(batch.stop - start, total)
            except BaseException:
                # keep what was encoded (Ctrl-C, a failing batch): commit it unless the writer failed
                if writing is None or writing.exception() is None:
                    hand_off()
                    hand_off()
                raise
            hand_off()
            hand_off()
    finally:
        if cached is not None:
            cached.cache.close()
    return RangeRun(seconds=time.perf_counter() - t0, skipped=skipped, n_from_cache=n_from_cache)


def encode_to_store(
    backend: Any,
    source: Any,
    store_path: str | os.PathLike,
    *,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    strict: bool | None = None,
    workers: int | None = None,
    prefetch: int = 2,
    from_cache: bool = False,
    commit_rows: int | None = None,
) -> EncodeResult:
    """Encode an image source with a backend into a z-point store (resumable).

    Parameters
    ----------
    backend : Backend
        A loaded model (see :class:`latentscope.backends.Backend`).
    source : ImageSource or str
        The images; a spec such as ``"celeba:/data/celeba"`` is opened with
        :func:`latentscope.data.open_source`. The model's image size decides the
        size the images are decoded to.
    store_path : str or Path
        The store: HDF5, or Zarr for a name ending in ``.zarr``. A missing store is
        created. An existing one is continued after its last committed row when it
        was written by the same backend, model (fingerprint), source and sizes, and
        refused otherwise (one-line :class:`~latentscope.exceptions.BackendError`); a
        sharded store is continued by :func:`~latentscope.backends.encode_sharded`.
    batch_size : int, optional
        Items per batch (decode, encode and append). Default: what the backend
        prefers on this hardware (:func:`~latentscope.backends.preferred_batch_size`;
        ``keras-ae``: 1024 on a GPU, 256 on CPUs), else 256.
    progress : callable(done, total), optional
        Called after each batch is encoded with the items processed by this run and
        the items this run has to process. An exception it raises stops the run
        after committing the batches encoded so far.
    overwrite : bool, default=False
        Replace an existing store (and its list of skipped items).
    strict : bool, optional
        Override the source's ``strict``: raise on the first unreadable item instead
        of skipping it.
    workers : int, optional
        Decoder threads (default: :func:`latentscope.data.default_workers`, the cores
        this process may use, or ``LATENTSCOPE_WORKERS``).
    prefetch : int, default=2
        Batches decoded ahead of the model.
    from_cache : bool, default=False
        Read the items that the backend's training image cache holds from it
        (:func:`~latentscope.backends.training_image_cache`; ``keras-ae``:
        ``MODEL/image_cache.h5``) and decode only the others. The cache holds the
        bytes the decoder produces, so the store is the same as without it.
    commit_rows : int, optional
        Rows gathered before one append to the store (one commit), default
        ``max(batch_size, 4096)``: a store append has a fixed cost of some
        milliseconds per column, which per-batch commits would pay at every device
        batch. A run killed (SIGKILL) loses at most the rows encoded since the last
        commit; an exception or Ctrl-C first commits every batch already encoded.

    Returns
    -------
    EncodeResult

    Notes
    -----
    The store gets the columns ``source_index`` (int64) and every per-item attribute
    of the source; its provenance records the backend, the model fingerprint, the
    source spec, ``source_items``, ``image_size`` and ``n_skipped``. Unreadable
    items are listed as ``id<TAB>reason`` lines in :func:`skipped_path` (written
    before the batch's rows, so a resumed run never loses a name).

    Raises
    ------
    StoreError
        The existing store is sharded, or cannot be resumed.
    BackendError
        The existing store belongs to another model, backend, source or size; the
        backend returned z-points of the wrong shape; or ``from_cache`` is set and the
        backend keeps no image cache.
    DataSourceError
        No item of the source is readable, or an item is unreadable in strict mode;
        or the image cache holds images of another source or size.
    """
    from ..store import create_store, open_store

    batch_size, commit = check_encode_options(backend, batch_size, commit_rows, owner="encode_to_store")
    src = open_image_source(backend, source, strict)
    if from_cache:
        training_image_cache(backend)  # no cache: refused before the store is touched
    path = Path(store_path)
    sidecar = skipped_path(path)
    name = getattr(backend, "name", type(backend).__name__)
    resumed = path.exists() and not overwrite
    created_here = False
    if resumed:
        _refuse_sharded(path)
        store = open_store(path, "a")
        try:
            _check_existing(store, backend, src, path)
            position = resume_position(store, path, 0)
        except BaseException:
            store.close()
            raise
    else:
        if sidecar.exists():
            sidecar.unlink()
        size = tuple(int(s) for s in backend.image_shape[:2])
        store = create_store(path, int(backend.z_dim), backend=name, model_fingerprint=backend.fingerprint(),
                             source=src.spec, overwrite=overwrite, source_items=len(src),
                             image_size=_image_size_text(size), source_attributes=list(src.attribute_names))
        created_here = True
        position = 0
    n_start = store.n_rows
    try:
        with store:
            run = encode_range(backend, src, store, start=position, stop=len(src), batch_size=batch_size,
                               commit=commit, sidecar=sidecar, progress=progress, workers=workers,
                               prefetch=prefetch, from_cache=from_cache)
            n_rows = store.n_rows
            extra = {"encode_items_per_second": round((n_rows - n_start) / run.seconds, 2)} if n_rows > n_start else {}
            store.set_provenance(n_skipped=len(run.skipped), skipped_list=sidecar.name if run.skipped else "", **extra)
    except DataSourceError:
        if created_here:
            remove_if_empty(path)
        raise
    return EncodeResult(path=path, n_rows=n_rows, n_written=n_rows - n_start, n_skipped=len(run.skipped),
                        resumed=resumed, seconds=run.seconds, skipped_file=sidecar if run.skipped else None,
                        n_from_cache=run.n_from_cache)
