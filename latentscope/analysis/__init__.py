"""The analyses of the blog series as estimator-like classes (``fit`` returns self).

Every analysis streams over a :class:`~latentscope.store.ZStore` (or takes an
in-memory array) with memory independent of the number of rows, and saves its
results as JSON (scalars) plus HDF5 (arrays). :func:`analyze` runs them all in two
shared passes (plus the core iterations) and draws the figures.
"""

from ._analyze import AnalysisResult, analyze
from ._attributes import AttributeGroups, AttributeSplit, attribute_groups
from ._boxes import BoundingBoxes
from ._components import DEFAULT_LEVELS, ComponentStats, gaussian_ks_distance
from ._core import CoreCovariance
from ._correlations import Correlations, chi2_2_radius, confidence_ellipse
from ._pca import PCAFrame
from ._quantiles import FineHistogram, FineHistogramResult, quantiles_from_counts, streaming_quantiles
from ._whitening import HeldOutWhitening, hotelling_bound
from ._radial import BallRadius, CubeRadius, GaussianRadius, RadialDistribution, RadiusReference, match_cube_halfwidth

__all__ = [
    "analyze", "AnalysisResult",
    "PCAFrame", "BoundingBoxes", "ComponentStats", "Correlations", "RadialDistribution", "CoreCovariance",
    "AttributeSplit", "AttributeGroups", "attribute_groups",
    "streaming_quantiles", "FineHistogram", "FineHistogramResult", "quantiles_from_counts",
    "CubeRadius", "GaussianRadius", "BallRadius", "RadiusReference", "match_cube_halfwidth",
    "HeldOutWhitening", "hotelling_bound",
    "confidence_ellipse", "chi2_2_radius", "gaussian_ks_distance", "DEFAULT_LEVELS",
]
