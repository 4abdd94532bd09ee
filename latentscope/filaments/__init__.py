"""Filament detection in high-dimensional point clouds.

:class:`FilamentDetector` finds thin, elongated, dense structures among z-points
(method and measurements: ``docs/filaments.md``); :func:`make_planted_cloud` builds
benchmark clouds with planted filaments, blobs and sheets in a bulk of one of the
laws :data:`BULKS` (Gaussian or not), and :func:`score_planted`
scores a detection against them.
"""

from ..neighbors import GRAPH_ENGINES as KNN_METHODS
from ._detector import COLUMNS, Filament, FilamentDetector
from ._planted import BULKS, PlantedCloud, PlantedStructure, make_planted_cloud, score_planted

__all__ = [
    "FilamentDetector", "Filament", "COLUMNS", "KNN_METHODS",
    "make_planted_cloud", "score_planted", "PlantedCloud", "PlantedStructure", "BULKS",
]
