"""The engine's policies: the one block byte budget, the thread count and the BLAS-thread rule."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from ..exceptions import InvalidParameterError
from ..store._policy import DEFAULT_MAX_BYTES, check_max_bytes  # the budget lives below the engine, in the store

__all__ = [
    "DEFAULT_MAX_BYTES", "WORK_UNIT_BYTES", "MAX_DEFAULT_THREADS", "check_max_bytes", "resolve_threads",
    "single_blas_thread",
]

#: Size of one unit of work that :func:`~latentscope.stream.run_pass` hands to a reducer
#: (blocks read under ``max_bytes`` are cut into such units): small units keep every
#: thread busy and the reducers' float64 transients small.
WORK_UNIT_BYTES = 4 << 20

#: Most threads a pass takes when ``n_threads=None`` (more rarely pays on small blocks).
MAX_DEFAULT_THREADS = 8


def resolve_threads(n_threads: Any, *, owner: str = "") -> int:
    """The number of compute threads: ``None`` means ``min(cpu count, 8)``; else an int >= 1.

    ``n_threads`` is the one name for compute parallelism in latentscope (image
    decoding keeps ``workers``).
    """
    if n_threads is None:
        return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_THREADS))
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        prefix = f"{owner}: " if owner else ""
        raise InvalidParameterError(f"{prefix}n_threads must be an integer >= 1 or None; got {n_threads!r}.")
    return int(n_threads)


_CONTROLLER: list = []


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """Run BLAS/LAPACK on one thread inside the block.

    The one BLAS-thread policy of the engine: threaded passes give each worker one
    BLAS thread (numpy releases the GIL in its loops), and stacked small-matrix
    LAPACK calls (``numpy.linalg.eigh`` on many small matrices) run 10-20 times
    faster on one BLAS thread than on a multi-threaded OpenBLAS whose threads
    spin on tiny problems.
    """
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController  # noqa: PLC0415 - a scikit-learn dependency

            _CONTROLLER.append(ThreadpoolController())
        except ImportError:  # pragma: no cover - depends on the environment
            _CONTROLLER.append(None)
    ctl = _CONTROLLER[0]
    if ctl is None:  # pragma: no cover
        yield
        return
    with ctl.limit(limits=1, user_api="blas"):
        yield
