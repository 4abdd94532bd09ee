"""Import z-points from .npy / .npz / HDF5 arrays into a store, export a store to .npz, copy stores.

These back ``latentscope import`` and ``latentscope export`` (a store is copied into a store of
either kind, HDF5 or Zarr, by :func:`export_store`). Both stream: the
z-points go through memory one block at a time (except for .npz members, which numpy
reads whole).
"""

from __future__ import annotations

import os
import shutil
import uuid
import zipfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .._validation import check_positive
from ..exceptions import InvalidParameterError, NonFiniteError, StoreError
from . import _format as F
from ._policy import DEFAULT_MAX_BYTES
from ._store import ZStore, create_store, open_store
from ._strings import attr_value
from ._zarr import ZarrStore
from ._zarr_layout import is_zarr_path, is_zarr_store

__all__ = ["ArraySource", "open_array", "import_array", "export_npz", "export_store", "carried_provenance"]

ProgressCallback = Callable[[int, int], None]
_NPZ_SUFFIXES = (".npz",)
_NPY_SUFFIXES = (".npy",)
_TEXT_SUFFIXES = (".txt", ".csv", ".tsv", ".lst")


def split_spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """Split ``FILE[:KEY]`` into the file and the key (None when absent).

    A spec that names an existing file as a whole has no key, so paths containing
    ``:`` still work.
    """
    text = os.fspath(spec)
    if Path(text).exists() or ":" not in text:
        return Path(text), None
    path, key = text.rsplit(":", 1)
    return Path(path), (key or None)


def _is_hdf5(path: Path) -> bool:
    import h5py

    try:
        return path.is_file() and h5py.is_hdf5(path)
    except OSError:
        return False


