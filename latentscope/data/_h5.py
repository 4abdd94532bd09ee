"""A uint8 image array in an HDF5 file (spec ``h5:PATH[:DATASET]``).

How the parts of the file are found:

images
    ``DATASET`` when named; else the dataset ``images`` at the root; else the one
    dataset of the file shaped ``(N, H, W, 3)`` (more than one is an error that lists
    them). It must be ``uint8`` with shape ``(N, H, W, 3)``, ``N >= 1``.
ids
    The dataset ``ids`` beside the images (same group), shape ``(N,)``, strings or
    integers; without one the ids are ``"0" .. "N-1"``.
attributes
    Every other 1-D dataset of length ``N`` beside the images with a numeric, boolean
    or string dtype (one per-item attribute each, named like the dataset), except
    ``source_index``, which ``latentscope encode`` writes itself.

The training image cache of the ``keras-ae`` plugin (``MODEL/image_cache.h5``:
``images`` and ``ids`` at the root) is such a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataSourceError
from ._source import DecodedRange, TableSource, check_image_size

__all__ = ["H5Source", "split_h5_spec", "IMAGES_DATASET", "IDS_DATASET"]

#: The image dataset read when the spec names none.
IMAGES_DATASET = "images"
#: The dataset of item ids beside the images.
IDS_DATASET = "ids"
#: Datasets beside the images that are never read as attributes.
_NOT_ATTRIBUTES = (IDS_DATASET, "source_index")


def split_h5_spec(rest: str) -> tuple[str, str | None]:
    """``"PATH[:DATASET]"`` (the part after ``h5:``) -> (PATH, DATASET or None).

    The whole text is the path when it names an existing file; else the text after
    its last ``:`` is the dataset when the text before it names a file.
    """
    if Path(rest).expanduser().is_file():
        return rest, None
    head, sep, dataset = rest.rpartition(":")
    if sep and head and dataset and Path(head).expanduser().is_file():
        return head, dataset
    return rest, None


def _text(values: np.ndarray) -> np.ndarray:
    """Strings (bytes decoded as UTF-8) or integers as an object array of str."""
    return np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values.tolist()],
                    dtype=object)


def _image_like(obj: Any) -> bool:
    import h5py

    return isinstance(obj, h5py.Dataset) and obj.ndim == 4 and obj.shape[-1] == 3


class H5Source(TableSource):
    """The images of a uint8 array ``(N, H, W, 3)`` in an HDF5 file (spec ``h5:PATH[:DATASET]``).

    Parameters
    ----------
    path : str or Path
        The HDF5 file.
    dataset : str, optional
        The image dataset (a path inside the file, e.g. ``"train/images"``). Default:
        ``images`` at the root, else the file's only dataset shaped ``(N, H, W, 3)``.
    image_size : int, (height, width) or None, default=None
        Size of the images returned; ``None`` keeps the file's. Another size resizes
        each whole image (bilinear, no crop).
    strict : bool, default=False
        Kept for the interface (an array has no unreadable items).

    Attributes
    ----------
    path : Path
    dataset : str
        The image dataset's path inside the file (no leading ``/``).
    stored_size : (int, int)
        (height, width) of the images in the file.

    Raises
    ------
    DataSourceError
        No such file, not an HDF5 file, no (or no unambiguous) image dataset, a
        dataset of another dtype or shape, or ``ids`` of the wrong length.

    Notes
    -----
    How ids and attributes are found is described in :mod:`latentscope.data._h5`
    and ``docs/data-sources.md``. Reading copies contiguous slices of the array
    (no decoding), so ``h5:`` sources feed a model at memory speed.

    Examples
    --------
    >>> import h5py, numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "faces.h5")
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("images", data=np.zeros((5, 8, 8, 3), np.uint8))
    ...     _ = f.create_dataset("ids", data=[b"a", b"b", b"c", b"d", b"e"])
    >>> src = H5Source(path)
    >>> len(src), src.image_shape, list(src.item_ids[:2])
    (5, (8, 8, 3), ['a', 'b'])
    """

    _chunk_items = 256

    def __init__(self, path: str | os.PathLike, dataset: str | None = None, *, image_size: Any = None,
                 strict: bool = False) -> None:
        import h5py

        self.path = Path(path).expanduser().resolve()
        where = f"h5:{path}"
        if not self.path.is_file():
            raise DataSourceError(f"{where}: no such file.")
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataSourceError(f"{where}: cannot be read as HDF5 ({' '.join(str(exc).split())}).") from None
        try:
            ds = self._find_images(f, dataset, where)
            self.dataset = ds.name.lstrip("/")
            where = f"h5:{self.path.as_posix()}:{self.dataset}"
            if ds.dtype != np.uint8 or ds.ndim != 4 or ds.shape[-1] != 3 or ds.shape[0] < 1:
                raise DataSourceError(f"{where}: images must be a uint8 array of shape (N, H, W, 3) with N >= 1; "
                                      f"got {ds.dtype} {tuple(ds.shape)}.")
            self._n = int(ds.shape[0])
            self.stored_size = (int(ds.shape[1]), int(ds.shape[2]))
            group = ds.parent
            self._ids_arr = self._read_ids(group, where)
            self._attr = self._read_attributes(group, ds.name)
        except BaseException:
            f.close()
            raise
        self._file, self._images = f, ds
        self.image_size = self.stored_size if image_size is None else check_image_size(image_size, owner="H5Source")
        self.strict = bool(strict)
        self.spec = f"h5:{self.path.as_posix()}:{self.dataset}"

    # ---------------------------------------------------------------- discovery
    @staticmethod
    def _find_images(f: Any, dataset: str | None, where: str) -> Any:
        import h5py

        found: list[str] = []
        f.visititems(lambda name, obj: found.append(name) if _image_like(obj) else None)
        listing = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "") if found else "none"
        if dataset:
            obj = f.get(dataset)
            if not isinstance(obj, h5py.Dataset):
                raise DataSourceError(f"{where}: no dataset {dataset!r} (datasets shaped (N, H, W, 3): {listing}).")
            return obj
        if isinstance(f.get(IMAGES_DATASET), h5py.Dataset):
            return f[IMAGES_DATASET]
        if len(found) == 1:
            return f[found[0]]
        if not found:
            raise DataSourceError(f"{where}: no image dataset: expected {IMAGES_DATASET!r} or one dataset shaped "
                                  "(N, H, W, 3); name it as h5:PATH:DATASET.")
        raise DataSourceError(f"{where}: {len(found)} datasets are shaped (N, H, W, 3) ({listing}); "
                              "name one as h5:PATH:DATASET.")

    def _read_ids(self, group: Any, where: str) -> np.ndarray:
        import h5py

        obj = group.get(IDS_DATASET)
        if not isinstance(obj, h5py.Dataset):
            return np.array([str(i) for i in range(self._n)], dtype=object)
        if obj.shape != (self._n,) or obj.dtype.kind not in "SOUiu":
            raise DataSourceError(f"{where}: {obj.name} must hold one string or integer per image, shape "
                                  f"({self._n},); got {obj.dtype} {tuple(obj.shape)}.")
        return _text(obj[()])

    def _read_attributes(self, group: Any, images_name: str) -> dict[str, np.ndarray]:
        import h5py

        attrs: dict[str, np.ndarray] = {}
        for name, obj in group.items():
            if (name in _NOT_ATTRIBUTES or not isinstance(obj, h5py.Dataset) or obj.name == images_name
                    or obj.shape != (self._n,)):
                continue
            kind = obj.dtype.kind
            if kind in "biuf":
                attrs[name] = np.asarray(obj[()])
            elif kind in "SOU":
                attrs[name] = _text(obj[()])
        return attrs

    # ------------------------------------------------------------- the interface
    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """The stored images at ``rows`` (any order, repeats allowed), at the stored size.

        Contiguous runs of the sorted rows are read with one HDF5 call each.
        """
        rows = np.asarray(rows, dtype=np.int64)
        h, w = self.stored_size
        out = np.empty((rows.size, h, w, 3), dtype=np.uint8)
        if rows.size == 0:
            return out
        if rows[-1] - rows[0] + 1 == rows.size and (rows.size == 1 or bool((np.diff(rows) == 1).all())):
            a = int(rows[0])  # one contiguous run (the common case): straight into the output
            self._images.read_direct(out, np.s_[a : a + rows.size], np.s_[0 : rows.size])
            return out
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        uniq, first = np.unique(sorted_rows, return_index=True)
        block = np.empty((uniq.size, h, w, 3), dtype=np.uint8)
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        pos = 0
        for run in np.split(uniq, breaks):  # h5py serialises calls from several threads itself
            a, b = int(run[0]), int(run[-1]) + 1
            self._images.read_direct(block, np.s_[a:b], np.s_[pos : pos + (b - a)])
            pos += b - a
        out[order] = block[np.searchsorted(uniq, sorted_rows)]
        return out

    @property
    def _split_batches(self) -> bool:  # type: ignore[override]
        return tuple(self.image_size) != self.stored_size  # resizing is worth threads, copying is not

    def _resized(self, images: np.ndarray) -> np.ndarray:
        if tuple(self.image_size) == self.stored_size:
            return images
        from PIL import Image

        th, tw = self.image_size
        return np.stack([np.asarray(Image.fromarray(im).resize((tw, th), Image.Resampling.BILINEAR, reducing_gap=None),
                                    dtype=np.uint8) for im in images])

    def _decode_range(self, start: int, stop: int) -> DecodedRange:
        h, w = self.stored_size
        block = np.empty((stop - start, h, w, 3), dtype=np.uint8)
        self._images.read_direct(block, np.s_[start:stop], np.s_[0 : stop - start])
        return DecodedRange(start, self._resized(block), [None] * (stop - start))

    def close(self) -> None:
        """Close the HDF5 file (the source cannot be read afterwards)."""
        self._file.close()
