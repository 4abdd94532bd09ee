"""The Zarr z-point store: a directory ``NAME.zarr`` with the layout and guarantees of the HDF5 store.

:class:`ZarrStore` has the reading and writing API of :class:`~latentscope.store.ZStore`;
its reads reuse :class:`~latentscope.store._reads._Reads` (blocks, row selections,
columns) over :meth:`ZarrStore._read`, which reads the committed rows of every part of
the store, refuses missing chunk files and turns a failed CRC-32C into a
:class:`~latentscope.exceptions.StoreFormatError` naming the chunk file. The writes are
in :mod:`._zarr_writes`, the directory and its records in :mod:`._zarr_layout`, and
sharded stores (K parts written independently) in :mod:`._zarr_shards`.

A reader reads the commit record first and then only the rows it counts; a writer
resizes arrays, writes chunks (each file written to a temporary name and renamed by
zarr's ``LocalStore``) and only then replaces the commit record. See
docs/store-format.md, "Zarr stores".
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..exceptions import InvalidParameterError, StoreError, StoreFormatError, StoreReadOnlyError
from . import _format as F
from . import _zarr_layout as L
from ._handles import one_line
from ._layout import iso
from ._reads import _Reads
from ._recovery import WriterLock
from ._strings import decode_raw
from ._zarr_writes import _ZarrWrites

__all__ = ["ZarrStore", "create_zarr_store"]


class _Part:
    """The committed state of one part (a plain store has one): its commit record and open arrays."""

    def __init__(self, index: int, path: Path, commit: dict[str, Any], offset: int, *, write: bool = False) -> None:
        self.index, self.dir, self.commit, self.offset, self.write = index, path, commit, int(offset), write
        self.arrays: dict[str, Any] = {}

    @property
    def n(self) -> int:
        return int(self.commit["n_committed"])

    def rel(self, path: str) -> str | None:
        """The directory (relative to the part) of a logical array: z, ids, id_strings, columns/NAME."""
        arrays = self.commit["arrays"]
        if path.startswith(f"{F.COLUMNS_GROUP}/"):
            return arrays["columns"].get(path[len(F.COLUMNS_GROUP) + 1:])
        return arrays.get(path)

    def array(self, rel: str) -> Any:
        arr = self.arrays.get(rel)
        if arr is None:
            arr = self.arrays[rel] = L.open_array(self.dir, rel, write=self.write)
        return arr


class ZarrStore(_Reads, _ZarrWrites):
    """A z-point store in a Zarr directory (``NAME.zarr``), optionally split into parts (shards).

    Open one with :func:`~latentscope.store.open_store` (or ``ZarrStore(path, mode)``), create one
    with :func:`~latentscope.store.create_store` (a path ending in ``.zarr``). The reading and
    writing API, the snapshot semantics and the errors are those of
    :class:`~latentscope.store.ZStore`; :meth:`to_dask` gives a dask array that pickles to
    distributed workers.

    Parameters
    ----------
    path : str or Path
        The store directory.
    mode : {"r", "a"}, default="r"
        ``"r"`` reads only; ``"a"`` appends (a sharded store: only ``set_provenance``; its
        parts are written through :func:`~latentscope.store.open_shard`).

    Raises
    ------
    StoreError
        The directory does not exist, or another writer holds it.
    StoreFormatError
        Not a latentscope Zarr store, an unsupported version, or a damaged record.
    StoreReadOnlyError
        ``mode="a"`` on a directory without write permission.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r", *, _shard: int | None = None) -> None:
        self._lock: WriterLock | None = None
        self._lock_fd: int | None = None
        self._parts: list[_Part] = []
        self._wpart: _Part | None = None
        self._open = False
        self._lenient = False
        self.recovered = False
        if mode not in ("r", "a"):
            raise InvalidParameterError(f"ZarrStore: mode must be 'r' or 'a'; got {mode!r}.")
        self.path, self.mode = Path(path), mode
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such file or directory.")
        if not self.path.is_dir():
            raise StoreFormatError(f"{self.path}: not a Zarr store (not a directory).")
        L.zarr_module()
        attrs = L.read_root_attrs(self.path)
        if attrs.get("format") != F.FORMAT_NAME or attrs.get("storage") != L.STORAGE:
            raise StoreFormatError(f"{self.path}: a Zarr directory, but not a latentscope z-point store.")
        version, layout = attrs.get("format_version"), attrs.get("zarr_layout")
        if version not in F.SUPPORTED_VERSIONS or layout != L.ZARR_LAYOUT:
            raise StoreFormatError(
                f"{self.path}: Zarr store format version {version} (layout {layout}) is not supported by latentscope "
                f"{__version__} (supported: {F.FORMAT_VERSION}, layout {L.ZARR_LAYOUT}); upgrade latentscope to read it."
            )
        self._attrs = attrs
        self.format_version = int(version)
        self.z_dim = int(attrs["z_dim"])
        self._chunk_rows = int(attrs["chunk_rows"])
        self._sizes = [int(s) for s in attrs["shard_sizes"]] if "shard_sizes" in attrs else None
        self.shard = _shard
        if _shard is not None:
            if self._sizes is None:
                raise StoreError(f"{self.path}: not a sharded store; open it with open_store(path, 'a').")
            if not 0 <= int(_shard) < len(self._sizes):
                raise InvalidParameterError(
                    f"open_shard: shard index must lie in [0, {len(self._sizes)}); got {_shard}.")
            self._wdir: Path | None = L.part_dir(self.path, int(_shard))
        else:
            self._wdir = self.path if self._sizes is None else None
        try:
            if mode == "a":
                self._open_writer()
            self._open = True
            self._sync()
        except BaseException:
            self.close()
            raise

    # -- opening --------------------------------------------------------------------------
    @property
    def _label(self) -> str:
        return f"{self.path} (shard {self.shard})" if self.shard is not None else str(self.path)

    def _part_label(self, part: _Part) -> str:
        return f"{self.path} (shard {part.index})" if self._sizes is not None else str(self.path)

    def _open_writer(self) -> None:
        wdir = self._wdir or self.path
        if not os.access(wdir, os.W_OK):
            raise StoreReadOnlyError(f"{self._label}: the directory is read-only; cannot open it for appending.")
        try:
            self._lock_fd = os.open(wdir / L.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreReadOnlyError(f"{self._label}: cannot open the lock file for writing ({one_line(exc)}).") from exc
        self._lock = WriterLock(self._lock_fd)
        if not self._lock.acquire():
            raise StoreError(f"{self._label}: another process (or another open store) is writing to this store.")
        removed = L.remove_partials(wdir, skip=(L.PARTS_DIR,))
        if self._wdir is None:
            return
        part = _Part(self.shard or 0, wdir, L.read_commit(wdir), 0, write=True)
        if self.shard is not None and part.commit.get("complete"):
            raise StoreError(f"{self._label}: the shard is complete (marked by mark_complete); nothing to append.")
        self._wpart = part
        allocated = int(part.array("z").shape[0])
        self.recovered = removed > 0 or allocated > part.n

    def _read_parts(self) -> list[_Part]:
        """Read the commit records (first, before any chunk) and build the visible parts."""
        old = {p.index: p for p in self._parts}
        if self._sizes is None:
            dirs = [(0, self.path)]
        else:
            dirs = [(i, L.part_dir(self.path, i)) for i in range(len(self._sizes))]
        parts, offset = [], 0
        for index, path in dirs:
            commit = L.read_commit(path)
            prev = old.get(index)
            if prev is not None and prev.commit.get("seq") == commit.get("seq") and prev.offset == offset:
                part = prev
            else:
                part = _Part(index, path, commit, offset)
            parts.append(part)
            offset += part.n
            if self._sizes is not None and not commit.get("complete"):
                break  # the growing prefix: rows of later parts are not visible yet
        return parts

    def _sync(self) -> None:
        if self._wpart is not None:
            self._parts = [self._wpart]
        else:
            self._parts = self._read_parts()
        self._n = sum(p.n for p in self._parts)
        self._skipped = sum(int(p.commit.get("n_skipped_nonfinite", 0)) for p in self._parts)
        self._seq = tuple(int(p.commit["seq"]) for p in self._parts)
        self._updated_ns = max(int(p.commit["updated_ns"]) for p in self._parts)

    def refresh(self) -> int:
        """Move a reader's snapshot to the rows committed by now; return the row count.

        A writer's row count is always current; for it this is a no-op. A sharded store's
        snapshot grows into the next part once the current one is marked complete.
        """
        self._require_open()
        if self._wpart is None:
            self._sync()
        return self._n

    # -- arrays of the snapshot -----------------------------------------------------------
    def _column_path(self, name: str) -> str:
        return f"{F.COLUMNS_GROUP}/{name}"

    def _rowwise_paths(self) -> list[str]:
        paths = [F.Z_DATASET, F.IDS_DATASET]
        if self._has(F.ID_STRINGS_DATASET):
            paths.append(F.ID_STRINGS_DATASET)
        return paths + [self._column_path(name) for name in self.column_names]

    def _has(self, path: str) -> bool:
        if path == F.ID_STRINGS_DATASET:
            return any(p.rel(path) is not None for p in self._parts)
        if path.startswith(f"{F.COLUMNS_GROUP}/"):
            return path[len(F.COLUMNS_GROUP) + 1:] in self.column_names
        return path in (F.Z_DATASET, F.IDS_DATASET)

    def _ds(self, path: str) -> Any:
        """The array of ``path`` in the first part holding it (for dtypes and row shapes)."""
        for part in self._parts:
            rel = part.rel(path)
            if rel is not None:
                return part.array(rel)
        raise InvalidParameterError(f"{self.path}: the store has no array {path!r}.")

    def _text_ds(self, path: str) -> bool:
        return path == F.ID_STRINGS_DATASET or self._ds(path).attrs.get(F.ENCODING_ATTR) == "utf-8"

    def _column_ds(self, name: str) -> Any:
        self._require_open()
        if not isinstance(name, str) or name not in self.column_names:
            raise InvalidParameterError(
                f"{self.path}: no column {name!r}; the store has: {', '.join(self.column_names) or 'none'}."
            )
        return self._ds(self._column_path(name))

    @property
    def column_names(self) -> list[str]:
        """Names of the per-point columns (for a sharded store: those every visible part with rows has)."""
        self._require_open()
        with_rows = [p for p in self._parts if p.n] or self._parts[:1]
        names = list(with_rows[0].commit["arrays"]["columns"])
        for part in with_rows[1:]:
            names = [n for n in names if n in part.commit["arrays"]["columns"]]
        return names

    def _read(self, path: str, lo: int, hi: int) -> np.ndarray:
        """Committed rows ``lo:hi`` of a logical array, over the parts; missing or damaged chunks are errors."""
        pieces = []
        for part in self._parts:
            a, b = max(lo, part.offset), min(hi, part.offset + part.n)
            if b > a or (not pieces and part is self._parts[-1]):
                pieces.append(self._read_part(part, path, a - part.offset, max(a, b) - part.offset))
        if not pieces:
            pieces.append(self._read_part(self._parts[0], path, 0, 0))
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _read_part(self, part: _Part, path: str, lo: int, hi: int) -> np.ndarray:
        rel = part.rel(path)
        if rel is None and path == F.ID_STRINGS_DATASET:  # a part with integer ids in a store with string ids
            return self._read_part(part, F.IDS_DATASET, lo, hi).astype(str)
        if rel is None:
            raise StoreFormatError(f"{self._part_label(part)}: damaged store: no array {path!r}.")
        arr = part.array(rel)
        C = self._chunk_rows
        missing = L.missing_chunk(part.dir, rel, lo, hi, C, arr.ndim)
        if missing is not None:
            a, b = part.offset + missing * C, part.offset + min(part.n, (missing + 1) * C)
            raise StoreFormatError(
                f"{self._part_label(part)}: damaged store: rows {a}..{b} of {path!r} are missing (no chunk file "
                f"{L.chunk_file(part.dir, rel, missing, arr.ndim)}; an incomplete copy?)."
            )
        try:
            raw = arr[lo:hi]
        except Exception as exc:  # zarr raises ValueError for a CRC-32C mismatch, others for garbage
            raise self._damage(part, path, rel, arr, lo, hi, exc) from exc
        return decode_raw(np.asarray(raw), arr.attrs.get(F.ENCODING_ATTR) == "utf-8")

    def _damage(self, part: _Part, path: str, rel: str, arr: Any, lo: int, hi: int, exc: BaseException) -> StoreError:
        """The error for a failed read: find the chunk whose file does not verify."""
        C = self._chunk_rows
        for chunk in range(lo // C, (hi - 1) // C + 1):
            try:
                arr[chunk * C: min(hi, (chunk + 1) * C)]
            except Exception:
                a, b = part.offset + chunk * C, part.offset + min(part.n, (chunk + 1) * C)
                return StoreFormatError(
                    f"{self._part_label(part)}: damaged data: rows {a}..{b} of {path!r} do not match their checksum (chunk file "
                    f"{L.chunk_file(part.dir, rel, chunk, arr.ndim)}: {one_line(exc)})."
                )
        return StoreFormatError(f"{self._part_label(part)}: damaged store: cannot read rows {lo}..{hi} of {path!r} "
                                f"({one_line(exc)}).")

    # -- properties -----------------------------------------------------------------------
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
    def chunk_rows(self) -> int:
        """Rows per chunk of every row-chunked array."""
        return self._chunk_rows

    @property
    def n_skipped_nonfinite(self) -> int:
        """Rows dropped by ``append(..., on_nonfinite="skip")`` (summed over the visible parts)."""
        return self._skipped

    @property
    def ids_kind(self) -> str:
        """``"int"`` (int64 ids) or ``"str"`` (string ids, once any string id was appended)."""
        self._require_open()
        return "str" if self._has(F.ID_STRINGS_DATASET) else "int"

    @property
    def sharded(self) -> bool:
        """Whether the store is split into parts written independently (see ``create_sharded_store``)."""
        return self._sizes is not None

    def column_info(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """``{name: (dtype, per-row shape)}`` of the columns (``dtype('<U')`` for strings)."""
        out = {}
        for name in self.column_names:
            arr = self._ds(self._column_path(name))
            text = arr.attrs.get(F.ENCODING_ATTR) == "utf-8"
            out[name] = (np.dtype(str) if text else np.dtype(arr.dtype), tuple(arr.shape[1:-1] if text else arr.shape[1:]))
        return out

    @property
    def nbytes_on_disk(self) -> int:
        """Bytes of every file in the store directory."""
        return L.dir_size(self.path)

    @property
    def allocated_rows(self) -> int:
        """Rows in the z arrays; more than ``n_rows`` after an interrupted append."""
        return sum(max(p.n, int(p.array(p.rel(F.Z_DATASET)).shape[0])) for p in self._parts)

    def _records(self) -> list[dict[str, Any]]:
        recs = []
        if self._sizes is not None:
            for part in self._parts:
                rec = L.read_record(part.dir / L.PROVENANCE_FILE, "provenance")
                if rec is not None:
                    recs.append(rec)
        if self._wdir is None or self._sizes is None:
            rec = L.read_record(self.path / L.PROVENANCE_FILE, "provenance")
            if rec is not None:
                recs.append(rec)
        return recs

    @property
    def provenance(self) -> dict[str, Any]:
        """Provenance: format, z_dim, backend, model fingerprint, source, times, version, ...

        ``updated`` is the time of the last append or provenance change.
        """
        self._require_open()
        out = {k: v for k, v in self._attrs.items() if k not in ("shard_sizes", "chunk_rows", "zarr_layout")}
        times = [self._updated_ns]
        for rec in self._records():
            out.update(rec.get("values", {}))
            times.append(int(rec.get("updated_ns", 0)))
        latest = iso(max(times))
        if str(out.get("updated", "")) < latest:
            out["updated"] = latest
        out["n_skipped_nonfinite"] = self._skipped
        return out

    def summary(self) -> dict[str, Any]:
        """Everything ``latentscope info`` shows, as JSON-friendly values."""
        self._require_open()
        out = {
            "path": str(self.path),
            "rows": self.n_rows,
            "z_dim": self.z_dim,
            "format_version": self.format_version,
            "storage": "zarr",
            "checksums": True,
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
        if self._sizes is not None:
            from ._zarr_shards import shard_status

            out["shards"] = shard_status(self.path)
        return out

    def to_dask(self, chunks: int | None = None):
        """A lazy dask array (``dask.array.from_zarr``) of the committed z-points.

        Unlike the HDF5 store's view it holds no open file: it pickles to dask.distributed
        workers, which read the chunk files themselves (every chunk's CRC-32C is verified).

        Parameters
        ----------
        chunks : int, optional
            Rows per dask chunk; defaults to :meth:`block_rows` (chunk-aligned, 64 MiB).
        """
        try:
            import dask.array as da
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise StoreError("to_dask needs dask; install it with: pip install 'dask[array]'") from exc
        from .._validation import check_positive

        self._require_open()
        if chunks is not None:
            check_positive(chunks, "chunks", owner="to_dask", integer=True, minimum=1)
        rows = int(chunks) if chunks else self.block_rows()
        pieces = []
        for part in self._parts:
            if part.n:
                arr = L.open_array(part.dir, part.rel(F.Z_DATASET), write=False)
                pieces.append(da.from_zarr(arr, chunks=(rows, self.z_dim))[: part.n])
        if not pieces:
            return da.zeros((0, self.z_dim), dtype=np.float32, chunks=(rows, self.z_dim))
        return pieces[0] if len(pieces) == 1 else da.concatenate(pieces, axis=0)

    def __repr__(self) -> str:
        if not self._open:
            return f"<ZarrStore {str(self.path)!r}: closed>"
        shard = f", shard {self.shard}" if self.shard is not None else ""
        return f"<ZarrStore {str(self.path)!r}: {self._n} rows x z_dim {self.z_dim}, mode {self.mode!r}{shard}>"

    def _repr_html_(self) -> str:
        from .._html import kv_table

        if self.closed:
            return f"<strong>ZarrStore</strong> {html.escape(str(self.path))} (closed)"
        info = self.summary()
        prov = info["provenance"]
        rows = [("path", info["path"]), ("rows x z_dim", f"{info['rows']:,} x {info['z_dim']}"), ("ids", info["ids"]),
                ("columns", ", ".join(info["columns"]) or "none"), ("backend", prov.get("backend", "") or "-"),
                ("source", prov.get("source", "") or "-"), ("size on disk", f"{info['size_bytes'] / 1e6:.1f} MB")]
        if "shards" in info:
            done = sum(1 for s in info["shards"] if s["complete"])
            rows.append(("shards", f"{done} of {len(info['shards'])} complete"))
        return "<strong>ZarrStore</strong>" + kv_table(rows)

    # -- context --------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether the store was closed."""
        return not self._open

    def close(self) -> None:
        """Close the store and, for a writer, release the writer lock."""
        self._open = False
        self._parts = []
        self._wpart = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "ZarrStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - depends on garbage collection
        try:
            self.close()
        except Exception:
            pass

    def _require_open(self) -> None:
        if not self._open:
            raise StoreError(f"{self.path}: the store is closed.")


def create_zarr_store(path: str | os.PathLike, z_dim: int, *, backend: str = "", model_fingerprint: str = "",
                      source: str = "", overwrite: bool = False, chunk_rows: int | None = None,
                      **provenance: Any) -> ZarrStore:
    """Create an empty Zarr store directory and return it open for appending (see ``create_store``)."""
    path = Path(path)
    L.create_zarr_dir(path, z_dim, backend=backend, model_fingerprint=model_fingerprint, source=source,
                      overwrite=overwrite, chunk_rows=chunk_rows, provenance=provenance)
    return ZarrStore(path, "a")
