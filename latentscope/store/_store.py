"""The HDF5 z-point store: float32 z-points, ids, per-point columns and provenance.

Layout and guarantees are documented in ``docs/store-format.md``. In short: one writer
at a time appends in HDF5 SWMR mode; each append writes its rows, flushes, then
records the new committed row count in a checksummed two-slot commit record and
flushes again. Readers (any number, in any process) only look at committed rows. A
writer killed at any instant leaves a file that opens; the next writer repairs the
superblock flags (see :mod:`._recovery`) and appends over the uncommitted tail.

:class:`ZStore` holds the state of an open store (opening, the commit record, the
snapshot of a reader, properties); its reads are in :mod:`._reads`, its writes in
:mod:`._writes`, the open files and the reader cache in :mod:`._handles`, string
encoding in :mod:`._strings` and the creation of datasets in :mod:`._layout`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._version import __version__
from ..exceptions import (
    InvalidParameterError,
    StoreError,
    StoreFormatError,
    StoreFormatWarning,
    StoreReadOnlyError,
)
from . import _format as F
from ._handles import READERS, READERS_LOCK, OpenFile, one_line, open_h5_reader, open_h5_writer
from ._layout import create_store_file, iso
from ._reads import Block, _Reads
from ._recovery import _O_BINARY, WriterLock, clear_status_flags, precheck_superblock
from ._strings import attr_value, is_text, row_shape
from ._writes import _Writes

__all__ = ["ZStore", "Block", "open_store", "create_store"]


class ZStore(_Reads, _Writes):
    """A z-point store in one HDF5 file.

    Open an existing store with :func:`open_store` (or ``ZStore(path, mode)``), create
    a new one with :func:`create_store`. The store is a context manager.

    A reader sees the rows that were committed when it was opened (a consistent
    snapshot, also while another process appends); :meth:`refresh` moves the
    snapshot forward. A writer (``mode="a"``) holds an exclusive lock on the file.
    Opening for appending a store whose writer was killed repairs it; appends then
    continue after the last committed batch (``n_rows``).

    Parameters
    ----------
    path : str or Path
        The HDF5 file.
    mode : {"r", "a"}, default="r"
        ``"r"`` reads only; ``"a"`` allows appends, new columns and provenance.

    Raises
    ------
    StoreError
        The file does not exist, cannot be opened, or another writer holds it.
    StoreFormatError
        The file is not HDF5, not a store, or has an unsupported format version.
    StoreReadOnlyError
        ``mode="a"`` on a file without write permission.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r", *, _lenient: bool = False) -> None:
        self._file: OpenFile | None = None
        self._fd: int | None = None
        self._lock: WriterLock | None = None
        self._checksums = False
        self._lenient = bool(_lenient)  # latentscope check --salvage: open damaged files, check nothing
        self._slots: dict[str, int] = {}  # writer: committed checksum records per dataset
        self._pending_slots: dict[str, int] = {}
        self.recovered = False
        if mode not in ("r", "a"):
            raise InvalidParameterError(f"ZStore: mode must be 'r' or 'a'; got {mode!r}.")
        self.path = Path(path)
        self.mode = mode
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such file.")
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not a store file.")
        try:
            is_hdf5 = h5py.is_hdf5(self.path)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read the file ({one_line(exc)}).") from exc
        if not is_hdf5:
            raise StoreFormatError(f"{self.path}: not an HDF5 file.")
        try:
            if mode == "a":
                self._open_writer()
            else:
                self._open_reader()
        except BaseException as exc:
            self.close()
            if isinstance(exc, (OSError, KeyError, ValueError, RuntimeError)) and not isinstance(exc, StoreError):
                raise StoreFormatError(f"{self.path}: damaged store: cannot open it ({one_line(exc)}).") from exc
            raise

    # -- opening --------------------------------------------------------------------------
    def _open_writer(self) -> None:
        st = self.path.stat()
        if not os.access(self.path, os.W_OK) or not st.st_mode & 0o222:
            raise StoreReadOnlyError(f"{self.path}: the file is read-only; cannot open it for appending.")
        try:
            self._fd = os.open(self.path, os.O_RDWR | _O_BINARY)
        except OSError as exc:
            raise StoreReadOnlyError(f"{self.path}: cannot open the file for writing ({one_line(exc)}).") from exc
        self._lock = WriterLock(self._fd)
        if not self._lock.acquire():
            raise StoreError(f"{self.path}: another process (or another open store) is writing to this store.")
        eof = precheck_superblock(self._fd, self.path, lenient=self._lenient)
        try:
            self.recovered = clear_status_flags(self._fd, self.path)
        except ValueError as exc:
            raise StoreFormatError(f"{self.path}: damaged HDF5 superblock ({exc}).") from exc
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot repair the store ({one_line(exc)}).") from exc
        self._file = OpenFile(open_h5_writer(self.path))
        self._check_format()
        self._load_state()
        self._verify_extents(eof)  # committed chunks inside the file as it was before the repair
        if self._checksums:
            self._slots = {path: len(self._segments(path)) for path in self._rowwise_paths()}
        self._h5.flush()
        self._h5.swmr_mode = True

    def _open_reader(self) -> None:
        st = self.path.stat()
        key = (st.st_dev, st.st_ino)
        with READERS_LOCK:
            shared = READERS.get(key)
            if shared is not None and shared.h5.id.valid and not self._lenient:
                shared.refs += 1
                self._file = shared
            else:
                h5, view = open_h5_reader(self.path, lenient=self._lenient)
                self._file = OpenFile(h5, None if self._lenient else key, view)
                if not self._lenient:
                    READERS[key] = self._file
            self._check_format()
            self._sync()

    def _check_format(self) -> None:
        attrs = self._h5.attrs
        try:
            fmt = attr_value(attrs.get("format"))
        except OSError as exc:
            raise StoreFormatError(f"{self.path}: damaged store: cannot read its attributes ({one_line(exc)}).") from exc
        except (ValueError, TypeError):
            fmt = None
        if fmt != F.FORMAT_NAME or F.Z_DATASET not in self._h5:
            raise StoreFormatError(f"{self.path}: an HDF5 file, but not a latentscope z-point store.")
        try:
            version = int(attrs.get("format_version", -1))
        except (TypeError, ValueError):
            version = -1
        if version not in F.SUPPORTED_VERSIONS:
            raise StoreFormatError(
                f"{self.path}: store format version {version} is not supported by latentscope {__version__} "
                f"(supported: {', '.join(map(str, F.SUPPORTED_VERSIONS))}); upgrade latentscope to read it."
            )
        if F.COMMIT_DATASET not in self._h5 or F.IDS_DATASET not in self._h5:
            raise StoreFormatError(f"{self.path}: damaged store (missing {F.COMMIT_DATASET!r} or {F.IDS_DATASET!r}).")
        self.format_version = version
        self._checksums = version >= F.CHECKSUM_VERSION
        if self._checksums and F.CHECKSUMS_GROUP not in self._h5:
            raise StoreFormatError(f"{self.path}: damaged store (format {version} without {F.CHECKSUMS_GROUP!r}).")
        if not self._checksums:
            warnings.warn(
                f"{self.path}: store format version {version} has no checksums, so damaged data cannot be detected; "
                "convert it with: latentscope import OLD.h5 --out NEW.h5",
                StoreFormatWarning, stacklevel=4,
            )

    def _load_state(self) -> None:
        self.z_dim = int(self._h5.attrs["z_dim"])
        state = F.unpack_commit(self._ds(F.COMMIT_DATASET)[...])
        if state is None:
            raise StoreFormatError(f"{self.path}: damaged store (no valid commit record).")
        self._seq, self._n, self._updated_ns, self._skipped, self._gen = state

    def _sync(self) -> None:
        """Read the commit record (a reader's snapshot) and bring the shared handles up to it."""
        shared = self._file
        if shared.shares_writer:  # in-memory state of the in-process writer: always current
            self._load_state()
            return
        commit = self._ds(F.COMMIT_DATASET)
        commit.refresh()
        self._load_state()
        if shared.gen is None:
            shared.gen, shared.seq = self._gen, self._seq
        elif self._gen != shared.gen:  # datasets were added or replaced: reopen the file
            shared.reset(*open_h5_reader(self.path, lenient=self._lenient))
            self._load_state()
            shared.gen, shared.seq = self._gen, self._seq
        elif self._seq > shared.seq:
            for name, ds in shared.handles.items():
                if name != F.COMMIT_DATASET:
                    ds.refresh()
            shared.seq = self._seq
        done = shared.extents
        if done is None or done[0] != self._gen or done[1] < self._n:
            self._verify_extents()
            shared.extents = (self._gen, self._n)

    # -- handles --------------------------------------------------------------------------
    @property
    def _h5(self) -> h5py.File | None:
        return None if self._file is None else self._file.h5

    @property
    def _handles(self) -> dict[str, h5py.Dataset]:
        return self._file.handles

    @property
    def _text(self) -> dict[str, bool]:
        return self._file.text

    def _ds(self, name: str) -> h5py.Dataset:
        ds = self._handles.get(name)
        if ds is None:
            ds = self._handles[name] = self._h5[name]
        return ds

    def _text_ds(self, name: str) -> bool:
        text = self._text.get(name)
        if text is None:
            text = self._text[name] = is_text(self._ds(name))
        return text

    @property
    def _z(self) -> h5py.Dataset:
        return self._ds(F.Z_DATASET)

    def _has(self, name: str) -> bool:
        return name in self._handles or name in self._h5

    def _column_path(self, name: str) -> str:
        return f"{F.COLUMNS_GROUP}/{name}"

    def refresh(self) -> int:
        """Move a reader's snapshot to the rows committed by now; return the row count.

        A writer's row count is always current; for it this is a no-op.
        """
        self._require_open()
        if self.mode == "r":
            with READERS_LOCK:
                self._sync()
        return self._n

    # -- basic properties -----------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Number of committed rows (a reader's snapshot; see :meth:`refresh`)."""
        return self._n

    def __len__(self) -> int:
        return self._n

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, z_dim)``."""
        return (self._n, self.z_dim)

    @property
    def n_skipped_nonfinite(self) -> int:
        """Rows dropped by ``append(..., on_nonfinite="skip")`` over the store's life."""
        return self._skipped

    @property
    def ids_kind(self) -> str:
        """``"int"`` (int64 ids) or ``"str"`` (string ids, once any string id was appended)."""
        self._require_open()
        return "str" if self._has(F.ID_STRINGS_DATASET) else "int"

    @property
    def provenance(self) -> dict[str, Any]:
        """Provenance: format, z_dim, backend, model fingerprint, source, times, version, ...

        ``updated`` is the time of the last append or provenance change.
        """
        self._require_open()
        out: dict[str, Any] = {}
        for key, value in self._h5.attrs.items():
            if key != "extra_json":
                out[key] = attr_value(value)
        out.update(json.loads(attr_value(self._h5.attrs.get("extra_json", "{}"))))
        record = self._provenance_record()
        times = [self._updated_ns]
        if record is not None:
            out.update(json.loads(record[2].decode("utf-8")))
            times.append(record[1])
        latest = iso(max(times))
        if str(out.get("updated", "")) < latest:
            out["updated"] = latest
        out["n_skipped_nonfinite"] = self._skipped
        return out

    def _provenance_record(self) -> tuple[int, int, bytes] | None:
        if not self._has(F.PROVENANCE_DATASET):
            return None
        ds = self._ds(F.PROVENANCE_DATASET)
        if self.mode == "r" and not self._file.shares_writer:
            with READERS_LOCK:
                ds.refresh()
        return F.unpack_provenance(ds[...])

    @property
    def column_names(self) -> list[str]:
        """Names of the per-point columns."""
        self._require_open()
        group = self._h5.get(F.COLUMNS_GROUP)
        return sorted(group.keys()) if group is not None else []

    def column_info(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """Per column: ``(dtype, per-row shape)``; string columns report ``numpy.str_``."""
        out = {}
        for name in self.column_names:
            path = self._column_path(name)
            ds, text = self._ds(path), self._text_ds(path)
            out[name] = (np.dtype(str) if text else ds.dtype, row_shape(ds, text))
        return out

    @property
    def nbytes_on_disk(self) -> int:
        """Size of the file in bytes."""
        return self.path.stat().st_size

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk of the row-chunked datasets."""
        chunks = self._z.chunks
        return int(chunks[0]) if chunks else F.rows_per_chunk(self.z_dim)

    @property
    def allocated_rows(self) -> int:
        """Rows in the HDF5 z dataset; more than ``n_rows`` after an interrupted append."""
        return int(self._z.shape[0])

    def summary(self) -> dict[str, Any]:
        """Everything ``latentscope info`` shows, as JSON-friendly values."""
        self._require_open()
        return {
            "path": str(self.path),
            "rows": self.n_rows,
            "z_dim": self.z_dim,
            "format_version": int(self._h5.attrs["format_version"]),
            "checksums": self._checksums,
            "ids": self.ids_kind,
            "columns": {
                name: {"dtype": "str" if dt.kind == "U" else dt.name, "shape": list(shape)}
                for name, (dt, shape) in self.column_info().items()
            },
            "chunk_rows": self.chunk_rows,
            "uncommitted_rows": max(0, self.allocated_rows - self.n_rows),
            "size_bytes": self.nbytes_on_disk,
            "provenance": self.provenance,
        }

    def __repr__(self) -> str:
        if self._h5 is None:
            return f"<ZStore {str(self.path)!r}: closed>"
        return f"<ZStore {str(self.path)!r}: {self._n} rows x z_dim {self.z_dim}, mode {self.mode!r}>"

    # -- context --------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        import html

        from .._html import kv_table

        if self.closed:
            return f"<strong>ZStore</strong> {html.escape(str(self.path))} (closed)"
        info = self.summary()
        cols = ", ".join(info["columns"]) or "none"
        prov = info["provenance"]
        return ("<strong>ZStore</strong>" + kv_table([
            ("path", info["path"]), ("rows x z_dim", f"{info['rows']:,} x {info['z_dim']}"), ("ids", info["ids"]),
            ("columns", cols), ("backend", prov.get("backend", "") or "-"), ("source", prov.get("source", "") or "-"),
            ("size on disk", f"{info['size_bytes'] / 1e6:.1f} MB")]))

    @property
    def closed(self) -> bool:
        """Whether the store was closed."""
        return self._h5 is None

    def close(self) -> None:
        """Close the file and, for a writer, release the writer lock."""
        file, self._file = self._file, None
        try:
            if file is not None:
                with READERS_LOCK:
                    file.refs -= 1
                    if file.refs <= 0:
                        if file.key is not None and READERS.get(file.key) is file:
                            del READERS[file.key]
                        file.close_h5()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "ZStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - depends on garbage collection
        try:
            self.close()
        except Exception:
            pass

    def _require_open(self) -> None:
        if self._h5 is None:
            raise StoreError(f"{self.path}: the store is closed.")


def create_store(
    path: str | os.PathLike,
    z_dim: int,
    *,
    backend: str = "",
    model_fingerprint: str = "",
    source: str = "",
    overwrite: bool = False,
    chunk_rows: int | None = None,
    **provenance: Any,
) -> ZStore:
    """Create an empty store and return it open for appending.

    A path ending in ``.zarr`` creates a Zarr store directory (a
    :class:`~latentscope.store.ZarrStore`, same API); anything else an HDF5 file.

    The file is built under a temporary name and renamed into place, so a store
    either exists complete or not at all.

    Parameters
    ----------
    path : str or Path
    z_dim : int
        Dimension of the latent space.
    backend, model_fingerprint, source : str
        Provenance: which model wrote the z-points, and from which data.
    overwrite : bool, default=False
        Replace an existing file; otherwise an existing file is an error.
    chunk_rows : int, optional
        Rows per chunk; defaults to about 1 MiB of float32 z-points.
    **provenance
        Further provenance values, stored as attributes or JSON.

    Returns
    -------
    ZStore or ZarrStore
        Open with ``mode="a"``.
    """
    from ._zarr_layout import is_zarr_path

    if is_zarr_path(path):  # NAME.zarr: a Zarr store directory (latentscope.store.ZarrStore)
        from ._zarr import create_zarr_store

        return create_zarr_store(path, z_dim, backend=backend, model_fingerprint=model_fingerprint, source=source,
                                 overwrite=overwrite, chunk_rows=chunk_rows, **provenance)
    path = Path(path)
    create_store_file(path, z_dim, backend=backend, model_fingerprint=model_fingerprint, source=source,
                      overwrite=overwrite, chunk_rows=chunk_rows, provenance=provenance)
    return ZStore(path, "a")


def open_store(path: str | os.PathLike, mode: str = "r") -> ZStore:
    """Open an existing store (``mode="r"`` to read, ``"a"`` to append).

    Opening for appending a store whose writer was killed repairs it; ``n_rows`` then
    tells where to resume. A path ending in ``.zarr`` (or a Zarr store directory) opens a
    :class:`~latentscope.store.ZarrStore`.
    """
    from ._zarr_layout import is_zarr_path

    if is_zarr_path(path):
        from ._zarr import ZarrStore

        return ZarrStore(path, mode)
    return ZStore(path, mode)
