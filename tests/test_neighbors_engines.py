"""One neighbour package: engine vocabulary, the faiss engine of streamed searches, graphs, one faiss import."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import latentscope
from latentscope import create_store
from latentscope.exceptions import InvalidParameterError
from latentscope.neighbors import (
    ENGINES,
    GRAPH_ENGINES,
    SEARCH_ENGINES,
    exact_knn,
    faiss_available,
    knn_graph,
    nearest_distances,
    reference_distances,
    resolve_engine,
    resolve_graph_engine,
)

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed (the knn extra)")


def _t3_copula(n, d, seed):
    """Multivariate t (3 degrees of freedom) with lognormal-scaled, correlated axes, far off the origin."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, d)) @ np.linalg.qr(rng.normal(size=(d, d)))[0]
    w = np.sqrt(3.0 / rng.chisquare(3, size=(n, 1)))
    return 20.0 + g * w * np.exp(rng.normal(0, 0.5, size=d))


def _brute(Q, X, k, exclude=None, skip=()):
    d = cdist(Q, X)
    if exclude is not None:
        d[np.arange(len(Q)), exclude] = np.inf
    d[:, list(skip)] = np.inf
    return np.sort(d, axis=1)[:, :k]


def test_vocabulary_is_one_table_with_two_subsets():
    # searches take the exhaustive engines, graphs every engine; both are rows of ENGINES
    assert set(SEARCH_ENGINES) <= set(GRAPH_ENGINES) == set(ENGINES)
    assert resolve_engine("auto", 100, owner="t") == "exact"
    assert resolve_graph_engine("auto", 100) == "exact" and resolve_graph_engine("auto", 10**5) == "forest"
    with pytest.raises(InvalidParameterError, match="t: knn must be one of 'auto', 'exact', 'faiss'; got 'forest'"):
        resolve_engine("forest", 100, owner="t")


def test_faiss_engines_need_faiss_with_one_message(monkeypatch):
    # without faiss every faiss engine is refused with the install hint, the exact ones still work
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)
    for resolve, name in ((resolve_engine, "faiss"), (resolve_graph_engine, "faiss-ivf"), (resolve_graph_engine, "faiss")):
        with pytest.raises(InvalidParameterError, match=rf"knn='{name}' needs the faiss package; .*latentscope-ae\[knn\]"):
            resolve(name, 100, owner="t")
    assert resolve_engine("auto", 10**12, owner="t") == "exact"


@needs_faiss
def test_faiss_search_streams_a_store_and_equals_the_exact_engine(tmp_path):
    # heavy-tailed cloud far from the origin, tiny blocks: same neighbours, distances to float64 precision
    X = _t3_copula(700, 9, 0)
    with create_store(tmp_path / "z.h5", 9) as s:
        s.append(X.astype(np.float32))
    X32 = X.astype(np.float32).astype(np.float64)
    rows = np.arange(0, 700, 7)
    skip = [1, 2, 300]
    ex = nearest_distances(X32[rows], tmp_path / "z.h5", 4, exclude=rows, skip=skip, max_bytes=4096)
    fa, idx = nearest_distances(X32[rows], tmp_path / "z.h5", 4, exclude=rows, skip=skip, max_bytes=4096,
                                method="faiss", return_indices=True)
    np.testing.assert_allclose(ex, _brute(X32[rows], X32, 4, rows, skip), rtol=1e-12)
    np.testing.assert_allclose(fa, ex, rtol=1e-12)  # winners recomputed in float64
    assert not np.isin(idx, skip).any() and not (idx == rows[:, None]).any()


def test_reference_distances_all_rows_through_a_path(tmp_path):
    # n_queries=None: every row against the others; a path is opened and closed again
    X = _t3_copula(300, 5, 1)
    with create_store(tmp_path / "z.h5", 5) as s:
        s.append(X)
    rows, d = reference_distances(tmp_path / "z.h5", None, 2)
    X32 = X.astype(np.float32).astype(np.float64)
    assert rows.tolist() == list(range(300))
    np.testing.assert_allclose(d, _brute(X32, X32, 2, np.arange(300)), rtol=1e-12)
    with pytest.raises(InvalidParameterError, match="n_queries must be an integer > 0; got 0"):
        reference_distances(X, 0)


@needs_faiss
def test_graph_faiss_engine_equals_exact():
    # the exhaustive faiss graph finds the numpy graph's neighbour sets
    X = _t3_copula(1500, 12, 2).astype(np.float32)
    d0, i0 = exact_knn(X, 6, use_faiss=False)
    d1, i1, method = knn_graph(X, 6, method="faiss", rng=np.random.default_rng(0))
    assert method == "faiss"
    np.testing.assert_allclose(d1, d0, rtol=1e-3, atol=1e-3)
    assert np.mean([len(set(a) & set(b)) / 6 for a, b in zip(i0, i1)]) > 0.99


def test_only_the_neighbour_package_imports_faiss():
    # one faiss probe: no module outside latentscope/neighbors/ imports faiss
    root = pathlib.Path(latentscope.__file__).parent
    pat = re.compile(r"^\s*(import faiss|from faiss)", re.M)
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if pat.search(p.read_text()) and p.parent.name != "neighbors"]
    assert offenders == []
