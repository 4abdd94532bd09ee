"""Layout creation: the file of a new store, and the datasets appends add to it.

:func:`create_store_file` builds a complete empty store under a temporary name and
renames it into place; :func:`create_rowwise` adds a row-chunked, growable dataset (a
column, or the string ids) with its checksum table. The layout itself is described in
``docs/store-format.md``; its names and record formats are in :mod:`._format`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._validation import check_positive
from .._version import __version__
from ..exceptions import InvalidParameterError, StoreError
from . import _format as F
from . import _integrity as I
from ._handles import LIBVER, one_line
from ._recovery import writer_alive
from ._strings import TEXT_CHUNK_WIDTH, encode_strings, grown_width, set_attr

__all__ = [
    "FIXED_ATTRS", "now_ns", "iso", "fill_value", "check_column_name", "column_array", "create_checksum_table",
    "create_rowwise", "create_store_file",
]

#: Root attributes that set_provenance may not change.
FIXED_ATTRS = frozenset({"format", "format_version", "z_dim", "created", "library_version", "extra_json"})


def now_ns() -> int:
    """The time now, in ns since the epoch (the unit of the commit and provenance records)."""
    return time.time_ns()


def iso(ns: int) -> str:
    """A time in ns since the epoch as an ISO 8601 UTC string, to the second."""
    return _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).isoformat(timespec="seconds")


def fill_value(dtype: np.dtype) -> Any:
    """The value of rows a batch leaves out: NaN for floats, 0 for integers and bools."""
    return np.nan if dtype.kind in "fc" else 0


def check_column_name(name: Any, owner: str) -> None:
    """Refuse a column name that is not a plain, unreserved HDF5 name."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise InvalidParameterError(f"{owner}: a column name must be a non-empty str without '/'; got {name!r}.")
    if name in F.RESERVED_COLUMN_NAMES:
        raise InvalidParameterError(f"{owner}: {name!r} is reserved and cannot name a column.")


def column_array(arr: np.ndarray, name: str, owner: str) -> np.ndarray:
    """Column values as stored: strings UTF-8 encoded, numbers and bools as given."""
    if arr.dtype.kind in "USO":
        return encode_strings(arr)
    if arr.dtype.kind not in "biufc":
        raise InvalidParameterError(
            f"{owner}: column {name!r} must hold numbers, bools or strings; got dtype {arr.dtype}."
        )
    return arr


def create_checksum_table(h5: h5py.File, path: str) -> h5py.Dataset:
    """The (empty) table of segment checksum records of the row-wise dataset ``path``."""
    return h5.create_dataset(
        f"{F.CHECKSUMS_GROUP}/{path}", shape=(0, len(I.SEGMENT_FIELDS)), maxshape=(None, len(I.SEGMENT_FIELDS)),
        dtype="<u8", chunks=(F.CHECKSUM_CHUNK, len(I.SEGMENT_FIELDS)), fillvalue=0,
    )


def create_rowwise(h5: h5py.File, path: str, values: np.ndarray, n: int, *, chunk_rows: int,
                   checksums: bool) -> h5py.Dataset:
    """Create a row-chunked, growable dataset of ``n`` rows shaped like ``values``' rows.

    Strings (numpy ``S`` values) become a UTF-8 byte matrix; with ``checksums``
    (format 2) the dataset's empty checksum table is created too.
    """
    tail = tuple(values.shape[1:])
    if values.dtype.kind == "S":
        width = grown_width(values.dtype.itemsize)
        ds = h5.create_dataset(
            path, shape=(n, *tail, width), maxshape=(None, *tail, None), dtype=np.uint8,
            chunks=(chunk_rows, *tail, TEXT_CHUNK_WIDTH), fillvalue=0,
        )
        set_attr(ds.attrs, F.ENCODING_ATTR, "utf-8")
    else:
        ds = h5.create_dataset(
            path, shape=(n, *tail), maxshape=(None, *tail), dtype=values.dtype,
            chunks=(chunk_rows, *tail), fillvalue=fill_value(values.dtype),
        )
    if checksums:
        create_checksum_table(h5, path)
    return ds


