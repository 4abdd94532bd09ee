"""A preprocessed uint8 image cache (HDF5), so that training epochs never decode
JPEGs again, and the shuffled batch plans that read from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import h5py
import numpy as np

from latentscope.exceptions import BackendError, DataSourceError

__all__ = ["ImageCache", "build_cache", "cache_info", "EpochPlan", "BatchReader", "array_images"]

CACHE_FORMAT = "latentscope-keras-ae-image-cache"
CACHE_VERSION = 1
_OWNER = "keras-ae"


class ImageCache:
    """Read access to uint8 images held in an HDF5 cache file or in memory.

    Attributes
    ----------
    n : int
        Number of images.
    image_shape : tuple of int
        (h, w, 3).
    """

    def __init__(self, images: Any, path: str | None = None, h5: h5py.File | None = None) -> None:
        self._images = images
        self._h5 = h5
        self.path = path
        self.n = int(images.shape[0])
        self.image_shape = tuple(int(v) for v in images.shape[1:])

    @property
    def nbytes(self) -> int:
        return self.n * int(np.prod(self.image_shape))

    @property
    def in_memory(self) -> bool:
        return isinstance(self._images, np.ndarray)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` as a uint8 array."""
        return np.asarray(self._images[start:stop])

    def read_rows(self, rows_sorted: np.ndarray) -> np.ndarray:
        """Images at sorted, unique ``rows_sorted`` (read as contiguous runs)."""
        if self.in_memory:
            return self._images[rows_sorted]
        out = np.empty((rows_sorted.size, *self.image_shape), dtype=np.uint8)
        if rows_sorted.size == 0:
            return out
        breaks = np.flatnonzero(np.diff(rows_sorted) != 1) + 1
        pos = 0
        for run in np.split(rows_sorted, breaks):
            a, b = int(run[0]), int(run[-1]) + 1
            self._images.read_direct(out, np.s_[a:b], np.s_[pos : pos + (b - a)])
            pos += b - a
        return out

    def load(self) -> "ImageCache":
        """An in-memory copy (the file is closed)."""
        if self.in_memory:
            return self
        arr = self.read(0, self.n)
        self.close()
        return ImageCache(arr, path=self.path)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


