"""ComponentStats: streamed statistics equal numpy/scipy on raw components and PCA coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as ss
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from latentscope import create_store, open_store
from latentscope.analysis import ComponentStats, PCAFrame
from latentscope.exceptions import InvalidParameterError, NonFiniteError

finite = st.floats(-100, 100, allow_nan=False, width=32)


def _matrix(min_rows=2, max_rows=50, max_dim=4):
    shape = st.tuples(st.integers(min_rows, max_rows), st.integers(1, max_dim))
    return shape.flatmap(lambda s: arrays(np.float32, s, elements=finite))


def _close(a, b, scale):
    return np.allclose(a, b, rtol=1e-5, atol=1e-5 * scale, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(X=_matrix(), block_rows=st.integers(1, 13))
def test_component_stats_equal_numpy_and_scipy_for_any_block_size(X, block_rows):
    # mean/var/min/max/skew/kurtosis/histograms of raw components match in-memory results
    cs = ComponentStats(bins=10, fine_bins=64, max_bytes=block_rows * X.shape[1] * 4).fit(X)
    X64 = X.astype(np.float64)
    scale = float(np.abs(X64).max()) + 1.0
    assert cs.n_samples_seen_ == X.shape[0]
    assert _close(cs.mean_, X64.mean(0), scale)
    assert _close(cs.std_, X64.std(0), scale)
    np.testing.assert_array_equal(cs.min_, X64.min(0))
    np.testing.assert_array_equal(cs.max_, X64.max(0))
    for k in range(X.shape[1]):
        ref, _ = np.histogram(X[:, k], bins=cs.hist_edges_[k])
        np.testing.assert_array_equal(cs.hist_counts_[k], ref)
    sd = X64.std(0)
    ok = sd > 1e-3 * scale  # moments of near-constant float32 columns are dominated by rounding
    if ok.any():
        np.testing.assert_allclose(cs.skewness_[ok], ss.skew(X64[:, ok]), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(cs.excess_kurtosis_[ok], ss.kurtosis(X64[:, ok]), rtol=1e-4, atol=1e-4)


def test_component_stats_quantiles_ks_and_gaussian_fit():
    # quantiles within one fine bin; KS small for normal components, large for a uniform one
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(3, 2, 50000), rng.uniform(-1, 1, 50000), rng.exponential(1, 50000)])
    cs = ComponentStats().fit(X)
    ref = np.quantile(X, cs.quantile_levels_, axis=0)
    width = (X.max(0) - X.min(0)) / cs.raw_fine_bins()
    assert np.all(np.abs(cs.quantiles_ - ref) <= width)
    exact_ks = [ss.kstest(X[:, k], "norm", args=(X[:, k].mean(), X[:, k].std())).statistic for k in range(3)]
    np.testing.assert_allclose(cs.ks_distance_, exact_ks, atol=2e-3)
    assert cs.ks_distance_[0] < 0.01 < cs.ks_distance_[1]
    assert cs.gaussian_pdf(0, 3.0) == pytest.approx(1 / (2 * np.sqrt(2 * np.pi)), rel=1e-2)
    assert cs.summary()["n_components_ks_below_0.02"] == 1


def test_component_stats_in_pca_coordinates(tmp_path):
    # with a frame the statistics are those of pca.transform(Z), in one pass over a store
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(20000, 5)) @ rng.normal(size=(5, 5)) + 4).astype(np.float32)
    with create_store(tmp_path / "z.h5", 5) as s:
        s.append(X)
    with open_store(tmp_path / "z.h5") as store:
        pca = PCAFrame().fit(store)
        cs = ComponentStats(frame=pca, pairs=[(0, 1)]).fit(store)
    T = pca.transform(X.astype(np.float64))
    assert cs.coordinates_ == "pca"
    np.testing.assert_allclose(cs.mean_, 0, atol=1e-4 * T.std())
    np.testing.assert_allclose(cs.var_, T.var(0), rtol=1e-5)
    np.testing.assert_allclose(cs.var_, pca.explained_variance_ * (len(X) - 1) / len(X), rtol=1e-5)
    np.testing.assert_allclose(cs.skewness_, ss.skew(T), atol=1e-4)
    np.testing.assert_allclose(cs.min_, T.min(0), rtol=1e-5, atol=1e-5)
    width = (cs.fine_hi_ - cs.fine_lo_) / cs.pc_fine_bins()
    assert np.all(np.abs(cs.quantiles_ - np.quantile(T, cs.quantile_levels_, axis=0)) <= width * 1.01)
    assert np.all(cs.hist_counts_.sum(1) == len(X))
    xe, ye, c = cs.pair_density_[(0, 1)]
    assert c.shape == (64, 64) and c.sum() <= len(X) and c.sum() > 0.99 * len(X)


def test_component_stats_round_trip(tmp_path):
    X = np.random.default_rng(2).normal(size=(500, 3))
    cs = ComponentStats(bins=20, pairs=[(0, 2)]).fit(X)
    cs.save(tmp_path / "cs")
    back = ComponentStats.load(tmp_path / "cs")
    for name in ("mean_", "std_", "skewness_", "quantiles_", "hist_counts_", "ks_distance_", "fine_counts_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cs, name))
    assert back.bins == 20 and back.n_samples_seen_ == 500
    np.testing.assert_array_equal(back.pair_density_[(0, 2)][2], cs.pair_density_[(0, 2)][2])


def test_component_stats_degenerate_inputs():
    # one row, a constant component and z_dim 1 give correct degenerate results
    one = ComponentStats().fit(np.array([[1.0, 2.0]]))
    assert one.n_samples_seen_ == 1 and np.all(one.std_ == 0) and np.all(np.isnan(one.skewness_))
    np.testing.assert_array_equal(one.quantiles_[:, 0], 1.0)
    X = np.column_stack([np.random.default_rng(3).normal(size=100), np.full(100, -7.0)])
    cs = ComponentStats().fit(X)
    assert cs.std_[1] == 0 and np.isnan(cs.ks_distance_[1]) and np.isnan(cs.excess_kurtosis_[1])
    assert cs.hist_counts_[1].sum() == 100
    assert ComponentStats().fit(X[:, :1]).mean_.shape == (1,)


def test_component_stats_errors():
    with pytest.raises(InvalidParameterError, match="no rows"):
        ComponentStats().fit(np.empty((0, 3)))
    bad = np.ones((10, 2))
    bad[3, 0] = np.nan
    with pytest.raises(NonFiniteError, match="non-finite"):
        ComponentStats().fit(bad)
    with pytest.raises(InvalidParameterError, match="bins must be an integer >= 1"):
        ComponentStats(bins=0).fit(np.ones((3, 2)))
    with pytest.raises(InvalidParameterError, match="frame must be a fitted PCAFrame"):
        ComponentStats(frame=PCAFrame()).fit(np.ones((3, 2)))
    with pytest.raises(InvalidParameterError, match="pair indices"):
        ComponentStats(pairs=[(0, 5)]).fit(np.random.default_rng(0).normal(size=(5, 2)))
    with pytest.raises(Exception, match="not fitted"):
        ComponentStats().summary()


@pytest.mark.parametrize("scale", [1e-12, 1e12])
def test_component_stats_extreme_scales_use_float64(scale):
    # tiny or huge values switch pass 2 to float64: the statistics scale exactly with the data
    from latentscope.analysis._passes import FirstPass, choose_precision
    from latentscope.stream import run_pass

    X = np.random.default_rng(5).normal(size=(3000, 3)) * [1.0, 2.0, 0.5] + 1.0
    ref = ComponentStats().fit(X)
    cs = ComponentStats().fit(X * scale)
    assert choose_precision(run_pass(X * scale, FirstPass).result()) == np.float64
    np.testing.assert_allclose(cs.std_, ref.std_ * scale, rtol=1e-9)
    np.testing.assert_allclose(cs.excess_kurtosis_, ref.excess_kurtosis_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(cs.quantiles_, ref.quantiles_ * scale, rtol=1e-6)
