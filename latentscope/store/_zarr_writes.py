"""Writing a Zarr store: appends, columns, provenance and shard completion, each made durable by one commit.

:class:`_ZarrWrites` is the writing half of :class:`~latentscope.store.ZarrStore`. The checks
of a batch (shape, ids, columns, non-finite rows) and their errors are those of the HDF5
store (:class:`~latentscope.store._writes._Writes`, reused). The order of every change:
resize the arrays (their ``zarr.json``), write the chunks (zarr's ``LocalStore`` writes each
file under a ``*.partial`` name and renames it), then replace ``commit.json``; a writer killed
at any instant leaves the previous commit, whose rows are all in place. Replaced or deleted
columns keep their arrays (readers of an older snapshot may still read them); copying the
store (``latentscope import OLD.zarr --out NEW.zarr``) drops them.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import numpy as np

from ..exceptions import InvalidParameterError, NonFiniteError, StoreError, StoreReadOnlyError
from . import _format as F
from . import _zarr_layout as L
from ._layout import FIXED_ATTRS, check_column_name, column_array, fill_value, now_ns
from ._strings import encode_strings, grown_width
from ._writes import _all_finite, _Writes


class _ZarrWrites:
    """The writing methods of :class:`~latentscope.store.ZarrStore` (state lives there)."""

    def _require_writable(self) -> None:
        self._require_open()
        if self.mode != "a":
            raise StoreReadOnlyError(f"{self.path}: the store is open read-only; open it with mode='a' to write.")

    def _require_part(self, owner: str) -> Any:
        self._require_writable()
        if self._wpart is None:
            raise StoreError(f"{self.path}: {owner}: a sharded store is written part by part; use "
                             "latentscope.store.open_shard(path, i).")
        if self._wpart.commit.get("complete"):
            raise StoreError(f"{self._label}: {owner}: the shard is complete (marked by mark_complete).")
        return self._wpart

    def _commit(self, n_committed: int, skipped: int = 0, *, arrays: dict | None = None,
                layout_changed: bool = False, complete: bool = False) -> None:
        """Replace the commit record; everything it counts must already be written."""
        part = self._wpart
        old = part.commit
        record = dict(old)
        record.update(seq=int(old["seq"]) + 1, n_committed=int(n_committed), updated_ns=now_ns(),
                      n_skipped_nonfinite=int(old.get("n_skipped_nonfinite", 0)) + int(skipped),
                      layout_gen=int(old.get("layout_gen", 0)) + (1 if layout_changed else 0),
                      complete=bool(old.get("complete")) or complete)
        if arrays is not None:
            record["arrays"] = arrays
        part.commit = L.write_commit(part.dir, record)
        self._sync()

    # -- provenance -----------------------------------------------------------------------
    def set_provenance(self, **values: Any) -> None:
        """Set provenance values (anything JSON can hold; other objects are stored as str).

        The values are kept in one checksummed JSON record (``provenance.json``, replaced
        atomically), so a writer killed meanwhile leaves the previous provenance intact. They
        override the attributes written at creation. On a shard writer the record belongs to
        the part; on ``open_store(sharded, "a")`` to the whole store (it overrides the parts').

        Raises
        ------
        InvalidParameterError
            For the fixed keys (format, format_version, z_dim, created, library_version).
        """
        self._require_writable()
        fixed = sorted(set(values) & (FIXED_ATTRS | {"storage", "zarr_layout", "chunk_rows", "shard_sizes"}))
        if fixed:
            raise InvalidParameterError(f"set_provenance: {', '.join(fixed)} cannot be changed.")
        path = (self._wdir or self.path) / L.PROVENANCE_FILE
        record = L.read_record(path, "provenance") or {"seq": 0, "values": {}}
        current = dict(record.get("values", {}))
        current.update(L.json_values(values))
        new = {"seq": int(record.get("seq", 0)) + 1, "updated_ns": now_ns(), "values": current}
        new["crc32"] = L._crc(new)
        L.write_json(path, new)

    # -- appends --------------------------------------------------------------------------
    def append(
        self,
        z: Any,
        *,
        ids: Sequence[Any] | np.ndarray | None = None,
        columns: Mapping[str, Any] | None = None,
        on_nonfinite: str = "raise",
    ) -> int:
        """Append a batch of z-points; return the number of rows written.

        Same arguments, checks and errors as :meth:`latentscope.store.ZStore.append`. The rows
        become visible (to readers, and after a crash) all at once: ``commit.json`` is replaced
        only after every chunk of the batch was written.

        Parameters
        ----------
        z : array-like of shape (n, z_dim)
        ids : sequence of int or str, optional
        columns : mapping of str to array-like, optional
        on_nonfinite : {"raise", "skip"}, default="raise"

        Returns
        -------
        int
            Rows written (fewer than ``n`` when rows were skipped).
        """
        part = self._require_part("append")
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
        int_ids, str_ids = _Writes._prepare_ids(self, ids, n, start)
        cols = _Writes._prepare_columns(self, columns, n)
        self._check_columns(cols, start)
        skipped = 0
        if n and not _all_finite(z32):
            finite = np.isfinite(z32).all(axis=1)
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
        arrays = copy.deepcopy(part.commit["arrays"])
        changed = self._ensure_layout(arrays, str_ids if n else None, cols, start)
        if n == 0 and skipped == 0 and not changed:
            return 0
        stop = start + n
        if n:
            items = [(arrays["z"], z32), (arrays["ids"], int_ids)]
            if arrays.get("id_strings"):
                if str_ids is None:
                    str_ids = encode_strings(int_ids.astype(str))
                items.append((arrays["id_strings"], str_ids))
            for name, rel in arrays["columns"].items():
                values = cols.get(name)
                if values is None:
                    arr = part.array(rel)
                    if arr.attrs.get(F.ENCODING_ATTR) == "utf-8":
                        values = np.zeros((n, *arr.shape[1:-1]), dtype="S1")
                    else:
                        values = np.full((n, *arr.shape[1:]), fill_value(np.dtype(arr.dtype)), dtype=arr.dtype)
                items.append((rel, values))
            self._put_all(items, start, stop)
        self._commit(stop, skipped, arrays=arrays, layout_changed=changed)
        return n

    def _put(self, rel: str, values: np.ndarray, start: int, stop: int) -> None:
        """Write rows ``start:stop`` of one array (see :meth:`_put_all`)."""
        self._put_all([(rel, values)], start, stop)

    def _put_all(self, items: list[tuple[str, np.ndarray]], start: int, stop: int) -> None:
        """Write rows ``start:stop`` of several arrays, concurrently: each array is resized first
        (rows, string width: its ``zarr.json``), then its chunks are written. Returns when every
        write finished (the first error is raised after all of them ended).

        ``z`` is resized to exactly ``stop`` rows (so its length tells the rows of an interrupted
        append); the other arrays grow a whole chunk at a time (rows past the commit are never
        read), which saves rewriting their metadata on most appends.
        """
        import asyncio

        from zarr.core.sync import sync

        jobs = []
        z_rel, C = self._wpart.commit["arrays"]["z"], self.chunk_rows
        for rel, values in items:
            arr = self._wpart.array(rel)
            shape = list(arr.shape)
            if rel == z_rel:
                shape[0] = stop
            elif shape[0] < stop:
                shape[0] = -(-stop // C) * C
            if arr.attrs.get(F.ENCODING_ATTR) == "utf-8":
                values = encode_strings(values)
                if values.dtype.itemsize > shape[-1]:
                    shape[-1] = grown_width(values.dtype.itemsize, shape[-1])
                width = shape[-1]
                values = np.ascontiguousarray(values, dtype=f"S{width}")
                values = values.view(np.uint8).reshape(*values.shape, width)
            elif values.dtype != arr.dtype:
                values = np.ascontiguousarray(values, dtype=arr.dtype)
            jobs.append((arr._async_array, tuple(shape), values))

        async def one(arr: Any, shape: tuple[int, ...], values: np.ndarray) -> None:
            if shape != tuple(arr.shape):
                await arr.resize(shape)
            if stop > start:
                await arr.setitem(slice(start, stop), values)

        async def run() -> list:
            return await asyncio.gather(*(one(*job) for job in jobs), return_exceptions=True)

        for result in sync(run()):
            if isinstance(result, BaseException):
                raise result

    def _check_columns(self, cols: dict[str, np.ndarray], start: int) -> None:
        """Refuse a batch whose columns do not match the store's (the messages of the HDF5 store)."""
        existing = self._wpart.commit["arrays"]["columns"]
        for name, values in cols.items():
            rel = existing.get(name)
            if rel is None:
                if start > 0:
                    raise InvalidParameterError(
                        f"append: column {name!r} is new but the store already holds {start} rows; "
                        "add it for those rows first with write_column()."
                    )
                continue
            arr = self._wpart.array(rel)
            text = arr.attrs.get(F.ENCODING_ATTR) == "utf-8"
            shape = tuple(arr.shape[1:-1] if text else arr.shape[1:])
            if shape != values.shape[1:]:
                raise InvalidParameterError(
                    f"append: column {name!r} has per-row shape {shape} in the store; got {values.shape[1:]}."
                )
            if text != (values.dtype.kind == "S") or (
                not text and not np.can_cast(values.dtype, np.dtype(arr.dtype), "same_kind")
            ):
                kind = "strings" if text else f"{arr.dtype} values"
                raise InvalidParameterError(f"append: column {name!r} holds {kind}; got dtype {values.dtype}.")

    def _ensure_layout(self, arrays: dict, str_ids: np.ndarray | None, cols: dict[str, np.ndarray], start: int) -> bool:
        """Create the arrays a batch needs (new columns, string ids) in ``arrays``; True if any."""
        part, changed = self._wpart, False
        new = []
        for name, values in cols.items():
            if name not in arrays["columns"]:
                rel = L.column_array_path(part.dir, name)
                new.append((rel, values))
                arrays["columns"][name] = rel
                changed = True
        if len(new) > 1:  # one zarr.json each: write them side by side
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, len(new))) as pool:
                list(pool.map(lambda job: L.create_array(part.dir, job[0], job[1], 0, self.chunk_rows), new))
        elif new:
            L.create_array(part.dir, new[0][0], new[0][1], 0, self.chunk_rows)
        if str_ids is not None and not arrays.get("id_strings"):
            rel = F.ID_STRINGS_DATASET if not (part.dir / F.ID_STRINGS_DATASET).exists() else L.column_array_path(
                part.dir, "/")
            L.create_array(part.dir, rel, str_ids, 0, self.chunk_rows)
            arrays["id_strings"] = rel
            if start:
                old = self._read_part(part, F.IDS_DATASET, 0, start)
                self._put(rel, encode_strings(old.astype(str)), 0, start)
            changed = True
        return changed

    # -- columns --------------------------------------------------------------------------
    def write_column(self, name: str, values: Any, *, overwrite: bool = True) -> None:
        """Write a full-length per-point column (one value or row per committed z-point).

        An existing column of the same kind and per-row shape is overwritten in place (chunk
        by chunk: each chunk file is replaced atomically, the column as a whole is not);
        otherwise a new array is written and the commit record switched to it, so readers
        that are open keep the old column until :meth:`refresh`.

        Parameters
        ----------
        name : str
        values : array-like with ``n_rows`` rows (numbers, bools or strings)
        overwrite : bool, default=True
            Replace an existing column of that name; otherwise that is an error.
        """
        part = self._require_part("write_column")
        check_column_name(name, "write_column")
        values = np.asarray(values)
        if values.ndim == 0 or values.shape[0] != self._n:
            raise InvalidParameterError(
                f"write_column: {name!r} must have {self._n} rows (one per z-point); got shape {values.shape}."
            )
        values = column_array(values, name, "write_column")
        arrays = copy.deepcopy(part.commit["arrays"])
        rel = arrays["columns"].get(name)
        if rel is not None and not overwrite:
            raise InvalidParameterError(f"write_column: column {name!r} exists; pass overwrite=True to replace it.")
        in_place = False
        if rel is not None:
            arr = part.array(rel)
            text = arr.attrs.get(F.ENCODING_ATTR) == "utf-8"
            shape = tuple(arr.shape[1:-1] if text else arr.shape[1:])
            in_place = shape == values.shape[1:] and (
                values.dtype.kind == "S" if text else np.can_cast(values.dtype, np.dtype(arr.dtype), "same_kind"))
        if not in_place:
            rel = L.column_array_path(part.dir, name)
            L.create_array(part.dir, rel, values, self._n, self.chunk_rows)
            arrays["columns"][name] = rel
        self._put(rel, values, 0, self._n)
        self._commit(self._n, arrays=arrays, layout_changed=not in_place)

    def delete_column(self, name: str) -> None:
        """Remove a per-point column (readers that are open see it gone after :meth:`refresh`)."""
        part = self._require_part("delete_column")
        arrays = copy.deepcopy(part.commit["arrays"])
        if name not in arrays["columns"]:
            raise InvalidParameterError(
                f"delete_column: no column {name!r}; the store has: {', '.join(arrays['columns']) or 'none'}."
            )
        del arrays["columns"][name]
        self._commit(self._n, arrays=arrays, layout_changed=True)

    def mark_complete(self) -> None:
        """Record that this shard is finished (a shard writer of ``open_shard`` only).

        Readers of the sharded store then see its rows followed by the next part's.
        """
        if self.shard is None:
            self._require_writable()
            raise StoreError(f"{self.path}: mark_complete is for shard writers (latentscope.store.open_shard).")
        self._require_part("mark_complete")
        self._commit(self._n, complete=True)
