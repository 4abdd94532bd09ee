"""Model backends: the :class:`Backend` protocol, entry-point discovery, and the
dependency-free ``linear`` backend (a linear autoencoder, i.e. PCA of pixels)."""

from ._protocol import Backend
from ._registry import GROUP, get_backend, list_backends, refresh_backends

__all__ = ["Backend", "get_backend", "list_backends", "refresh_backends", "GROUP"]
