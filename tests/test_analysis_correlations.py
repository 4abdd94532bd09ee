"""Correlations: covariance and Pearson matrices, ellipses, pair densities."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from latentscope.analysis import Correlations, chi2_2_radius, confidence_ellipse
from latentscope.exceptions import InvalidParameterError

finite = st.floats(-100, 100, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(X=st.tuples(st.integers(2, 40), st.integers(2, 5)).flatmap(lambda s: arrays(np.float32, s, elements=finite)),
       block_rows=st.integers(1, 11))
def test_correlations_equal_numpy_for_any_block_size(X, block_rows):
    # covariance (ddof=1) and Pearson r equal numpy.cov / numpy.corrcoef
    c = Correlations(n_pairs=0, max_bytes=block_rows * X.shape[1] * 4).fit(X)
    X64 = X.astype(np.float64)
    scale = float(np.abs(X64).max()) ** 2 + 1.0
    np.testing.assert_allclose(c.covariance_, np.cov(X64, rowvar=False), rtol=1e-7, atol=1e-9 * scale)
    sd = X64.std(0)
    ok = sd > 1e-3 * np.sqrt(scale)
    if ok.sum() >= 2:
        ref = np.corrcoef(X64[:, ok], rowvar=False)
        np.testing.assert_allclose(c.correlation_[np.ix_(ok, ok)], ref, atol=1e-6)


def test_correlations_top_pairs_ellipses_and_densities():
    # the most correlated pair is found; ellipse angle, semi-axes and density counts are right
    rng = np.random.default_rng(0)
    n = 20000
    a = rng.normal(size=n)
    X = np.column_stack([a, 0.9 * a + 0.1 * rng.normal(size=n), rng.normal(size=n), -2 * a + rng.normal(size=n)])
    c = Correlations(n_pairs=2, density_bins=30).fit(X)
    assert tuple(c.top_pairs_[0]) == (0, 1)
    assert c.top_r_[0] == pytest.approx(np.corrcoef(X[:, 0], X[:, 1])[0, 1])
    assert [tuple(p) for p in c.pairs_] == [tuple(p) for p in c.top_pairs_[:2]]
    cov = np.cov(X[:, [0, 3]], rowvar=False)
    e = c.ellipse(0, 3, levels=[0.95])
    w, v = np.linalg.eigh(cov)
    assert e["angle_deg"] == pytest.approx(np.degrees(np.arctan(v[1, 1] / v[0, 1])), abs=1e-9)
    assert e["semi_axes"][0, 0] == pytest.approx(np.sqrt(w[1] * -2 * np.log(0.05)))
    for (i, j), (xe, ye, counts) in c.pair_density_.items():
        ref, _, _ = np.histogram2d(X[:, i], X[:, j], bins=[xe, ye])
        assert np.abs(counts - ref).sum() <= 4  # float edge rounding only
        assert counts.sum() == n
    assert c.abs_r_counts_.sum() == 6 and 0 < c.abs_r_median_ < 1


def test_confidence_ellipse_geometry():
    # circle for isotropic covariance, 45 degrees for equal variances with r > 0, k = sqrt(-2 ln(1-p))
    e = confidence_ellipse([1, 2], [[2.0, 1.0], [1.0, 2.0]], levels=[0.68, 0.95, 0.99])
    assert e["angle_deg"] == pytest.approx(45.0)
    np.testing.assert_allclose(e["eigenvalues"], [3.0, 1.0])
    np.testing.assert_allclose(chi2_2_radius([0.68, 0.9, 0.95, 0.99]), [1.51, 2.15, 2.45, 3.03], atol=0.01)
    neg = confidence_ellipse([0, 0], [[2.0, -1.0], [-1.0, 2.0]])
    assert neg["angle_deg"] == pytest.approx(-45.0)
    # the 95 % ellipse of a 2-D normal holds 95 % of its samples
    rng = np.random.default_rng(1)
    cov = np.array([[3.0, 1.2], [1.2, 1.0]])
    S = rng.multivariate_normal([0, 0], cov, size=40000)
    inside = np.einsum("ij,jk,ik->i", S, np.linalg.inv(cov), S) <= chi2_2_radius(0.95) ** 2
    assert inside.mean() == pytest.approx(0.95, abs=0.005)
    with pytest.raises(InvalidParameterError, match="levels must lie in"):
        confidence_ellipse([0, 0], np.eye(2), levels=[1.0])


def test_correlations_constant_component_and_round_trip(tmp_path):
    # a zero-variance component has NaN correlations and is left out of |r| statistics
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(size=300), np.full(300, 5.0), rng.normal(size=300)])
    c = Correlations(pairs=[(0, 2)]).fit(X)
    assert np.isnan(c.correlation_[1]).all() and c.abs_r_counts_.sum() == 1
    c.save(tmp_path / "corr")
    back = Correlations.load(tmp_path / "corr")
    np.testing.assert_array_equal(back.covariance_, c.covariance_)
    assert back.ellipses_[0]["angle_deg"] == c.ellipses_[0]["angle_deg"]
    np.testing.assert_array_equal(back.pair_density_[(0, 2)][2], c.pair_density_[(0, 2)][2])


def test_correlations_errors():
    with pytest.raises(InvalidParameterError, match="at least 2 rows"):
        Correlations().fit(np.ones((1, 3)))
    with pytest.raises(InvalidParameterError, match="two different integers"):
        Correlations(pairs=[(1, 1)]).fit(np.random.default_rng(0).normal(size=(10, 3)))
    c = Correlations().fit(np.random.default_rng(0).normal(size=(10, 1)))  # z_dim 1: no pairs
    assert c.pairs_.shape == (0, 2) and c.correlation_.shape == (1, 1)
