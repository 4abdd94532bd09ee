"""The HDF5 z-point store: float32 z-points, ids, per-point columns and provenance."""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np

from .._version import __version__
from ..exceptions import (
    InvalidParameterError,
    NonFiniteError,
    StoreError,
    StoreFormatError,
    StoreReadOnlyError,
)
from . import _format as F

__all__ = ["ZStore", "Block", "open_store", "create_store"]

_PROVENANCE_KEYS = ("backend", "model_fingerprint", "source", "created", "updated", "library_version")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Block:
    """One block of consecutive committed rows read from a store.

    Attributes
    ----------
    start : int
        Index of the first row of the block.
    z : ndarray of shape (n_rows, z_dim), float32
        The z-points.
    columns : dict of str to ndarray
        The requested per-point columns for the same rows.
    ids : ndarray of str or None
        Row ids, when requested.
    """

    start: int
    z: np.ndarray
    columns: dict = field(default_factory=dict)
    ids: np.ndarray | None = None

    @property
    def stop(self) -> int:
        return self.start + self.z.shape[0]


class ZStore:
    """A z-point store in one HDF5 file.

    Open an existing store with :func:`open_store` (or ``ZStore(path, mode)``), create
    a new one with :func:`create_store`. The store is a context manager.

    Parameters
    ----------
    path : str or Path
        The HDF5 file.
    mode : {"r", "a"}, default="r"
        ``"r"`` reads only; ``"a"`` allows appends and new columns.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r") -> None:
        if mode not in ("r", "a"):
            raise InvalidParameterError(f"ZStore: mode must be 'r' or 'a'; got {mode!r}.")
        self.path = Path(path)
        self.mode = mode
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such file.")
        if not h5py.is_hdf5(self.path):
            raise StoreFormatError(f"{self.path}: not an HDF5 file.")
        try:
            self._h5 = h5py.File(self.path, "r" if mode == "r" else "r+")
        except OSError as exc:
            if mode == "a" and not os.access(self.path, os.W_OK):
                raise StoreReadOnlyError(f"{self.path}: the file is read-only; cannot open it for appending.") from exc
            raise StoreError(f"{self.path}: cannot open the store ({exc}).") from exc
        try:
            self._check_format()
        except Exception:
            self._h5.close()
            raise
        self.z_dim = int(self._h5.attrs["z_dim"])

    # -- format -------------------------------------------------------------------------
    def _check_format(self) -> None:
        attrs = self._h5.attrs
        if attrs.get("format") != F.FORMAT_NAME or F.Z_DATASET not in self._h5:
            raise StoreFormatError(f"{self.path}: an HDF5 file, but not a latentscope z-point store.")
        version = int(attrs.get("format_version", -1))
        if version not in F.SUPPORTED_VERSIONS:
            raise StoreFormatError(
                f"{self.path}: store format version {version} is not supported by latentscope {__version__} "
                f"(supported: {', '.join(map(str, F.SUPPORTED_VERSIONS))})."
            )

    # -- basic properties ---------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Number of committed rows."""
        return int(self._h5.attrs[F.COMMITTED_ATTR])

    def __len__(self) -> int:
        return self.n_rows

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.z_dim)

    @property
    def provenance(self) -> dict[str, Any]:
        """Provenance attributes (format, backend, fingerprint, source, times, ...)."""
        out: dict[str, Any] = {}
        for key, value in self._h5.attrs.items():
            if key == "extra_json":
                continue
            out[key] = value.item() if isinstance(value, np.generic) else value
        out.update(json.loads(self._h5.attrs.get("extra_json", "{}")))
        return out

    @property
    def column_names(self) -> list[str]:
        """Names of the per-point columns."""
        return sorted(self._h5[F.COLUMNS_GROUP].keys()) if F.COLUMNS_GROUP in self._h5 else []

    @property
    def nbytes_on_disk(self) -> int:
        return self.path.stat().st_size

    def __repr__(self) -> str:
        return f"<ZStore {str(self.path)!r}: {self.n_rows} rows x z_dim {self.z_dim}, mode {self.mode!r}>"

    # -- context ------------------------------------------------------------------------
    def close(self) -> None:
        if getattr(self, "_h5", None) is not None and self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> "ZStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------
    def _require_writable(self) -> None:
        if self.mode != "a":
            raise StoreReadOnlyError(f"{self.path}: the store is open read-only; open it with mode='a' to write.")

    def set_provenance(self, **values: Any) -> None:
        """Set provenance values (strings and numbers as attributes, the rest as JSON)."""
        self._require_writable()
        extra = json.loads(self._h5.attrs.get("extra_json", "{}"))
        for key, value in values.items():
            if isinstance(value, (str, int, float, bool, np.integer, np.floating)) and key not in extra:
                self._h5.attrs[key] = value
            else:
                extra[key] = value
        self._h5.attrs["extra_json"] = json.dumps(extra, default=str)
        self._h5.attrs["updated"] = _now()
        self._h5.flush()

    def append(
        self,
        z: Any,
        *,
        ids: Sequence[Any] | None = None,
        columns: Mapping[str, Any] | None = None,
        on_nonfinite: str = "raise",
    ) -> int:
        """Append a batch of z-points; return the number of rows written.

        The committed row count is recorded only after the data is flushed, so a
        process killed during ``append`` leaves the store at the previous batch.

        Parameters
        ----------
        z : array-like of shape (n, z_dim)
        ids : sequence of str or int, optional
            One id per row; defaults to the running row index.
        columns : mapping of str to array-like, optional
            Per-point values for the same rows; each must have ``n`` rows.
        on_nonfinite : {"raise", "skip"}, default="raise"
            Rows with NaN or inf are refused (``"raise"``, naming the first row) or
            dropped and counted in the provenance attribute ``n_skipped_nonfinite``.
        """
        self._require_writable()
        if on_nonfinite not in ("raise", "skip"):
            raise InvalidParameterError(f"append: on_nonfinite must be 'raise' or 'skip'; got {on_nonfinite!r}.")
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InvalidParameterError(
                f"append: z must have shape (n, {self.z_dim}) to match the store's z_dim; got {z.shape}."
            )
        n = z.shape[0]
        start = self.n_rows
        if ids is None:
            ids_arr = np.array([str(i) for i in range(start, start + n)], dtype=object)
        else:
            ids_arr = np.asarray([str(i) for i in ids], dtype=object)
            if ids_arr.shape[0] != n:
                raise InvalidParameterError(f"append: ids must have {n} entries (one per row); got {ids_arr.shape[0]}.")
        cols = {k: np.asarray(v) for k, v in (columns or {}).items()}
        for name, values in cols.items():
            if values.shape[:1] != (n,):
                raise InvalidParameterError(f"append: column {name!r} must have {n} rows; got shape {values.shape}.")
        finite = np.isfinite(z).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            if on_nonfinite == "raise":
                raise NonFiniteError(
                    f"append: z holds non-finite values in {bad.size} rows (first at batch row {int(bad[0])}, "
                    f"store row {start + int(bad[0])}); pass on_nonfinite='skip' to drop them."
                )
            z, ids_arr = z[finite], ids_arr[finite]
            cols = {k: v[finite] for k, v in cols.items()}
            self._h5.attrs["n_skipped_nonfinite"] = int(self._h5.attrs.get("n_skipped_nonfinite", 0)) + int(bad.size)
            n = z.shape[0]
        if n == 0:
            return 0
        stop = start + n
        zds = self._h5[F.Z_DATASET]
        if zds.shape[0] < stop:
            zds.resize(stop, axis=0)
        zds[start:stop] = z.astype(np.float32, copy=False)
        idds = self._h5[F.IDS_DATASET]
        if idds.shape[0] < stop:
            idds.resize(stop, axis=0)
        idds[start:stop] = ids_arr
        group = self._h5.require_group(F.COLUMNS_GROUP)
        for name, values in cols.items():
            ds = self._require_column(group, name, values, start)
            if ds.shape[0] < stop:
                ds.resize(stop, axis=0)
            ds[start:stop] = values.astype(ds.dtype, copy=False)
        self._h5.flush()
        self._h5.attrs[F.COMMITTED_ATTR] = stop
        self._h5.attrs["updated"] = _now()
        self._h5.flush()
        return n

    def _require_column(self, group: h5py.Group, name: str, values: np.ndarray, start: int) -> h5py.Dataset:
        if name in group:
            ds = group[name]
            if ds.shape[1:] != values.shape[1:]:
                raise InvalidParameterError(
                    f"append: column {name!r} has per-row shape {ds.shape[1:]} in the store; got {values.shape[1:]}."
                )
            return ds
        if start > 0:
            raise InvalidParameterError(
                f"append: column {name!r} is new but the store already holds {start} rows; "
                "add full-length columns with write_column()."
            )
        return self._create_column(group, name, values.dtype, values.shape[1:], 0)

    def _create_column(self, group: h5py.Group, name: str, dtype: Any, tail: tuple, n: int) -> h5py.Dataset:
        dtype = np.dtype(dtype)
        if dtype.kind in "OUS":
            dtype = h5py.string_dtype()
        row_bytes = max(1, int(np.prod(tail, dtype=np.int64)) * (8 if dtype.kind == "O" else dtype.itemsize))
        chunk_rows = max(1, min(F.CHUNK_BYTES // row_bytes, 1 << 16))
        return group.create_dataset(
            name, shape=(n, *tail), maxshape=(None, *tail), dtype=dtype, chunks=(chunk_rows, *tail)
        )

    def write_column(self, name: str, values: Any, *, overwrite: bool = True) -> None:
        """Write a full-length per-point column (one value or row per committed z-point)."""
        self._require_writable()
        values = np.asarray(values)
        if values.shape[:1] != (self.n_rows,):
            raise InvalidParameterError(
                f"write_column: {name!r} must have {self.n_rows} rows (one per z-point); got shape {values.shape}."
            )
        group = self._h5.require_group(F.COLUMNS_GROUP)
        if name in group:
            if not overwrite:
                raise InvalidParameterError(f"write_column: column {name!r} exists; pass overwrite=True to replace it.")
            del group[name]
        ds = self._create_column(group, name, values.dtype, values.shape[1:], self.n_rows)
        ds[...] = values if values.dtype.kind not in "US" else values.astype(object)
        self._h5.attrs["updated"] = _now()
        self._h5.flush()

    # -- reading ------------------------------------------------------------------------
    @property
    def chunk_rows(self) -> int:
        chunks = self._h5[F.Z_DATASET].chunks
        return int(chunks[0]) if chunks else F.rows_per_chunk(self.z_dim)

    def block_rows(self, max_bytes: int = 64 << 20) -> int:
        """Rows per block: a multiple of the chunk rows that fits ``max_bytes`` of float32 z."""
        per_chunk = self.chunk_rows * self.z_dim * 4
        return self.chunk_rows * max(1, int(max_bytes) // per_chunk)

    def iter_blocks(
        self,
        *,
        max_bytes: int = 64 << 20,
        columns: Sequence[str] = (),
        ids: bool = False,
        start: int = 0,
        stop: int | None = None,
    ) -> Iterator[Block]:
        """Iterate over committed rows in chunk-aligned blocks of at most ``max_bytes``."""
        stop = self.n_rows if stop is None else min(int(stop), self.n_rows)
        step = self.block_rows(max_bytes)
        zds = self._h5[F.Z_DATASET]
        for name in columns:
            self._column_ds(name)
        lo = int(start)
        while lo < stop:
            hi = min(stop, (lo // step + 1) * step)
            buf = np.empty((hi - lo, self.z_dim), dtype=np.float32)
            zds.read_direct(buf, np.s_[lo:hi])
            cols = {name: self._column_ds(name)[lo:hi] for name in columns}
            id_arr = self._decode_ids(self._h5[F.IDS_DATASET][lo:hi]) if ids else None
            yield Block(lo, buf, cols, id_arr)
            lo = hi

    def read(self, rows: Any = None) -> np.ndarray:
        """Read z-points: all committed rows, a slice, or an array of row indices."""
        zds = self._h5[F.Z_DATASET]
        if rows is None:
            rows = slice(0, self.n_rows)
        if isinstance(rows, slice):
            return zds[slice(*rows.indices(self.n_rows))]
        idx = np.asarray(rows, dtype=np.int64)
        if idx.size and (idx.min() < -self.n_rows or idx.max() >= self.n_rows):
            raise InvalidParameterError(f"read: row indices must lie in [0, {self.n_rows}); got min {idx.min()}, max {idx.max()}.")
        idx = np.where(idx < 0, idx + self.n_rows, idx)
        order = np.argsort(idx, kind="stable")
        uniq, inverse = np.unique(idx[order], return_inverse=True)
        data = zds[uniq] if uniq.size else np.empty((0, self.z_dim), np.float32)
        out = np.empty((idx.size, self.z_dim), dtype=np.float32)
        out[order] = data[inverse]
        return out.reshape(*idx.shape, self.z_dim)

    def read_ids(self, rows: Any = None) -> np.ndarray:
        """Row ids (str) of all committed rows or of a slice."""
        rows = slice(0, self.n_rows) if rows is None else rows
        return self._decode_ids(self._h5[F.IDS_DATASET][rows])

    def _column_ds(self, name: str) -> h5py.Dataset:
        group = self._h5.get(F.COLUMNS_GROUP)
        if group is None or name not in group:
            raise InvalidParameterError(
                f"{self.path}: no column {name!r}; the store has: {', '.join(self.column_names) or 'none'}."
            )
        return group[name]

    def read_column(self, name: str, rows: Any = None) -> np.ndarray:
        """Values of one per-point column for all committed rows or a slice."""
        rows = slice(0, self.n_rows) if rows is None else rows
        data = self._column_ds(name)[rows]
        return self._decode_ids(data) if data.dtype.kind == "O" else data

    @staticmethod
    def _decode_ids(raw: np.ndarray) -> np.ndarray:
        return np.array([r.decode() if isinstance(r, bytes) else str(r) for r in raw], dtype=object)

    def to_dask(self, chunks: int | None = None):
        """A lazy dask array view of the committed z-points (requires dask)."""
        try:
            import dask.array as da
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise StoreError("to_dask needs dask; install it with: pip install 'dask[array]'") from exc
        rows = chunks or self.block_rows()
        return da.from_array(self._h5[F.Z_DATASET], chunks=(rows, self.z_dim))[: self.n_rows]


def create_store(
    path: str | os.PathLike,
    z_dim: int,
    *,
    backend: str = "",
    model_fingerprint: str = "",
    source: str = "",
    overwrite: bool = False,
    **provenance: Any,
) -> ZStore:
    """Create an empty store and return it open for appending.

    Parameters
    ----------
    path : str or Path
    z_dim : int
        Dimension of the latent space.
    backend, model_fingerprint, source : str
        Provenance: which model wrote the z-points, and from which data.
    overwrite : bool, default=False
        Replace an existing file; otherwise an existing file is an error.
    **provenance
        Further provenance values, stored as attributes or JSON.
    """
    path = Path(path)
    if isinstance(z_dim, bool) or not isinstance(z_dim, (int, np.integer)) or z_dim < 1:
        raise InvalidParameterError(f"create_store: z_dim must be an integer >= 1; got {z_dim!r}.")
    if path.exists() and not overwrite:
        raise StoreError(f"{path}: file exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = F.rows_per_chunk(int(z_dim))
    with h5py.File(path, "w", libver=("v110", "latest")) as h5:
        h5.attrs["format"] = F.FORMAT_NAME
        h5.attrs["format_version"] = F.FORMAT_VERSION
        h5.attrs["z_dim"] = int(z_dim)
        h5.attrs[F.COMMITTED_ATTR] = 0
        h5.attrs["backend"] = backend
        h5.attrs["model_fingerprint"] = model_fingerprint
        h5.attrs["source"] = source
        h5.attrs["created"] = h5.attrs["updated"] = _now()
        h5.attrs["library_version"] = __version__
        h5.attrs["extra_json"] = "{}"
        h5.create_dataset(F.Z_DATASET, shape=(0, int(z_dim)), maxshape=(None, int(z_dim)), dtype=np.float32, chunks=(chunk, int(z_dim)))
        h5.create_dataset(F.IDS_DATASET, shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(min(chunk * 4, 1 << 16),))
        h5.create_group(F.COLUMNS_GROUP)
    store = ZStore(path, "a")
    if provenance:
        store.set_provenance(**provenance)
    return store


def open_store(path: str | os.PathLike, mode: str = "r") -> ZStore:
    """Open an existing store (``mode="r"`` to read, ``"a"`` to append)."""
    return ZStore(path, mode)
