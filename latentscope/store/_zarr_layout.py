"""The directory of a Zarr z-point store: names, records, creation, chunk files.

A Zarr store is a directory ``NAME.zarr`` (a Zarr v3 hierarchy) with the logical layout
of the HDF5 store: ``z``, ``ids``, ``id_strings``, ``columns/<name>`` arrays, each
row-chunked with the same chunk rows, every chunk ending in a CRC-32C (Zarr's
``crc32c`` codec); a commit record ``commit.json`` written after the chunks it counts
(temporary file, then ``os.replace``); provenance in the root attributes and in
``provenance.json``; the writer's lock file ``writer.lock``. A *sharded* store holds K
such parts under ``parts/00000`` ... (see docs/store-format.md, "Zarr stores").
zarr itself is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .._persist import _jsonable
from .._validation import check_positive
from .._version import __version__
from ..exceptions import InvalidParameterError, StoreError, StoreFormatError
from . import _format as F
from ._handles import one_line
from ._layout import FIXED_ATTRS, fill_value, iso, now_ns
from ._recovery import writer_alive
from ._strings import TEXT_CHUNK_WIDTH, grown_width

__all__ = [
    "COMMIT_FILE", "PROVENANCE_FILE", "LOCK_FILE", "PARTS_DIR", "zarr_module", "is_zarr_path", "is_zarr_store",
    "read_root_attrs", "write_json", "read_commit", "write_commit", "read_record", "create_zarr_dir",
    "create_array", "part_dir", "remove_partials", "missing_chunk", "dir_size",
]

#: File names inside a store directory (or inside each part of a sharded store).
COMMIT_FILE = "commit.json"
PROVENANCE_FILE = "provenance.json"
LOCK_FILE = "writer.lock"
PARTS_DIR = "parts"
#: Value of the root attribute ``storage`` of a Zarr store; ``zarr_layout`` versions the directory.
STORAGE = "zarr"
ZARR_LAYOUT = 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def zarr_module():
    """Import zarr, or raise the one-line error naming the extra that installs it."""
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise StoreError("Zarr stores need zarr>=3.1; install it with: pip install 'latentscope-ae[zarr]'") from exc
    return zarr


def is_zarr_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a Zarr store: it ends in ``.zarr`` or is a Zarr store directory."""
    p = Path(path)
    return p.suffix.lower() == ".zarr" or is_zarr_store(p)


def is_zarr_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding a latentscope Zarr store."""
    p = Path(path)
    try:
        return p.is_dir() and read_root_attrs(p).get("format") == F.FORMAT_NAME
    except (StoreError, OSError, ValueError):
        return False


def read_root_attrs(path: Path) -> dict[str, Any]:
    """The attributes of the root group (``zarr.json``) of a store directory."""
    meta = path / "zarr.json"
    try:
        with open(meta, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError as exc:
        raise StoreFormatError(f"{path}: a directory, but not a Zarr store (no zarr.json).") from exc
    except (OSError, ValueError) as exc:
        raise StoreFormatError(f"{path}: damaged Zarr store: cannot read zarr.json ({one_line(exc)}).") from exc
    attrs = doc.get("attributes", {}) if isinstance(doc, dict) else {}
    return attrs if isinstance(attrs, dict) else {}


def write_json(path: Path, obj: Any) -> None:
    """Write a small JSON file atomically: a ``*.partial`` temporary file, then ``os.replace``."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _crc(record: dict[str, Any]) -> int:
    body = {k: v for k, v in record.items() if k != "crc32"}
    return zlib.crc32(json.dumps(body, sort_keys=True, default=str).encode("utf-8"))


def read_record(path: Path, what: str) -> dict[str, Any] | None:
    """A checksummed JSON record (commit or provenance); None when the file does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreFormatError(f"{path}: damaged {what} record ({one_line(exc)}).") from exc
    if not isinstance(record, dict) or record.get("crc32") != _crc(record):
        raise StoreFormatError(f"{path}: damaged {what} record (its checksum does not match).")
    return record


def read_commit(part: Path) -> dict[str, Any]:
    """The commit record of a store (or of one part of a sharded store)."""
    record = read_record(part / COMMIT_FILE, "commit")
    if record is None:
        raise StoreFormatError(f"{part}: damaged Zarr store (no {COMMIT_FILE}).")
    return record


def write_commit(part: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write a commit record (with its CRC-32) atomically; return it."""
    record = {k: v for k, v in record.items() if k != "crc32"}
    record["crc32"] = _crc(record)
    write_json(part / COMMIT_FILE, record)
    return record


