"""Reconstruction grids: originals above their reconstructions, as one PNG."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["image_grid", "save_grid"]


def image_grid(rows: list[np.ndarray], *, pad: int = 2, min_tile: int = 96) -> np.ndarray:
    """Tile equally long uint8 image rows (each (n, h, w, 3)) into one image.

    Tiles smaller than ``min_tile`` pixels are enlarged by an integer factor
    (nearest neighbour) so that small models give a readable picture.
    """
    n, h, w, _ = rows[0].shape
    k = max(1, -(-min_tile // max(h, w)))
    hh, ww = h * k, w * k
    out = np.full((len(rows) * (hh + pad) + pad, n * (ww + pad) + pad, 3), 255, dtype=np.uint8)
    for r, imgs in enumerate(rows):
        for c in range(n):
            tile = imgs[c].repeat(k, axis=0).repeat(k, axis=1) if k > 1 else imgs[c]
            y, x = pad + r * (hh + pad), pad + c * (ww + pad)
            out[y : y + hh, x : x + ww] = tile
    return out


def save_grid(path: str | os.PathLike, originals: np.ndarray, reconstructions: np.ndarray) -> None:
    """Write originals (top row) and reconstructions (bottom row) as a PNG."""
    from PIL import Image

    Image.fromarray(image_grid([originals, reconstructions])).save(os.fspath(path), format="PNG")
