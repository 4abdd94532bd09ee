"""Streaming engine: one z-source type, mergeable reducers and one block engine.

``as_zsource`` takes a store, a store path, an array, an h5py dataset or a memmap
to a :class:`ZSource`; ``run_reducers``, ``run_pass`` and ``run_blocks`` are the
runners every pass goes through; ``DEFAULT_MAX_BYTES`` is the one block budget.
Inside ``with cluster(...)`` (or for a dask-array source) the passes run as tasks on
a dask.distributed cluster; ``record_passes`` reports what each pass read.
"""

from ._cluster import active_client, cluster
from ._engine import (
    iter_array_blocks,
    run_blocks,
    run_pass,
    run_reducers,
    source_shape,
)
from ._policy import DEFAULT_MAX_BYTES, WORK_UNIT_BYTES, check_max_bytes, resolve_threads, single_blas_thread
from ._reducers import (
    Covariance,
    CovarianceResult,
    Histogram,
    HistogramResult,
    Moments,
    MomentsResult,
)
from ._source import SourceBlock, ZSource, as_zsource, reading
from ._stats import PassStats, record_passes

__all__ = [
    "ZSource", "SourceBlock", "as_zsource", "reading",
    "Moments", "MomentsResult", "Covariance", "CovarianceResult", "Histogram", "HistogramResult",
    "run_reducers", "run_pass", "run_blocks", "iter_array_blocks", "source_shape",
    "DEFAULT_MAX_BYTES", "WORK_UNIT_BYTES", "check_max_bytes", "resolve_threads", "single_blas_thread",
    "cluster", "active_client", "PassStats", "record_passes",
]
