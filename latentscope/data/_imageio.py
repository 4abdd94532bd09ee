"""Image files and Pillow: decoding one file to a fixed-size RGB uint8 array, writing a PNG."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["decode_image", "crop_box", "save_png", "png_bytes", "IMAGE_EXTENSIONS"]

#: File name endings the folder reader picks up (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".pnm", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def crop_box(width: int, height: int, crop: Any, target: tuple[int, int]) -> tuple[float, float, float, float]:
    """The crop ``(left, top, right, bottom)`` of a ``width`` x ``height`` image.

    Parameters
    ----------
    width, height : int
        Size of the decoded image.
    crop : None, "none", "center", "square", int or (left, top, right, bottom)
        ``None``/"none": the whole image (stretched to the target's aspect ratio);
        "center": the largest centred box of the target's aspect ratio; "square":
        the largest centred square; an int ``s``: a centred ``s`` x ``s`` square in
        the coordinates of a ``width``-pixel-wide reference (clipped to the image); a
        4-tuple: that box in the coordinates of the decoded image.
    target : (height, width)
        The output size, for the aspect ratio of "center".
    """
    if crop is None or crop == "none":
        return (0.0, 0.0, float(width), float(height))
    if isinstance(crop, tuple):
        return tuple(float(c) for c in crop)  # type: ignore[return-value]
    if crop == "square":
        side_w = side_h = float(min(width, height))
    elif crop == "center":
        th, tw = target
        side_w = min(float(width), height * tw / th)
        side_h = side_w * th / tw
    else:
        side_w = side_h = float(min(int(crop), width, height))
    left = (width - side_w) / 2
    top = (height - side_h) / 2
    return (left, top, left + side_w, top + side_h)


def decode_image(path: str | os.PathLike, size: tuple[int, int], crop: Any = "center", *, reference_width: int | None = None) -> np.ndarray:
    """Decode an image file, crop it and resize it to ``size`` = (height, width).

    Grey, palette, 16-bit and RGBA images are converted to RGB (alpha is dropped).
    JPEG files are decoded at a reduced scale (Pillow's ``draft``) when the crop is
    still at least as large as the target afterwards, which makes downscaling much
    faster.

    Parameters
    ----------
    path : str or PathLike
    size : (height, width)
    crop : see :func:`crop_box`
    reference_width : int, optional
        For an int ``crop``: the image width the crop side refers to (CelebA's
        178), so that half-size copies crop the same region.

    Returns
    -------
    ndarray of shape (height, width, 3), uint8

    Raises
    ------
    OSError, ValueError, SyntaxError, ...
        Whatever Pillow raises for an unreadable file (callers catch them).
    """
    from PIL import Image

    th, tw = size
    with Image.open(path) as im:
        full_w, full_h = im.size
        if full_w < 1 or full_h < 1:
            raise ValueError(f"empty image ({full_w}x{full_h})")
        c = crop
        if isinstance(crop, int) and not isinstance(crop, bool) and reference_width:
            c = max(1, round(crop * full_w / reference_width))
        box = crop_box(full_w, full_h, c, (th, tw))
        if im.format == "JPEG":
            # ask for the smallest DCT scale that keeps the crop at least target-sized
            scale = min((box[2] - box[0]) / tw, (box[3] - box[1]) / th)
            if scale >= 2:
                im.draft("RGB", (math.ceil(full_w / scale), math.ceil(full_h / scale)))
                fx, fy = im.size[0] / full_w, im.size[1] / full_h
                box = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(im, dtype=np.float64)
            hi = arr.max() if arr.size and arr.max() > 255 else 255.0
            im = Image.fromarray(np.clip(arr * (255.0 / hi), 0, 255).astype(np.uint8), "L")
        if im.mode != "RGB":
            im = im.convert("RGB")
        out = im.resize((tw, th), Image.Resampling.BILINEAR, box=box, reducing_gap=None)
        arr = np.asarray(out, dtype=np.uint8)
    if arr.shape != (th, tw, 3):  # pragma: no cover - defensive
        raise ValueError(f"decoded to shape {arr.shape}, expected {(th, tw, 3)}")
    return arr


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a uint8 (h, w, 3) array as a PNG file.

    Parameters
    ----------
    image : array-like of shape (h, w, 3)
        Converted to uint8.
    path : str or PathLike
        The file; missing parent folders are created.

    Returns
    -------
    Path
        ``path``.
    """
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
    return path


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 (h, w, 3) array as the bytes of a PNG file (for Parquet thumbnails).

    Parameters
    ----------
    image : array-like of shape (h, w, 3)
        Converted to uint8.

    Returns
    -------
    bytes
    """
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
