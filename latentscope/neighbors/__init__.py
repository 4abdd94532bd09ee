"""Nearest neighbours: exact blockwise search, radius (ball) queries and kNN graphs.

One package serves every consumer (landing figures, memorisation, the kNN-manifold
metrics, filament detection), with one vocabulary of engines (:data:`ENGINES`):

``"exact"``
    Blockwise BLAS over the data, exhaustive. A store is streamed block by block
    (:func:`latentscope.stream.as_zsource`), never loaded whole.
``"faiss"``
    ``faiss.IndexFlatL2`` (optional, the ``knn`` extra): exhaustive, float32,
    multi-threaded; the same answers up to float32 rounding.
``"forest"``, ``"faiss-ivf"``
    Approximate kNN graphs (a random-projection forest; ``faiss.IndexIVFFlat``),
    for :func:`knn_graph` only.
``"auto"``
    ``"exact"`` for small problems; beyond, ``"faiss"`` for searches when it is
    installed and ``"forest"`` for graphs.

Searches
    :func:`nearest_distances` (queries against a source, with self-exclusion,
    skipped rows and a metric transform), :func:`reference_distances` (the one
    "nearest other row": a random subsample of data rows against the rest),
    :func:`knn_sqdist` and :func:`kth_neighbour_sqdist` (squared, with indices).
Radius queries
    :func:`ball_counts`: memberships of queries in kNN balls of centres.
Graphs
    :func:`knn_graph` (:func:`exact_knn`, :func:`forest_knn`, :func:`faiss_ivf_knn`).

Only this package imports faiss (:func:`faiss_available` probes it). See
``docs/metrics.md`` and ``docs/filaments.md`` for measurements.
"""

from ._balls import DEFAULT_CANDIDATES, BallCounts, ball_counts
from ._engines import (
    AUTO_EXACT_MAX,
    ENGINES,
    EXACT_MAX_PAIRS,
    GRAPH_ENGINES,
    KNN_METHOD,
    SEARCH_ENGINES,
    resolve_engine,
    resolve_graph_engine,
)
from ._faiss import faiss_available
from ._faiss import faiss_module as _faiss  # noqa: F401 - the probe under its former name (metrics._knn._faiss)
from ._graph import exact_knn, faiss_ivf_knn, forest_knn, knn_graph
from ._search import knn_sqdist, kth_neighbour_sqdist, nearest_distances, reference_distances

__all__ = [
    "nearest_distances", "reference_distances", "knn_sqdist", "kth_neighbour_sqdist",
    "BallCounts", "ball_counts",
    "knn_graph", "exact_knn", "forest_knn", "faiss_ivf_knn",
    "ENGINES", "SEARCH_ENGINES", "GRAPH_ENGINES", "EXACT_MAX_PAIRS", "AUTO_EXACT_MAX", "DEFAULT_CANDIDATES",
    "KNN_METHOD", "resolve_engine", "resolve_graph_engine", "faiss_available",
]
