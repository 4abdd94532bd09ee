"""Model backends: the :class:`Backend` protocol, entry-point discovery, and the
dependency-free ``linear`` backend (a linear autoencoder, i.e. PCA of pixels)."""

from ._encode import EncodeResult, encode_to_store
from ._protocol import Backend, preferred_batch_size, training_image_cache
from ._registry import GROUP, get_backend, list_backends, refresh_backends
from .linear import LinearBackend

__all__ = ["Backend", "get_backend", "list_backends", "refresh_backends", "GROUP", "LinearBackend",
           "encode_to_store", "EncodeResult", "preferred_batch_size", "training_image_cache"]
