"""Constants of the on-disk z-point store format (see docs/store-format.md)."""

from __future__ import annotations

import zlib

import numpy as np

FORMAT_NAME = "latentscope.zstore"
#: Version of the store format that this library writes (see docs/store-format.md).
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
#: Oldest format version whose stores carry checksums (``/checksums``).
CHECKSUM_VERSION = 2

Z_DATASET = "z"
IDS_DATASET = "ids"
#: UTF-8 bytes of string ids, a (n, width) uint8 matrix; present once a string id was appended.
ID_STRINGS_DATASET = "id_strings"
COLUMNS_GROUP = "columns"
#: Group holding replaced or deleted columns (unlinked, never freed: see docs/store-format.md).
TRASH_GROUP = "_trash"
#: Group of the segment checksum records of every row-wise dataset (format 2; see _integrity.py):
#: ``/checksums/<dataset path>``, uint64 (k, 5) records.
CHECKSUMS_GROUP = "checksums"
#: Records per chunk of a checksum dataset.
CHECKSUM_CHUNK = 256
#: Attribute marking a uint8 byte matrix (last axis = bytes) as UTF-8 strings.
ENCODING_ATTR = "encoding"

#: Dataset holding the commit record (see :func:`pack_commit`). The number of committed
#: rows is written to it only after the rows it counts were flushed, so rows past it
#: (left by an interrupted append) are ignored by readers and overwritten by the next append.
COMMIT_DATASET = "commit"
#: Fields of one commit slot; two slots are written alternately.
COMMIT_FIELDS = ("seq", "n_committed", "updated_ns", "n_skipped_nonfinite", "layout_gen", "checksum")
#: Kept for readers of older notes: the name of the committed row count in the record.
COMMITTED_ATTR = "n_committed"

#: Dataset holding provenance set after creation: two slots (rows) of bytes, each a
#: 32-byte header (seq, payload length, updated_ns as int64; CRC-32 of header[:24] +
#: payload as uint32; 4 zero bytes) followed by a UTF-8 JSON object. Written alternately.
PROVENANCE_DATASET = "provenance"
PROVENANCE_HEADER = 32
PROVENANCE_CHUNK = 4096


def pack_provenance(seq: int, updated_ns: int, payload: bytes) -> bytes:
    """One provenance slot: header and JSON payload."""
    head = np.array([seq, len(payload), updated_ns], dtype="<i8").tobytes()
    crc = zlib.crc32(head + payload)
    return head + np.array([crc, 0], dtype="<u4").tobytes() + payload


def unpack_provenance(slots: np.ndarray) -> tuple[int, int, bytes] | None:
    """The valid slot with the highest sequence number: (seq, updated_ns, payload)."""
    best = None
    for row in np.asarray(slots, dtype=np.uint8):
        raw = row.tobytes()
        if len(raw) < PROVENANCE_HEADER:
            continue
        seq, length, updated = (int(v) for v in np.frombuffer(raw[:24], dtype="<i8"))
        crc = int(np.frombuffer(raw[24:28], dtype="<u4")[0])
        if length < 0 or PROVENANCE_HEADER + length > len(raw):
            continue
        payload = raw[PROVENANCE_HEADER : PROVENANCE_HEADER + length]
        if zlib.crc32(raw[:24] + payload) != crc:
            continue
        if best is None or seq > best[0]:
            best = (seq, updated, payload)
    return best

#: Names a per-point column may not take (they name the other arrays of an export).
RESERVED_COLUMN_NAMES = frozenset({Z_DATASET, IDS_DATASET})

#: Target chunk size in bytes for the row-chunked datasets (about 1 MiB).
CHUNK_BYTES = 2**20

#: Root attributes written by :func:`~latentscope.store.create_store`.
PROVENANCE_ATTRS = (
    "format", "format_version", "z_dim", "backend", "model_fingerprint", "source",
    "created", "updated", "library_version",
)


def rows_per_chunk(z_dim: int, itemsize: int = 4) -> int:
    """Rows of ``z_dim`` values of ``itemsize`` bytes that fit one ~1 MiB chunk."""
    return max(1, CHUNK_BYTES // (int(z_dim) * itemsize))


def _checksum(values: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(values, dtype="<i8").tobytes())


def pack_commit(seq: int, n_committed: int, updated_ns: int, n_skipped: int, layout_gen: int) -> np.ndarray:
    """One commit slot: the five values followed by the CRC-32 of their little-endian bytes."""
    head = np.array([seq, n_committed, updated_ns, n_skipped, layout_gen], dtype=np.int64)
    return np.append(head, np.int64(_checksum(head)))


def unpack_commit(record: np.ndarray) -> tuple[int, int, int, int, int] | None:
    """The valid slot with the highest sequence number: (seq, n, updated_ns, skipped, layout_gen).

    A slot whose checksum does not match (a torn write) is ignored; ``None`` when no
    slot is valid.
    """
    best = None
    for slot in np.asarray(record, dtype=np.int64).reshape(-1, len(COMMIT_FIELDS)):
        if _checksum(slot[:-1]) != int(slot[-1]):
            continue
        if best is None or slot[0] > best[0]:
            best = slot
    return None if best is None else tuple(int(v) for v in best[:-1])  # type: ignore[return-value]