def new_commit(now: int) -> dict[str, Any]:
    """The commit record of an empty part."""
    return {"seq": 0, "n_committed": 0, "updated_ns": now, "n_skipped_nonfinite": 0, "layout_gen": 0,
            "complete": False, "arrays": {"z": "z", "ids": "ids", "id_strings": None, "columns": {}}}


def part_dir(root: Path, index: int) -> Path:
    """Directory of part ``index`` of a sharded store."""
    return root / PARTS_DIR / f"{int(index):05d}"


def _codecs() -> list:
    from zarr.codecs import Crc32cCodec

    return [Crc32cCodec()]


def array_config() -> dict[str, Any]:
    """Runtime array settings: write every chunk, even one equal to the fill value (a missing
    chunk file then always means damage)."""
    return {"write_empty_chunks": True}


def column_array_path(part: Path, name: str) -> str:
    """Where a new column's array goes: ``columns/<name>``, or a unique name when that is taken
    (a replaced column's old array stays for readers of older snapshots) or not a safe file name."""
    if _SAFE_NAME.match(name) and not name.startswith("__") and not (part / "columns" / name).exists():
        return f"columns/{name}"
    return f"_arrays/{uuid.uuid4().hex[:16]}"


def create_array(part: Path, path: str, values: np.ndarray, n: int, chunk_rows: int):
    """Create a row-chunked array of ``n`` rows shaped like ``values``' rows (strings: a UTF-8 byte matrix)."""
    zarr = zarr_module()
    store = zarr.storage.LocalStore(part)
    tail = tuple(values.shape[1:])
    if values.dtype.kind == "S":
        width = grown_width(values.dtype.itemsize)
        return zarr.create_array(store, name=path, shape=(n, *tail, width), chunks=(chunk_rows, *tail, TEXT_CHUNK_WIDTH),
                                 dtype=np.uint8, fill_value=0, compressors=_codecs(), attributes={"encoding": "utf-8"},
                                 config=array_config())
    dtype = np.dtype(values.dtype)
    return zarr.create_array(store, name=path, shape=(n, *tail), chunks=(chunk_rows, *tail), dtype=dtype,
                             fill_value=fill_value(dtype) if dtype.kind != "c" else 0, compressors=_codecs(),
                             config=array_config())


def open_array(part: Path, path: str, *, write: bool):
    """Open one array of a part (``write``: for appending)."""
    zarr = zarr_module()
    store = zarr.storage.LocalStore(part, read_only=not write)
    arr = zarr.open_array(store, path=path, mode="r+" if write else "r")
    return arr.with_config(array_config())


def _check_create(owner: str, z_dim: Any, chunk_rows: Any, provenance: dict[str, Any]) -> tuple[int, int]:
    z_dim = int(check_positive(z_dim, "z_dim", owner=owner, integer=True, minimum=1))
    if chunk_rows is None:
        chunk_rows = F.rows_per_chunk(z_dim)
    else:
        chunk_rows = int(check_positive(chunk_rows, "chunk_rows", owner=owner, integer=True, minimum=1))
    fixed = sorted(set(provenance) & (FIXED_ATTRS | {"storage", "zarr_layout", "chunk_rows", "shard_sizes", "shards"}))
    if fixed:
        raise InvalidParameterError(f"{owner}: {', '.join(fixed)} cannot be set as provenance.")
    return z_dim, int(chunk_rows)


def json_values(value: Any) -> Any:
    """``value`` as plain JSON (numpy values converted by ``_persist._jsonable``; other objects as str)."""
    return json.loads(json.dumps(_jsonable(value), default=str))


