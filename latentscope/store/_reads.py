"""Reading a store: committed rows in chunk-aligned blocks, row selections, columns, ids.

:class:`_Reads` holds the reading half of :class:`~latentscope.store.ZStore` (which
mixes it in); every read goes through :meth:`_Reads._read`, which verifies the rows
against their segment checksums (format 2). The integrity checks a store passes when
it is opened (every committed chunk present and inside the file) are here too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import h5py
import numpy as np

from .._validation import check_positive
from ..exceptions import InvalidParameterError, StoreError, StoreFormatError
from . import _format as F
from . import _integrity as I
from ._handles import one_line, read_raw
from ._policy import DEFAULT_MAX_BYTES, check_max_bytes
from ._strings import decode_raw

if TYPE_CHECKING:
    from ._store import ZStore

__all__ = ["Block"]


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


class _Reads:
    """The reading methods of :class:`~latentscope.store.ZStore` (state and handles live there)."""

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
                                       f"({one_line(exc)}).") from exc
            segs = I.parse_segments(recs, self._n, self.chunk_rows)
            if isinstance(segs, str):
                raise StoreFormatError(f"{self.path}: damaged store: {path!r} has {segs}.")
            if len(cache) > 256:
                cache.clear()
            cache[key] = segs
        return segs

    # -- reading --------------------------------------------------------------------------
    def block_rows(self, max_bytes: int = DEFAULT_MAX_BYTES, *, row_bytes: int | None = None) -> int:
        """Rows per block: a multiple of the chunk rows within ``max_bytes`` (at least one chunk)."""
        max_bytes = check_max_bytes(max_bytes)
        row_bytes = row_bytes or self.z_dim * 4
        return self.chunk_rows * max(1, max_bytes // (self.chunk_rows * row_bytes))

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
            raw = read_raw(ds, a, b)
        except (OSError, RuntimeError) as exc:
            raise StoreFormatError(f"{self.path}: damaged store: cannot read rows {a}..{b} of {path!r} "
                                   f"({one_line(exc)}).") from exc
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
        return decode_raw(raw, text)

    def iter_blocks(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
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
        if chunks is not None:
            check_positive(chunks, "chunks", owner="to_dask", integer=True, minimum=1)
        rows = int(chunks) if chunks else self.block_rows()
        view = _CommittedView(self, self._n)
        return da.from_array(view, chunks=(rows, self.z_dim), name=f"zstore-{uuid.uuid4().hex}", asarray=True)


class _CommittedView:
    """The committed rows of a z dataset, as an array-like for dask."""

    def __init__(self, store: "ZStore", n: int) -> None:
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
