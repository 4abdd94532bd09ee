"""The one vocabulary of neighbour engines and the rule that resolves ``"auto"``.

``"exact"``
    Blockwise BLAS over the data, exhaustive. Every consumer.
``"faiss"``
    ``faiss.IndexFlatL2`` (optional): exhaustive, float32, multi-threaded. Every consumer.
``"forest"``
    A random-projection forest: approximate. kNN graphs (filaments) only.
``"faiss-ivf"``
    ``faiss.IndexIVFFlat`` (optional): approximate. kNN graphs only.
``"auto"``
    One of the above by problem size.

Searches whose answers must be complete (radii, ball counts, memorisation,
landing) take the *exhaustive* engines only (:data:`SEARCH_ENGINES`); kNN graphs
take all of them (:data:`GRAPH_ENGINES`). ``"auto"`` is ``"exact"`` for small
problems; beyond, searches take ``"faiss"`` when it is installed (same answer up
to float32 rounding) and graphs take ``"forest"``.
"""

from __future__ import annotations

from ..exceptions import InvalidParameterError
from ._faiss import faiss_available

__all__ = [
    "ENGINES", "SEARCH_ENGINES", "GRAPH_ENGINES", "EXACT_MAX_PAIRS", "AUTO_EXACT_MAX", "KNN_METHOD",
    "resolve_engine", "resolve_graph_engine",
]

#: Every engine name, with what it does.
ENGINES: dict[str, str] = {
    "auto": "'exact' for small problems; beyond, 'faiss' for searches (when installed) and 'forest' for graphs",
    "exact": "blockwise BLAS over the data: exhaustive",
    "faiss": "faiss.IndexFlatL2 (optional): exhaustive, float32, multi-threaded",
    "forest": "random-projection forest: approximate (kNN graphs only)",
    "faiss-ivf": "faiss.IndexIVFFlat (optional): approximate (kNN graphs only)",
}
#: Engines whose answers are complete: neighbour searches, radii and ball counts.
SEARCH_ENGINES = ("auto", "exact", "faiss")
#: Engines of kNN graphs (the filament detector's ``knn``).
GRAPH_ENGINES = ("auto", "exact", "faiss", "forest", "faiss-ivf")
#: Largest number of (query, data) pairs for which a search with ``"auto"`` stays exact.
EXACT_MAX_PAIRS = 20_000 * 20_000
#: A kNN graph with ``"auto"`` is exact up to this many points, the forest beyond.
AUTO_EXACT_MAX = 10_000
#: How the exact engine finds distances (recorded in reports that use it).
KNN_METHOD = "exact (blockwise BLAS, float64)"

_NEEDS_FAISS = ("faiss", "faiss-ivf")


def _check(knn: str, allowed: tuple[str, ...], owner: str) -> None:
    if knn not in allowed:
        raise InvalidParameterError(f"{owner}: knn must be one of {', '.join(map(repr, allowed))}; got {knn!r}.")
    if knn in _NEEDS_FAISS and not faiss_available():
        raise InvalidParameterError(
            f"{owner}: knn={knn!r} needs the faiss package; install it with: pip install 'latentscope-ae[knn]', "
            "or use knn='exact'."
        )


def resolve_engine(knn: str, n_pairs: int, *, owner: str) -> str:
    """The exhaustive engine a search of ``n_pairs`` (query, data) pairs runs on.

    Parameters
    ----------
    knn : {"auto", "exact", "faiss"}
        ``"auto"`` is ``"exact"`` up to :data:`EXACT_MAX_PAIRS` pairs or without
        faiss, ``"faiss"`` beyond.
    n_pairs : int
        Query/data pairs of the largest pass.
    owner : str
        Name used in error messages.

    Returns
    -------
    str
        ``"exact"`` or ``"faiss"``.

    Raises
    ------
    InvalidParameterError
        An unknown engine, an approximate one, or ``"faiss"`` without faiss.
    """
    _check(knn, SEARCH_ENGINES, owner)
    if knn == "auto":
        return "faiss" if n_pairs > EXACT_MAX_PAIRS and faiss_available() else "exact"
    return knn


def resolve_graph_engine(knn: str, n: int, *, owner: str = "FilamentDetector") -> str:
    """The engine a kNN graph of ``n`` points runs on (``"auto"``: exact up to :data:`AUTO_EXACT_MAX`, forest beyond).

    Parameters
    ----------
    knn : {"auto", "exact", "faiss", "forest", "faiss-ivf"}
    n : int
        Number of points of the graph.
    owner : str, default="FilamentDetector"

    Returns
    -------
    str
    """
    _check(knn, GRAPH_ENGINES, owner)
    if knn == "auto":
        return "exact" if n <= AUTO_EXACT_MAX else "forest"
    return knn
