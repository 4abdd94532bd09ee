"""Open HDF5 files of stores and their dataset handles; the per-process reader cache.

A writer owns one :class:`OpenFile`. Readers of the same file in one process share
one, found in :data:`READERS` by (device, inode): HDF5 would share the underlying file
anyway, and refreshing one of two handles to the same dataset corrupts HDF5's
metadata cache. Each reader keeps its own snapshot (its commit record values).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import h5py
import numpy as np

from ..exceptions import StoreError, StoreFormatError
from . import _format as F
from . import _integrity as I
from ._recovery import _O_BINARY, CleanSuperblockView, open_swmr_reader, precheck_superblock, writer_alive

__all__ = [
    "LIBVER", "OpenFile", "READERS", "READERS_LOCK", "one_line", "read_raw", "open_h5_reader", "open_h5_writer",
]

#: libver bounds of every store: superblock version 3 (needed for SWMR), readable by HDF5 >= 1.10.
LIBVER = ("v110", "latest")
#: Chunk cache of a writer per dataset: a few chunks, so that the partial last chunk of
#: a batch stays cached for the next append.
WRITER_CACHE_BYTES = 4 * F.CHUNK_BYTES
#: Seconds a reader waits for a writer that holds the file in non-SWMR write mode.
READER_WAIT_S = 10.0


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (for error messages that quote it)."""
    return " ".join(str(exc).split())


class OpenFile:
    """An open HDF5 file with cached dataset handles (shared by the readers of one process)."""

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


#: The open files of readers in this process, by (device, inode).
READERS: dict[tuple[int, int], OpenFile] = {}
READERS_LOCK = threading.RLock()


def read_raw(ds: h5py.Dataset, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of a dataset as stored, through ``read_direct``."""
    buf = np.empty((hi - lo, *ds.shape[1:]), dtype=ds.dtype)
    if hi > lo and buf.size:
        ds.read_direct(buf, source_sel=np.s_[lo:hi])
    return buf


def open_h5_reader(path: Path, *, lenient: bool = False) -> tuple[h5py.File, CleanSuperblockView | None]:
    """Open a store's file for reading without changing it; bounded in time.

    Returns the HDF5 file and, for a file left by a writer that died before it
    entered SWMR mode, the read-only view it reads through.
    """
    fd = os.open(path, os.O_RDONLY | _O_BINARY)
    try:
        precheck_superblock(fd, path, lenient=lenient)
    finally:
        os.close(fd)
    deadline = time.monotonic() + READER_WAIT_S
    while True:
        try:
            return open_swmr_reader(path), None
        except OSError as exc:
            if "not already open for SWMR writing" not in str(exc):
                raise StoreFormatError(f"{path}: damaged store: cannot open it ({one_line(exc)}).") from exc
        # The superblock says "open for (non-SWMR) write": a live writer is busy (wait
        # for it, at most READER_WAIT_S), or a writer died before it switched to SWMR
        # mode: read through a view whose superblock flags read as cleared (the file
        # itself is not changed; the next writer repairs it).
        if writer_alive(path):
            if time.monotonic() > deadline:
                raise StoreError(f"{path}: another process has held the file open for writing for "
                                 f"{READER_WAIT_S:.0f} s; try again later.")
            time.sleep(0.05)
            continue
        try:
            view = CleanSuperblockView(path)
        except ValueError as exc:
            raise StoreFormatError(f"{path}: damaged HDF5 superblock ({exc}).") from exc
        try:
            return h5py.File(view, "r", locking=False, rdcc_nbytes=0), view
        except BaseException as exc:
            view.close()
            if isinstance(exc, OSError):
                raise StoreFormatError(f"{path}: damaged store: cannot open it ({one_line(exc)}).") from exc
            raise


def open_h5_writer(path: Path) -> h5py.File:
    """Open a store's file for writing (the caller holds the writer lock and repaired the flags)."""
    try:
        return h5py.File(path, "r+", libver=LIBVER, locking=False,
                         rdcc_nbytes=WRITER_CACHE_BYTES, rdcc_nslots=521, rdcc_w0=1.0)
    except OSError as exc:
        if "already open for read-only" in str(exc):
            raise StoreError(
                f"{path}: the store is open for reading in this process; close it before opening it "
                "for appending (readers opened after the writer are fine)."
            ) from exc
        raise StoreError(f"{path}: cannot open the store for writing ({one_line(exc)}).") from exc