def create_store_file(
    path: Path,
    z_dim: Any,
    *,
    backend: str,
    model_fingerprint: str,
    source: str,
    overwrite: bool,
    chunk_rows: Any,
    provenance: dict[str, Any],
) -> None:
    """Check the arguments of :func:`~latentscope.store.create_store` and write the empty store file."""
    z_dim = int(check_positive(z_dim, "z_dim", owner="create_store", integer=True, minimum=1))
    if chunk_rows is None:
        chunk_rows = F.rows_per_chunk(z_dim)
    else:
        check_positive(chunk_rows, "chunk_rows", owner="create_store", integer=True, minimum=1)
    fixed = sorted(set(provenance) & FIXED_ATTRS)
    if fixed:
        raise InvalidParameterError(f"create_store: {', '.join(fixed)} cannot be set as provenance.")
    if path.exists():
        if not overwrite:
            raise StoreError(f"{path}: file exists; pass overwrite=True (CLI: --overwrite) to replace it.")
        if path.is_dir():
            raise StoreError(f"{path}: is a directory.")
        if writer_alive(path):
            raise StoreError(f"{path}: another process is writing to this store; not overwriting it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the directory ({one_line(exc)}).") from exc
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    now = now_ns()
    try:
        with h5py.File(tmp, "w", libver=LIBVER, locking=False) as h5:
            _write_layout(h5, z_dim, int(chunk_rows), now, backend=backend, model_fingerprint=model_fingerprint,
                          source=source, provenance=provenance)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise StoreError(f"{path}: cannot create the store ({one_line(exc)}).") from exc
        raise


def _write_layout(h5: h5py.File, z_dim: int, chunk_rows: int, now: int, *, backend: str, model_fingerprint: str,
                  source: str, provenance: dict[str, Any]) -> None:
    """The attributes, datasets and groups of an empty store (format :data:`~._format.FORMAT_VERSION`)."""
    attrs = h5.attrs
    set_attr(attrs, "format", F.FORMAT_NAME)
    attrs["format_version"] = F.FORMAT_VERSION
    attrs["z_dim"] = z_dim
    set_attr(attrs, "backend", str(backend))
    set_attr(attrs, "model_fingerprint", str(model_fingerprint))
    set_attr(attrs, "source", str(source))
    set_attr(attrs, "created", iso(now))
    set_attr(attrs, "updated", iso(now))
    set_attr(attrs, "library_version", __version__)
    extra = {}
    for key, value in provenance.items():
        if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
            set_attr(attrs, key, value.item() if isinstance(value, np.generic) else value)
        else:
            extra[key] = value
    set_attr(attrs, "extra_json", json.dumps(extra, default=str))
    h5.create_dataset(F.Z_DATASET, shape=(0, z_dim), maxshape=(None, z_dim), dtype=np.float32,
                      chunks=(chunk_rows, z_dim))
    h5.create_dataset(F.IDS_DATASET, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(chunk_rows,))
    h5.create_group(F.CHECKSUMS_GROUP)
    create_checksum_table(h5, F.Z_DATASET)
    create_checksum_table(h5, F.IDS_DATASET)
    h5.create_group(F.COLUMNS_GROUP)
    h5.create_group(F.TRASH_GROUP)
    h5.create_dataset(F.PROVENANCE_DATASET, shape=(2, F.PROVENANCE_CHUNK), maxshape=(2, None),
                      dtype=np.uint8, chunks=(1, F.PROVENANCE_CHUNK), fillvalue=0)
    record = np.stack([F.pack_commit(0, 0, now, 0, 0), F.pack_commit(1, 0, now, 0, 0)])
    h5.create_dataset(F.COMMIT_DATASET, data=record)
