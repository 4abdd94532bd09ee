"""``latentscope check``: verify every chunk of a store, and salvage the rows that verify."""

from __future__ import annotations

import os
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..exceptions import StoreError, StoreFormatError
from . import _format as F
from . import _integrity as I
from ._handles import one_line, read_raw
from ._policy import DEFAULT_MAX_BYTES
from ._recovery import read_superblock, writer_alive
from ._store import ZStore
from ._strings import decode_raw
from ._zarr_layout import is_zarr_path

__all__ = ["CheckReport", "check_store", "salvage_store"]

#: What h5py raises for unreadable data or metadata.
_READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError)


@dataclass
class CheckReport:
    """What :func:`check_store` found.

    Attributes
    ----------
    path : Path
    problems : list of str
        One line per damage found (empty when the store is intact).
    notes : list of str
        Facts that are not damage (format 1 cannot be verified, a writer left the file open, ...).
    n_rows, z_dim, format_version : int
        As recorded (``n_rows`` is the committed row count; 0 when unreadable).
    verified : bool
        Whether the data was checked against checksums (format 2) rather than only for
        structure (format 1).
    good : ndarray of bool or None
        Per committed row: whether all its stored values are present and verify; None
        when the store cannot be opened at all.
    """

    path: Path
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    n_rows: int = 0
    z_dim: int = 0
    format_version: int = 0
    verified: bool = False
    good: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is damaged."""
        return not self.problems

    @property
    def n_good(self) -> int:
        """Rows that verify (0 when the store cannot be opened)."""
        return 0 if self.good is None else int(self.good.sum())


def _ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(lo, hi)`` of the runs of True in a boolean vector."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def check_store(path: str | os.PathLike, *, progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Read every chunk of a store and verify it (checksums, commit record, chunk extents).

    Never changes the file. A store that cannot be opened normally (a truncated copy,
    damaged data) is opened leniently to find out which rows are still intact.

    Parameters
    ----------
    path : str or Path
    progress : callable(done, total), optional
        Called with bytes of row data checked so far.

    Returns
    -------
    CheckReport
    """
    path = Path(path)
    if is_zarr_path(path) and path.is_dir():
        from ._zarr_check import check_zarr_store

        return check_zarr_store(path, progress=progress)
    report = CheckReport(path)
    with ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            store = stack.enter_context(ZStore(path))
        except StoreFormatError as exc:
            report.problems.append(one_line(exc))
            try:
                store = stack.enter_context(ZStore(path, _lenient=True))
            except StoreError:
                return report
        _check_open(store, report, progress)
    return report


def _check_open(store: ZStore, report: CheckReport, progress) -> None:
    n = report.n_rows = store.n_rows
    report.z_dim, report.format_version = store.z_dim, store.format_version
    report.verified = store._checksums
    good = report.good = np.ones(n, bool)
    _check_superblock(store, report)
    eof = store.path.stat().st_size
    paths = store._rowwise_paths()
    total = sum(_row_bytes(store, p) * n for p in paths)
    done = 0
    for path in paths:
        ds, text = store._ds(path), store._text_ds(path)
        for lo, hi, what in I.chunk_problems(ds, n, text, eof):
            report.problems.append(f"rows {lo}..{hi} of {path!r} are {what} ({eof:,} bytes in the file)")
            good[lo:hi] = False
        segs = None
        if store._checksums:
            table = f"{F.CHECKSUMS_GROUP}/{path}"
            try:
                recs = store._ds(table)[...] if store._has(table) else np.empty((0, len(I.SEGMENT_FIELDS)), np.uint64)
            except _READ_ERRORS as exc:
                recs = np.empty((0, len(I.SEGMENT_FIELDS)), np.uint64)
                report.problems.append(f"the checksums of {path!r} cannot be read ({one_line(exc)})")
            segs = I.parse_segments(recs, n, store.chunk_rows, partial=True)
            covered = int(segs.stops[-1]) if len(segs) else 0
            if covered < n:
                report.problems.append(f"rows {covered}..{n} of {path!r} have no valid checksums")
                good[covered:] = False
        step = store.block_rows(DEFAULT_MAX_BYTES, row_bytes=max(1, _row_bytes(store, path)))
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            try:
                raw = read_raw(ds, lo, hi)
            except _READ_ERRORS as exc:
                report.problems.append(f"rows {lo}..{hi} of {path!r} cannot be read ({one_line(exc)})")
                good[lo:hi] = False
                continue
            if segs is not None:
                for a, b in segs.bad_rows(raw, lo, hi):
                    report.problems.append(f"rows {a}..{b} of {path!r} do not match their checksum")
                    good[a:b] = False
            done += (hi - lo) * _row_bytes(store, path)
            if progress is not None:
                progress(done, total)
    _check_provenance(store, report)
    uncommitted = store.allocated_rows - n
    if uncommitted > 0:
        report.notes.append(f"{uncommitted} rows of an interrupted append lie past the committed rows "
                            "(ignored; the next append overwrites them)")
    if not store._checksums:
        report.notes.append(f"format version {store.format_version} has no checksums: the structure was checked, "
                            "the data cannot be verified (convert it with: latentscope import OLD.h5 --out NEW.h5)")


