"""latentscope: analyse and exploit the latent space of trained autoencoders.

The core never imports TensorFlow, Keras, PyTorch or JAX; model backends are plugins
discovered through the ``latentscope.backends`` entry-point group.

Subpackages
-----------
store       HDF5 z-point stores (:func:`open_store`, :func:`create_store`).
stream      mergeable streaming reducers and the one-pass runner.
data        image sources: CelebA, image folders, synthetic faces.
backends    the backend protocol, discovery, and the ``linear`` backend.
analysis    the series' analyses (component statistics, correlations, radial
            distributions, PCA frame, bounding boxes, core vs outer layers).
regions     geometric regions (boxes, PCA boxes, balls, ellipsoids).
samplers    generators of z-points from regions and fitted distributions.
filaments   filament detection in high-dimensional point clouds.
metrics     weight-free generation metrics.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .exceptions import LatentscopeError
from .store import ZStore, create_store, open_store

_SUBPACKAGES = ("store", "stream", "data", "backends", "analysis", "regions", "samplers", "filaments", "metrics", "cli")

#: Public names re-exported lazily: name -> module that defines it.
_LAZY = {
    # stream
    "Moments": "stream", "Covariance": "stream", "Histogram": "stream", "run_reducers": "stream",
    # backends
    "get_backend": "backends", "list_backends": "backends", "LinearBackend": "backends", "encode_to_store": "backends",
    # data
    "open_source": "data",
    # filaments
    "FilamentDetector": "filaments", "make_planted_cloud": "filaments",
    # analysis
    "PCAFrame": "analysis", "BoundingBoxes": "analysis", "streaming_quantiles": "analysis",
    "analyze": "analysis", "ComponentStats": "analysis", "Correlations": "analysis",
    "RadialDistribution": "analysis", "CoreCovariance": "analysis", "AttributeSplit": "analysis",
    "match_cube_halfwidth": "analysis",
    # metrics
    "frechet_distance": "metrics", "FeatureStats": "metrics", "feature_stats": "metrics", "kid": "metrics",
    "precision_recall": "metrics", "density_coverage": "metrics", "memorisation": "metrics",
    "PixelPCAFeatures": "metrics", "evaluate_set": "metrics", "evaluate_regions": "metrics",
    # the estimator base
    "Estimator": "_estimator", "clone": "_estimator",
    # samplers, neighbours
    "make_sampler": "samplers", "all_samplers": "samplers", "load_sampler": "samplers",
    "landing_report": "samplers", "LandingReport": "samplers", "nearest_distances": "neighbors",
}

__all__ = ["__version__", "LatentscopeError", "ZStore", "create_store", "open_store", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'latentscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))
