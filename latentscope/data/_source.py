"""The image-source interface shared by every reader (CelebA, folders, synthetic faces).

A source is an ordered, finite list of items. Reading decodes items in worker threads
(Pillow and NumPy release the GIL) and prefetches whole batches ahead of the consumer,
so that decoding overlaps the consumer's model compute.
"""

from __future__ import annotations

import copy
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .._validation import check_positive
from ..exceptions import DataSourceError, InvalidParameterError

__all__ = ["ImageBatch", "ImageSource", "TableSource", "DecodedRange", "decode_each", "check_image_size", "default_workers",
           "split_query", "WORKERS_ENV"]


#: Environment variable that sets the decoder threads used when ``workers=None``.
WORKERS_ENV = "LATENTSCOPE_WORKERS"
#: Options a spec may carry after ``?``.
QUERY_KEYS = ("seed", "split", "crop")


def default_workers() -> int:
    """Decoder threads used when ``workers=None``.

    ``LATENTSCOPE_WORKERS`` when set (an integer >= 1), else the number of cores this
    process may run on (``os.sched_getaffinity``, which honours ``taskset``, cgroup
    cpusets and batch-queue allocations; ``os.cpu_count()`` where it is missing).

    Raises
    ------
    InvalidParameterError
        ``LATENTSCOPE_WORKERS`` is not an integer >= 1.
    """
    text = os.environ.get(WORKERS_ENV, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise InvalidParameterError(f"{WORKERS_ENV} must be an integer >= 1; got {text!r}.")
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def split_query(rest: str) -> tuple[str, dict[str, str]]:
    """Split ``path?key=value&...`` into the path and its options, when every key is
    one of :data:`QUERY_KEYS` (else the whole text is the path)."""
    if "?" not in rest:
        return rest, {}
    head, _, query = rest.rpartition("?")
    pairs = [p.partition("=") for p in query.split("&") if p]
    if pairs and all(sep and key in QUERY_KEYS for key, sep, _ in pairs):
        return head, {key: value for key, _, value in pairs}
    return rest, {}


def check_image_size(image_size: Any, *, owner: str = "") -> tuple[int, int]:
    """Normalise ``image_size`` (an int, ``(h, w)`` or ``"HxW"``) to ``(height, width)``."""
    prefix = f"{owner}: " if owner else ""
    value = image_size
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            value = tuple(int(p) for p in parts if p.strip())
        except ValueError:
            value = None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if isinstance(value, Sequence) and len(value) == 1:
        value = (value[0], value[0])
    ok = (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v <= 8192 for v in value)
    )
    if not ok:
        raise InvalidParameterError(
            f"{prefix}image_size must be an int, a pair (height, width) or 'HxW' with sides in [1, 8192]; "
            f"got {image_size!r}."
        )
    return (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class ImageBatch:
    """A batch of decoded images in source order.

    Attributes
    ----------
    start : int
        Index (in the source's order) of the first item the batch covers.
    images : ndarray of shape (n, h, w, 3), uint8
        The readable items of the covered range (unreadable ones are left out).
    ids : ndarray of str, shape (n,)
        The item names (file names relative to the source root, or indices for
        synthetic data).
    attributes : dict of str to ndarray of shape (n,)
        Per-item attributes (CelebA's 40 attributes, synthetic face parameters...).
    indices : ndarray of int64, shape (n,)
        Source index of each image (``start + arange(n)`` when nothing was skipped).
    stop : int
        One past the last source index the batch covers (readable or not).
    skipped : tuple of (int, str, str)
        ``(index, id, reason)`` of each unreadable item of the covered range.
    """

    start: int
    images: np.ndarray
    ids: np.ndarray
    attributes: dict = field(default_factory=dict)
    indices: np.ndarray | None = None
    stop: int | None = None
    skipped: tuple = ()

    def __post_init__(self) -> None:
        n = int(self.images.shape[0])
        if self.indices is None:
            object.__setattr__(self, "indices", np.arange(self.start, self.start + n, dtype=np.int64))
        if self.stop is None:
            object.__setattr__(self, "stop", self.start + n + len(self.skipped))

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class DecodedRange:
    """What :meth:`ImageSource._decode_range` returns for items ``start .. start + len(errors)``.

    Attributes
    ----------
    start : int
    images : ndarray of shape (m, h, w, 3), uint8
        One image per item; rows of failed items are ignored.
    errors : list of (str or None)
        None for a decoded item, else the reason it could not be read.
    """

    start: int
    images: np.ndarray  # (m, h, w, 3) uint8; rows of failed items are unspecified
    errors: list  # None for a good item, else the reason (str)


class ImageSource:
    """Base class of image readers.

    A source is an ordered, deterministic list of ``len(source)`` items, each decoded to
    an RGB uint8 image of ``image_shape = (h, w, 3)``. Subclasses set ``spec`` (the
    canonical command-line spelling, e.g. ``"celeba:/data/celeba"``), ``image_size``
    and ``strict``, and implement ``__len__``, ``item_ids`` and ``_decode_range``
    (optionally ``attributes`` and ``attribute_names``).

    Items that cannot be decoded are skipped (recorded in :attr:`skipped` and in each
    batch's ``skipped``) unless ``strict`` is set, in which case reading raises
    :class:`~latentscope.exceptions.DataSourceError` naming the item.
    """

    spec: str = ""
    image_size: tuple[int, int] = (96, 96)
    strict: bool = False
    #: Items per worker task (file sources decode one file at a time, so small chunks
    #: balance the threads; the synthetic source renders chunks vectorised).
    _chunk_items: int = 16
    #: Whether a batch is split over the worker threads; sources that only copy
    #: memory (HDF5 reads are serialised by h5py anyway) read a batch in one task.
    _split_batches: bool = True

    # -- to implement --------------------------------------------------------------------
    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def item_ids(self) -> np.ndarray:  # pragma: no cover - abstract
        """The ids (str) of all items in source order, readable or not."""
        raise NotImplementedError

    def _decode_range(self, start: int, stop: int) -> DecodedRange:  # pragma: no cover - abstract
        """Decode items ``start .. stop`` (called from worker threads)."""
        raise NotImplementedError

    def _ids(self, start: int, stop: int) -> np.ndarray:
        """Ids of items ``start .. stop`` (override when ``item_ids`` is costly to build)."""
        return np.asarray(self.item_ids[start:stop], dtype=object)

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Names of the per-item attributes (columns of an encoded store)."""
        return ()

    def attributes(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Per-item attributes of items ``start .. stop`` (all items, readable or not)."""
        return {}

    # -- shared behaviour ----------------------------------------------------------------
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(height, width, 3)`` of the decoded images."""
        return (*self.image_size, 3)

    @property
    def skipped(self) -> dict[str, str]:
        """Unreadable items met so far by this object: id -> reason."""
        return self.__dict__.setdefault("_skipped", {})

    def with_image_size(self, image_size: Any) -> "ImageSource":
        """A copy of this source that decodes to ``image_size`` (int, ``(h, w)`` or "HxW")."""
        new = copy.copy(self)
        new.image_size = check_image_size(image_size, owner=type(self).__name__)
        new.__dict__["_skipped"] = {}
        return new

    def describe(self) -> dict[str, Any]:
        """Provenance of the source: spec, item count, image size, attributes."""
        return {
            "spec": self.spec,
            "n_items": len(self),
            "image_size": list(self.image_size),
            "attributes": list(self.attribute_names),
        }

    def __repr__(self) -> str:
        h, w = self.image_size
        return f"<{type(self).__name__} {self.spec!r}: {len(self)} items, {h}x{w}>"

    def read(self, start: int = 0, stop: int | None = None, *, workers: int | None = None) -> ImageBatch:
        """Decode items ``start .. stop`` into one :class:`ImageBatch` (in memory)."""
        batches = list(self.iter_batches(256, start=start, stop=stop, workers=workers))
        h, w = self.image_size
        if not batches:
            return ImageBatch(start, np.empty((0, h, w, 3), np.uint8), np.empty(0, dtype=object))
        attrs = {k: np.concatenate([b.attributes[k] for b in batches]) for k in batches[0].attributes}
        return ImageBatch(
            start=batches[0].start,
            images=np.concatenate([b.images for b in batches]),
            ids=np.concatenate([b.ids for b in batches]),
            attributes=attrs,
            indices=np.concatenate([b.indices for b in batches]),
            stop=batches[-1].stop,
            skipped=tuple(s for b in batches for s in b.skipped),
        )

    def iter_batches(
        self,
        batch_size: int = 256,
        *,
        start: int = 0,
        stop: int | None = None,
        workers: int | None = None,
        prefetch: int = 2,
    ) -> Iterator[ImageBatch]:
        """Yield :class:`ImageBatch` objects of decoded uint8 images, in source order.

        Parameters
        ----------
        batch_size : int, default=256
            Source items covered by each batch (a batch holds fewer images when some
            items are unreadable; it may then be empty).
        start, stop : int
            The range of source indices to read; ``stop=None`` reads to the end.
        workers : int or None, default=None
            Decoder threads (``None``: :func:`default_workers`, the cores this process
            may use; ``0``: decode in the calling thread, without prefetch).
        prefetch : int, default=2
            Batches decoded ahead of the one being consumed.

        Raises
        ------
        DataSourceError
            An item is unreadable and the source is ``strict``; or no item of the whole
            source could be read.
        """
        n = len(self)
        owner = f"{type(self).__name__}.iter_batches"
        for name, value, low in (("batch_size", batch_size, 1), ("start", start, 0), ("prefetch", prefetch, 0)):
            check_positive(value, name, owner=owner, integer=True, minimum=low)
        stop = n if stop is None else min(int(stop), n)
        workers = default_workers() if workers is None else int(workers)
        if workers < 0:
            raise InvalidParameterError(f"{owner}: workers must be >= 0 or None; got {workers!r}.")
        # validated here; the generator below starts work only when iterated
        return self._iterate(int(batch_size), int(start), stop, workers, int(prefetch))

    def _iterate(self, batch_size: int, start: int, stop: int, workers: int, prefetch: int) -> Iterator[ImageBatch]:
        n = len(self)
        ranges = [(lo, min(lo + batch_size, stop)) for lo in range(start, stop, batch_size)]
        if workers == 0:
            produced = (self._assemble(lo, hi, [self._decode_range(lo, hi)]) for lo, hi in ranges)
        else:
            produced = self._threaded(ranges, workers, prefetch)
        n_ok = 0
        first_bad: tuple | None = None
        for batch in produced:
            n_ok += len(batch)
            if first_bad is None and batch.skipped:
                first_bad = batch.skipped[0]
            yield batch
        if n_ok == 0 and first_bad is not None and start == 0 and stop == n:
            raise DataSourceError(
                f"{self.spec}: none of the {n} items could be read (first: {first_bad[1]}: {first_bad[2]})."
            )

    # -- internals -----------------------------------------------------------------------
    def _threaded(self, ranges: list, workers: int, prefetch: int) -> Iterator[ImageBatch]:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="latentscope-decode")
        pending: deque[tuple[int, int, list[Future]]] = deque()
        todo = iter(ranges)

        def submit() -> None:
            nxt = next(todo, None)
            if nxt is None:
                return
            lo, hi = nxt
            step = max(1, min(self._chunk_items, -(-(hi - lo) // workers))) if self._split_batches else hi - lo
            futures = [pool.submit(self._decode_range, a, min(a + step, hi)) for a in range(lo, hi, step)]
            pending.append((lo, hi, futures))

        try:
            for _ in range(prefetch + 1):
                submit()
            while pending:
                lo, hi, futures = pending.popleft()
                parts = [f.result() for f in futures]
                submit()
                yield self._assemble(lo, hi, parts)
        finally:
            for _, _, futures in pending:
                for f in futures:
                    f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _assemble(self, lo: int, hi: int, parts: list[DecodedRange]) -> ImageBatch:
        errors = [e for p in parts for e in p.errors]
        ok = np.fromiter((e is None for e in errors), dtype=bool, count=len(errors))
        ids_all = self._ids(lo, hi)
        skipped = tuple((lo + int(i), str(ids_all[i]), str(errors[i])) for i in np.flatnonzero(~ok))
        if skipped and self.strict:
            index, item, reason = skipped[0]
            raise DataSourceError(f"{self.spec}: cannot read item {index} ({item}): {reason}")
        for _, item, reason in skipped:
            self.skipped[item] = reason
        images = np.concatenate([p.images for p in parts]) if len(parts) > 1 else parts[0].images
        if not ok.all():
            images = images[ok]
        attrs = {k: np.asarray(v)[ok] for k, v in self.attributes(lo, hi).items()}
        indices = np.arange(lo, hi, dtype=np.int64)[ok]
        return ImageBatch(lo, np.ascontiguousarray(images), ids_all[ok], attrs, indices, hi, skipped)



class TableSource(ImageSource):
    """An :class:`ImageSource` whose item ids and attributes are tables held in memory.

    The one home of ``item_ids``, ``attribute_names`` and ``attributes`` for the
    sources that read them once when opened (CelebA, folders, HDF5 files).
    Subclasses set ``_ids_arr`` (one str per item, an object array) and ``_attr``
    (attribute name -> array of one value per item) in ``__init__``.
    """

    _ids_arr: np.ndarray
    _attr: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self._ids_arr)

    @property
    def item_ids(self) -> np.ndarray:
        """The ids (str) of all items in source order, readable or not."""
        return self._ids_arr

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Names of the per-item attributes (columns of an encoded store)."""
        return tuple(self._attr)

    def attributes(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Per-item attributes of items ``start .. stop`` (all items, readable or not)."""
        return {k: v[start:stop] for k, v in self._attr.items()}

def decode_each(
    source: ImageSource, start: int, stop: int, decode_one: Callable[[int], np.ndarray]
) -> DecodedRange:
    """Decode items one by one with ``decode_one(index)``, catching per-item failures."""
    h, w = source.image_size
    out = np.zeros((stop - start, h, w, 3), dtype=np.uint8)
    errors: list[str | None] = []
    for k, index in enumerate(range(start, stop)):
        try:
            out[k] = decode_one(index)
            errors.append(None)
        except Exception as exc:  # a corrupt file must never stop a long run
            errors.append(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return DecodedRange(start, out, errors)