def _init_part(part: Path, z_dim: int, chunk_rows: int, now: int, *, group: bool = True) -> None:
    zarr = zarr_module()
    if group:
        zarr.create_group(zarr.storage.LocalStore(part), attributes={})
    create_array(part, "z", np.empty((0, z_dim), np.float32), 0, chunk_rows)
    create_array(part, "ids", np.empty((0,), np.int64), 0, chunk_rows)
    write_commit(part, new_commit(now))


def create_zarr_dir(path: Path, z_dim: Any, *, backend: str, model_fingerprint: str, source: str, overwrite: bool,
                    chunk_rows: Any, provenance: dict[str, Any], shard_sizes: list[int] | None = None,
                    owner: str = "create_store") -> None:
    """Check the arguments and write a complete empty Zarr store directory (built under a
    temporary name and renamed into place)."""
    z_dim, chunk_rows = _check_create(owner, z_dim, chunk_rows, provenance)
    zarr = zarr_module()
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise StoreError(f"{path}: file exists; pass overwrite=True (CLI: --overwrite) to replace it.")
        if path.is_dir() and not is_zarr_store(path):
            raise StoreError(f"{path}: is a directory that is not a latentscope Zarr store; not overwriting it.")
        if any(writer_alive(lock) for lock in path.glob(f"**/{LOCK_FILE}")):
            raise StoreError(f"{path}: another process is writing to this store; not overwriting it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the directory ({one_line(exc)}).") from exc
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    now = now_ns()
    attrs: dict[str, Any] = {
        "format": F.FORMAT_NAME, "format_version": F.FORMAT_VERSION, "storage": STORAGE, "zarr_layout": ZARR_LAYOUT,
        "z_dim": z_dim, "chunk_rows": chunk_rows, "backend": str(backend), "model_fingerprint": str(model_fingerprint),
        "source": str(source), "created": iso(now), "updated": iso(now), "library_version": __version__,
    }
    attrs.update(json_values(dict(provenance)))
    try:
        tmp.mkdir()
        if shard_sizes is None:
            zarr.create_group(zarr.storage.LocalStore(tmp), attributes=attrs)
            _init_part(tmp, z_dim, chunk_rows, now, group=False)
        else:
            attrs["shard_sizes"] = [int(s) for s in shard_sizes]
            attrs["shards"] = len(shard_sizes)
            zarr.create_group(zarr.storage.LocalStore(tmp), attributes=attrs)
            zarr.create_group(zarr.storage.LocalStore(tmp / PARTS_DIR), attributes={})
            for i in range(len(shard_sizes)):
                _init_part(part_dir(tmp, i), z_dim, chunk_rows, now)
        if path.exists() or path.is_symlink():
            old = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise StoreError(f"{path}: cannot create the store ({one_line(exc)}).") from exc
        raise


def remove_partials(part: Path, *, skip: tuple[str, ...] = ()) -> int:
    """Delete the ``*.partial`` files a killed writer left in a part; return how many."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(part):
        if Path(dirpath) == part:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            if name.endswith(".partial"):
                try:
                    os.unlink(os.path.join(dirpath, name))
                    count += 1
                except FileNotFoundError:  # pragma: no cover - raced with another cleaner
                    pass
    return count


def chunk_file(part: Path, path: str, chunk: int, ndim: int) -> Path:
    """The file of the first chunk of row-chunk ``chunk`` of an array (default chunk key encoding)."""
    return part.joinpath(*path.split("/"), "c", str(int(chunk)), *(["0"] * (ndim - 1)))


def missing_chunk(part: Path, path: str, lo: int, hi: int, chunk_rows: int, ndim: int) -> int | None:
    """The first row-chunk holding rows ``lo:hi`` whose chunk file is absent (reads would give fill values)."""
    if hi <= lo:
        return None
    for chunk in range(lo // chunk_rows, (hi - 1) // chunk_rows + 1):
        if not chunk_file(part, path, chunk, ndim).is_file():
            return chunk
    return None


def dir_size(path: Path) -> int:
    """Bytes of every file under a directory."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:  # pragma: no cover - removed meanwhile
                pass
    return total
