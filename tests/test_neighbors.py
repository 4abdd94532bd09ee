"""Exact blockwise nearest-neighbour distances (latentscope.neighbors)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentscope import create_store
from latentscope.exceptions import InvalidParameterError
from latentscope.neighbors import KNN_METHOD, nearest_distances, reference_distances


def _brute(Q, X, k, exclude=None):
    D = np.sqrt(((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    if exclude is not None:
        for i, r in enumerate(exclude):
            if r >= 0:
                D[i, r] = np.inf
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, idx, axis=1), idx


def test_nearest_distances_matches_brute_force():
    # exact against a direct float64 computation, including the indices
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 7)) + 5.0
    Q = rng.normal(size=(40, 7)) + 5.0
    d, i = nearest_distances(Q, X, 3, return_indices=True)
    bd, bi = _brute(Q, X, 3)
    np.testing.assert_allclose(d, bd, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(i, bi)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 60), m=st.integers(1, 20), k=st.integers(1, 4), block=st.sampled_from([64, 200, 1 << 20]),
       seed=st.integers(0, 10**6))
def test_nearest_distances_independent_of_block_size(n, m, k, block, seed):
    # any block budget gives the brute-force answer
    k = min(k, n)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    Q = rng.normal(size=(m, 3))
    d = nearest_distances(Q, X, k, max_bytes=block)
    np.testing.assert_allclose(d, _brute(Q, X, k)[0], rtol=1e-10, atol=1e-12)


def test_nearest_distances_excludes_self():
    # with exclude, a data row's own point is skipped; -1 excludes nothing
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 5))
    rows = np.array([0, 5, 99, -1])
    Q = X[[0, 5, 99, 3]]
    d = nearest_distances(Q, X, 2, exclude=rows)
    np.testing.assert_allclose(d, _brute(Q, X, 2, exclude=rows)[0], rtol=1e-12)
    assert d[3, 0] == 0.0 and d[0, 0] > 0


def test_nearest_distances_streams_a_store(tmp_path):
    # a store (streamed in small blocks) gives the array's answer
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 16)).astype(np.float32)
    with create_store(tmp_path / "z.h5", 16) as s:
        s.append(X)
        Q = rng.normal(size=(30, 16))
        d_store = nearest_distances(Q, s, 2, max_bytes=8192)
    np.testing.assert_allclose(d_store, nearest_distances(Q, X, 2), rtol=1e-12)


def test_nearest_distances_precise_far_from_origin():
    # the final distances are recomputed from differences: no cancellation at |z| ~ 1e4
    rng = np.random.default_rng(3)
    X = 1e4 + rng.normal(size=(200, 8)) * 1e-3
    Q = X[:10] + 1e-6
    d = nearest_distances(Q, X, 1)[:, 0]
    np.testing.assert_allclose(d, np.sqrt(8) * 1e-6, rtol=1e-6)


def test_reference_distances_subsample_and_self_exclusion():
    # reference rows are distinct, sorted, and their distances exclude themselves
    rng = np.random.default_rng(4)
    X = rng.normal(size=(400, 6))
    rows, d = reference_distances(X, 50, rng=0)
    assert rows.shape == (50,) and np.all(np.diff(rows) > 0)
    np.testing.assert_allclose(d, _brute(X[rows], X, 1, exclude=rows)[0], rtol=1e-12)
    rows2, d2 = reference_distances(X, 50, rng=0)
    np.testing.assert_array_equal(rows, rows2)
    all_rows, _ = reference_distances(X, 10_000, rng=0)
    assert all_rows.size == 400
    assert KNN_METHOD.startswith("exact")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must be an integer in"),
        ({"k": 11}, r"k must be an integer in \[1, 10\]"),
        ({"exclude": np.zeros(2, dtype=int)}, "exclude must be 3 integers"),
        ({"exclude": np.array([0, 1, 10])}, "exclude holds row 10"),
    ],
)
def test_nearest_distances_bad_input(kwargs, match):
    X = np.zeros((10, 2))
    with pytest.raises(InvalidParameterError, match=match):
        nearest_distances(np.zeros((3, 2)), X, **kwargs)


def test_nearest_distances_wrong_width():
    with pytest.raises(InvalidParameterError, match="queries must have 2 columns"):
        nearest_distances(np.zeros((3, 4)), np.zeros((10, 2)))
