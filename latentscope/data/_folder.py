"""A plain folder of image files (JPEG, PNG, PGM, ... of any size), read recursively."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataSourceError, InvalidParameterError
from ._imageio import IMAGE_EXTENSIONS, decode_image
from ._source import DecodedRange, TableSource, check_image_size, decode_each

__all__ = ["FolderSource"]

_CROPS = ("center", "square", "none")


def _check_crop(crop: Any, owner: str) -> Any:
    if crop is None:
        return "none"
    if isinstance(crop, str) and crop.isdigit():
        crop = int(crop)
    if crop in _CROPS or (isinstance(crop, int) and not isinstance(crop, bool) and crop >= 1):
        return crop
    raise InvalidParameterError(f"{owner}: crop must be one of {', '.join(map(repr, _CROPS))} or a side length >= 1; got {crop!r}.")


def list_images(root: Path, recursive: bool = True) -> list[str]:
    """Image files under ``root`` as sorted POSIX paths relative to it (hidden entries skipped)."""
    found: list[str] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(root)
            found.extend((rel / f).as_posix() for f in filenames if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS))
    else:
        found = [e.name for e in os.scandir(root) if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


class FolderSource(TableSource):
    """The image files of a folder, in sorted path order (spec ``folder:PATH``).

    Parameters
    ----------
    path : str or Path
        The folder; sub-folders are read too unless ``recursive=False``.
    image_size : int or (height, width), default=(96, 96)
    crop : {"center", "square", "none"} or int, default="center"
        "center" crops the largest centred box of the target's aspect ratio (no
        distortion); "square" the largest centred square; "none" stretches the whole
        image; an int a centred square of that side.
    strict : bool, default=False
        Raise on the first unreadable file instead of skipping it.
    recursive : bool, default=True

    Attributes
    ----------
    files : list of str
        The image paths relative to ``path`` (the item ids).

    Notes
    -----
    When the images sit in sub-folders, each item has the attribute ``label``: the
    path of its sub-folder (e.g. the person's name in LFW's layout).
    """

    def __init__(self, path: str | os.PathLike, *, image_size: Any = (96, 96), crop: Any = "center",
                 strict: bool = False, recursive: bool = True) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise DataSourceError(f"folder:{path}: no such folder.")
        self.root = root.resolve()
        self.image_size = check_image_size(image_size, owner="FolderSource")
        self.crop = _check_crop(crop, "FolderSource")
        self.strict = bool(strict)
        self.recursive = bool(recursive)
        self.files = list_images(self.root, self.recursive)
        if not self.files:
            raise DataSourceError(
                f"folder:{path}: no image files ({', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS[:4])}, ...) found"
                f"{' in it or its sub-folders' if recursive else ''}."
            )
        self._ids_arr = np.array(self.files, dtype=object)
        labels = [f.rsplit("/", 1)[0] if "/" in f else "" for f in self.files]
        self._attr = {"label": np.array(labels, dtype=object)} if any(labels) else {}
        query = [] if self.crop == "center" else [f"crop={self.crop}"]
        self.spec = f"folder:{self.root.as_posix()}" + (f"?{'&'.join(query)}" if query else "")

    def _decode_range(self, start: int, stop: int) -> DecodedRange:
        return decode_each(self, start, stop, lambda i: decode_image(self.root / self.files[i], self.image_size, self.crop))
