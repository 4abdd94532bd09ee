"""z-point stores (HDF5 files or Zarr directories): float32 z-points with ids, per-point columns and provenance.

A store is one HDF5 file written by one writer at a time (in SWMR mode, so that
readers in other processes can follow it) and safe against a writer being killed.
Every row segment carries a checksum (format 2), verified on read; a damaged or truncated
store is an error, and :func:`check_store` finds what is intact. A path ending in
``.zarr`` gives a :class:`ZarrStore` instead: a Zarr directory with the same layout, API
and guarantees (every chunk CRC-32C checked), which dask.distributed workers can read;
:func:`create_sharded_store` / :func:`open_shard` write one in independent parts. See
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
from ._zarr import ZarrStore
from ._zarr_layout import is_zarr_store
from ._zarr_shards import create_sharded_store, open_shard, shard_status


def is_store(obj: object) -> bool:
    """Whether ``obj`` is an open z-point store of any kind this package writes (HDF5 or Zarr).

    Parameters
    ----------
    obj : object

    Returns
    -------
    bool
    """
    return isinstance(obj, (ZStore, ZarrStore))


__all__ = [
    "is_store", "ZStore", "Block", "create_store", "open_store", "import_array", "export_npz", "FORMAT_VERSION",
    "check_store", "salvage_store", "CheckReport",
    "ZarrStore", "is_zarr_store", "create_sharded_store", "open_shard", "shard_status",
]
