"""What each pass did: :class:`PassStats` and :func:`record_passes`.

Every :func:`~latentscope.stream.run_pass` and :func:`~latentscope.stream.run_reducers`
(local or on a cluster) and every distributed neighbour scan appends one
:class:`PassStats` to the lists of the enclosing :func:`record_passes` blocks, so a
benchmark can report bytes read and tasks run per pass.
"""

from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

__all__ = ["PassStats", "record_passes", "_record"]


@dataclass(frozen=True)
class PassStats:
    """One pass over a source.

    Attributes
    ----------
    kind : str
        ``"run_pass"``, ``"run_reducers"`` or ``"search"``.
    distributed : bool
        Whether the pass ran as tasks on a dask.distributed cluster.
    rows : int
        Rows of z-points read.
    bytes_read : int
        Bytes of z-points (and columns) read, as stored (float32 for stores).
    tasks : int
        Units of work: distributed tasks (map tasks; the merge tasks are
        ``tasks - 1`` more), or the work units / blocks of a local pass.
    seconds : float
        Wall time of the pass.
    """

    kind: str
    distributed: bool
    rows: int
    bytes_read: int
    tasks: int
    seconds: float


_RECORDERS: contextvars.ContextVar[tuple] = contextvars.ContextVar("latentscope_pass_recorders", default=())


@contextmanager
def record_passes() -> Iterator[list]:
    """Collect a :class:`PassStats` for every pass run inside the block.

    Yields
    ------
    list of PassStats
        Filled as the passes finish (nested blocks each get every pass).

    Examples
    --------
    >>> import numpy as np
    >>> from latentscope.stream import Moments, run_reducers
    >>> with record_passes() as passes:
    ...     _ = run_reducers(np.ones((10, 2)), [Moments()])
    >>> passes[0].rows, passes[0].bytes_read
    (10, 160)
    """
    out: list = []
    token = _RECORDERS.set(_RECORDERS.get() + (out,))
    try:
        yield out
    finally:
        _RECORDERS.reset(token)


def _record(kind: str, distributed: bool, rows: int, bytes_read: int, tasks: int, t0: float) -> None:
    """Append one pass to every active recorder (``t0``: ``time.perf_counter()`` at the start)."""
    recs = _RECORDERS.get()
    if not recs:
        return
    st = PassStats(kind, bool(distributed), int(rows), int(bytes_read), int(tasks), time.perf_counter() - t0)
    for r in recs:
        r.append(st)