def _row_bytes(store: ZStore, path: str) -> int:
    ds = store._ds(path)
    return int(ds.dtype.itemsize * np.prod(ds.shape[1:], dtype=np.int64))


def _check_superblock(store: ZStore, report: CheckReport) -> None:
    fd = os.open(store.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        sb = read_superblock(fd)
        eof = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if sb is None:
        return
    if sb.status_flags:
        if writer_alive(store.path):
            report.notes.append("a writer is appending to the store; the rows committed so far were checked")
        else:
            report.notes.append("a writer stopped without closing the store (not damage: the next append repairs it)")
    elif eof < sb.base_address + sb.eoa:
        report.problems.append(f"the file is truncated: {eof:,} bytes, but HDF5 allocated {sb.base_address + sb.eoa:,}")


def _check_provenance(store: ZStore, report: CheckReport) -> None:
    if not store._has(F.PROVENANCE_DATASET):
        return
    try:
        slots = store._ds(F.PROVENANCE_DATASET)[...]
    except _READ_ERRORS as exc:
        report.problems.append(f"the provenance record cannot be read ({one_line(exc)})")
        return
    if slots.any() and F.unpack_provenance(slots) is None:
        report.problems.append("the provenance record is damaged (no slot verifies)")


def salvage_store(path: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                  report: CheckReport | None = None) -> dict[str, int]:
    """Copy the rows of a store that verify (with their ids and columns) into a new store.

    Parameters
    ----------
    path : str or Path
        The (damaged) store; it is not changed.
    out : str or Path
        The new store (format 2), written under a temporary name and renamed into place.
    overwrite : bool, default=False
    report : CheckReport, optional
        The result of :func:`check_store` for ``path``, if already known.

    Returns
    -------
    dict
        ``{"rows": rows copied, "dropped": committed rows left out}``.

    Raises
    ------
    StoreFormatError
        When the store cannot be opened at all (nothing can be salvaged).
    """
    from ._transfer import _new_store

    path, out = Path(path), Path(out)
    if out.exists() and path.exists() and out.resolve() == path.resolve():
        raise StoreError(f"salvage: {out} is the damaged store itself; choose another output.")
    report = check_store(path) if report is None else report
    if is_zarr_path(path) and path.is_dir():
        from ._zarr_check import salvage_zarr_store

        return salvage_zarr_store(path, out, overwrite=overwrite, report=report)
    if report.good is None:
        raise StoreFormatError(f"{path}: the store cannot be opened at all; nothing to salvage.")
    with ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = stack.enter_context(ZStore(path, _lenient=True))
        prov = store.provenance
        dst, done = _new_store(stack, out, overwrite, store.z_dim, chunk_rows=store.chunk_rows,
                               backend=str(prov.get("backend", "")),
                               model_fingerprint=str(prov.get("model_fingerprint", "")),
                               source=str(prov.get("source", "")))
        good = report.good
        names = store.column_names
        ids_path = store._ids_path()
        col_paths = {name: store._column_path(name) for name in names}
        step = store.chunk_rows  # one chunk at a time: an unreadable chunk costs only its own rows
        written = 0
        for lo in range(0, store.n_rows, step):
            hi = min(store.n_rows, lo + step)
            keep = np.flatnonzero(good[lo:hi])
            if not keep.size:
                continue

            def rows(p: str) -> np.ndarray:
                return decode_raw(read_raw(store._ds(p), lo, hi)[keep], store._text_ds(p))

            try:
                z, ids, cols = rows(F.Z_DATASET), rows(ids_path), {name: rows(p) for name, p in col_paths.items()}
            except _READ_ERRORS:
                continue
            written += dst.append(z, ids=ids, columns=cols, on_nonfinite="skip")
        if written == 0 and names:
            dst.append(np.empty((0, store.z_dim), np.float32),
                       columns={name: decode_raw(read_raw(store._ds(p), 0, 0), store._text_ds(p))
                                for name, p in col_paths.items()})
        dst.set_provenance(salvaged_from=str(path), salvaged_rows=written, dropped_rows=store.n_rows - written)
        done()
    return {"rows": written, "dropped": report.n_rows - written}
