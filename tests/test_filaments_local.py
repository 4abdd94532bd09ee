"""Building blocks of filament detection: kNN engines, local statistics, spines."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentscope.exceptions import InvalidParameterError
from latentscope.filaments._detector import _unique_rows
from latentscope.neighbors import (
    exact_knn,
    faiss_available,
    forest_knn,
    knn_graph,
)
from latentscope.neighbors import resolve_graph_engine as resolve_knn_method
from latentscope.filaments._local import (
    benjamini_hochberg,
    empirical_pvalues,
    knn_linearity,
    mle_dimension,
    neighbourhood_spectra,
    spectrum_stats,
)
from latentscope.filaments._spine import fit_spine


def _brute(X, k):
    d = np.sqrt(((X[:, None, :].astype(np.float64) - X[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, axis=1), idx


def test_exact_knn_matches_brute_force():
    # distances and neighbour sets equal a direct float64 computation
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 9)) * [1, 2, 3, 1, 1, 1, 1, 1, 5] + 10.0
    d, i = exact_knn(X, 7, use_faiss=False)
    bd, bi = _brute(X, 7)
    np.testing.assert_allclose(d, bd, rtol=1e-4)
    assert all(set(a) == set(b) for a, b in zip(i, bi))
    assert not (i == np.arange(300)[:, None]).any()


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
def test_exact_knn_faiss_agrees_with_numpy():
    # the faiss exhaustive engine returns the same neighbours as the numpy one
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 16)).astype(np.float32)
    d1, i1 = exact_knn(X, 5, use_faiss=False)
    d2, i2 = exact_knn(X, 5, use_faiss=True)
    np.testing.assert_allclose(d1, d2, rtol=1e-3, atol=1e-4)
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(i1, i2)]) > 0.99


def test_forest_knn_keeps_the_neighbours_of_dense_clusters():
    # tight clusters inside a broad bulk keep (almost) all their true neighbours
    rng = np.random.default_rng(2)
    bulk = rng.normal(size=(3000, 32))
    centres = rng.normal(size=(10, 32))
    clusters = np.repeat(centres, 100, axis=0) + 0.01 * rng.normal(size=(1000, 32))
    X = np.concatenate([clusters, bulk]).astype(np.float32)
    d, i = forest_knn(X, 8, n_trees=3, leaf_size=256, rng=np.random.default_rng(0))
    _, bi = exact_knn(X, 8, use_faiss=False)
    rec = np.mean([len(set(a) & set(b)) / 8 for a, b in zip(i[:1000], bi[:1000])])
    assert rec > 0.9
    assert (np.diff(d, axis=1) >= 0).all()
    # merged lists hold distinct neighbours, never the point itself
    assert all(len(set(row)) == 8 for row in i)
    assert not (i == np.arange(X.shape[0])[:, None]).any()


def test_forest_knn_distances_never_undercut_exact():
    # approximate k-th distances over-estimate, never under-estimate, the exact ones
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 20)).astype(np.float32)
    d, _ = forest_knn(X, 5, n_trees=2, leaf_size=128, rng=np.random.default_rng(1))
    de, _ = exact_knn(X, 5, use_faiss=False)
    assert (d[:, -1] >= de[:, -1] * (1 - 1e-4)).all()


def test_knn_method_resolution_and_errors():
    # auto is exact for small clouds and the forest above; unknown names are refused
    assert resolve_knn_method("auto", 1000) == "exact"
    assert resolve_knn_method("auto", 10**6) == "forest"
    with pytest.raises(InvalidParameterError, match="knn must be one of"):
        resolve_knn_method("annoy", 10)


@pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")
def test_knn_graph_faiss_ivf_engine_runs():
    # the optional faiss IVF engine returns sorted lists without self matches
    rng = np.random.default_rng(4)
    X = rng.normal(size=(3000, 16)).astype(np.float32)
    d, i, method = knn_graph(X, 6, method="faiss-ivf", rng=np.random.default_rng(0))
    assert method == "faiss-ivf" and d.shape == (3000, 6)
    assert (np.diff(d, axis=1) >= 0).all()
    assert not (i == np.arange(3000)[:, None]).any()


def test_mle_dimension_recovers_simple_dimensions():
    # points on a line in 50-D give about 1, a 5-D Gaussian about 5
    rng = np.random.default_rng(5)
    line = np.outer(rng.uniform(0, 1, 3000), rng.normal(size=50))
    d, _ = exact_knn(line, 20, use_faiss=False)
    assert abs(np.median(mle_dimension(d)) - 1) < 0.2
    g5 = np.zeros((3000, 50))
    g5[:, :5] = rng.normal(size=(3000, 5))
    d, _ = exact_knn(g5, 20, use_faiss=False)
    assert abs(np.median(mle_dimension(d)) - 5) < 1.0


def test_knn_linearity_separates_lines_from_blobs():
    # single-scale lambda_1/sum(lambda): near 1 on a noiseless line, low on an isotropic blob
    rng = np.random.default_rng(6)
    line = np.outer(rng.uniform(0, 1, 500), rng.normal(size=30))
    blob = rng.normal(size=(500, 30))
    for X, lo, hi in ((line, 0.99, 1.0), (blob, 0.0, 0.3)):
        _, idx = exact_knn(X, 16, use_faiss=False)
        lin = knn_linearity(X.astype(np.float32), idx)
        assert lo <= np.median(lin) <= hi + 1e-6


def _spectra(P):
    hoods = np.arange(P.shape[0])[None, :]
    eig, direction = neighbourhood_spectra(P.astype(np.float32), hoods)
    return spectrum_stats(eig, P.shape[1]), direction


def test_spectrum_stats_tell_curves_sheets_and_noise_apart():
    # noise-corrected local PCA: a noisy segment is 1-D, a noisy square 2-D, a blob unresolved
    rng = np.random.default_rng(7)
    dim, m = 256, 32
    u, v = np.linalg.qr(rng.normal(size=(dim, 2)))[0].T
    noise = 0.02 * rng.normal(size=(m, dim))
    seg = np.outer(rng.uniform(-1, 1, m), u) + noise
    sheet = rng.uniform(-1, 1, (m, 1)) * u + rng.uniform(-1, 1, (m, 1)) * v + noise
    blob = noise
    s_seg, d_seg = _spectra(seg)
    s_sheet, _ = _spectra(sheet)
    s_blob, _ = _spectra(blob)
    assert s_seg.snr[0] > 10 and s_seg.linearity[0] > 0.95 and abs(s_seg.dimension[0] - 1) < 0.1
    assert abs(d_seg[0] @ u) > 0.98
    assert s_sheet.snr[0] > 10 and s_sheet.linearity[0] < 0.75 and s_sheet.dimension[0] > 1.5
    assert s_blob.snr[0] < 1.3
    assert abs(s_blob.noise[0] / 0.02**2 - 1) < 0.2


def test_empirical_pvalues_and_bh():
    # p-values lie in (0, 1]; BH rejects a prefix of the sorted p-values and nothing under a flat null
    null = np.sort(np.arange(1, 101, dtype=float))
    p = empirical_pvalues(np.array([0.5, 1.0, 50.0, 1000.0]), null)
    np.testing.assert_allclose(p, [1 / 101, 2 / 101, 51 / 101, 1.0])
    assert not benjamini_hochberg(np.full(100, 0.5), 0.05).any()
    rej = benjamini_hochberg(np.array([1e-6, 0.5, 2e-6, np.nan, 0.9]), 0.05)
    assert rej.tolist() == [True, False, True, False, False]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60), st.floats(0.001, 0.5))
def test_bh_rejections_are_a_prefix_of_sorted_pvalues(ps, q):
    # property: whatever is rejected has smaller p-values than anything kept
    p = np.array(ps)
    rej = benjamini_hochberg(p, q)
    if rej.any() and (~rej).any():
        assert p[rej].max() <= p[~rej].min()


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_unique_rows_groups_exact_duplicates(n, dim, seed):
    # property: representatives are distinct rows and map back onto every input row
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 3, (n, dim)).astype(np.float32)
    base[rng.random((n, dim)) < 0.1] = -0.0
    first, inverse = _unique_rows(base)
    np.testing.assert_array_equal(base[first][inverse], base)
    assert len({r.tobytes() for r in (base[first] + np.float32(0))}) == first.size
    assert (np.diff(first) > 0).all()


def test_fit_spine_measures_a_straight_filament():
    # length within 5 %, ends near the extreme points, order monotone along the line
    rng = np.random.default_rng(8)
    dim = 64
    u = rng.normal(size=dim)
    u /= np.linalg.norm(u)
    t = rng.uniform(0, 10, 800)
    P = np.outer(t, u) + 0.05 * rng.normal(size=(800, dim))
    sp = fit_spine(P, np.random.default_rng(0))
    assert abs(sp.length - (t.max() - t.min())) < 0.05 * 10
    ends = sorted([t[sp.start], t[sp.end]])
    assert ends[0] - t.min() < 0.1 and t.max() - ends[1] < 0.1
    ordered = t[sp.order]
    if ordered[0] > ordered[-1]:
        ordered = ordered[::-1]
    assert np.mean(np.diff(ordered) >= -0.3) > 0.99
    assert abs(abs(sp.direction @ u) - 1) < 1e-3
    assert abs(sp.thickness - 0.05 * np.sqrt(dim - 1)) < 0.1 * 0.05 * np.sqrt(dim)


def test_knn_without_faiss_falls_back_to_numpy(monkeypatch):
    # with faiss not importable, exact search uses numpy and faiss-ivf is a clear error
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)
    assert not faiss_available()
    rng = np.random.default_rng(9)
    X = rng.normal(size=(400, 8)).astype(np.float32)
    d, i, method = knn_graph(X, 4, method="exact", rng=rng)
    _, bi = _brute(X, 4)
    assert method == "exact" and all(set(a) == set(b) for a, b in zip(i, bi))
    with pytest.raises(InvalidParameterError, match="pip install 'latentscope-ae\\[knn\\]'"):
        resolve_knn_method("faiss-ivf", 400)
