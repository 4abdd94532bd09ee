"""Blockwise nearest-neighbour distances and kNN-ball counting against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from latentscope import create_store, open_store
from latentscope.exceptions import InvalidParameterError
from latentscope import neighbors as _knn
from latentscope.neighbors import ball_counts, knn_sqdist, kth_neighbour_sqdist
from latentscope.neighbors import resolve_engine as resolve_method


def _brute_kth(x, ks):
    d2 = cdist(x, x, "sqeuclidean")
    np.fill_diagonal(d2, np.inf)
    d2.sort(axis=1)
    return [d2[:, k - 1] for k in ks]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(6, 60),
    dim=st.integers(1, 9),
    ks=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    max_bytes=st.integers(8, 40_000),
    seed=st.integers(0, 2**32 - 1),
)
def test_knn_radii_blockwise_equal_brute_force_for_any_block_size(n, dim, ks, max_bytes, seed):
    # max_bytes from one row per block up to the whole set in one block
    x = np.random.default_rng(seed).normal(size=(n, dim)) * 3 + 10
    got = kth_neighbour_sqdist(x, ks, max_bytes=max_bytes)
    for g, w in zip(got, _brute_kth(x, ks)):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    nq=st.integers(1, 40),
    nc=st.integers(2, 40),
    dim=st.integers(1, 6),
    query_block=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1),
)
def test_ball_counts_blockwise_equal_brute_force(nq, nc, dim, query_block, seed):
    rng = np.random.default_rng(seed)
    q, c = rng.normal(size=(nq, dim)), rng.normal(size=(nc, dim))
    # radii on a grid far from the realised distances, so rounding cannot flip a comparison
    r2c = rng.choice([0.25, 1.0, 2.25, 4.0], size=nc) + 1e-3
    r2q = rng.choice([0.25, 1.0, 2.25], size=nq) + 1e-3
    d2 = cdist(q, c, "sqeuclidean")
    res = ball_counts(q, c, [r2c], r2q, query_block=query_block)
    inside = d2 <= r2c[None, :]
    np.testing.assert_array_equal(res.query_counts[0], inside.sum(axis=1))
    np.testing.assert_array_equal(res.centre_counts[0], inside.sum(axis=0))
    np.testing.assert_array_equal(res.centre_in_query_balls, (d2 <= r2q[:, None]).any(axis=0))
    assert res.method == "exact"


def test_knn_sqdist_streams_a_store_and_excludes_query_rows(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 6)).astype(np.float32)
    store = create_store(tmp_path / "z.h5", 6)
    store.append(z)
    store.close()
    rows = np.array([3, 250, 499])
    with open_store(tmp_path / "z.h5") as s:
        d2, idx = knn_sqdist(z[rows].astype(np.float64), s, 2, query_rows=rows, max_bytes=37 * 6 * 8)
    full = cdist(z[rows].astype(np.float64), z.astype(np.float64), "sqeuclidean")
    full[np.arange(3), rows] = np.inf
    np.testing.assert_allclose(d2, np.sort(full, axis=1)[:, :2], rtol=1e-9)
    assert not (idx == rows[:, None]).any()


def test_knn_duplicates_give_zero_radius_but_never_self():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    d2, idx = knn_sqdist(x, x, 1, query_rows=np.arange(4))
    assert d2[0, 0] == 0.0 and idx[0, 0] == 1 and idx[1, 0] == 0
    assert d2[2, 0] == pytest.approx(1.0)


def test_resolve_method_choices():
    assert resolve_method("exact", 10**12, owner="t") == "exact"
    assert resolve_method("auto", 100, owner="t") == "exact"
    with pytest.raises(InvalidParameterError, match="knn must be one of 'auto', 'exact', 'faiss'; got 'hnsw'"):
        resolve_method("hnsw", 100, owner="t")


def test_faiss_engine_matches_exact_engine():
    if _knn._faiss() is None:
        pytest.skip("faiss is not installed (the knn extra)")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(600, 16)), rng.normal(size=(500, 16)) + 0.2
    ex = kth_neighbour_sqdist(x, [3, 5])
    fa = kth_neighbour_sqdist(x, [3, 5], method="faiss")
    for a, b in zip(ex, fa):
        np.testing.assert_allclose(a, b, rtol=1e-4)
    r2y = kth_neighbour_sqdist(y, [3])[0]
    e = ball_counts(y, x, ex, r2y)
    # start with 2 candidates so that the faiss search has to widen repeatedly
    f = ball_counts(y, x, ex, r2y, method="faiss", n_candidates=2)
    assert f.method == "faiss"
    for a, b in zip(e.query_counts + e.centre_counts, f.query_counts + f.centre_counts):
        # float32 rounding may flip a membership that sits on a ball's surface
        assert np.abs(a - b).sum() <= 2
    assert (e.centre_in_query_balls != f.centre_in_query_balls).sum() <= 1
