"""The model backend contract that plugins implement."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """What latentscope needs from a trained autoencoder.

    Plugins register a class implementing this protocol under the entry-point group
    ``latentscope.backends``; the entry-point name is the ``--backend`` value.

    Attributes
    ----------
    name : str
        Registry name (class attribute), e.g. ``"linear"`` or ``"keras-ae"``.
    description : str
        One line shown by ``latentscope backends``.
    z_dim : int
        Latent dimension of the (fitted or loaded) model.
    image_shape : tuple of int
        (height, width, 3) of the images the model encodes and decodes.

    Methods
    -------
    train(source, out_dir, **options)
        Class method: fit a new model on an image source, save it to ``out_dir``
        (checkpointing and resuming where the backend supports it), return it.
    load(path)
        Class method: load a saved model.
    save(path)
        Save the model so that ``load`` gives identical encodings.
    encode(images, batch_size=...)
        uint8 images (n, h, w, 3) -> float32 z-points (n, z_dim).
    decode(z, batch_size=...)
        float z-points (n, z_dim) -> uint8 images (n, h, w, 3).
    fingerprint()
        A short string identifying the exact weights (stored in store provenance).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    z_dim: int
    image_shape: tuple[int, int, int]

    @classmethod
    def train(cls, source: Any, out_dir: str | Path, **options: Any) -> "Backend": ...

    @classmethod
    def load(cls, path: str | Path) -> "Backend": ...

    def save(self, path: str | Path) -> None: ...

    def encode(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray: ...

    def decode(self, z: np.ndarray, *, batch_size: int = 256) -> np.ndarray: ...

    def fingerprint(self) -> str: ...
