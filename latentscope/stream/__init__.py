"""Streaming engine: mergeable reducers and a one-pass runner over stores or arrays."""

from ._engine import iter_array_blocks, run_reducers, source_shape
from ._reducers import (
    Covariance,
    CovarianceResult,
    Histogram,
    HistogramResult,
    Moments,
    MomentsResult,
)

__all__ = [
    "Moments", "MomentsResult", "Covariance", "CovarianceResult", "Histogram", "HistogramResult",
    "run_reducers", "iter_array_blocks", "source_shape",
]