def array_images(images: Any) -> ImageCache:
    """Wrap an in-memory uint8 array (n, h, w, 3)."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise DataSourceError(f"{_OWNER}: images must be a uint8 array of shape (n, h, w, 3); got {arr.dtype} {arr.shape}.")
    if arr.shape[0] == 0:
        raise DataSourceError(f"{_OWNER}: the image source is empty.")
    return ImageCache(np.ascontiguousarray(arr))


def cache_info(path: str | os.PathLike) -> Any:
    """What an image cache file holds, as a :class:`latentscope.data.ImageCacheInfo`
    (None when ``path`` is missing or is no keras-ae image cache).

    The cache is readable as the core's ``h5:`` source: ``images`` (N, h, w, 3) uint8
    and ``ids`` at the root, one row per readable item of the source named by the
    ``spec`` attribute, in source order; unreadable items have no row, so rows are
    matched to items by id (``latentscope encode --from-cache``).
    """
    from latentscope.data import ImageCacheInfo

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != CACHE_FORMAT or "images" not in f or "ids" not in f:
                return None
            spec = f.attrs.get("spec", "")
    except OSError:
        return None
    return ImageCacheInfo(path=path, source=spec.decode() if isinstance(spec, bytes) else str(spec), dataset="images")


def _cache_matches(f: h5py.File, spec: str, image_shape: tuple[int, ...], n: int) -> str | None:
    """None if the cache file holds this source, else the reason why not."""
    a = f.attrs
    if a.get("format") != CACHE_FORMAT:
        return "it is not a keras-ae image cache"
    if int(a.get("version", -1)) != CACHE_VERSION:
        return f"cache format version {a.get('version')} is not {CACHE_VERSION}"
    if str(a.get("spec", "")) != spec:
        return f"it caches {a.get('spec')!r}, not {spec!r}"
    if tuple(int(v) for v in f["images"].shape[1:]) != tuple(image_shape):
        return f"its images are {tuple(f['images'].shape[1:])}, not {tuple(image_shape)}"
    if int(a.get("n_source", -1)) != n:
        return f"it was made from {int(a.get('n_source', -1))} items, the source has {n}"
    return None


def build_cache(
    source: Any,
    path: str | os.PathLike,
    *,
    replace_mismatch: bool = True,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> ImageCache:
    """Decode ``source`` once into an HDF5 uint8 cache at ``path`` (or reuse it).

    A complete cache of the same source (spec, image shape, length) is reused; a
    partial one (an interrupted build) is continued where it stopped. A cache of
    something else is replaced when ``replace_mismatch`` (the default location in a
    model directory), else a :class:`BackendError` is raised (a path the user named).

    Parameters
    ----------
    source : ImageSource
        Needs ``spec``, ``image_shape``, ``__len__`` and ``iter_batches``.
    path : path-like
    progress : callable(done, total), optional
    """
    path = Path(path)
    spec = str(getattr(source, "spec", "") or "")
    shape = tuple(int(v) for v in source.image_shape)
    n_src = len(source)
    if n_src == 0:
        raise DataSourceError(f"{_OWNER}: the image source {spec!r} is empty.")
    f: h5py.File | None = None
    if path.exists():
        try:
            f = h5py.File(path, "a")
            why = _cache_matches(f, spec, shape, n_src)
        except OSError as exc:
            why, f = f"it cannot be opened ({exc})", None
        if why is not None:
            if f is not None:
                f.close()
                f = None
            if not replace_mismatch:
                raise BackendError(f"{_OWNER}: image cache {path} does not fit this data: {why}; pass another cache path.")
            path.unlink()
    if f is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = h5py.File(path, "w")
        f.attrs.update(format=CACHE_FORMAT, version=CACHE_VERSION, spec=spec, n_source=n_src,
                       next_item=0, complete=False)
        chunk = (max(1, min(n_src, (1 << 20) // int(np.prod(shape)) or 1)), *shape)
        f.create_dataset("images", shape=(0, *shape), maxshape=(None, *shape), dtype=np.uint8, chunks=chunk)
        f.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(4096,))
    try:
        if not bool(f.attrs["complete"]):
            images, ids = f["images"], f["ids"]
            start = int(f.attrs["next_item"])
            for batch in source.iter_batches(batch_size, start=start):
                k = int(batch.images.shape[0])
                m = images.shape[0]
                if k:
                    if tuple(batch.images.shape[1:]) != shape:
                        raise DataSourceError(f"{_OWNER}: the source gave images of shape {batch.images.shape[1:]}; expected {shape}.")
                    images.resize(m + k, axis=0)
                    images[m : m + k] = batch.images
                    ids.resize(m + k, axis=0)
                    ids[m : m + k] = np.asarray(batch.ids).astype(str).astype(object)
                # the items the batch covers are done, also those skipped as unreadable
                stop = getattr(batch, "stop", None)
                f.attrs["next_item"] = min(n_src, int(stop) if stop is not None else int(batch.start) + batch_size)
                f.flush()
                if progress is not None:
                    progress(int(f.attrs["next_item"]), n_src)
            if f["images"].shape[0] == 0:
                raise DataSourceError(f"{_OWNER}: no image of {spec!r} could be decoded.")
            f.attrs["next_item"] = n_src
            f.attrs["complete"] = True
            f.flush()
    except BaseException:
        f.close()
        raise
    return ImageCache(f["images"], path=str(path), h5=f)


@dataclass(frozen=True)
class EpochPlan:
    """The order in which one epoch visits the training rows.

    Rows are shuffled with a generator seeded by ``(seed, epoch)``, so an epoch's
    batches are the same in an interrupted and an uninterrupted run. When the data do
    not fit in memory, whole blocks of rows are shuffled, then rows inside segments
    of ``segment_rows`` (read as a few contiguous runs), then cut into batches.
    With ``drop_last`` (and at least one full batch) the final incomplete batch is
    left out (different rows each epoch), so every step has the same shape and the
    backend compiles one training step.
    """

    batches: tuple[np.ndarray, ...]
    segments: tuple[np.ndarray, ...]  # sorted rows of each segment
    batch_segment: tuple[int, ...]  # segment index of each batch

    @classmethod
    def make(cls, n_rows: int, batch_size: int, seed: int, epoch: int, *, segment_rows: int | None = None,
             block_rows: int = 256, drop_last: bool = False) -> "EpochPlan":
        plan = cls._make(n_rows, batch_size, seed, epoch, segment_rows, block_rows)
        if drop_last and len(plan.batches) > 1 and len(plan.batches[-1]) < batch_size:
            plan = cls(plan.batches[:-1], plan.segments, plan.batch_segment[:-1])
        return plan

    @classmethod
    def _make(cls, n_rows: int, batch_size: int, seed: int, epoch: int, segment_rows: int | None,
              block_rows: int) -> "EpochPlan":
        rng = np.random.default_rng([int(seed), int(epoch), 0x6B6165])
        if segment_rows is None or segment_rows >= n_rows:
            perm = rng.permutation(n_rows)
            batches = tuple(perm[i : i + batch_size] for i in range(0, n_rows, batch_size))
            return cls(batches, (np.arange(n_rows),), (0,) * len(batches))
        segment_rows = max(batch_size, segment_rows // batch_size * batch_size)
        n_blocks = -(-n_rows // block_rows)
        order = rng.permutation(n_blocks)
        rows = np.concatenate([np.arange(b * block_rows, min(n_rows, (b + 1) * block_rows)) for b in order])
        batches, segments, owner = [], [], []
        for s, a in enumerate(range(0, n_rows, segment_rows)):
            seg = rows[a : a + segment_rows]
            seg = seg[rng.permutation(seg.size)]
            segments.append(np.sort(seg))
            for i in range(0, seg.size, batch_size):
                batches.append(seg[i : i + batch_size])
                owner.append(s)
        return cls(tuple(batches), tuple(segments), tuple(owner))

    def __len__(self) -> int:
        return len(self.batches)


class BatchReader:
    """Yields float32 training batches in [0, 1] of an :class:`EpochPlan`, reading
    (and converting) the next batch in a background thread while the model trains."""

    def __init__(self, cache: ImageCache) -> None:
        self.cache = cache
        self._seg_key: tuple[int, int] | None = None
        self._seg_rows: np.ndarray | None = None  # None: the segment is a contiguous range
        self._seg_first = 0
        self._seg_data: np.ndarray | None = None

    def _batch(self, plan: EpochPlan, i: int, key: int) -> np.ndarray:
        s = plan.batch_segment[i]
        if self._seg_key != (key, s):
            rows = plan.segments[s]
            self._seg_data = None
            contiguous = rows.size > 0 and int(rows[-1]) - int(rows[0]) + 1 == rows.size
            if self.cache.in_memory and contiguous:  # a view, no copy
                self._seg_rows, self._seg_first = None, int(rows[0])
                self._seg_data = self.cache._images[int(rows[0]) : int(rows[-1]) + 1]
            else:
                self._seg_rows, self._seg_data = rows, self.cache.read_rows(rows)
            self._seg_key = (key, s)
        idx = plan.batches[i]
        local = idx - self._seg_first if self._seg_rows is None else np.searchsorted(self._seg_rows, idx)
        return np.asarray(self._seg_data[local], dtype=np.float32) * np.float32(1.0 / 255.0)

    def iterate(self, plan: EpochPlan, *, start: int = 0, key: int = 0) -> Iterator[np.ndarray]:
        """Batches ``start, start+1, ...`` of ``plan`` (``key`` tells epochs apart)."""
        from concurrent.futures import ThreadPoolExecutor

        if start >= len(plan):
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="keras-ae-reader") as pool:
            nxt = pool.submit(self._batch, plan, start, key)
            for i in range(start, len(plan)):
                x = nxt.result()
                if i + 1 < len(plan):
                    nxt = pool.submit(self._batch, plan, i + 1, key)
                yield x
