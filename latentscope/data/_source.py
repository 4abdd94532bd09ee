"""The image-source interface shared by every reader (CelebA, folders, synthetic faces)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

__all__ = ["ImageBatch", "ImageSource"]


@dataclass(frozen=True)
class ImageBatch:
    """A batch of decoded images in source order.

    Attributes
    ----------
    start : int
        Index (in the source's order) of the first item of the batch.
    images : ndarray of shape (n, h, w, 3), uint8
    ids : ndarray of str, shape (n,)
        The item names (file names, or indices for synthetic data).
    attributes : dict of str to ndarray of shape (n,)
        Per-item attributes (CelebA's 40 attributes, synthetic face parameters...).
    """

    start: int
    images: np.ndarray
    ids: np.ndarray
    attributes: dict = field(default_factory=dict)


class ImageSource:
    """Base class of image readers.

    Subclasses set ``spec`` (the command-line spelling, e.g. ``"celeba:/data/celeba"``),
    ``image_size`` and implement ``__len__``, ``item_ids`` and ``_load(indices)``.
    Items that cannot be decoded are skipped (recorded in ``skipped``) unless
    ``strict`` is set.
    """

    spec: str = ""
    image_size: tuple[int, int] = (96, 96)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (*self.image_size, 3)

    def iter_batches(self, batch_size: int = 256, *, start: int = 0, stop: int | None = None,
                     workers: int = 2, prefetch: int = 2) -> Iterator[ImageBatch]:  # pragma: no cover
        """Yield :class:`ImageBatch` objects of decoded uint8 images, in order."""
        raise NotImplementedError
