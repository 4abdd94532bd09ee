"""``latentscope check`` on a Zarr store: every chunk file of every part, the commit and provenance records.

Never changes the store. Each chunk holding committed rows must exist and pass its CRC-32C
(zarr's ``crc32c`` codec); the commit records must verify; notes tell what is not damage
(a live writer, an interrupted append's rows, ``*.partial`` files, shards not yet complete).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..exceptions import StoreError
from . import _format as F
from . import _zarr_layout as L
from ._check import CheckReport
from ._handles import one_line
from ._recovery import writer_alive

__all__ = ["check_zarr_store"]


def _parts(path: Path, attrs: dict[str, Any]) -> list[tuple[int, Path]]:
    if "shard_sizes" not in attrs:
        return [(0, path)]
    return [(i, L.part_dir(path, i)) for i in range(len(attrs["shard_sizes"]))]


def _arrays(commit: dict[str, Any]) -> list[tuple[str, str]]:
    arrays = commit["arrays"]
    out = [(F.Z_DATASET, arrays["z"]), (F.IDS_DATASET, arrays["ids"])]
    if arrays.get("id_strings"):
        out.append((F.ID_STRINGS_DATASET, arrays["id_strings"]))
    return out + [(f"{F.COLUMNS_GROUP}/{name}", rel) for name, rel in arrays["columns"].items()]


def _partials(part: Path, sharded_root: bool) -> int:
    count = 0
    for dirpath, dirnames, files in os.walk(part):
        if sharded_root and Path(dirpath) == part:
            dirnames[:] = [d for d in dirnames if d != L.PARTS_DIR]
        count += sum(1 for f in files if f.endswith(".partial"))
    return count


def check_zarr_store(path: Path, *, progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Verify a Zarr store (see :func:`latentscope.store.check_store`)."""
    report = CheckReport(path)
    try:
        attrs = L.read_root_attrs(path)
    except StoreError as exc:
        report.problems.append(one_line(exc))
        return report
    if attrs.get("format") != F.FORMAT_NAME or "z_dim" not in attrs:
        report.problems.append(f"{path}: a Zarr directory, but not a latentscope z-point store.")
        return report
    report.z_dim, report.format_version, report.verified = int(attrs["z_dim"]), int(attrs.get("format_version", 0)), True
    C = int(attrs["chunk_rows"])
    sharded = "shard_sizes" in attrs
    work = []  # (part index, part dir, commit, offset, visible)
    offset, visible = 0, True
    for index, part in _parts(path, attrs):
        try:
            commit = L.read_commit(part)
        except StoreError as exc:
            report.problems.append(one_line(exc))
            visible = False
            continue
        work.append((index, part, commit, offset, visible))
        if visible:
            offset += int(commit["n_committed"])
        if sharded and not commit.get("complete"):
            if visible:
                later = " (later shards are not visible yet)" if index < len(attrs["shard_sizes"]) - 1 else ""
                report.notes.append(f"{path}: shard {index} is not complete ({int(commit['n_committed']):,} rows "
                                    f"committed so far); readers see the rows up to there{later}.")
            visible = False
    report.n_rows = offset
    good = np.ones(offset, dtype=bool)
    total = sum(int(c["n_committed"]) * report.z_dim * 4 for _, _, c, _, _ in work)
    done = 0
    if progress is not None:
        progress(0, total)
    for index, part, commit, start, shown in work:
        label = f"{path} (shard {index})" if sharded else str(path)
        n = int(commit["n_committed"])
        for name, rel in _arrays(commit):
            try:
                arr = L.open_array(part, rel, write=False)
            except Exception as exc:  # zarr raises many kinds for a damaged zarr.json
                report.problems.append(f"{label}: damaged store: cannot open the array {name!r} ({one_line(exc)}).")
                if shown:
                    good[start:start + n] = False
                continue
            if arr.shape[0] < n:
                report.problems.append(f"{label}: damaged store: {name!r} holds {arr.shape[0]} rows; {n} are committed.")
            if name == F.Z_DATASET and arr.shape[0] > n:
                report.notes.append(f"{label}: {arr.shape[0] - n} uncommitted rows of an interrupted append "
                                    "(overwritten by the next append).")
            for chunk in range((n + C - 1) // C):
                lo, hi = chunk * C, min(n, (chunk + 1) * C)
                what = None
                if not L.chunk_file(part, rel, chunk, arr.ndim).is_file():
                    what = f"are missing (no chunk file {L.chunk_file(part, rel, chunk, arr.ndim)})"
                else:
                    try:
                        arr[lo:hi]
                    except Exception as exc:
                        what = (f"do not match their checksum (chunk file {L.chunk_file(part, rel, chunk, arr.ndim)}: "
                                f"{one_line(exc)})")
                if what is not None:
                    report.problems.append(f"{label}: damaged data: rows {start + lo}..{start + hi} of {name!r} {what}.")
                    if shown:
                        good[start + lo:start + hi] = False
                if name == F.Z_DATASET:
                    done += (hi - lo) * report.z_dim * 4
                    if progress is not None:
                        progress(done, total)
        try:
            L.read_record(part / L.PROVENANCE_FILE, "provenance")
        except StoreError as exc:
            report.problems.append(one_line(exc))
        if (part / L.LOCK_FILE).exists() and writer_alive(part / L.LOCK_FILE):
            report.notes.append(f"{label}: a writer is appending now; this check saw the rows committed so far.")
        stray = _partials(part, sharded and part == path)
        if stray:
            report.notes.append(f"{label}: {stray} *.partial files of a killed writer (the next writer removes them).")
    if sharded:
        try:
            L.read_record(path / L.PROVENANCE_FILE, "provenance")
        except StoreError as exc:
            report.problems.append(one_line(exc))
    report.good = good
    return report


def salvage_zarr_store(path: Path, out: Path, *, overwrite: bool, report: CheckReport) -> dict[str, int]:
    """Copy the committed rows of a Zarr store whose every array verifies into a new store (see ``salvage_store``)."""
    from contextlib import ExitStack

    from ._check import _ranges
    from ._transfer import _new_store, carried_provenance
    from ._zarr import ZarrStore

    if report.good is None:
        raise StoreError(f"salvage: {path}: the store cannot be read; nothing to salvage.")
    with ExitStack() as stack:
        src = stack.enter_context(ZarrStore(path))
        prov = src.provenance
        names = src.column_names
        dst, done = _new_store(stack, out, overwrite, src.z_dim, chunk_rows=src.chunk_rows,
                               backend=str(prov.get("backend", "")), model_fingerprint=str(prov.get("model_fingerprint", "")),
                               source=str(prov.get("source", "")),
                               **{**carried_provenance(prov), "salvaged_from": str(path),
                                  "salvaged_rows": report.n_good, "dropped_rows": report.n_rows - report.n_good})
        ids = src._ids_path()
        step = src.block_rows()
        for lo, hi in _ranges(report.good[: src.n_rows]):
            for a in range(lo, hi, step):
                b = min(hi, a + step)
                dst.append(src._read(F.Z_DATASET, a, b), ids=src._read(ids, a, b),
                           columns={c: src._read(f"{F.COLUMNS_GROUP}/{c}", a, b) for c in names})
        rows = dst.n_rows
        done()
    return {"rows": rows, "dropped": report.n_rows - rows}
