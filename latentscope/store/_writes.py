"""Writing a store: appends, columns and provenance, each made durable by one commit.

:class:`_Writes` holds the writing half of :class:`~latentscope.store.ZStore` (which
mixes it in). Every change writes and flushes its data first, then records it in the
checksummed commit record (:meth:`_Writes._commit`), so a writer killed at any instant
leaves the previous commit intact. Appends never delete or replace datasets (that
would pull data from under open readers); replaced columns move to the trash group.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from ..exceptions import InvalidParameterError, NonFiniteError, StoreReadOnlyError
from . import _format as F
from . import _integrity as I
from ._layout import FIXED_ATTRS, check_column_name, column_array, create_rowwise, fill_value, now_ns
from ._strings import encode_strings, grown_width, row_shape


class _Writes:
    """The writing methods of :class:`~latentscope.store.ZStore` (state and handles live there)."""

    # -- writing --------------------------------------------------------------------------
    def _require_writable(self) -> None:
        self._require_open()
        if self.mode != "a":
            raise StoreReadOnlyError(f"{self.path}: the store is open read-only; open it with mode='a' to write.")

    def _commit(self, n_committed: int, skipped: int = 0, *, layout_changed: bool = False) -> None:
        """Record ``n_committed`` rows; everything they need must already be flushed."""
        seq = self._seq + 1
        now = now_ns()
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
        fixed = sorted(set(values) & FIXED_ATTRS)
        if fixed:
            raise InvalidParameterError(f"set_provenance: {', '.join(fixed)} cannot be changed.")
        record = self._provenance_record()
        current = json.loads(record[2].decode("utf-8")) if record is not None else {}
        current.update(values)
        payload = json.dumps(current, default=str, sort_keys=True).encode("utf-8")
        seq = (record[0] if record is not None else 0) + 1
        slot = F.pack_provenance(seq, now_ns(), payload)
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
            return np.arange(start, start + n, dtype=np.int64), encode_strings(arr)
        raise InvalidParameterError(f"append: ids must be integers or strings; got dtype {arr.dtype}.")

    def _prepare_columns(self, columns: Mapping[str, Any] | None, n: int) -> dict[str, np.ndarray]:
        out = {}
        for name, values in (columns or {}).items():
            check_column_name(name, "append")
            arr = np.asarray(values)
            if arr.ndim == 0 or arr.shape[0] != n:
                raise InvalidParameterError(f"append: column {name!r} must have {n} rows; got shape {arr.shape}.")
            out[name] = column_array(arr, name, "append")
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
                    str_ids = encode_strings(int_ids.astype(str))
                self._write_rows(F.ID_STRINGS_DATASET, str_ids, start, stop)
            for name in self.column_names:
                path = self._column_path(name)
                values = cols.get(name)
                if values is None:
                    ds = self._ds(path)
                    if self._text_ds(path):
                        values = np.zeros((n, *row_shape(ds, True)), dtype="S1")
                    else:
                        values = np.full((n, *ds.shape[1:]), fill_value(ds.dtype), dtype=ds.dtype)
                self._write_rows(path, values, start, stop)
            self._h5.flush()
        self._commit(start + n, skipped, layout_changed=changed)
        return n

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
            values = encode_strings(values)
            width = ds.shape[-1]
            if values.dtype.itemsize > width:
                ds.resize(grown_width(values.dtype.itemsize, width), axis=ds.ndim - 1)
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
        ds = create_rowwise(self._h5, path, values, n, chunk_rows=self.chunk_rows, checksums=self._checksums)
        self._handles[path] = ds
        self._text[path] = values.dtype.kind == "S"
        if self._checksums:
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
            if row_shape(ds, text) != values.shape[1:]:
                raise InvalidParameterError(
                    f"append: column {name!r} has per-row shape {row_shape(ds, text)} in the store; "
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
                self._write_rows(F.ID_STRINGS_DATASET, encode_strings(old.astype(str)), 0, start)
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
        check_column_name(name, "write_column")
        values = np.asarray(values)
        if values.ndim == 0 or values.shape[0] != self._n:
            raise InvalidParameterError(
                f"write_column: {name!r} must have {self._n} rows (one per z-point); got shape {values.shape}."
            )
        values = column_array(values, name, "write_column")
        self._pending_slots = dict(self._slots)
        path = self._column_path(name)
        exists = name in self.column_names
        if exists and not overwrite:
            raise InvalidParameterError(f"write_column: column {name!r} exists; pass overwrite=True to replace it.")
        in_place = False
        if exists:
            ds, text = self._ds(path), self._text_ds(path)
            in_place = row_shape(ds, text) == values.shape[1:] and (
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


def _all_finite(values: np.ndarray) -> bool:
    """Whether every value is finite (one reduction; the exact test only when it overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.add.reduce(values, axis=None)) or np.isfinite(values).all())
