"""The analyses of the blog series as estimator-like classes (``fit`` returns self).

Every analysis streams over a :class:`~latentscope.store.ZStore` (or takes an
in-memory array) with memory independent of the number of rows, and saves its
results as JSON (scalars) plus HDF5 (arrays).
"""

from ._boxes import BoundingBoxes
from ._pca import PCAFrame
from ._quantiles import FineHistogram, FineHistogramResult, quantiles_from_counts, streaming_quantiles

__all__ = [
    "PCAFrame", "BoundingBoxes", "streaming_quantiles", "FineHistogram", "FineHistogramResult",
    "quantiles_from_counts",
]
