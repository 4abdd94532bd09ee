"""One way to read z-points: :func:`as_zsource` and the :class:`ZSource` it returns.

Every consumer of a set of z-points (analyses, samplers, neighbour searches,
metrics, filaments) takes whatever the user passes (a store, a store path, an
array, an h5py dataset, a memmap) through :func:`as_zsource` once and then only
uses the :class:`ZSource` interface: its shape, block iteration under a byte
budget, row take and close. A store is streamed chunk by chunk and never loaded
whole unless a consumer asks for :meth:`ZSource.read`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..exceptions import InvalidParameterError
from ._policy import DEFAULT_MAX_BYTES, check_max_bytes
from ._ranges import is_dask_array

__all__ = ["ZSource", "SourceBlock", "as_zsource", "reading"]


@dataclass(frozen=True)
class SourceBlock:
    """One block of consecutive rows of a :class:`ZSource`.

    Attributes
    ----------
    start : int
        Index of the first row of the block.
    z : ndarray of shape (n_rows, dim)
        The z-points, in the source's float dtype.
    columns : dict of str to ndarray
        The requested per-row columns (and ``"labels"`` when labels were passed).
    """

    start: int
    z: np.ndarray
    columns: dict = field(default_factory=dict)

    @property
    def stop(self) -> int:
        """Index one past the last row of the block."""
        return self.start + self.z.shape[0]

    def __len__(self) -> int:
        return self.z.shape[0]


def _is_store(obj: Any) -> bool:
    from ..store import is_store  # noqa: PLC0415 - the store layer sits beside the engine

    return is_store(obj)


def _lazy_2d(obj: Any) -> bool:
    """An array-like that can be sliced by rows without loading it (h5py, memmap, zarr, ...)."""
    shape = getattr(obj, "shape", None)
    return shape is not None and hasattr(obj, "__getitem__") and hasattr(obj, "dtype") and len(shape) == 2


class ZSource:
    """A set of z-points of shape ``(n_rows, dim)``, read block by block.

    Do not construct directly: use :func:`as_zsource`. A source made from a path
    owns the store it opened; :meth:`close` (or leaving a ``with`` block) closes
    it. A source made from an open store or an array never closes what it was given.

    Attributes
    ----------
    store : ZStore or None
        The underlying store, when the source is one.
    path : Path or None
        The store's file, when the source is a store.
    """

    def __init__(self, data: Any, *, owns: bool = False) -> None:
        self._data = data
        self._owns = owns
        self.store = data if _is_store(data) else None
        self.path = Path(self.store.path) if self.store is not None else None

    # -- shape ----------------------------------------------------------------------
    @property
    def is_store(self) -> bool:
        """True when the z-points live in a store (an HDF5 ``ZStore`` or a ``ZarrStore``)."""
        return self.store is not None

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, dim)``; for a store, its committed rows."""
        if self.store is not None:
            return tuple(int(v) for v in self.store.shape)  # type: ignore[return-value]
        return (int(self._data.shape[0]), int(self._data.shape[1]))

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return self.shape[0]

    @property
    def dim(self) -> int:
        """Dimension of a z-point."""
        return self.shape[1]

    @property
    def dtype(self) -> np.dtype:
        """Float dtype of the blocks (float32 for stores)."""
        if self.store is not None:
            return np.dtype(np.float32)
        dt = np.dtype(self._data.dtype)
        return dt if dt in (np.float32, np.float64) else np.dtype(np.float64)

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        kind = f"store {str(self.path)!r}" if self.store is not None else type(self._data).__name__
        return f"ZSource({kind}, shape={self.shape})"

    # -- reading --------------------------------------------------------------------
    def _as_float(self, a: Any) -> np.ndarray:
        return np.asarray(a, dtype=self.dtype)

    def _bounds(self, start: int, stop: int | None, owner: str) -> tuple[int, int]:
        n = self.n_rows
        start = int(start)
        stop = n if stop is None else min(int(stop), n)
        if start < 0 or stop < start:
            raise InvalidParameterError(f"{owner}: need 0 <= start <= stop; got start={start}, stop={stop}.")
        return start, stop

    def block_rows(self, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
        """Rows per block under ``max_bytes`` (chunk-aligned for stores)."""
        max_bytes = check_max_bytes(max_bytes)
        if self.store is not None:
            return self.store.block_rows(max_bytes)
        return max(1, max_bytes // max(1, self.dim * self.dtype.itemsize))

    def iter_blocks(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        start: int = 0,
        stop: int | None = None,
        columns: Sequence[str] = (),
        labels: Any = None,
    ) -> Iterator[SourceBlock]:
        """Yield consecutive row blocks.

        Parameters
        ----------
        max_bytes : int, default=DEFAULT_MAX_BYTES
            Memory budget of one block (chunk-aligned for stores).
        start, stop : int
            Row range.
        columns : sequence of str
            Store columns read along (a store only).
        labels : array-like of shape (n_rows,), optional
            Per-row values sliced along into ``block.columns["labels"]``.

        Yields
        ------
        SourceBlock
        """
        max_bytes = check_max_bytes(max_bytes)
        lo, hi = self._bounds(start, stop, "iter_blocks")
        lab = None if labels is None else np.asarray(labels)
        if lab is not None and lab.shape[0] != self.n_rows:
            raise InvalidParameterError(
                f"iter_blocks: labels must have one value per row ({self.n_rows}); got {lab.shape[0]}."
            )
        if self.store is not None:
            for b in self.store.iter_blocks(max_bytes=max_bytes, columns=tuple(columns), start=lo, stop=hi):
                cols = dict(b.columns)
                if lab is not None:
                    cols["labels"] = lab[b.start:b.stop]
                yield SourceBlock(b.start, b.z, cols)
            return
        if columns:
            raise InvalidParameterError(f"iter_blocks: columns {list(columns)} need a store; the source is an array.")
        for a, b in self._array_blocks(lo, hi, max_bytes):
            cols = {} if lab is None else {"labels": lab[a:b]}
            yield SourceBlock(a, self._as_float(self._data[a:b]), cols)

    def _array_blocks(self, lo: int, hi: int, max_bytes: int) -> Iterator[tuple[int, int]]:
        """Row ranges of the blocks of an array source (whole chunks of a dask array)."""
        if not is_dask_array(self._data):
            step = self.block_rows(max_bytes)
            for a in range(lo, hi, step):
                yield a, min(hi, a + step)
            return
        # a dask array: every chunk on its own, cut into blocks of block_rows from its start
        # (each block computes only its chunk; the distributed passes read the same blocks)
        step = self.block_rows(max_bytes)
        bounds = np.concatenate([[0], np.cumsum(self._data.chunks[0])]).astype(np.int64)
        for c0, c1 in zip(bounds[:-1], bounds[1:]):
            c0, c1 = max(int(c0), lo), min(int(c1), hi)
            for a in range(c0, c1, step):
                yield a, min(c1, a + step)

    def take(self, rows: Any) -> np.ndarray:
        """Rows by index, in the given order (repeats allowed).

        Parameters
        ----------
        rows : array-like of int

        Returns
        -------
        ndarray of shape (len(rows), dim)
        """
        idx = np.asarray(rows)
        if idx.size and idx.dtype.kind not in "iu":
            raise InvalidParameterError(f"take: rows must be integer indices; got dtype {idx.dtype}.")
        idx = idx.astype(np.int64, copy=False).ravel()
        n = self.n_rows
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise InvalidParameterError(
                f"take: row indices must lie in [0, {n}); got min {int(idx.min())}, max {int(idx.max())}."
            )
        if self.store is not None:
            return self.store.read(idx)
        if isinstance(self._data, np.ndarray):
            return self._as_float(self._data[idx])
        # h5py and friends want increasing unique indices
        uniq, inverse = np.unique(idx, return_inverse=True)
        return self._as_float(self._data[uniq])[inverse]

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """All rows of ``start:stop`` in memory (only where an algorithm needs them whole)."""
        lo, hi = self._bounds(start, stop, "read")
        if self.store is not None:
            return self.store.read(slice(lo, hi))
        return self._as_float(self._data[lo:hi])

    def column(self, name: str, rows: Any = None) -> np.ndarray:
        """Values of one store column (same ``rows`` as :meth:`ZStore.read_column`)."""
        if self.store is None:
            raise InvalidParameterError(f"column: the source is an array and has no column {name!r}; use a store.")
        return self.store.read_column(name, rows)

    # -- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        """Close the store this source opened (a no-op for anything it was given)."""
        if self._owns and self.store is not None:
            self.store.close()

    def __enter__(self) -> "ZSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def as_zsource(obj: Any, *, owner: str = "source") -> ZSource:
    """Take anything that holds z-points to a :class:`ZSource`.

    Parameters
    ----------
    obj : ZSource, ZStore, ZarrStore, str, Path, ndarray, h5py.Dataset, memmap, dask array or 2-D array-like
        A path opens the store read-only; the returned source owns it (close it, or
        use it in a ``with`` block). Lazy array-likes (``shape``, ``dtype`` and
        ``__getitem__``) are read block by block; a dask array chunk by chunk (its
        passes run on a dask cluster when one is active, see
        :func:`~latentscope.stream.cluster`).
    owner : str
        Name used in error messages (the caller's parameter or function).

    Returns
    -------
    ZSource

    Raises
    ------
    InvalidParameterError
        When ``obj`` is not 2-D or not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> src = as_zsource(np.zeros((10, 3)))
    >>> src.shape, [len(b) for b in src.iter_blocks(max_bytes=64)]
    ((10, 3), [2, 2, 2, 2, 2])
    """
    if isinstance(obj, ZSource):
        return obj
    if _is_store(obj):
        return ZSource(obj)
    if isinstance(obj, (str, Path)):
        from ..store import open_store  # noqa: PLC0415

        return ZSource(open_store(obj, "r"), owns=True)
    if _lazy_2d(obj) and not isinstance(obj, np.ndarray):
        if np.dtype(obj.dtype).kind not in "fiu":
            raise InvalidParameterError(f"{owner}: z-points must be numeric; got dtype {obj.dtype}.")
        return ZSource(obj)
    try:
        arr = np.asarray(obj)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"{owner}: expected a ZStore, a store path or a 2-D array of z-points; got {type(obj).__name__}."
        ) from exc
    if arr.ndim != 2:
        raise InvalidParameterError(
            f"{owner}: expected a ZStore, a store path or a 2-D array of z-points; got shape {arr.shape}."
        )
    if arr.dtype.kind not in "fiu":
        raise InvalidParameterError(f"{owner}: z-points must be numeric; got dtype {arr.dtype}.")
    return ZSource(arr)


@contextmanager
def reading(obj: Any, *, owner: str = "source") -> Iterator[ZSource]:
    """:func:`as_zsource` for the length of a ``with`` block.

    Closes on exit only what this call opened (a store from a path): a store, a
    :class:`ZSource` or an array the caller passed in stays as it was.

    Examples
    --------
    >>> import numpy as np
    >>> with reading(np.ones((4, 2))) as src:
    ...     src.n_rows
    4
    """
    src = as_zsource(obj, owner=owner)
    try:
        yield src
    finally:
        if src is not obj:
            src.close()