class ArraySource:
    """Named arrays of one input file (.npy, .npz or HDF5), read lazily.

    Parameters
    ----------
    path : Path
        The file; it must exist.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such file.")
        self._stack = ExitStack()
        self.store: ZStore | ZarrStore | None = None
        if self.path.is_dir():
            if not is_zarr_store(self.path):
                raise StoreError(f"{self.path}: is a directory, not an array file or a latentscope store.")
            self.store = self._stack.enter_context(open_store(self.path))
            self.kind = "store"
            return
        suffix = self.path.suffix.lower()
        try:
            if _is_hdf5(self.path):
                import h5py

                try:
                    h5 = h5py.File(self.path, "r", locking=False)
                except OSError as exc:  # a store a writer holds open, or a truncated one: the store says
                    if "already open for write" not in str(exc) and "truncated file" not in str(exc):
                        raise
                    h5 = None
                if h5 is not None:
                    self._stack.callback(h5.close)
                if h5 is None or attr_value(h5.attrs.get("format")) == F.FORMAT_NAME:
                    if h5 is not None:
                        h5.close()
                    self.store = self._stack.enter_context(open_store(self.path))
                    self.kind = "store"
                else:
                    self._h5 = h5
                    self.kind = "hdf5"
            elif suffix in _NPZ_SUFFIXES or zipfile.is_zipfile(self.path):
                self._npz = np.load(self.path, allow_pickle=False)
                self._stack.callback(self._npz.close)
                self._npz_cache: dict[str, np.ndarray] = {}
                self.kind = "npz"
            elif suffix in _NPY_SUFFIXES or _is_npy(self.path):
                self._npy = np.load(self.path, mmap_mode="r", allow_pickle=False)
                self.kind = "npy"
            else:
                raise InvalidParameterError(
                    f"{self.path}: unknown array file; expected .npy, .npz or an HDF5 file (FILE.h5:DATASET)."
                )
        except (OSError, ValueError) as exc:
            self.close()
            if isinstance(exc, (StoreError, InvalidParameterError)):
                raise
            raise StoreError(f"{self.path}: cannot read the file ({' '.join(str(exc).split())}).") from exc

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> "ArraySource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def keys(self) -> list[str]:
        """Names of the arrays in the file."""
        if self.kind == "npz":
            return list(self._npz.files)
        if self.kind == "hdf5":
            import h5py

            names: list[str] = []
            self._h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            return names
        if self.kind == "store":
            return ["z", "ids", *self.store.column_names]
        return [""]

    def get(self, key: str | None) -> Any:
        """The array ``key`` (a lazy dataset for HDF5 and .npy, an ndarray for .npz)."""
        if self.kind == "npy":
            if key:
                raise InvalidParameterError(f"{self.path}: a .npy file holds one array; drop ':{key}'.")
            return self._npy
        if self.kind == "store":
            raise InvalidParameterError(f"{self.path}: is a latentscope store; use the store as a whole.")
        if key not in self.keys():
            raise InvalidParameterError(
                f"{self.path}: no array {key!r}; the file has: {', '.join(self.keys()) or 'none'}."
            )
        if self.kind == "npz":
            if key not in self._npz_cache:
                self._npz_cache[key] = self._npz[key]
            return self._npz_cache[key]
        return self._h5[key]

    def default_z_key(self) -> str | None:
        """``z`` when present, else the only 2-D array; error when ambiguous."""
        if self.kind in ("npy", "store"):
            return None
        keys = self.keys()
        if "z" in keys:
            return "z"
        two_d = [k for k in keys if len(self._shape(k)) == 2]
        if len(two_d) == 1:
            return two_d[0]
        raise InvalidParameterError(
            f"{self.path}: name the array of z-points as FILE:KEY; 2-D arrays in the file: {', '.join(two_d) or 'none'}."
        )

    def _shape(self, key: str) -> tuple[int, ...]:
        if self.kind == "hdf5":
            return tuple(self._h5[key].shape)
        return tuple(self.get(key).shape)


def _is_npy(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"


def open_array(spec: str | os.PathLike) -> tuple[ArraySource, str | None]:
    """Open the file of ``FILE[:KEY]``; return it and the key of the z-points."""
    path, key = split_spec(spec)
    source = ArraySource(path)
    if key is None:
        try:
            key = source.default_z_key()
        except BaseException:
            source.close()
            raise
    return source, key


def _read_ids_file(path: Path) -> np.ndarray:
    if path.suffix.lower() in _TEXT_SUFFIXES:
        with open(path, encoding="utf-8") as f:
            return np.array([line.rstrip("\r\n") for line in f if line.strip()], dtype=str)
    with ArraySource(path) as src:
        key = None
        if src.kind == "npz":
            key = "ids" if "ids" in src.keys() else (src.keys()[0] if len(src.keys()) == 1 else None)
            if key is None:
                raise InvalidParameterError(f"{path}: name the ids array as FILE:KEY.")
        return np.asarray(src.get(key)[()])


def _resolve_ids(spec: str, source: ArraySource) -> np.ndarray:
    """Ids from ``spec``: another file (``FILE[:KEY]``) or the key of an array in ``source``."""
    path, key = split_spec(spec)
    if path.exists():
        if path.resolve() == source.path.resolve():
            return np.asarray(source.get(key)[()])
        if key is None:
            return _read_ids_file(path)
        with ArraySource(path) as other:
            return np.asarray(other.get(key)[()])
    return np.asarray(source.get(spec)[()])


def _tmp_path(out: Path) -> Path:
    """A hidden temporary name beside ``out`` (of the same kind: a Zarr output's ends in .zarr)."""
    tail = ".tmp.zarr" if is_zarr_path(out) else ".tmp"
    return out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{tail}")


def _remove(path: Path) -> None:
    """Delete a file or a (Zarr) directory."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``, replacing an existing file or Zarr directory."""
    if out.is_dir() and not out.is_symlink():
        old = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.old")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _new_store(stack: ExitStack, out: Path, overwrite: bool, z_dim: int, **kwargs: Any) -> tuple[ZStore, Callable[[], None]]:
    """Create the output store under a temporary name.

    Returns the store and ``done()``: once called, closing ``stack`` renames the store to
    ``out``; otherwise closing ``stack`` deletes it.
    """
    if out.exists() and not overwrite:
        raise StoreError(f"{out}: file exists; pass --overwrite to replace it (or --append to add to it).")
    if out.is_dir() and not is_zarr_store(out):
        raise StoreError(f"{out}: is a directory.")
    tmp = _tmp_path(out)
    store = create_store(tmp, z_dim, **kwargs)
    state = {"ok": False}

    def finish() -> None:
        store.close()
        if state["ok"]:
            _move_into_place(tmp, out)
        else:
            _remove(tmp)

    stack.callback(finish)
    return store, lambda: state.__setitem__("ok", True)


def _row_blocks(n: int, rows: int) -> Iterator[tuple[int, int]]:
    """Row ranges of at most ``rows``; one empty range when ``n`` is 0, so that an
    empty array's columns still reach the store."""
    for lo in range(0, max(n, 1), rows):
        yield lo, min(n, lo + rows)


def import_array(
    spec: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ids: str | Sequence[Any] | np.ndarray | None = None,
    columns: Sequence[str] | None = None,
    overwrite: bool = False,
    append: bool = False,
    backend: str = "",
    model_fingerprint: str = "",
    source: str | None = None,
    on_nonfinite: str = "raise",
    batch_rows: int | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, int]:
    """Import z-points (and ids and columns) from an array file into a store.

    Parameters
    ----------
    spec : str or Path
        ``FILE.npy``, ``FILE.npz[:KEY]``, ``FILE.h5[:DATASET]`` (default key ``z``, or
        the file's only 2-D array) or a latentscope store (copied: committed rows,
        ids and columns).
    out : str or Path
        The store to create (or to append to, with ``append=True``).
    ids : str or array-like, optional
        Ids: an array, the key of an array in the same file, or another file
        (``.npy``, ``.npz[:KEY]``, ``.h5:DATASET``, or text with one id per line). From a
        .npz file an array named ``ids`` is taken by default.
    columns : sequence of str, optional
        Keys of per-point arrays in the same file to store as columns (named by the
        last part of the key). From a .npz file every other array with one row per
        z-point is taken by default; pass ``[]`` for none.
    overwrite, append : bool
        Replace an existing store, or append to it (z_dim must match).
    backend, model_fingerprint, source : str
        Provenance; ``source`` defaults to ``spec``.
    on_nonfinite : {"raise", "skip"}
        What to do with rows holding NaN or inf.
    batch_rows : int, optional
        Rows per append (default: about 64 MiB of z-points).
    progress : callable(done, total), optional

    Returns
    -------
    dict
        ``{"rows": rows written, "skipped": non-finite rows skipped, "z_dim": ...}``.
    """
    if overwrite and append:
        raise InvalidParameterError("import: overwrite and append exclude each other.")
    if batch_rows is not None:
        check_positive(batch_rows, "batch_rows", owner="import", integer=True, minimum=1)
    out = Path(out)
    src, key = open_array(spec)
    with ExitStack() as stack:
        stack.callback(src.close)
        if src.kind == "store":
            return _copy_store(src.store, out, overwrite=overwrite, append=append, on_nonfinite=on_nonfinite,
                               batch_rows=batch_rows, progress=progress, backend=backend,
                               model_fingerprint=model_fingerprint, source=source or os.fspath(spec))
        z = src.get(key)
        shape = tuple(z.shape)
        if len(shape) != 2:
            raise InvalidParameterError(f"{src.path}: the z-points {key or ''} must be 2-D (n, z_dim); got shape {shape}.")
        if np.dtype(z.dtype).kind not in "biuf":
            raise InvalidParameterError(f"{src.path}: the z-points must be numbers; got dtype {z.dtype}.")
        n, z_dim = shape
        ids_arr = _import_ids(ids, src, n)
        cols = _import_columns(columns, src, key, n)
        done = _nothing
        if append:
            store = stack.enter_context(open_store(out, "a"))
            if store.z_dim != z_dim:
                raise InvalidParameterError(f"import: {out} has z_dim {store.z_dim}; the array has {z_dim}.")
        else:
            store, done = _new_store(stack, out, overwrite, z_dim, backend=backend,
                                     model_fingerprint=model_fingerprint,
                                     source=source if source is not None else os.fspath(spec))
        rows = batch_rows or store.block_rows(DEFAULT_MAX_BYTES)
        written = 0
        skipped_before = store.n_skipped_nonfinite
        if progress is not None:
            progress(0, n)
        for lo, hi in _row_blocks(n, rows):
            batch = np.asarray(z[lo:hi])
            try:
                written += store.append(
                    batch,
                    ids=None if ids_arr is None else ids_arr[lo:hi],
                    columns={name: np.asarray(values[lo:hi]) for name, values in cols.items()},
                    on_nonfinite=on_nonfinite,
                )
            except NonFiniteError:
                bad = int(np.flatnonzero(~np.isfinite(batch.astype(np.float32)).all(axis=1))[0]) + lo
                raise NonFiniteError(
                    f"import: row {bad} of {spec} holds a non-finite value; pass --skip-nonfinite "
                    "(on_nonfinite='skip') to skip such rows."
                ) from None
            if progress is not None:
                progress(hi, n)
        done()
        return {"rows": written, "skipped": store.n_skipped_nonfinite - skipped_before, "z_dim": z_dim}


def _import_ids(ids: Any, src: ArraySource, n: int) -> np.ndarray | None:
    if ids is None:
        if src.kind == "npz" and "ids" in src.keys():
            ids_arr = np.asarray(src.get("ids"))
        else:
            return None
    elif isinstance(ids, (str, os.PathLike)):
        ids_arr = _resolve_ids(os.fspath(ids), src)
    else:
        ids_arr = np.asarray(ids)
    if ids_arr.shape != (n,):
        raise InvalidParameterError(f"import: ids must be 1-D with one entry per z-point ({n}); got shape {ids_arr.shape}.")
    return ids_arr


def _import_columns(columns: Sequence[str] | None, src: ArraySource, z_key: str | None, n: int) -> dict[str, Any]:
    if columns is None:
        if src.kind != "npz":
            return {}
        keys = [k for k in src.keys() if k not in (z_key, "ids") and src._shape(k)[:1] == (n,)]
    else:
        keys = list(columns)
    cols: dict[str, Any] = {}
    for key in keys:
        values = src.get(key)
        name = key.rsplit("/", 1)[-1]
        if name in F.RESERVED_COLUMN_NAMES:
            raise InvalidParameterError(f"import: column name {name!r} (from {key!r}) is reserved.")
        if name in cols:
            raise InvalidParameterError(f"import: two columns would be named {name!r}.")
        if tuple(values.shape[:1]) != (n,):
            raise InvalidParameterError(
                f"import: column {key!r} must have one row per z-point ({n}); got shape {tuple(values.shape)}."
            )
        cols[name] = values
    return cols


def _copy_store(store: ZStore, out: Path, *, overwrite: bool, append: bool, on_nonfinite: str,
                batch_rows: int | None, progress: ProgressCallback | None, backend: str,
                model_fingerprint: str, source: str) -> dict[str, int]:
    if out.exists() and out.resolve() == store.path.resolve():
        raise InvalidParameterError(f"copy: {out} is the input store itself; write the copy elsewhere.")
    prov = store.provenance
    with ExitStack() as stack:
        done = _nothing
        if append:
            dst = stack.enter_context(open_store(out, "a"))
            if dst.z_dim != store.z_dim:
                raise InvalidParameterError(f"import: {out} has z_dim {dst.z_dim}; the input store has {store.z_dim}.")
        else:
            dst, done = _new_store(stack, out, overwrite, store.z_dim, chunk_rows=store.chunk_rows,
                             backend=backend or str(prov.get("backend", "")),
                             model_fingerprint=model_fingerprint or str(prov.get("model_fingerprint", "")),
                             source=str(prov.get("source", "")) or source, **carried_provenance(prov))
        n = store.n_rows
        written = 0
        skipped_before = dst.n_skipped_nonfinite
        if progress is not None:
            progress(0, n)
        max_bytes = (batch_rows or 0) * store.z_dim * 4 or DEFAULT_MAX_BYTES
        names = store.column_names
        for block in store.iter_blocks(max_bytes=max_bytes, ids=True, columns=names):
            written += dst.append(block.z, ids=block.ids, columns=block.columns, on_nonfinite=on_nonfinite)
            if progress is not None:
                progress(block.stop, n)
        if n == 0:  # no blocks: an empty append still carries the columns over
            dst.append(np.empty((0, store.z_dim), np.float32), columns={c: store.read_column(c) for c in names})
        done()
        return {"rows": written, "skipped": dst.n_skipped_nonfinite - skipped_before, "z_dim": store.z_dim}


#: Provenance keys a copy does not carry over (the copy's own format, times, counters, layout).
_NOT_CARRIED = frozenset({
    "format", "format_version", "z_dim", "created", "updated", "library_version", "extra_json", "n_skipped_nonfinite",
    "storage", "zarr_layout", "chunk_rows", "shard_sizes", "shards", "backend", "model_fingerprint", "source",
    "path", "out", "stack", "overwrite",  # parameter names of the functions that create the copy
})


def carried_provenance(prov: dict[str, Any]) -> dict[str, Any]:
    """The provenance values of a store that a copy of it keeps (everything but format, times and layout)."""
    return {k: v for k, v in prov.items() if k not in _NOT_CARRIED}


def _nothing() -> None:
    """``done()`` of an output that is appended to in place."""


def export_store(
    store: ZStore | ZarrStore | str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> dict[str, int]:
    """Copy a store into a new store of the kind ``out`` names: ``NAME.zarr`` a Zarr directory, else HDF5.

    Streams the committed rows block by block with their ids and columns, and carries the
    provenance over (format keys and times are the copy's own). The output is built under a
    temporary name and renamed into place. ``latentscope export STORE --out NAME.zarr``
    (or ``--out NAME.h5``).

    Parameters
    ----------
    store : ZStore, ZarrStore or path
    out : str or Path
    overwrite : bool, default=False
    progress : callable(done, total), optional

    Returns
    -------
    dict
        ``{"rows": rows written, "skipped": 0, "z_dim": ...}``.
    """
    path = store.path if isinstance(store, (ZStore, ZarrStore)) else store
    return import_array(path, out, overwrite=overwrite, progress=progress)


def _npy_header(fp, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_2_0(fp, header)


def export_npz(
    store: ZStore | str | os.PathLike,
    out: str | os.PathLike,
    *,
    compress: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> dict[str, int]:
    """Write a store's committed rows to a .npz file (or the z-points alone to a .npy file).

    The .npz holds ``z`` (float32, (n, z_dim)), ``ids`` (int64 or str) and one array per
    column under the column's name; it loads with ``numpy.load`` without pickle. The
    file is written under a temporary name and renamed into place.

    Parameters
    ----------
    store : ZStore or path
    out : str or Path
        Ends in ``.npz`` (everything) or ``.npy`` (z only).
    compress : bool, default=False
        Deflate the .npz members.
    overwrite : bool, default=False
    progress : callable(done, total), optional

    Returns
    -------
    dict
        ``{"rows": ..., "arrays": number of arrays written}``.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".npz", ".npy"):
        raise InvalidParameterError(f"export: the output must end in .npz or .npy; got {out.name!r}.")
    if out.exists() and not overwrite:
        raise StoreError(f"{out}: file exists; pass --overwrite to replace it.")
    with ExitStack() as stack:
        if not isinstance(store, (ZStore, ZarrStore)):
            store = stack.enter_context(open_store(store))
        n, z_dim = store.shape
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            if suffix == ".npy":
                with open(tmp, "wb") as f:
                    _write_z(store, f, progress)
                arrays = 1
            else:
                mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
                with zipfile.ZipFile(tmp, "w", compression=mode, allowZip64=True) as zf:
                    with zf.open(_member("z", mode), "w", force_zip64=True) as f:
                        _write_z(store, f, progress)
                    named = {"ids": store.read_ids()}
                    for name in store.column_names:
                        named[name] = store.read_column(name)
                    for name, values in named.items():
                        with zf.open(_member(name, mode), "w", force_zip64=True) as f:
                            np.lib.format.write_array(f, np.ascontiguousarray(values), allow_pickle=False)
                arrays = 1 + len(named)
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return {"rows": n, "arrays": arrays}


def _member(name: str, compression: int) -> zipfile.ZipInfo:
    """A zip entry with a fixed date, so that exporting the same store gives the same bytes."""
    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = compression
    info.external_attr = 0o644 << 16
    return info


def _write_z(store: ZStore, f, progress: ProgressCallback | None) -> None:
    n, z_dim = store.shape
    _npy_header(f, np.dtype("<f4"), (n, z_dim))
    if progress is not None:
        progress(0, n)
    for block in store.iter_blocks():
        f.write(np.ascontiguousarray(block.z, dtype="<f4").data)
        if progress is not None:
            progress(block.stop, n)
