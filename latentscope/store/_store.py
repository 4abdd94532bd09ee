"""The HDF5 z-point store: float32 z-points, ids, per-point columns and provenance.

Layout and guarantees are documented in ``docs/store-format.md``. In short: one writer
at a time appends in HDF5 SWMR mode; each append writes its rows, flushes, then
records the new committed row count in a checksummed two-slot commit record and
flushes again. Readers (any number, in any process) only look at committed rows. A
writer killed at any instant leaves a file that opens; the next writer repairs the
superblock flags (see :mod:`._recovery`) and appends over the uncommitted tail.

Appends never delete or replace datasets (that would pull data from under open
readers): strings are UTF-8 byte matrices whose width grows like their length.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import time
import uuid
import warnings
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
    StoreFormatWarning,
    StoreReadOnlyError,
)
from . import _format as F
from . import _integrity as I
from ._recovery import (
    CleanSuperblockView,
    WriterLock,
    clear_status_flags,
    open_swmr_reader,
    read_superblock,
    writer_alive,
)

__all__ = ["ZStore", "Block", "open_store", "create_store"]

#: libver bounds of every store: superblock version 3 (needed for SWMR), readable by HDF5 >= 1.10.
_LIBVER = ("v110", "latest")
#: Chunk cache of a writer per dataset: a few chunks, so that the partial last chunk of
#: a batch stays cached for the next append.
_WRITER_CACHE_BYTES = 4 * F.CHUNK_BYTES
#: Seconds a reader waits for a writer that holds the file in non-SWMR write mode.
_READER_WAIT_S = 10.0
#: Root attributes that set_provenance may not change.
_FIXED_ATTRS = frozenset({"format", "format_version", "z_dim", "created", "library_version", "extra_json"})
#: Bytes per chunk along the byte axis of string matrices.
_TEXT_CHUNK_WIDTH = 32
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


def _now_ns() -> int:
    return time.time_ns()


def _iso(ns: int) -> str:
    return _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).isoformat(timespec="seconds")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# -- strings --------------------------------------------------------------------------------
def _encode_strings(values: np.ndarray) -> np.ndarray:
    """str-like values -> UTF-8 bytes (numpy ``S``, at least 1 byte wide)."""
    if values.dtype.kind != "S":
        if values.dtype.kind == "O":  # e.g. h5py variable-length strings: bytes or str objects
            flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.ravel()]
            values = np.array(flat, dtype=str).reshape(values.shape)
        elif values.dtype.kind != "U":
            values = values.astype(str)
        try:
            values = values.astype("S")
        except UnicodeEncodeError:
            values = np.char.encode(values, "utf-8")
    if values.dtype.itemsize == 0:
        values = values.astype("S1")
    return values


def _decode_strings(raw: np.ndarray) -> np.ndarray:
    """UTF-8 bytes (numpy ``S``) -> numpy ``str`` array."""
    try:
        return raw.astype("U")
    except UnicodeDecodeError:
        return np.char.decode(raw, "utf-8", errors="replace")


def _grown_width(needed: int, current: int = 0) -> int:
    """Byte width for ``needed`` bytes: at least 16, doubled while too small."""
    width = max(16, int(current))
    while width < needed:
        width *= 2
    return width


def _is_text(ds: h5py.Dataset) -> bool:
    return ds.attrs.get(F.ENCODING_ATTR) in ("utf-8", b"utf-8")


def _row_shape(ds: h5py.Dataset, text: bool) -> tuple[int, ...]:
    """Per-row shape of the values (without the byte axis of a string matrix)."""
    return tuple(ds.shape[1:-1] if text else ds.shape[1:])


def _set_attr(attrs: h5py.AttributeManager, key: str, value: Any) -> None:
    """Write an attribute without variable-length data (strings as fixed-length UTF-8).

    Stores hold no variable-length data at all: HDF5's global heap, where it would live,
    is not protected by SWMR's ordered flushes.
    """
    if isinstance(value, str):
        raw = value.encode("utf-8")
        attrs.create(key, np.array(raw, dtype=f"S{max(1, len(raw))}"),
                     dtype=h5py.string_dtype("utf-8", max(1, len(raw))))
    else:
        attrs[key] = value


def _attr_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value


def _fill_value(dtype: np.dtype) -> Any:
    return np.nan if dtype.kind in "fc" else 0


class _OpenFile:
    """An open HDF5 file with cached dataset handles.

    A writer owns one. Readers of the same file in one process share one (HDF5 would
    share the underlying file anyway, and refreshing one of two handles to the same
    dataset corrupts HDF5's metadata cache); each reader keeps its own snapshot.
    """

    def __init__(self, h5: h5py.File, key: tuple[int, int] | None = None,
                 view: CleanSuperblockView | None = None) -> None:
        self.h5 = h5
        self.view = view  # the file object h5 reads through, when the file needed one
        self.handles: dict[str, h5py.Dataset] = {}
        self.text: dict[str, bool] = {}
        self.key = key
        self.refs = 1
        self.seq: int | None = None  # commit the handles were refreshed to
        self.gen: int | None = None  # layout generation when the file was opened
        self.segments: dict[tuple, I.Segments] = {}  # checksum chains by (path, seq, gen)
        self.extents: tuple[int, int] | None = None  # (gen, n) whose chunks were found complete

    @property
    def shares_writer(self) -> bool:
        """Whether an in-process writer holds the same HDF5 file (its state is then always current)."""
        return bool(self.h5.id.get_intent() & h5py.h5f.ACC_RDWR)

    def reset(self, h5: h5py.File, view: CleanSuperblockView | None) -> None:
        self.close_h5()
        self.h5, self.view, self.handles, self.text, self.seq, self.gen = h5, view, {}, {}, None, None
        self.segments, self.extents = {}, None

    def close_h5(self) -> None:
        self.handles.clear()
        try:
            if self.h5.id.valid:
                self.h5.close()
        finally:
            if self.view is not None:
                self.view.close()
                self.view = None


_READERS: dict[tuple[int, int], _OpenFile] = {}
_READERS_LOCK = threading.RLock()


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
    ids : ndarray or None
        Row ids (int64, or str for stores with string ids), when requested.
    """

    start: int
    z: np.ndarray
    columns: dict = field(default_factory=dict)
    ids: np.ndarray | None = None

    @property
    def stop(self) -> int:
        """Index one past the last row of the block."""
        return self.start + self.z.shape[0]

    def __len__(self) -> int:
        return self.z.shape[0]


class ZStore:
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
        self._file: _OpenFile | None = None
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
            raise StoreError(f"{self.path}: cannot read the file ({_one_line(exc)}).") from exc
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
                raise StoreFormatError(f"{self.path}: damaged store: cannot open it ({_one_line(exc)}).") from exc
            raise

    # -- opening --------------------------------------------------------------------------
    def _open_writer(self) -> None:
        st = self.path.stat()
        if not os.access(self.path, os.W_OK) or not st.st_mode & 0o222:
            raise StoreReadOnlyError(f"{self.path}: the file is read-only; cannot open it for appending.")
        try:
            self._fd = os.open(self.path, os.O_RDWR | _O_BINARY)
        except OSError as exc:
            raise StoreReadOnlyError(f"{self.path}: cannot open the file for writing ({_one_line(exc)}).") from exc
        self._lock = WriterLock(self._fd)
        if not self._lock.acquire():
            raise StoreError(f"{self.path}: another process (or another open store) is writing to this store.")
        eof = self._precheck_superblock(self._fd)
        try:
            self.recovered = clear_status_flags(self._fd, self.path)
        except ValueError as exc:
            raise StoreFormatError(f"{self.path}: damaged HDF5 superblock ({exc}).") from exc
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot repair the store ({_one_line(exc)}).") from exc
        try:
            self._file = _OpenFile(h5py.File(
                self.path, "r+", libver=_LIBVER, locking=False,
                rdcc_nbytes=_WRITER_CACHE_BYTES, rdcc_nslots=521, rdcc_w0=1.0,
            ))
        except OSError as exc:
            if "already open for read-only" in str(exc):
                raise StoreError(
                    f"{self.path}: the store is open for reading in this process; close it before opening it "
                    "for appending (readers opened after the writer are fine)."
                ) from exc
            raise StoreError(f"{self.path}: cannot open the store for writing ({_one_line(exc)}).") from exc
        self._check_format()
        self._load_state()
        self._verify_extents(eof)  # committed chunks inside the file as it was before the repair
        if self._checksums:
            self._slots = {path: len(self._segments(path)) for path in self._rowwise_paths()}
        self._h5.flush()
        self._h5.swmr_mode = True

    def _precheck_superblock(self, fd: int) -> int:
        """Parse the superblock; refuse a cleanly closed file shorter than its allocation.

        Returns the size of the file. A file whose writer is alive or was killed may be
        shorter than its allocation (the tail holds uncommitted rows); a closed file
        never is, so it was truncated (an incomplete copy, a full disk).
        """
        eof = os.fstat(fd).st_size
        try:
            sb = read_superblock(fd)
        except ValueError as exc:
            raise StoreFormatError(f"{self.path}: damaged HDF5 superblock ({exc}).") from exc
        if sb is not None and not sb.status_flags and eof < sb.base_address + sb.eoa and not self._lenient:
            raise StoreFormatError(
                f"{self.path}: the file is truncated: {eof:,} bytes, but HDF5 allocated "
                f"{sb.base_address + sb.eoa:,} (an incomplete copy?); 'latentscope check --salvage' keeps the rows left."
            )
        return eof

    def _open_reader(self) -> None:
        st = self.path.stat()
        key = (st.st_dev, st.st_ino)
        with _READERS_LOCK:
            shared = _READERS.get(key)
            if shared is not None and shared.h5.id.valid and not self._lenient:
                shared.refs += 1
                self._file = shared
            else:
                h5, view = self._open_h5_reader()
                self._file = _OpenFile(h5, None if self._lenient else key, view)
                if not self._lenient:
                    _READERS[key] = self._file
            self._check_format()
            self._sync()

    def _open_h5_reader(self) -> tuple[h5py.File, CleanSuperblockView | None]:
        """Open the file for reading without changing it; bounded in time.

        Returns the HDF5 file and, for a file left by a writer that died before it
        entered SWMR mode, the read-only view it reads through.
        """
        fd = os.open(self.path, os.O_RDONLY | _O_BINARY)
        try:
            self._precheck_superblock(fd)
        finally:
            os.close(fd)
        deadline = time.monotonic() + _READER_WAIT_S
        while True:
            try:
                return open_swmr_reader(self.path), None
            except OSError as exc:
                if "not already open for SWMR writing" not in str(exc):
                    raise StoreFormatError(f"{self.path}: damaged store: cannot open it ({_one_line(exc)}).") from exc
            # The superblock says "open for (non-SWMR) write": a live writer is busy (wait
            # for it, at most _READER_WAIT_S), or a writer died before it switched to SWMR
            # mode: read through a view whose superblock flags read as cleared (the file
            # itself is not changed; the next writer repairs it).
            if writer_alive(self.path):
                if time.monotonic() > deadline:
                    raise StoreError(f"{self.path}: another process has held the file open for writing for "
                                     f"{_READER_WAIT_S:.0f} s; try again later.")
                time.sleep(0.05)
                continue
            try:
                view = CleanSuperblockView(self.path)
            except ValueError as exc:
                raise StoreFormatError(f"{self.path}: damaged HDF5 superblock ({exc}).") from exc
            try:
                return h5py.File(view, "r", locking=False, rdcc_nbytes=0), view
            except BaseException as exc:
                view.close()
                if isinstance(exc, OSError):
                    raise StoreFormatError(f"{self.path}: damaged store: cannot open it ({_one_line(exc)}).") from exc
                raise

    def _check_format(self) -> None:
        attrs = self._h5.attrs
        try:
            fmt = _attr_value(attrs.get("format"))
        except OSError as exc:
            raise StoreFormatError(f"{self.path}: damaged store: cannot read its attributes ({_one_line(exc)}).") from exc
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
            shared.reset(*self._open_h5_reader())
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

    # -- integrity ------------------------------------------------------------------------
    def _rowwise_paths(self) -> list[str]:
        """Every row-wise dataset: z, ids, id_strings (when present) and the columns."""
        paths = [F.Z_DATASET, F.IDS_DATASET]
        if self._has(F.ID_STRINGS_DATASET):
            paths.append(F.ID_STRINGS_DATASET)
        return paths + [self._column_path(name) for name in self.column_names]

    def _verify_extents(self, eof: int | None = None) -> None:
        """Refuse a store whose committed rows lie in chunks that are missing or past the end
        of the file (reads would return fill values or zeros for them)."""
        if self._lenient:
            return
        eof = self.path.stat().st_size if eof is None else eof
        for path in self._rowwise_paths():
            problems = I.chunk_problems(self._ds(path), self._n, self._text_ds(path), eof)
            if problems:
                lo, hi, what = problems[0]
                more = f" (and {len(problems) - 1} more chunks)" if len(problems) > 1 else ""
                raise StoreFormatError(
                    f"{self.path}: damaged store: rows {lo}..{hi} of {path!r} are {what}{more} "
                    f"({eof:,} bytes; an incomplete copy?); 'latentscope check --salvage' keeps the rows left."
                )
        if self._has(F.PROVENANCE_DATASET):
            ds = self._ds(F.PROVENANCE_DATASET)
            if any(what != "missing" for _, _, what in I.chunk_problems(ds, ds.shape[0], False, eof)):
                raise StoreFormatError(f"{self.path}: damaged store: the provenance record lies beyond the end "
                                       f"of the file ({eof:,} bytes; an incomplete copy?).")

    def _segments(self, path: str) -> I.Segments | None:
        """The committed checksum chain of a row-wise dataset (None for format 1)."""
        if not self._checksums:
            return None
        key = (path, self._seq, self._gen, self._n)
        cache = self._file.segments
        segs = cache.get(key)
        if segs is None:
            table = f"{F.CHECKSUMS_GROUP}/{path}"
            if not self._has(table):
                raise StoreFormatError(f"{self.path}: damaged store (no checksums of {path!r}).")
            try:
                recs = self._ds(table)[...]
            except OSError as exc:
                raise StoreFormatError(f"{self.path}: damaged store: cannot read the checksums of {path!r} "
                                       f"({_one_line(exc)}).") from exc
            segs = I.parse_segments(recs, self._n, self.chunk_rows)
            if isinstance(segs, str):
                raise StoreFormatError(f"{self.path}: damaged store: {path!r} has {segs}.")
            if len(cache) > 256:
                cache.clear()
            cache[key] = segs
        return segs

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
            text = self._text[name] = _is_text(self._ds(name))
        return text

    @property
    def _z(self) -> h5py.Dataset:
        return self._ds(F.Z_DATASET)

    def _has(self, name: str) -> bool:
        return name in self._handles or name in self._h5

    def refresh(self) -> int:
        """Move a reader's snapshot to the rows committed by now; return the row count.

        A writer's row count is always current; for it this is a no-op.
        """
        self._require_open()
        if self.mode == "r":
            with _READERS_LOCK:
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
                out[key] = _attr_value(value)
        out.update(json.loads(_attr_value(self._h5.attrs.get("extra_json", "{}"))))
        record = self._provenance_record()
        times = [self._updated_ns]
        if record is not None:
            out.update(json.loads(record[2].decode("utf-8")))
            times.append(record[1])
        latest = _iso(max(times))
        if str(out.get("updated", "")) < latest:
            out["updated"] = latest
        out["n_skipped_nonfinite"] = self._skipped
        return out

    def _provenance_record(self) -> tuple[int, int, bytes] | None:
        if not self._has(F.PROVENANCE_DATASET):
            return None
        ds = self._ds(F.PROVENANCE_DATASET)
        if self.mode == "r" and not self._file.shares_writer:
            with _READERS_LOCK:
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
            out[name] = (np.dtype(str) if text else ds.dtype, _row_shape(ds, text))
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
    @property
    def closed(self) -> bool:
        """Whether the store was closed."""
        return self._h5 is None

    def close(self) -> None:
        """Close the file and, for a writer, release the writer lock."""
        file, self._file = self._file, None
        try:
            if file is not None:
                with _READERS_LOCK:
                    file.refs -= 1
                    if file.refs <= 0:
                        if file.key is not None and _READERS.get(file.key) is file:
                            del _READERS[file.key]
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

    # -- writing --------------------------------------------------------------------------
    def _require_writable(self) -> None:
        self._require_open()
        if self.mode != "a":
            raise StoreReadOnlyError(f"{self.path}: the store is open read-only; open it with mode='a' to write.")

    def _commit(self, n_committed: int, skipped: int = 0, *, layout_changed: bool = False) -> None:
        """Record ``n_committed`` rows; everything they need must already be flushed."""
        seq = self._seq + 1
        now = _now_ns()
        gen = self._gen + 1 if layout_changed else self._gen
        self._ds(F.COMMIT_DATASET)[seq % 2] = F.pack_commit(seq, n_committed, now, self._skipped + skipped, gen)
        self._h5.flush()
        self._seq, self._n, self._updated_ns, self._skipped, self._gen = seq, n_committed, now, self._skipped + skipped, gen
        self._slots = dict(self._pending_slots)

    def set_provenance(self, **values: Any) -> None:
        """Set provenance values (anything JSON can hold; other objects are stored as str).

        The values are written as one JSON record in two alternating, checksummed slots
        (like the commit record), so a writer killed meanwhile leaves the previous
        provenance intact. They override the attributes written at creation.

        Raises
        ------
        InvalidParameterError
            For the fixed keys (format, format_version, z_dim, created, library_version).
        """
        self._require_writable()
        fixed = sorted(set(values) & _FIXED_ATTRS)
        if fixed:
            raise InvalidParameterError(f"set_provenance: {', '.join(fixed)} cannot be changed.")
        record = self._provenance_record()
        current = json.loads(record[2].decode("utf-8")) if record is not None else {}
        current.update(values)
        payload = json.dumps(current, default=str, sort_keys=True).encode("utf-8")
        seq = (record[0] if record is not None else 0) + 1
        slot = F.pack_provenance(seq, _now_ns(), payload)
        ds = self._ds(F.PROVENANCE_DATASET)
        if len(slot) > ds.shape[1]:
            width = ds.shape[1]
            while width < len(slot):
                width *= 2
            ds.resize(width, axis=1)
        row = np.zeros(ds.shape[1], dtype=np.uint8)
        row[: len(slot)] = np.frombuffer(slot, dtype=np.uint8)
        self._h5.flush()
        ds[seq % 2] = row
        self._h5.flush()

    def _prepare_ids(self, ids: Any, n: int, start: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(int64 ids, UTF-8 string ids or None) of a batch."""
        if ids is None:
            return np.arange(start, start + n, dtype=np.int64), None
        arr = np.asarray(ids)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise InvalidParameterError(f"append: ids must be 1-D with {n} entries (one per row); got shape {arr.shape}.")
        if arr.dtype.kind in "iu":
            if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
                raise InvalidParameterError("append: integer ids must fit in int64.")
            return arr.astype(np.int64, copy=False), None
        if arr.dtype.kind in "USO" or arr.size == 0:
            return np.arange(start, start + n, dtype=np.int64), _encode_strings(arr)
        raise InvalidParameterError(f"append: ids must be integers or strings; got dtype {arr.dtype}.")

    def _prepare_columns(self, columns: Mapping[str, Any] | None, n: int) -> dict[str, np.ndarray]:
        out = {}
        for name, values in (columns or {}).items():
            _check_column_name(name, "append")
            arr = np.asarray(values)
            if arr.ndim == 0 or arr.shape[0] != n:
                raise InvalidParameterError(f"append: column {name!r} must have {n} rows; got shape {arr.shape}.")
            out[name] = _column_array(arr, name, "append")
        return out

    def append(
        self,
        z: Any,
        *,
        ids: Sequence[Any] | np.ndarray | None = None,
        columns: Mapping[str, Any] | None = None,
        on_nonfinite: str = "raise",
    ) -> int:
        """Append a batch of z-points; return the number of rows written.

        The rows become visible (to readers, and after a crash) all at once: the
        committed row count is recorded only after the batch was flushed.

        Parameters
        ----------
        z : array-like of shape (n, z_dim)
            The z-points, stored as float32.
        ids : sequence of int or str, optional
            One id per row; defaults to the row index. Once a string id was appended,
            every id of the store reads back as a string.
        columns : mapping of str to array-like, optional
            Per-point values for the same rows, each with ``n`` rows (numbers, bools or
            strings; a row may be an array). Columns the store has but the batch lacks
            are filled with NaN (floats), 0 (integers, bools) or "" (strings).
        on_nonfinite : {"raise", "skip"}, default="raise"
            Rows with NaN or inf (also values too large for float32) are refused
            (``"raise"``, naming the first such row) or dropped and counted in
            :attr:`n_skipped_nonfinite` (``"skip"``).

        Returns
        -------
        int
            Rows written (fewer than ``n`` when rows were skipped).

        Raises
        ------
        InvalidParameterError
            Wrong shape (z_dim mismatch), ids or columns.
        NonFiniteError
            Non-finite values with ``on_nonfinite="raise"``.
        StoreReadOnlyError
            The store is open read-only.
        """
        self._require_writable()
        self._pending_slots = dict(self._slots)
        if on_nonfinite not in ("raise", "skip"):
            raise InvalidParameterError(f"append: on_nonfinite must be 'raise' or 'skip'; got {on_nonfinite!r}.")
        z = np.asarray(z)
        if z.dtype.kind not in "fiub":
            raise InvalidParameterError(f"append: z must be a numeric array; got dtype {z.dtype}.")
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InvalidParameterError(
                f"append: z must have shape (n, {self.z_dim}) to match the store's z_dim {self.z_dim}; got {z.shape}."
            )
        with np.errstate(over="ignore", invalid="ignore"):
            z32 = np.ascontiguousarray(z, dtype=np.float32)
        n = z32.shape[0]
        start = self._n
        int_ids, str_ids = self._prepare_ids(ids, n, start)
        cols = self._prepare_columns(columns, n)
        skipped = 0
        # Without a layout change, z is checked for finiteness while it is written (one pass
        # over the data); a batch that holds non-finite rows is then handled as before and its
        # rows rewritten (rows past the committed ones are not part of the store).
        fused = n > 0 and not self._needs_layout(str_ids, cols)
        if fused:
            self._ensure_layout(str_ids, cols, start)  # validates only: nothing to create
            z_len = self._z.shape[0]
            if self._write_rows(F.Z_DATASET, z32, start, start + n, check_finite=True):
                maybe_bad = False
            else:
                maybe_bad, fused = True, False
                if self._z.shape[0] > z_len:
                    self._z.resize(z_len, axis=0)
        else:
            maybe_bad = n > 0 and not _all_finite(z32)
        if maybe_bad:
            finite = np.isfinite(z32).all(axis=1)
            if not finite.all():
                bad = np.flatnonzero(~finite)
                if on_nonfinite == "raise":
                    raise NonFiniteError(
                        f"append: z row {int(bad[0])} of the batch (store row {start + int(bad[0])}) holds a "
                        f"non-finite value ({bad.size} such rows); pass on_nonfinite='skip' to count and skip them."
                    )
                skipped = int(bad.size)
                z32, int_ids = z32[finite], int_ids[finite]
                str_ids = None if str_ids is None else str_ids[finite]
                cols = {k: v[finite] for k, v in cols.items()}
                n = z32.shape[0]
        # an empty batch still declares its columns (but says nothing about the kind of ids)
        changed = self._ensure_layout(str_ids if n else None, cols, start)
        if n == 0 and skipped == 0 and not changed:
            return 0
        if n:
            stop = start + n
            if not fused:
                self._write_rows(F.Z_DATASET, z32, start, stop)
            self._write_rows(F.IDS_DATASET, int_ids, start, stop)
            if self._has(F.ID_STRINGS_DATASET):
                if str_ids is None:
                    str_ids = _encode_strings(int_ids.astype(str))
                self._write_rows(F.ID_STRINGS_DATASET, str_ids, start, stop)
            for name in self.column_names:
                path = self._column_path(name)
                values = cols.get(name)
                if values is None:
                    ds = self._ds(path)
                    if self._text_ds(path):
                        values = np.zeros((n, *_row_shape(ds, True)), dtype="S1")
                    else:
                        values = np.full((n, *ds.shape[1:]), _fill_value(ds.dtype), dtype=ds.dtype)
                self._write_rows(path, values, start, stop)
            self._h5.flush()
        self._commit(start + n, skipped, layout_changed=changed)
        return n

    def _column_path(self, name: str) -> str:
        return f"{F.COLUMNS_GROUP}/{name}"

    def _write_rows(self, path: str, values: np.ndarray, start: int, stop: int, check_finite: bool = False) -> bool:
        """Write rows ``start:stop`` of a row-wise dataset, growing it (and string widths).

        With ``check_finite`` (numeric datasets), returns False without recording the rows'
        checksums when a value is not finite (some rows may have been written: they lie past
        the committed rows); True otherwise.
        """
        ds = self._ds(path)
        if ds.shape[0] < stop:
            ds.resize(stop, axis=0)
        if self._text_ds(path):
            values = _encode_strings(values)
            width = ds.shape[-1]
            if values.dtype.itemsize > width:
                ds.resize(_grown_width(values.dtype.itemsize, width), axis=ds.ndim - 1)
                width = ds.shape[-1]
            values = np.ascontiguousarray(values, dtype=f"S{width}")
            values = values.view(np.uint8).reshape(*values.shape, width)
        else:
            if values.dtype != ds.dtype or not values.flags.c_contiguous:
                values = np.ascontiguousarray(values, dtype=ds.dtype)
            if self._checksums and stop > start and ds.dtype.kind in "fiu" and ds.chunks == (
                self.chunk_rows, *ds.shape[1:]
            ):
                return self._write_segments(path, ds, values, start, stop, check_finite)
            if check_finite and not _all_finite(values):
                return False
        ds.write_direct(values, dest_sel=np.s_[start:stop])
        if self._checksums and stop > start:
            self._write_checksums(path, values, start, stop)
        return True

    def _write_segments(self, path: str, ds: h5py.Dataset, values: np.ndarray, start: int, stop: int,
                        check_finite: bool) -> bool:
        """Write rows chunk segment by chunk segment, with one pass over each while it is in cache.

        Each segment is checked for finiteness (``check_finite``), checksummed and written;
        whole chunks go straight to the file (``write_direct_chunk``: no filters, no chunk
        cache). Returns False, before recording any checksum, at the first segment holding a
        non-finite value (its rows and later ones are not written).
        """
        rows = self.chunk_rows
        segs = I.segment_rows(start, stop, rows)
        sums = []
        tail = (0,) * (ds.ndim - 1)
        with np.errstate(over="ignore", invalid="ignore"):
            for lo, hi in segs:
                block = values[lo - start : hi - start]
                if check_finite and not np.isfinite(np.add.reduce(block, axis=None)) and not np.isfinite(block).all():
                    return False
                sums.append(I.sum64(block))
                if hi - lo == rows:
                    ds.id.write_direct_chunk((lo, *tail), block)
                else:
                    ds.write_direct(block, dest_sel=np.s_[lo:hi])
        width = [0] * len(segs)
        self._write_record_table(path, I.pack_segments([a for a, _ in segs], [b for _, b in segs], width, sums))
        return True

    def _write_checksums(self, path: str, values: np.ndarray, start: int, stop: int) -> None:
        """Record the checksums of rows ``start:stop`` (as stored) after the dataset's committed ones."""
        self._write_record_table(path, I.checksum_rows(values, start, stop, self.chunk_rows, self._text_ds(path)))

    def _write_record_table(self, path: str, recs: np.ndarray) -> None:
        """Write segment records after the dataset's committed ones (first rows: from the top)."""
        start = int(recs[0, 0]) if len(recs) else 0
        slot = 0 if start == 0 else self._pending_slots.get(path, 0)
        table = self._ds(f"{F.CHECKSUMS_GROUP}/{path}")
        if table.shape[0] < slot + len(recs):
            table.resize(max(slot + len(recs), 2 * table.shape[0]), axis=0)
        table.write_direct(recs, dest_sel=np.s_[slot : slot + len(recs)])
        self._pending_slots[path] = slot + len(recs)

    def _create_rowwise(self, path: str, values: np.ndarray, n: int) -> h5py.Dataset:
        """Create a row-chunked, growable dataset of ``n`` rows shaped like ``values``' rows."""
        tail = tuple(values.shape[1:])
        chunk = self.chunk_rows
        if values.dtype.kind == "S":
            width = _grown_width(values.dtype.itemsize)
            ds = self._h5.create_dataset(
                path, shape=(n, *tail, width), maxshape=(None, *tail, None), dtype=np.uint8,
                chunks=(chunk, *tail, _TEXT_CHUNK_WIDTH), fillvalue=0,
            )
            _set_attr(ds.attrs, F.ENCODING_ATTR, "utf-8")
        else:
            ds = self._h5.create_dataset(
                path, shape=(n, *tail), maxshape=(None, *tail), dtype=values.dtype,
                chunks=(chunk, *tail), fillvalue=_fill_value(values.dtype),
            )
        self._handles[path] = ds
        self._text[path] = values.dtype.kind == "S"
        if self._checksums:
            _create_checksum_table(self._h5, path)
            self._pending_slots[path] = 0
        return ds

    def _needs_layout(self, str_ids: np.ndarray | None, cols: dict[str, np.ndarray]) -> bool:
        """Whether :meth:`_ensure_layout` would create datasets for a batch of rows."""
        if str_ids is not None and not self._has(F.ID_STRINGS_DATASET):
            return True
        existing = set(self.column_names)
        return any(name not in existing for name in cols)

    def _ensure_layout(self, str_ids: np.ndarray | None, cols: dict[str, np.ndarray], start: int) -> bool:
        """Create the datasets a batch needs (new columns, string ids); True if any."""
        existing = set(self.column_names)
        new_cols = []
        for name, values in cols.items():
            path = self._column_path(name)
            if name not in existing:
                if start > 0:
                    raise InvalidParameterError(
                        f"append: column {name!r} is new but the store already holds {start} rows; "
                        "add it for those rows first with write_column()."
                    )
                new_cols.append((path, values))
                continue
            ds, text = self._ds(path), self._text_ds(path)
            if _row_shape(ds, text) != values.shape[1:]:
                raise InvalidParameterError(
                    f"append: column {name!r} has per-row shape {_row_shape(ds, text)} in the store; "
                    f"got {values.shape[1:]}."
                )
            if text != (values.dtype.kind == "S") or (
                not text and not np.can_cast(values.dtype, ds.dtype, "same_kind")
            ):
                kind = "strings" if text else f"{ds.dtype} values"
                raise InvalidParameterError(f"append: column {name!r} holds {kind}; got dtype {values.dtype}.")
        new_ids = str_ids is not None and not self._has(F.ID_STRINGS_DATASET)
        if not new_cols and not new_ids:
            return False
        self._h5.flush()
        for path, values in new_cols:
            self._h5.require_group(F.COLUMNS_GROUP)
            self._create_rowwise(path, values, 0)
        if new_ids:
            self._create_rowwise(F.ID_STRINGS_DATASET, str_ids, 0)
            if start:
                old = self._ds(F.IDS_DATASET)[:start]
                self._write_rows(F.ID_STRINGS_DATASET, _encode_strings(old.astype(str)), 0, start)
        self._h5.flush()
        return True

    def write_column(self, name: str, values: Any, *, overwrite: bool = True) -> None:
        """Write a full-length per-point column (one value or row per committed z-point).

        An existing column of the same kind (numbers of a castable dtype, or strings)
        and per-row shape is overwritten in place (not atomically: a writer killed
        meanwhile leaves it partly rewritten, so write it again); otherwise it is
        replaced, and readers that are open see the new column after :meth:`refresh`.

        Parameters
        ----------
        name : str
        values : array-like with ``n_rows`` rows (numbers, bools or strings)
        overwrite : bool, default=True
            Replace an existing column of that name; otherwise that is an error.
        """
        self._require_writable()
        _check_column_name(name, "write_column")
        values = np.asarray(values)
        if values.ndim == 0 or values.shape[0] != self._n:
            raise InvalidParameterError(
                f"write_column: {name!r} must have {self._n} rows (one per z-point); got shape {values.shape}."
            )
        values = _column_array(values, name, "write_column")
        self._pending_slots = dict(self._slots)
        path = self._column_path(name)
        exists = name in self.column_names
        if exists and not overwrite:
            raise InvalidParameterError(f"write_column: column {name!r} exists; pass overwrite=True to replace it.")
        in_place = False
        if exists:
            ds, text = self._ds(path), self._text_ds(path)
            in_place = _row_shape(ds, text) == values.shape[1:] and (
                values.dtype.kind == "S" if text else np.can_cast(values.dtype, ds.dtype, "same_kind")
            )
        self._h5.flush()
        if not in_place:
            if exists:
                self._drop(path)
            self._h5.require_group(F.COLUMNS_GROUP)
            self._create_rowwise(path, values, self._n)
        if self._n:
            self._write_rows(path, values, 0, self._n)
        self._h5.flush()
        self._commit(self._n, layout_changed=not in_place)

    def delete_column(self, name: str) -> None:
        """Remove a per-point column (readers that are open see it gone after :meth:`refresh`)."""
        self._require_writable()
        path = self._column_path(name)
        if name not in self.column_names:
            raise InvalidParameterError(
                f"delete_column: no column {name!r}; the store has: {', '.join(self.column_names) or 'none'}."
            )
        self._h5.flush()
        self._drop(path)
        self._h5.flush()
        self._commit(self._n, layout_changed=True)

    def _drop(self, path: str) -> None:
        """Unlink a dataset into the trash group; it is never freed, so open handles stay valid.

        (Deleting an object that has open handles corrupts HDF5's bookkeeping in SWMR
        mode.) Its space is reclaimed by copying the store (``latentscope import``).
        """
        self._handles.pop(path, None)
        self._text.pop(path, None)
        trash = self._h5.require_group(F.TRASH_GROUP)
        tag = uuid.uuid4().hex[:12]
        self._h5.move(path, f"{F.TRASH_GROUP}/{path.replace('/', '.')}.{tag}")
        table = f"{F.CHECKSUMS_GROUP}/{path}"
        if self._checksums and table in self._h5:
            self._handles.pop(table, None)
            self._h5.move(table, f"{F.TRASH_GROUP}/{table.replace('/', '.')}.{tag}")
        self._pending_slots.pop(path, None)
        self._slots.pop(path, None)
        del trash

    # -- reading --------------------------------------------------------------------------
    def block_rows(self, max_bytes: int = 64 << 20, *, row_bytes: int | None = None) -> int:
        """Rows per block: a multiple of the chunk rows within ``max_bytes`` (at least one chunk)."""
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
            raise InvalidParameterError(f"max_bytes must be a positive integer; got {max_bytes!r}.")
        row_bytes = row_bytes or self.z_dim * 4
        return self.chunk_rows * max(1, int(max_bytes) // (self.chunk_rows * row_bytes))

    def _bounds(self, start: int, stop: int | None, owner: str) -> tuple[int, int]:
        n = self._n
        start = int(start)
        if start < 0 or (stop is not None and int(stop) < start):
            raise InvalidParameterError(f"{owner}: need 0 <= start <= stop; got start={start}, stop={stop}.")
        stop = n if stop is None else min(int(stop), n)
        return min(start, stop), stop

    def _ids_path(self) -> str:
        return F.ID_STRINGS_DATASET if self._has(F.ID_STRINGS_DATASET) else F.IDS_DATASET

    def _read(self, path: str, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` of a row-wise dataset, verified against their checksums (format 2)."""
        ds, text = self._ds(path), self._text_ds(path)
        segs = self._segments(path)
        a, b = (lo, hi) if segs is None else segs.span(lo, hi)
        try:
            raw = _read_raw(ds, a, b)
        except (OSError, RuntimeError) as exc:
            raise StoreFormatError(f"{self.path}: damaged store: cannot read rows {a}..{b} of {path!r} "
                                   f"({_one_line(exc)}).") from exc
        if segs is not None and b > a:
            bad = segs.bad_rows(raw, a, b)
            if bad:
                more = f" (and {len(bad) - 1} more ranges)" if len(bad) > 1 else ""
                raise StoreFormatError(
                    f"{self.path}: damaged data: rows {bad[0][0]}..{bad[0][1]} of {path!r} do not match their "
                    f"checksum{more}; 'latentscope check --salvage OUT' keeps the rows that verify."
                )
        if (a, b) != (lo, hi):
            raw = raw[lo - a : hi - a]
        return _decode_raw(raw, text)

    def iter_blocks(
        self,
        *,
        max_bytes: int = 64 << 20,
        columns: Sequence[str] = (),
        ids: bool = False,
        start: int = 0,
        stop: int | None = None,
    ) -> Iterator[Block]:
        """Iterate over committed rows in chunk-aligned blocks.

        Each block is read with ``read_direct`` into a new array, so blocks may be kept.

        Parameters
        ----------
        max_bytes : int, default=64 MiB
            Memory budget of one block (z, plus the requested ids and columns); blocks
            hold whole chunks, at least one.
        columns : sequence of str
            Per-point columns to read along.
        ids : bool, default=False
            Read the row ids along.
        start, stop : int
            Row range (``stop`` defaults to the committed rows).

        Yields
        ------
        Block
        """
        self._require_open()
        lo, stop = self._bounds(start, stop, "iter_blocks")
        for name in columns:
            self._column_ds(name)
        col_paths = {name: self._column_path(name) for name in columns}
        row_bytes = self.z_dim * 4
        for path in col_paths.values():
            ds = self._ds(path)
            row_bytes += ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64))
        ids_path = self._ids_path() if ids else None
        if ids_path is not None:
            ds = self._ds(ids_path)
            row_bytes += ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64))
        step = self.block_rows(max_bytes, row_bytes=row_bytes)
        while lo < stop:
            self._require_open()
            hi = min(stop, (lo // step + 1) * step)
            buf = self._read(F.Z_DATASET, lo, hi)
            cols = {name: self._read(path, lo, hi) for name, path in col_paths.items()}
            id_arr = self._read(ids_path, lo, hi) if ids_path is not None else None
            yield Block(lo, buf, cols, id_arr)
            lo = hi

    def _normalize_rows(self, rows: Any, owner: str) -> slice | int | np.ndarray:
        n = self._n
        if rows is None:
            return slice(0, n, 1)
        if isinstance(rows, slice):
            return slice(*rows.indices(n))
        if isinstance(rows, (int, np.integer)) and not isinstance(rows, (bool, np.bool_)):
            i = int(rows)
            if not -n <= i < n:
                raise InvalidParameterError(f"{owner}: row {i} is out of range for {n} committed rows.")
            return i + n if i < 0 else i
        idx = np.asarray(rows)
        if idx.dtype.kind == "b":
            if idx.shape != (n,):
                raise InvalidParameterError(f"{owner}: a boolean mask must have shape ({n},); got {idx.shape}.")
            return np.flatnonzero(idx)
        if idx.size == 0:
            return idx.astype(np.int64)
        if idx.dtype.kind not in "iu":
            raise InvalidParameterError(
                f"{owner}: rows must be None, a slice, an int, integer indices or a boolean mask; got dtype {idx.dtype}."
            )
        idx = idx.astype(np.int64, copy=False)
        if idx.min() < -n or idx.max() >= n:
            raise InvalidParameterError(
                f"{owner}: row indices must lie in [-{n}, {n}); got min {int(idx.min())}, max {int(idx.max())}."
            )
        return np.where(idx < 0, idx + n, idx)

    def _gather(self, path: str, sel: slice | int | np.ndarray) -> np.ndarray:
        """Rows of a dataset for a normalised selection, reading chunk by chunk."""
        if isinstance(sel, int):
            return self._read(path, sel, sel + 1)[0]
        if isinstance(sel, slice):
            if sel.step == 1:
                return self._read(path, sel.start, max(sel.start, sel.stop))
            sel = np.arange(sel.start, sel.stop, sel.step, dtype=np.int64)
        idx = sel
        flat = idx.ravel()
        if flat.size == 0:
            empty = self._read(path, 0, 0)
            return empty.reshape(*idx.shape, *empty.shape[1:])
        uniq, inverse = np.unique(flat, return_inverse=True)
        chunk = self.chunk_rows
        cid = uniq // chunk
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(cid)) + 1, [uniq.size]))
        parts = []
        for g0, g1 in zip(bounds[:-1], bounds[1:]):
            lo, hi = int(uniq[g0]), int(uniq[g1 - 1]) + 1
            parts.append(self._read(path, lo, hi)[uniq[g0:g1] - lo])
        out_u = parts[0] if len(parts) == 1 else np.concatenate(parts)
        out = out_u[inverse.ravel()]
        return out.reshape(*idx.shape, *out.shape[1:])

    def read(self, rows: Any = None) -> np.ndarray:
        """Read z-points of committed rows.

        Parameters
        ----------
        rows : None, int, slice, integer array or boolean mask
            ``None`` reads every committed row. Integer arrays may be in any order
            and repeat rows; reads are grouped by chunk.

        Returns
        -------
        ndarray, float32
            Shape ``(z_dim,)`` for an int, ``(*rows.shape, z_dim)`` for an array.
        """
        self._require_open()
        return self._gather(F.Z_DATASET, self._normalize_rows(rows, "read"))

    def read_ids(self, rows: Any = None) -> np.ndarray:
        """Row ids of committed rows: int64, or str once the store holds string ids."""
        self._require_open()
        return self._gather(self._ids_path(), self._normalize_rows(rows, "read_ids"))

    def _column_ds(self, name: str) -> h5py.Dataset:
        self._require_open()
        if not isinstance(name, str) or not name or self._column_path(name) not in self._h5:
            raise InvalidParameterError(
                f"{self.path}: no column {name!r}; the store has: {', '.join(self.column_names) or 'none'}."
            )
        return self._ds(self._column_path(name))

    def read_column(self, name: str, rows: Any = None) -> np.ndarray:
        """Values of one per-point column for committed rows (same ``rows`` as :meth:`read`)."""
        self._column_ds(name)
        return self._gather(self._column_path(name), self._normalize_rows(rows, "read_column"))

    def to_dask(self, chunks: int | None = None):
        """A lazy dask array view of the committed z-points (requires dask).

        The view reads from this open store; do not use it after :meth:`close`.

        Parameters
        ----------
        chunks : int, optional
            Rows per dask chunk; defaults to :meth:`block_rows` (chunk-aligned, 64 MiB).
        """
        try:
            import dask.array as da
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise StoreError("to_dask needs dask; install it with: pip install 'dask[array]'") from exc
        self._require_open()
        if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1):
            raise InvalidParameterError(f"to_dask: chunks must be a positive integer; got {chunks!r}.")
        rows = int(chunks) if chunks else self.block_rows()
        view = _CommittedView(self, self._n)
        return da.from_array(view, chunks=(rows, self.z_dim), name=f"zstore-{uuid.uuid4().hex}", asarray=True)


class _CommittedView:
    """The committed rows of a z dataset, as an array-like for dask."""

    def __init__(self, store: ZStore, n: int) -> None:
        self._store = store
        self.shape = (int(n), int(store.z_dim))
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        rows, rest = key[0], key[1:]
        if isinstance(rows, slice) and rows.indices(self.shape[0])[2] == 1:
            lo, hi, _ = rows.indices(self.shape[0])
            out = self._store._read(F.Z_DATASET, lo, max(lo, hi))
        else:
            out = self._store._read(F.Z_DATASET, 0, self.shape[0])[rows]
        return out[(slice(None), *rest)] if rest else out


def _all_finite(values: np.ndarray) -> bool:
    """Whether every value is finite (one reduction; the exact test only when it overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.add.reduce(values, axis=None)) or np.isfinite(values).all())


def _read_raw(ds: h5py.Dataset, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of a dataset as stored, through ``read_direct``."""
    buf = np.empty((hi - lo, *ds.shape[1:]), dtype=ds.dtype)
    if hi > lo and buf.size:
        ds.read_direct(buf, source_sel=np.s_[lo:hi])
    return buf


def _decode_raw(buf: np.ndarray, text: bool) -> np.ndarray:
    """Stored rows as values: string matrices decoded to str."""
    if not text:
        return buf
    raw = np.ascontiguousarray(buf).view(f"S{buf.shape[-1]}")
    return _decode_strings(raw.reshape(buf.shape[:-1]))


def _create_checksum_table(h5: h5py.File, path: str) -> h5py.Dataset:
    """The (empty) table of segment checksum records of the row-wise dataset ``path``."""
    return h5.create_dataset(
        f"{F.CHECKSUMS_GROUP}/{path}", shape=(0, len(I.SEGMENT_FIELDS)), maxshape=(None, len(I.SEGMENT_FIELDS)),
        dtype="<u8", chunks=(F.CHECKSUM_CHUNK, len(I.SEGMENT_FIELDS)), fillvalue=0,
    )


def _check_column_name(name: Any, owner: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise InvalidParameterError(f"{owner}: a column name must be a non-empty str without '/'; got {name!r}.")
    if name in F.RESERVED_COLUMN_NAMES:
        raise InvalidParameterError(f"{owner}: {name!r} is reserved and cannot name a column.")


def _column_array(arr: np.ndarray, name: str, owner: str) -> np.ndarray:
    if arr.dtype.kind in "USO":
        return _encode_strings(arr)
    if arr.dtype.kind not in "biufc":
        raise InvalidParameterError(
            f"{owner}: column {name!r} must hold numbers, bools or strings; got dtype {arr.dtype}."
        )
    return arr


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
    ZStore
        Open with ``mode="a"``.
    """
    path = Path(path)
    if isinstance(z_dim, bool) or not isinstance(z_dim, (int, np.integer)) or z_dim < 1:
        raise InvalidParameterError(f"create_store: z_dim must be an integer >= 1; got {z_dim!r}.")
    z_dim = int(z_dim)
    if chunk_rows is None:
        chunk_rows = F.rows_per_chunk(z_dim)
    elif isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise InvalidParameterError(f"create_store: chunk_rows must be an integer >= 1; got {chunk_rows!r}.")
    fixed = sorted(set(provenance) & _FIXED_ATTRS)
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
        raise StoreError(f"{path}: cannot create the directory ({_one_line(exc)}).") from exc
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    now = _now_ns()
    try:
        with h5py.File(tmp, "w", libver=_LIBVER, locking=False) as h5:
            attrs = h5.attrs
            _set_attr(attrs, "format", F.FORMAT_NAME)
            attrs["format_version"] = F.FORMAT_VERSION
            attrs["z_dim"] = z_dim
            _set_attr(attrs, "backend", str(backend))
            _set_attr(attrs, "model_fingerprint", str(model_fingerprint))
            _set_attr(attrs, "source", str(source))
            _set_attr(attrs, "created", _iso(now))
            _set_attr(attrs, "updated", _iso(now))
            _set_attr(attrs, "library_version", __version__)
            extra = {}
            for key, value in provenance.items():
                if isinstance(value, (str, bool, int, float, np.integer, np.floating)):
                    _set_attr(attrs, key, value.item() if isinstance(value, np.generic) else value)
                else:
                    extra[key] = value
            _set_attr(attrs, "extra_json", json.dumps(extra, default=str))
            h5.create_dataset(F.Z_DATASET, shape=(0, z_dim), maxshape=(None, z_dim), dtype=np.float32,
                              chunks=(int(chunk_rows), z_dim))
            h5.create_dataset(F.IDS_DATASET, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(int(chunk_rows),))
            h5.create_group(F.CHECKSUMS_GROUP)
            _create_checksum_table(h5, F.Z_DATASET)
            _create_checksum_table(h5, F.IDS_DATASET)
            h5.create_group(F.COLUMNS_GROUP)
            h5.create_group(F.TRASH_GROUP)
            h5.create_dataset(F.PROVENANCE_DATASET, shape=(2, F.PROVENANCE_CHUNK), maxshape=(2, None),
                              dtype=np.uint8, chunks=(1, F.PROVENANCE_CHUNK), fillvalue=0)
            record = np.stack([F.pack_commit(0, 0, now, 0, 0), F.pack_commit(1, 0, now, 0, 0)])
            h5.create_dataset(F.COMMIT_DATASET, data=record)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise StoreError(f"{path}: cannot create the store ({_one_line(exc)}).") from exc
        raise
    return ZStore(path, "a")


def open_store(path: str | os.PathLike, mode: str = "r") -> ZStore:
    """Open an existing store (``mode="r"`` to read, ``"a"`` to append).

    Opening for appending a store whose writer was killed repairs it; ``n_rows`` then
    tells where to resume.
    """
    return ZStore(path, mode)


def superblock_status(path: str | os.PathLike) -> int | None:
    """The superblock status flags of an HDF5 file (None for superblock versions 0/1)."""
    fd = os.open(path, os.O_RDONLY | _O_BINARY)
    try:
        sb = read_superblock(fd)
    finally:
        os.close(fd)
    return None if sb is None else sb.status_flags
