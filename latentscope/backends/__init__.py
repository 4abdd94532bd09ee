"""Model backends: the :class:`Backend` protocol, entry-point discovery, and the
dependency-free ``linear`` backend (a linear autoencoder, i.e. PCA of pixels), and the
``onnx`` backend (any ONNX encoder/decoder pair; onnxruntime is imported only on load);
``encode_to_store`` encodes a source into a store, ``encode_sharded`` into a sharded
Zarr store, one task per shard (on a dask cluster when one is given)."""

from ._encode import EncodeResult, encode_to_store
from ._encode_shards import ShardedEncodeResult, encode_sharded
from ._protocol import Backend, preferred_batch_size, training_image_cache
from ._registry import GROUP, get_backend, list_backends, load_model, refresh_backends
from ._onnx import OnnxBackend
from .linear import LinearBackend

__all__ = ["Backend", "get_backend", "list_backends", "refresh_backends", "load_model", "GROUP", "LinearBackend", "OnnxBackend",
           "encode_to_store", "EncodeResult", "encode_sharded", "ShardedEncodeResult", "preferred_batch_size", "training_image_cache"]
