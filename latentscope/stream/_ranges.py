"""The fixed plan of a pass: row ranges, work units and the merge tree.

:func:`~latentscope.stream.run_pass` runs the same plan in this process (one or
several threads) and on a dask.distributed cluster (:mod:`latentscope.stream._dask`):

* the rows are cut into chunk-aligned **ranges** (:func:`task_ranges`), a function
  of the source and ``max_bytes`` only (not of threads or workers);
* each range is read in **work units** (:func:`unit_rows`, at most
  :data:`~latentscope.stream.WORK_UNIT_BYTES`, whole chunks of a store) and fed to
  a fresh reducer (:func:`feed_range`);
* the reducers of the ranges are merged in one binary tree fixed by the range order
  (:class:`TreeMerge`: ``((r0 + r1) + (r2 + r3)) + r4 ...``).

So a pass gives the same bits whatever the number of threads, workers, or the order
in which ranges finish.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np

from ._policy import DEFAULT_MAX_BYTES, WORK_UNIT_BYTES

__all__ = ["MIN_TASKS", "unit_rows", "task_ranges", "feed_range", "TreeMerge", "merge_into", "is_dask_array",
           "as_float", "RangeReader"]

#: A pass is cut into at least this many ranges when the source has enough work units.
MIN_TASKS = 16


def is_dask_array(obj: Any) -> bool:
    """Whether ``obj`` is a ``dask.array.Array`` (without importing dask)."""
    return type(obj).__module__.startswith("dask.") and hasattr(obj, "chunks") and hasattr(obj, "dask")


def as_float(a: Any) -> np.ndarray:
    """Rows as float32 / float64 kept, anything else as float64 (the dtype rule of :class:`ZSource`)."""
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def unit_rows(src: Any, max_bytes: int) -> int:
    """Rows of one work unit: at most ``min(max_bytes, WORK_UNIT_BYTES)`` of rows, whole chunks of a store."""
    row = max(1, src.dim * src.dtype.itemsize)
    budget = min(int(max_bytes), WORK_UNIT_BYTES)
    if src.store is not None:
        c = max(1, int(src.store.chunk_rows))
        return c * max(1, budget // (c * row))
    return max(1, budget // row)


def task_ranges(src: Any, max_bytes: int) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of one pass over ``src``.

    A dask array: its own row chunks. Otherwise ranges of whole work units, at most
    about :data:`~latentscope.stream.DEFAULT_MAX_BYTES` of rows each, and at least
    :data:`MIN_TASKS` of them when the source has that many units.
    """
    n = src.n_rows
    if n == 0:
        return []
    if src.store is None and is_dask_array(src._data):
        bounds = np.concatenate([[0], np.cumsum(src._data.chunks[0])]).astype(np.int64)
        return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    unit = unit_rows(src, max_bytes)
    row = max(1, src.dim * src.dtype.itemsize)
    big = unit * max(1, DEFAULT_MAX_BYTES // (row * unit))
    want = -(-n // MIN_TASKS)
    want = unit * max(1, -(-want // unit))
    step = min(big, want)
    return [(a, min(n, a + step)) for a in range(0, n, step)]


class RangeReader:
    """Reads the units of one range ``a:b`` from what a task holds.

    ``data`` is a :class:`ZSource` (this process), an object with ``read(u, v)`` and
    ``column(name, u, v)`` (a store reference on a worker), or the range's rows
    themselves (an array of ``b - a`` rows: a dask chunk or scattered rows).
    ``labels`` are the labels of rows ``a:b``. ``lock`` serialises the reads of
    threads that share one source (one reader at a time, as the engine always had).
    """

    def __init__(self, data: Any, a: int, b: int, *, labels: Any = None, column: str | None = None,
                 lock: Any = None) -> None:
        self.data, self.a, self.b = data, int(a), int(b)
        self.labels, self.column = labels, column
        self._lock = lock if lock is not None else contextlib.nullcontext()
        self._rows = None
        if not hasattr(data, "read"):
            self._rows = as_float(data)
        elif getattr(data, "store", "x") is None and is_dask_array(getattr(data, "_data", None)):
            self._rows = as_float(data.read(self.a, self.b))  # compute the dask chunk once

    def units(self, unit: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """``(z, labels)`` of consecutive units of at most ``unit`` rows, from the range start."""
        a, b = self.a, self.b
        for u in range(a, b, max(1, int(unit))):
            v = min(b, u + unit)
            if self._rows is not None:
                z = self._rows[u - a:v - a]
            else:
                with self._lock:
                    z = self.data.read(u, v)
            if self.column is not None:
                with self._lock:
                    lab = self.data.column(self.column, slice(u, v))
            elif self.labels is not None:
                lab = self.labels[u - a:v - a]
            else:
                lab = None
            yield z, lab


def feed_range(make: Callable[[], Any], reader: RangeReader, unit: int,
               group_of: Callable[[np.ndarray], np.ndarray] | None,
               tick: Callable[[int], None] | None = None) -> Any:
    """A fresh reducer from ``make()`` fed the units of one range; ``tick(rows)`` after each unit.

    The groups passed to ``update`` are ``group_of(labels)``, the labels themselves
    without ``group_of``, or None without labels.
    """
    red = make()
    for z, lab in reader.units(unit):
        red.update(z, lab if group_of is None or lab is None else group_of(lab))
        if tick is not None:
            tick(z.shape[0])
    return red


def merge_into(left: Any, right: Any) -> Any:
    """``left.merge(right)``; returns ``left`` (whatever ``merge`` returns)."""
    left.merge(right)
    return left


class TreeMerge:
    """Merge partial results pushed in range order, in the fixed binary tree.

    Pushing ``r0, r1, ...`` and calling :meth:`result` gives the tree that pairs
    neighbours level by level (an odd last node moves up a level unchanged), as
    the distributed pass builds it; at most ``log2(n) + 1`` partials are held.
    """

    def __init__(self, merge: Callable[[Any, Any], Any] | None = None) -> None:
        self._stack: list[tuple[int, Any]] = []
        self._merge = merge or merge_into

    def __len__(self) -> int:
        return len(self._stack)

    def push(self, part: Any) -> None:
        """Add the partial result of the next range."""
        level = 0
        while self._stack and self._stack[-1][0] == level:
            _, left = self._stack.pop()
            part = self._merge(left, part)
            level += 1
        self._stack.append((level, part))

    def result(self) -> Any:
        """The root of the tree (the partials fold from the right)."""
        _, part = self._stack.pop()
        while self._stack:
            _, left = self._stack.pop()
            part = self._merge(left, part)
        return part
