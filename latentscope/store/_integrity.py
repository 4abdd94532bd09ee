"""Integrity of stored data: checksums of row segments (format 2) and chunk extents.

Every append writes, for each row-wise dataset (``z``, ``ids``, ``id_strings``, each
column), one *segment record* per chunk it touches: the rows ``start:stop`` (never
crossing a chunk boundary), the byte width covered (string matrices only) and a
64-bit checksum of those rows' bytes (:func:`sum64`). The records of a dataset live in
``/checksums/<dataset path>`` and chain: the first starts at row 0, each starts where
the previous stopped, and the committed chain ends exactly at the committed row count.
Records past it belong to an interrupted append and are overwritten by the next one.

A segment is written once and never changes (a later append to the same chunk adds a
new segment), so torn rewrites of a partial chunk cannot invalidate committed rows.
See ``docs/store-format.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["sum64", "pack_segments", "Segments", "parse_segments", "chunk_problems"]

_M64 = (1 << 64) - 1
#: Words (8 bytes) per page of the checksum: each page's word sum gets its own odd weight.
_PAGE_WORDS = 512
#: Fields of a segment record (little-endian uint64 each).
SEGMENT_FIELDS = ("start", "stop", "width", "sum", "check")
#: Odd multipliers of the record check (any change of one field changes the check).
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5],
                dtype=np.uint64)
_MIX0 = np.uint64(0xD6E8FEB86659FD93)


def sum64(data: np.ndarray) -> int:
    """The 64-bit checksum of an array's bytes (C order), as stored in segment records.

    The bytes (``L`` of them) are zero-padded to a multiple of 8 and read as
    little-endian uint64 words ``w_i``; words ``512 p .. 512 p + 511`` form page ``p``.
    The checksum is ``(L + sum_i (2 floor(i / 512) + 1) w_i) mod 2**64``: odd weights make
    every change confined to one word (any single flipped byte or bit) change it, the
    page weights make moved pages change it, and random damage goes unnoticed with
    probability 2**-64. It runs at memory speed with numpy (a sum per page).
    """
    b = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    n = int(b.size)
    total = n
    nw = n // 8
    if nw:
        w = b[: nw * 8].view("<u8")
        full = nw // _PAGE_WORDS
        if full:
            pages = np.add.reduce(w[: full * _PAGE_WORDS].reshape(full, _PAGE_WORDS), axis=1)
            weights = np.arange(1, 2 * full, 2, dtype=np.uint64)
            total += int(np.add.reduce(pages * weights))
        rest = w[full * _PAGE_WORDS :]
        if rest.size:
            total += int(np.add.reduce(rest)) * (2 * full + 1)
    tail = n - nw * 8
    if tail:
        pad = np.zeros(8, np.uint8)
        pad[:tail] = b[nw * 8 :]
        total += int(pad.view("<u8")[0]) * (2 * (nw // _PAGE_WORDS) + 1)
    return total & _M64


def _record_check(recs: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.add.reduce(recs[:, :4] * _MIX, axis=1) + _MIX0


def pack_segments(starts, stops, widths, sums) -> np.ndarray:
    """Segment records, shape (k, 5) uint64: start, stop, width, sum, check."""
    recs = np.zeros((len(starts), len(SEGMENT_FIELDS)), dtype="<u8")
    recs[:, 0], recs[:, 1], recs[:, 2] = starts, stops, widths
    recs[:, 3] = np.array(sums, dtype=np.uint64)
    recs[:, 4] = _record_check(recs)
    return recs


def segment_rows(start: int, stop: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Rows ``start:stop`` cut at chunk boundaries."""
    out = []
    lo = int(start)
    while lo < stop:
        hi = min(int(stop), (lo // chunk_rows + 1) * chunk_rows)
        out.append((lo, hi))
        lo = hi
    return out


def checksum_rows(values: np.ndarray, start: int, stop: int, chunk_rows: int, text: bool) -> np.ndarray:
    """Segment records of rows ``start:stop`` whose values (as stored) are ``values``."""
    width = int(values.shape[-1]) if text else 0
    segs = segment_rows(start, stop, chunk_rows)
    sums = [sum64(values[lo - start : hi - start]) for lo, hi in segs]
    return pack_segments([s for s, _ in segs], [e for _, e in segs], [width] * len(segs), sums)


@dataclass(frozen=True)
class Segments:
    """The committed chain of segment records of one dataset."""

    starts: np.ndarray
    stops: np.ndarray
    widths: np.ndarray
    sums: np.ndarray

    def __len__(self) -> int:
        return int(self.starts.size)

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        """The smallest range of whole segments covering rows ``lo:hi``."""
        if hi <= lo or not len(self):
            return lo, hi
        i = int(np.searchsorted(self.stops, lo, side="right"))
        j = int(np.searchsorted(self.starts, hi, side="left"))
        return int(self.starts[i]), int(self.stops[j - 1])

    def bad_rows(self, raw: np.ndarray, lo: int, hi: int) -> list[tuple[int, int]]:
        """Row ranges of the whole segments in ``lo:hi`` whose stored bytes ``raw`` do not verify."""
        bad = []
        i = int(np.searchsorted(self.stops, lo, side="right"))
        while i < len(self) and self.stops[i] <= hi:
            s, e, width = int(self.starts[i]), int(self.stops[i]), int(self.widths[i])
            rows = raw[s - lo : e - lo]
            if width and width < rows.shape[-1]:
                ok = not rows[..., width:].any()  # bytes added by a later widening are zeros
                rows = rows[..., :width]
            else:
                ok = True
            if not ok or sum64(rows) != int(self.sums[i]):
                bad.append((s, e))
            i += 1
        return bad


def parse_segments(recs: np.ndarray, n: int, chunk_rows: int, *, partial: bool = False) -> Segments | str:
    """The chain of records covering rows ``0:n`` exactly, or a message saying what is wrong.

    With ``partial``, a chain that stops short of ``n`` is returned as far as it is valid
    (rows past it cannot be verified).
    """
    recs = np.asarray(recs, dtype=np.uint64).reshape(-1, len(SEGMENT_FIELDS))
    empty = np.empty(0, np.int64)
    if n == 0:
        return Segments(empty, empty, empty, np.empty(0, np.uint64))
    if recs.shape[0] == 0:
        return Segments(empty, empty, empty, np.empty(0, np.uint64)) if partial else f"no checksums for rows 0..{n}"
    starts = recs[:, 0].astype(np.int64)
    stops = recs[:, 1].astype(np.int64)
    prev = np.r_[0, stops[:-1]]
    valid = (
        (_record_check(recs) == recs[:, 4]) & (stops > starts) & (starts == prev)
        & (starts // chunk_rows == (stops - 1) // chunk_rows)
    )
    prefix = int(np.argmin(valid)) if not valid.all() else int(valid.size)
    ends = np.flatnonzero(stops[:prefix] == n)
    if ends.size == 0:
        k = int(np.searchsorted(stops[:prefix], n, side="right"))  # the valid records inside 0:n
        covered = int(stops[k - 1]) if k else 0
        if partial:
            return Segments(starts[:k], stops[:k], recs[:k, 2].astype(np.int64), recs[:k, 3].copy())
        return f"no valid checksums for rows {covered}..{n}"
    k = int(ends[0]) + 1
    return Segments(starts[:k], stops[:k], recs[:k, 2].astype(np.int64), recs[:k, 3].copy())


def chunk_problems(ds, n: int, text: bool, eof: int) -> list[tuple[int, int, str]]:
    """Row ranges of committed rows ``0:n`` of a chunked dataset whose chunks are missing
    (never allocated: reads would give fill values) or lie past the end of the file
    (``eof`` bytes). Each item is ``(lo, hi, "missing" | "beyond the end of the file")``.
    Format 2 checksums also cover what this cannot see (bytes of a widened string matrix).
    """
    if n <= 0 or ds.chunks is None or 0 in ds.shape[1:]:
        return []
    rows = int(ds.chunks[0])
    need = -(-int(n) // rows)
    present = np.zeros(need, bool)
    beyond = np.zeros(need, bool)

    def on_chunk(info) -> None:
        r = int(info.chunk_offset[0]) // rows
        if r >= need or (text and int(info.chunk_offset[-1]) != 0):
            # String matrices: only the first byte-chunk of each row chunk is written with
            # the rows; later ones appear when the width grows (old rows read zeros there,
            # and a live writer may index them before their bytes reach the file).
            return
        if int(info.byte_offset) + int(info.size) > eof:
            beyond[r] = True
        present[r] = True

    dsid = ds.id
    try:
        if hasattr(dsid, "chunk_iter"):
            dsid.chunk_iter(on_chunk)
        else:  # pragma: no cover - HDF5 < 1.14
            for i in range(dsid.get_num_chunks()):
                on_chunk(dsid.get_chunk_info(i))
    except (OSError, RuntimeError, ValueError):
        return [(0, int(n), "unreadable (damaged chunk index)")]
    out = []
    for r in np.flatnonzero(~present | beyond):
        lo, hi = int(r) * rows, min(int(n), (int(r) + 1) * rows)
        out.append((lo, hi, "beyond the end of the file" if beyond[r] else "missing"))
    return out
