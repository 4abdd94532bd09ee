"""CelebA in its standard layout: ``img_align_celeba/*.jpg`` plus the annotation files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataSourceError, InvalidParameterError
from ._imageio import decode_image
from ._source import DecodedRange, TableSource, check_image_size, decode_each

__all__ = ["CelebASource", "SPLITS"]

#: Split names and their code in ``list_eval_partition.txt``.
SPLITS = {"train": 0, "val": 1, "test": 2}
#: Width of CelebA's aligned images, the reference of integer crop sides.
REFERENCE_WIDTH = 178
_NAMED_CROPS = {"square": "square", "face": 140, "none": "none"}


def _read_table(path: Path) -> tuple[list[str], list[str], list[list[str]]]:
    """Parse a CelebA annotation table (the .txt layout or Kaggle's .csv layout).

    Returns (column names, file names, value rows as strings).
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    csv = path.suffix.lower() == ".csv"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return [], [], []
    if not csv and lines[0].strip().isdigit():  # the count line
        lines = lines[1:]
    split = (lambda s: s.strip().split(",")) if csv else str.split
    first = split(lines[0])
    names: list[str] = []
    rows = lines
    if not first[0].lower().endswith((".jpg", ".jpeg", ".png")):  # a header line of column names
        # CelebA's .txt header lists the attribute names only; a .csv header starts with "image_id"
        names = first[1:] if csv or first[0].lower() == "image_id" else first
        rows = lines[1:]
    files, values = [], []
    for ln in rows:
        parts = split(ln)
        files.append(parts[0])
        values.append(parts[1:])
    return names, files, values


def _find_file(root: Path, stem: str) -> Path | None:
    for cand in (root / f"{stem}.txt", root / f"{stem}.csv", root.parent / f"{stem}.txt", root.parent / f"{stem}.csv"):
        if cand.is_file():
            return cand
    return None


class CelebASource(TableSource):
    """CelebA's aligned face images with their attributes (spec ``celeba:PATH``).

    Parameters
    ----------
    path : str or Path
        The CelebA folder holding ``img_align_celeba/`` (or a folder whose name starts
        with ``img_align_celeba``, e.g. a half-size copy) and the annotation files
        ``list_attr_celeba.txt``, ``list_eval_partition.txt`` and, optionally,
        ``identity_CelebA.txt`` (Kaggle's ``.csv`` versions work too).
    image_size : int or (height, width), default=(96, 96)
    split : {"train", "val", "test"} or None, default=None
        Keep only one partition of ``list_eval_partition.txt`` (None: all images).
    crop : {"square", "face", "none"} or int, default="square"
        "square": the centred 178x178 square of the 178x218 image (face, hair and
        some background); "face": the centred 140x140 square used by RAE/WAE; an int:
        a centred square of that side (in full-size pixels); "none": the whole image,
        stretched.
    strict : bool, default=False
        Raise on the first unreadable file instead of skipping it.

    Attributes
    ----------
    files : list of str
        The image file names, sorted (the item ids).
    attribute_names : tuple of str
        CelebA's 40 binary attributes (int8, +1 / -1 as in the file, 0 where an image
        is missing from the file), ``partition`` (0 train, 1 val, 2 test, -1 unknown)
        and ``identity`` (-1 unknown) when those files are present.
    """

    _chunk_items = 16

    def __init__(self, path: str | os.PathLike, *, image_size: Any = (96, 96), split: str | None = None,
                 crop: Any = "square", strict: bool = False) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise DataSourceError(f"celeba:{path}: no such folder.")
        self.root = root.resolve()
        self.image_size = check_image_size(image_size, owner="CelebASource")
        self.strict = bool(strict)
        if split is not None and split not in SPLITS:
            raise InvalidParameterError(f"CelebASource: split must be one of 'train', 'val', 'test' or None; got {split!r}.")
        self.split = split
        if isinstance(crop, str) and crop.isdigit():
            crop = int(crop)
        if not (crop in _NAMED_CROPS or (isinstance(crop, int) and not isinstance(crop, bool) and crop >= 1)):
            raise InvalidParameterError(f"CelebASource: crop must be 'square', 'face', 'none' or a side length >= 1; got {crop!r}.")
        self.crop = crop
        self._crop = _NAMED_CROPS.get(crop, crop) if isinstance(crop, str) else crop
        self.image_dir = self._find_image_dir()
        files = sorted(e.name for e in os.scandir(self.image_dir) if e.is_file() and e.name.lower().endswith((".jpg", ".jpeg", ".png")))
        if not files:
            raise DataSourceError(f"celeba:{path}: {self.image_dir.name}/ holds no .jpg files.")
        self._attr: dict[str, np.ndarray] = {}
        self._load_attributes(files)
        part = self._load_partition(files)
        if split is not None:
            if part is None:
                raise DataSourceError(f"celeba:{path}: split={split!r} needs list_eval_partition.txt, which is missing.")
            keep = part == SPLITS[split]
            files = [f for f, k in zip(files, keep) if k]
            self._attr = {k: v[keep] for k, v in self._attr.items()}
            if not files:
                raise DataSourceError(f"celeba:{path}: no images of split {split!r}.")
        self.files = files
        self._ids_arr = np.array(files, dtype=object)
        query = ([f"split={split}"] if split else []) + ([] if crop == "square" else [f"crop={crop}"])
        self.spec = f"celeba:{self.root.as_posix()}" + (f"?{'&'.join(query)}" if query else "")

    def _find_image_dir(self) -> Path:
        std = self.root / "img_align_celeba"
        # Kaggle's archive nests the folder once more: img_align_celeba/img_align_celeba/
        if std.is_dir():
            nested = std / "img_align_celeba"
            return nested if nested.is_dir() else std
        cands = sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("img_align_celeba"))
        if cands:
            return cands[0]
        if any(e.name.lower().endswith(".jpg") for e in os.scandir(self.root)):
            return self.root
        raise DataSourceError(f"celeba:{self.root}: no img_align_celeba/ folder (CelebA's layout: img_align_celeba/*.jpg, "
                              "list_attr_celeba.txt, list_eval_partition.txt).")

    def _load_attributes(self, files: list[str]) -> None:
        index = {f: i for i, f in enumerate(files)}
        path = _find_file(self.root, "list_attr_celeba")
        if path is not None:
            names, rows_files, values = _read_table(path)
            if names and values:
                table = np.zeros((len(files), len(names)), dtype=np.int8)
                for f, vals in zip(rows_files, values):
                    i = index.get(f)
                    if i is not None and len(vals) == len(names):
                        table[i] = np.asarray(vals, dtype=np.int8)
                for j, name in enumerate(names):
                    self._attr[name] = table[:, j].copy()
        path = _find_file(self.root, "identity_CelebA")
        if path is not None:
            _, rows_files, values = _read_table(path)
            ident = np.full(len(files), -1, dtype=np.int32)
            for f, vals in zip(rows_files, values):
                i = index.get(f)
                if i is not None and vals:
                    ident[i] = int(vals[0])
            self._attr["identity"] = ident

    def _load_partition(self, files: list[str]) -> np.ndarray | None:
        path = _find_file(self.root, "list_eval_partition")
        if path is None:
            return None
        index = {f: i for i, f in enumerate(files)}
        part = np.full(len(files), -1, dtype=np.int8)
        _, rows_files, values = _read_table(path)
        for f, vals in zip(rows_files, values):
            i = index.get(f)
            if i is not None and vals:
                part[i] = int(vals[0])
        self._attr["partition"] = part
        return part

    def _decode_range(self, start: int, stop: int) -> DecodedRange:
        return decode_each(
            self, start, stop,
            lambda i: decode_image(self.image_dir / self.files[i], self.image_size, self._crop, reference_width=REFERENCE_WIDTH),
        )
