"""Reading a source's items from an image HDF5 that already holds them decoded.

A training run that decoded its images once into a uint8 cache (the ``keras-ae``
plugin's ``MODEL/image_cache.h5``) holds exactly the bytes the source's decoder
produces. :class:`CachedSource` wraps the source: items whose id the cache holds are
copied from it, the others (items the cache skipped as unreadable, or items the
training never saw) are decoded as usual. Everything else (ids, attributes, spec,
skipping, batch boundaries) is the wrapped source's, so a store written through the
cache equals, row for row, one written from the images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataSourceError
from ._h5 import IMAGES_DATASET, H5Source, split_h5_spec
from ._source import DecodedRange, ImageSource, check_image_size, split_query

__all__ = ["CachedSource", "ImageCacheInfo", "pixel_key"]


@dataclass(frozen=True)
class ImageCacheInfo:
    """Where decoded images of a source are kept: what a backend's optional
    ``image_cache()`` method returns (see ``docs/writing-a-backend.md``).

    Attributes
    ----------
    path : Path
        An HDF5 file readable as an ``h5:`` source (a uint8 ``(N, H, W, 3)`` dataset
        and, beside it, the ``ids`` of the items its rows hold).
    source : str
        The spec of the source those items were decoded from (e.g.
        ``"celeba:/data/celeba"``); a cache is used only for sources whose items
        decode to the same pixels (:func:`pixel_key`).
    dataset : str, default="images"
        The image dataset inside the file.
    """

    path: Path
    source: str
    dataset: str = IMAGES_DATASET


def pixel_key(spec: str) -> str:
    """The part of a source spec that decides an item's pixels, given its id.

    Options that only select items are dropped: ``split`` of ``celeba:`` and the item
    count ``N`` of ``synthetic:N`` (item ``i`` depends on the seed and ``i`` only).
    Two sources with equal keys decode an item with the same id to the same pixels.

    Examples
    --------
    >>> pixel_key("celeba:/data/celeba?split=test")
    'celeba:/data/celeba'
    >>> pixel_key("synthetic:500?seed=3") == pixel_key("synthetic:80?seed=3")
    True
    """
    scheme, _, rest = str(spec).partition(":")
    head, query = split_query(rest)
    query.pop("split", None)
    if scheme == "synthetic":
        head = ""
        query.setdefault("seed", "0")
    opts = "&".join(f"{k}={query[k]}" for k in sorted(query))
    return f"{scheme}:{head}" + (f"?{opts}" if opts else "")


class CachedSource(ImageSource):
    """``source`` with the items held in an image HDF5 read from it instead of decoded.

    Parameters
    ----------
    source : ImageSource
        The source to read (its spec, ids, attributes and order are kept).
    cache : ImageCacheInfo, H5Source, str or PathLike
        The image HDF5 (an :class:`ImageCacheInfo` from a backend, an opened
        :class:`H5Source`, or a path / ``h5:`` spec). Rows are matched to items by id.

    Attributes
    ----------
    source : ImageSource
    cache : H5Source
    rows : ndarray of int64, shape (len(source),)
        The cache row of each source item, -1 for items decoded from the source.
    n_cached : int
        Items read from the cache.

    Raises
    ------
    DataSourceError
        The cache holds images of another source (an :class:`ImageCacheInfo` whose
        ``source`` decodes to other pixels), of another image size, or its ids (or the
        source's) are not unique, so rows cannot be matched to items.

    Examples
    --------
    >>> from latentscope.data import SyntheticFaces           # doctest: +SKIP
    >>> src = CachedSource(SyntheticFaces(6000, image_size=64), ImageCacheInfo(path, "synthetic:6000"))  # doctest: +SKIP
    >>> src.n_cached                                           # doctest: +SKIP
    6000
    """

    def __init__(self, source: ImageSource, cache: Any) -> None:
        if isinstance(cache, ImageCacheInfo):
            if pixel_key(cache.source) != pixel_key(source.spec):
                raise DataSourceError(f"image cache {cache.path}: it holds images of {cache.source!r}, not of "
                                      f"{source.spec!r}; encode without the cache.")
            cache = H5Source(cache.path, cache.dataset)
        elif isinstance(cache, (str, os.PathLike)):
            text = os.fspath(cache)
            cache = H5Source(*split_h5_spec(text[3:] if text.startswith("h5:") else text))
        if not isinstance(cache, H5Source):
            raise DataSourceError(f"CachedSource: cache must be an ImageCacheInfo, an H5Source or a path; "
                                  f"got {type(cache).__name__}.")
        if cache.stored_size != tuple(source.image_size):
            h, w = cache.stored_size
            raise DataSourceError(f"{cache.spec}: the cache holds {h}x{w} images; the source is read at "
                                  f"{source.image_size[0]}x{source.image_size[1]}.")
        self.source = source
        self.cache = cache
        self.rows = self._match(source, cache)
        self.n_cached = int(np.count_nonzero(self.rows >= 0))
        self.spec = source.spec
        self.image_size = tuple(source.image_size)
        self.strict = source.strict
        self._chunk_items = int(getattr(source, "_chunk_items", 16))
        self._split_batches = self.n_cached < len(source)  # only copies: one task per batch

    @staticmethod
    def _match(source: ImageSource, cache: H5Source) -> np.ndarray:
        cache_ids = np.asarray(cache.item_ids, dtype=object)
        index = {item: row for row, item in enumerate(cache_ids.tolist())}
        if len(index) != cache_ids.size:
            raise DataSourceError(f"{cache.spec}: its ids are not unique, so its rows cannot be matched to items.")
        ids = np.asarray(source.item_ids, dtype=object).tolist()
        rows = np.fromiter((index.get(str(item), -1) for item in ids), dtype=np.int64, count=len(ids))
        if len(set(ids)) != len(ids):
            raise DataSourceError(f"{source.spec}: its item ids are not unique, so cache rows cannot be matched "
                                  "to items; encode without the cache.")
        return rows

    # the wrapped source's identity
    def __len__(self) -> int:
        return len(self.source)

    @property
    def item_ids(self) -> np.ndarray:
        return self.source.item_ids

    def _ids(self, start: int, stop: int) -> np.ndarray:
        return self.source._ids(start, stop)

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self.source.attribute_names

    def attributes(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return self.source.attributes(start, stop)

    def with_image_size(self, image_size: Any) -> "ImageSource":
        """Refused for another size: the cache holds images of one size only."""
        if check_image_size(image_size, owner="CachedSource") == self.image_size:
            return self
        raise DataSourceError(f"{self.cache.spec}: the cache holds {self.image_size[0]}x{self.image_size[1]} "
                              f"images; they cannot be read at {image_size!r}.")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "cache": self.cache.spec, "n_cached": self.n_cached}

    def _decode_range(self, start: int, stop: int) -> DecodedRange:
        rows = self.rows[start:stop]
        hit = rows >= 0
        if hit.all():
            return DecodedRange(start, self.cache.read_rows(rows), [None] * (stop - start))
        h, w = self.image_size
        images = np.zeros((stop - start, h, w, 3), dtype=np.uint8)
        errors: list = [None] * (stop - start)
        if hit.any():
            images[hit] = self.cache.read_rows(rows[hit])
        miss = np.flatnonzero(~hit)
        for run in np.split(miss, np.flatnonzero(np.diff(miss) != 1) + 1):
            a, b = int(run[0]), int(run[-1]) + 1
            part = self.source._decode_range(start + a, start + b)
            images[a:b] = part.images
            errors[a:b] = part.errors
        return DecodedRange(start, images, errors)
