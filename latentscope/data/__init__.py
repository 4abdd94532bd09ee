"""Image sources: CelebA, image folders and procedural synthetic faces.

Every source is an :class:`ImageSource`: an ordered, deterministic list of items read
in batches of RGB uint8 images (:class:`ImageBatch`), decoded in worker threads with
prefetch. Name a source with :func:`open_source`::

    celeba:PATH        CelebA's layout (img_align_celeba/*.jpg + annotation files)
    folder:PATH        every image file under PATH (JPEG, PNG, PGM, ...), recursively
    synthetic:N        N procedural faces (the embedded default data)
    h5:PATH[:DATASET]  a uint8 image array (N, H, W, 3) in an HDF5 file, with its ids
                       and attributes when present (see :class:`H5Source`)

Options may follow a ``?``: ``celeba:/data/celeba?split=test``,
``synthetic:5000?seed=3``, ``folder:/data/lfw?crop=square``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..exceptions import InvalidParameterError
from ._cached import CachedSource, ImageCacheInfo, pixel_key
from ._celeba import SPLITS, CelebASource
from ._folder import FolderSource
from ._h5 import H5Source, split_h5_spec
from ._imageio import IMAGE_EXTENSIONS, decode_image
from ._source import (
    WORKERS_ENV,
    DecodedRange,
    ImageBatch,
    ImageSource,
    check_image_size,
    decode_each,
    default_workers,
    split_query,
)
from ._synthetic import FACE_ATTRIBUTES, EYE_COLORS, HAIR_COLORS, SyntheticFaces, render_faces, sample_face_params

__all__ = [
    "open_source",
    "ImageSource",
    "ImageBatch",
    "CelebASource",
    "FolderSource",
    "SyntheticFaces",
    "H5Source",
    "CachedSource",
    "ImageCacheInfo",
    "pixel_key",
    "render_faces",
    "sample_face_params",
    "decode_image",
    "check_image_size",
    "default_workers",
    "WORKERS_ENV",
    "DecodedRange",
    "decode_each",
    "FACE_ATTRIBUTES",
    "HAIR_COLORS",
    "EYE_COLORS",
    "IMAGE_EXTENSIONS",
    "SPLITS",
]

_SCHEMES = ("celeba", "folder", "synthetic", "h5")
_SPEC_FORMS = "'celeba:PATH', 'folder:PATH', 'synthetic:N' or 'h5:PATH[:DATASET]'"
_H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def open_source(
    spec: str | os.PathLike | ImageSource,
    image_size: Any = (96, 96),
    strict: bool = False,
    split: str | None = None,
    seed: int = 0,
    *,
    crop: Any = None,
) -> ImageSource:
    """Open an image source named on the command line.

    Parameters
    ----------
    spec : str, PathLike or ImageSource
        ``"celeba:PATH"``, ``"folder:PATH"``, ``"synthetic:N"`` or
        ``"h5:PATH[:DATASET]"``, optionally followed by ``?split=...``, ``?seed=...``
        or ``?crop=...``. A bare folder path is read as CelebA when it holds
        ``img_align_celeba/``, else as an image folder; a bare path to an existing
        ``.h5``/``.hdf5`` file as ``h5:``. An :class:`ImageSource` is returned resized
        to ``image_size``.
    image_size : int, (height, width) or "HxW", default=(96, 96)
        Size the images are decoded to (the model's input size).
    strict : bool, default=False
        Raise on the first unreadable file instead of skipping and listing it.
    split : {"train", "val", "test"} or None, default=None
        CelebA only: one partition of ``list_eval_partition.txt``.
    seed : int, default=0
        Synthetic faces only: the seed (item ``i`` depends only on seed and ``i``).
    crop : str or int, optional
        The crop (see :class:`CelebASource` and :class:`FolderSource`); default
        "square" for CelebA and "center" for folders.

    Returns
    -------
    ImageSource

    Raises
    ------
    InvalidParameterError
        A malformed spec, or an option the source kind does not take.
    DataSourceError
        The folder or file does not exist or holds no images; an ``h5:`` dataset is
        not a uint8 array (N, H, W, 3).

    Examples
    --------
    >>> src = open_source("synthetic:100", image_size=64)
    >>> len(src), src.image_shape, src.spec
    (100, (64, 64, 3), 'synthetic:100?seed=0')
    """
    size = check_image_size(image_size, owner="open_source")
    if isinstance(spec, ImageSource):
        return spec if spec.image_size == size else spec.with_image_size(size)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec:
        raise InvalidParameterError(f"open_source: spec must be {_SPEC_FORMS}; got {spec!r}.")
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in _SCHEMES:
        bare = Path(spec)
        if bare.is_file() and bare.suffix.lower() in _H5_SUFFIXES:
            scheme, rest = "h5", spec
        elif scheme in _SCHEMES or not bare.is_dir():
            raise InvalidParameterError(
                f"open_source: spec must be {_SPEC_FORMS} (or an existing folder); got {spec!r}."
            )
        else:
            scheme, rest = ("celeba" if (bare / "img_align_celeba").is_dir() else "folder"), spec
    rest, query = split_query(rest)
    split = query.get("split", split)
    crop = query.get("crop", crop)
    if "seed" in query:
        try:
            seed = int(query["seed"])
        except ValueError:
            raise InvalidParameterError(f"open_source: seed in {spec!r} must be an integer; got {query['seed']!r}.") from None
    if split is not None and scheme != "celeba":
        raise InvalidParameterError(f"open_source: split applies to celeba: sources only; got split={split!r} for {spec!r}.")
    if scheme == "synthetic":
        if crop is not None:
            raise InvalidParameterError(f"open_source: crop does not apply to synthetic: sources; got crop={crop!r}.")
        text = rest.strip() or "1000"
        try:
            n = int(text.replace("_", ""))
        except ValueError:
            raise InvalidParameterError(f"open_source: synthetic:N needs an integer N >= 1; got {spec!r}.") from None
        return SyntheticFaces(n, image_size=size, seed=seed)
    if not rest:
        what = "an HDF5 file path" if scheme == "h5" else "a folder path"
        raise InvalidParameterError(f"open_source: {scheme}:PATH needs {what}; got {spec!r}.")
    if scheme == "h5":
        if crop is not None:
            raise InvalidParameterError(f"open_source: crop does not apply to h5: sources; got crop={crop!r}.")
        path, dataset = split_h5_spec(rest)
        return H5Source(path, dataset, image_size=size, strict=strict)
    if scheme == "celeba":
        return CelebASource(rest, image_size=size, split=split, crop="square" if crop is None else crop, strict=strict)
    return FolderSource(rest, image_size=size, crop="center" if crop is None else crop, strict=strict)
