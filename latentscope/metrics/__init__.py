"""Weight-free generation metrics.

Nothing here downloads weights. The feature spaces are the autoencoder's own latent
space (:func:`latent_features`, :func:`reencode`), a PCA of pixels fitted on real
images (:class:`PixelPCAFeatures`) and the pooled responses of a fixed, seeded random
convolutional network (:class:`RandomConvFeatures`); any other feature matrix works too.

Distances between distributions
    :func:`frechet_distance` (from means and covariances, or precomputed
    :class:`FeatureStats` streamed with :func:`feature_stats`) and :func:`kid`
    (unbiased MMD^2 with the cubic polynomial kernel).
kNN-manifold metrics
    :func:`precision_recall` (Kynkäänniemi et al. 2019, k = 3) and
    :func:`density_coverage` (Naeem et al. 2020, k = 5), computed blockwise
    (exact, float64) or with faiss for large sets (exhaustive, float32), through
    :mod:`latentscope.neighbors`; :func:`manifold_metrics` computes both from
    shared passes.
Memorisation
    :func:`memorisation`: each generated item's distance to its nearest training
    item against the training set's own nearest-neighbour distances.
All at once
    :func:`evaluate_set` (one generated set); :func:`evaluate_regions` (many samplers
    of one model, the RAE-style comparison table of ``latentscope evaluate``).

See ``docs/metrics.md``.
"""

from ._convfeatures import RandomConvFeatures
from ._evaluate import SetEvaluation, SpaceScores, evaluate_set
from ._features import PixelPCAFeatures, latent_features, reencode
from ._frechet import FeatureStats, feature_stats, frechet_distance
from ._kid import KIDResult, kid
from ._manifold import DensityCoverage, PrecisionRecall, density_coverage, manifold_metrics, precision_recall
from ._memorisation import MemorisationResult, memorisation
from ._regions import RegionEvaluation, RegionScores, evaluate_regions

__all__ = [
    "FeatureStats", "feature_stats", "frechet_distance",
    "KIDResult", "kid",
    "PrecisionRecall", "DensityCoverage", "precision_recall", "density_coverage", "manifold_metrics",
    "MemorisationResult", "memorisation",
    "PixelPCAFeatures", "RandomConvFeatures", "latent_features", "reencode",
    "SpaceScores", "SetEvaluation", "evaluate_set",
    "RegionScores", "RegionEvaluation", "evaluate_regions",
]
