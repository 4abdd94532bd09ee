"""HDF5 z-point stores: float32 z-points with ids, per-point columns and provenance.

See ``docs/store-format.md`` for the on-disk layout.
"""

from ._format import FORMAT_VERSION
from ._store import Block, ZStore, create_store, open_store

__all__ = ["ZStore", "Block", "create_store", "open_store", "FORMAT_VERSION"]
