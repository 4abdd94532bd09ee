"""Constants of the on-disk z-point store format (see docs/store-format.md)."""

from __future__ import annotations

FORMAT_NAME = "latentscope.zstore"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

#: Root attribute holding the number of committed rows. It is written only after the
#: rows it counts were flushed to disk, so rows past it (a crashed append) are ignored.
COMMITTED_ATTR = "n_committed"

Z_DATASET = "z"
IDS_DATASET = "ids"
COLUMNS_GROUP = "columns"

#: Target chunk size in bytes for the row-chunked z dataset (about 1 MiB).
CHUNK_BYTES = 1 << 20


def rows_per_chunk(z_dim: int, itemsize: int = 4) -> int:
    """Rows of ``z_dim`` values of ``itemsize`` bytes that fit one ~1 MiB chunk."""
    return max(1, CHUNK_BYTES // (int(z_dim) * itemsize))
