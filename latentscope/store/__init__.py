"""HDF5 z-point stores: float32 z-points with ids, per-point columns and provenance.

A store is one HDF5 file written by one writer at a time (in SWMR mode, so that
readers in other processes can follow it) and safe against a writer being killed.
Every row segment carries a checksum (format 2), verified on read; a damaged or truncated
store is an error, and :func:`check_store` finds what is intact. See
``docs/store-format.md`` for the layout and the guarantees.

Examples
--------
>>> from latentscope.store import create_store, open_store  # doctest: +SKIP
>>> with create_store("z.h5", z_dim=256, backend="keras-ae") as store:  # doctest: +SKIP
...     store.append(z_batch, ids=image_ids)
>>> with open_store("z.h5") as store:  # doctest: +SKIP
...     for block in store.iter_blocks():  # chunk-aligned blocks of at most max_bytes=64 MiB
...         ...
"""

from ._check import CheckReport, check_store, salvage_store
from ._format import FORMAT_VERSION
from ._store import Block, ZStore, create_store, open_store
from ._transfer import export_npz, import_array

__all__ = [
    "ZStore", "Block", "create_store", "open_store", "import_array", "export_npz", "FORMAT_VERSION",
    "check_store", "salvage_store", "CheckReport",
]
