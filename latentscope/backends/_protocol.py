"""The model backend contract that plugins implement."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..exceptions import BackendError, InvalidParameterError

__all__ = ["Backend", "preferred_batch_size", "training_image_cache"]

#: Batch size used when a backend states no preference.
FALLBACK_BATCH_SIZE = 256


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
    encode(images, batch_size=None)
        uint8 images (n, h, w, 3) -> float32 z-points (n, z_dim).
    decode(z, batch_size=None)
        float z-points (n, z_dim) -> uint8 images (n, h, w, 3).
    fingerprint()
        A short string identifying the exact weights (stored in store provenance).

    Notes
    -----
    ``batch_size`` is the device batch; ``None`` means the backend's own choice,
    resolved with :func:`preferred_batch_size` (``preferred_batch_size(self, task,
    batch_size)``). A backend may define ``default_batch_size(task)`` (``task`` is
    ``"encode"`` or ``"decode"``) returning the device batch that suits the hardware
    it runs on; :func:`preferred_batch_size` asks it. Code that calls a backend
    resolves the batch the same way, once, so that every command (``encode``,
    ``sample``, ``evaluate``, ``filaments``) uses the backend's preference unless
    ``--batch-size`` is given.

    A backend that decodes its training images once into a uint8 HDF5 cache may
    define ``image_cache()`` returning a :class:`latentscope.data.ImageCacheInfo`
    (the file, its image dataset and the spec of the source it was decoded from), or
    None when the model has none; ``latentscope encode --from-cache`` reads the items
    it holds from it (:func:`training_image_cache`).
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

    def encode(self, images: np.ndarray, *, batch_size: int | None = None) -> np.ndarray: ...

    def decode(self, z: np.ndarray, *, batch_size: int | None = None) -> np.ndarray: ...

    def fingerprint(self) -> str: ...


def preferred_batch_size(backend: Any, task: str = "encode", batch_size: int | None = None, *,
                         owner: str | None = None) -> int:
    """The batch size to use for ``task`` ("encode" or "decode") with ``backend``.

    ``batch_size`` when one is given (an int >= 1); else the backend's optional
    ``default_batch_size(task)`` method (e.g. 1024 for encoding on a GPU, 256 on
    CPUs for ``keras-ae``); backends without one get ``FALLBACK_BATCH_SIZE`` (256).
    This is the one place a batch size is resolved: backends call it for their
    ``batch_size=None`` default, and so does every caller of ``encode``/``decode``.

    Parameters
    ----------
    backend : Backend
    task : {"encode", "decode"}, default="encode"
    batch_size : int, optional
        An explicit choice (``--batch-size``); None asks the backend.
    owner : str, optional
        Who asks, for the message of a bad ``batch_size`` (default: the backend's name).

    Returns
    -------
    int

    Raises
    ------
    InvalidParameterError
        ``task`` is not "encode" or "decode", or ``batch_size`` is not an int >= 1.
    BackendError
        The backend's method returned something other than a positive int.

    Examples
    --------
    >>> from latentscope.backends import LinearBackend, preferred_batch_size
    >>> preferred_batch_size(LinearBackend, "decode"), preferred_batch_size(LinearBackend, "decode", 64)
    (256, 64)
    """
    if task not in ("encode", "decode"):
        raise InvalidParameterError(f"preferred_batch_size: task must be 'encode' or 'decode'; got {task!r}.")
    name = getattr(backend, "name", type(backend).__name__)
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InvalidParameterError(f"{owner or name}: batch_size must be an integer >= 1; got {batch_size!r}.")
        return int(batch_size)
    method = getattr(backend, "default_batch_size", None)
    if not callable(method):
        return FALLBACK_BATCH_SIZE
    value = method(task)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BackendError(f"backend {name!r}: default_batch_size({task!r}) must return an int >= 1; got {value!r}.")
    return int(value)


def training_image_cache(backend: Any) -> Any:
    """The training image cache ``backend`` exposes, as an :class:`~latentscope.data.ImageCacheInfo`.

    Asks the backend's optional ``image_cache()`` method (``keras-ae``:
    ``MODEL/image_cache.h5``, written while training).

    Raises
    ------
    BackendError
        The backend has no ``image_cache`` method, its model keeps no cache (the
        method returned None), or it returned something other than an
        ``ImageCacheInfo``.
    """
    from ..data import ImageCacheInfo

    name = getattr(backend, "name", type(backend).__name__)
    method = getattr(backend, "image_cache", None)
    if not callable(method):
        raise BackendError(f"backend {name!r} keeps no training image cache (it has no image_cache() method); "
                           "encode without --from-cache.")
    info = method()
    if info is None:
        raise BackendError(f"backend {name!r}: this model has no training image cache; encode without --from-cache.")
    if not isinstance(info, ImageCacheInfo):
        raise BackendError(f"backend {name!r}: image_cache() must return a latentscope.data.ImageCacheInfo or None; "
                           f"got {type(info).__name__}.")
    return info
