"""Fréchet distance and streamed feature statistics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from latentscope import create_store, open_store
from latentscope.exceptions import InvalidParameterError
from latentscope.metrics import FeatureStats, feature_stats, frechet_distance


def _random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def _fd_sqrtm(m1, c1, m2, c2):
    """Reference formula through scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(c1 @ c2)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2.0 * np.real(covmean)))


def test_frechet_distance_identical_sets_is_exactly_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    assert frechet_distance(x, x) == 0.0
    assert frechet_distance(FeatureStats.from_features(x), x) == 0.0


def test_frechet_distance_reordered_set_is_zero_up_to_rounding():
    # same rows in another order: statistics equal up to summation rounding
    x = np.random.default_rng(1).normal(size=(500, 16)) * 3 + 5
    fd = frechet_distance(x, x[::-1])
    assert 0.0 <= fd < 1e-9 * np.trace(np.cov(x, rowvar=False))


def test_frechet_distance_closed_form_diagonal_gaussians():
    # commuting covariances: FD = |dm|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(2)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    a, b = rng.uniform(0.1, 4, size=6), rng.uniform(0.1, 4, size=6)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    fd = frechet_distance(FeatureStats(10, m1, np.diag(a)), FeatureStats(10, m2, np.diag(b)))
    assert fd == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_sqrtm_formula_for_general_covariances():
    rng = np.random.default_rng(3)
    for d in (2, 7, 32):
        m1, m2 = rng.normal(size=d), rng.normal(size=d)
        c1, c2 = _random_spd(rng, d), _random_spd(rng, d, 3.0)
        fd = frechet_distance(FeatureStats(10, m1, c1), FeatureStats(10, m2, c2))
        assert fd == pytest.approx(_fd_sqrtm(m1, c1, m2, c2), rel=1e-9)


def test_frechet_distance_sample_estimate_approaches_closed_form():
    # N(m1, C1) vs N(m2, C2): the plug-in estimate from n = 20000 rows each is within a few
    # percent of the closed form (its bias is O(d^2 / n), its noise O(1 / sqrt(n)))
    rng = np.random.default_rng(4)
    d = 4
    m1, m2 = np.zeros(d), np.array([1.0, 0.0, -0.5, 0.0])
    c1, c2 = _random_spd(rng, d), _random_spd(rng, d, 2.0)
    truth = _fd_sqrtm(m1, c1, m2, c2)
    x = rng.multivariate_normal(m1, c1, size=20_000)
    y = rng.multivariate_normal(m2, c2, size=20_000)
    assert frechet_distance(x, y) == pytest.approx(truth, rel=0.05)


def test_frechet_distance_same_distribution_matches_expected_bias():
    # X, Y ~ N(0, I_d), n rows each: E[FD] ~ 2d/n (means) + d(d+1)/(2n) (covariances, to
    # second order); the relative spread of the estimate is about sqrt(2 / (d(d+1)/2 + d)) ~ 0.2
    rng = np.random.default_rng(5)
    d, n = 8, 4000
    expected = 2 * d / n + d * (d + 1) / (2 * n)
    fd = frechet_distance(rng.normal(size=(n, d)), rng.normal(size=(n, d)))
    assert 0.5 * expected < fd < 2.0 * expected


def test_frechet_distance_grows_monotonically_with_mean_shift():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    shifts = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]
    fds = [frechet_distance(x, y + s) for s in shifts]
    assert all(a < b for a, b in zip(fds, fds[1:]))
    # a shift along all d axes adds about d * s^2
    assert fds[-1] == pytest.approx(8 * 4.0, rel=0.05)


def test_frechet_distance_rank_deficient_covariances_stay_real_and_finite():
    # fewer rows than dimensions: singular covariances need no regularising offset
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) + 0.5
    fd = frechet_distance(x, y)
    assert np.isfinite(fd) and fd > 0
    c1, c2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    assert fd == pytest.approx(_fd_sqrtm(x.mean(0), c1, y.mean(0), c2), rel=1e-4)


def test_feature_stats_from_store_equals_in_memory(tmp_path):
    rng = np.random.default_rng(8)
    z = (rng.normal(size=(3000, 12)) * rng.uniform(0.5, 3, size=12) + 4).astype(np.float32)
    store = create_store(tmp_path / "z.h5", 12)
    store.append(z)
    store.close()
    with open_store(tmp_path / "z.h5") as s:
        streamed = feature_stats(s, max_bytes=12 * 4 * 256)
    direct = FeatureStats.from_features(z.astype(np.float64))
    assert streamed.n == 3000
    np.testing.assert_allclose(streamed.mean, direct.mean, rtol=1e-10)
    np.testing.assert_allclose(streamed.cov, direct.cov, rtol=1e-9, atol=1e-12)
    other = rng.normal(size=(500, 12))
    assert frechet_distance(streamed, other) == pytest.approx(frechet_distance(z, other), rel=1e-9)


def test_feature_stats_save_load_round_trip(tmp_path):
    stats = FeatureStats.from_features(np.random.default_rng(9).normal(size=(50, 3)))
    stats.save(tmp_path / "real_stats")
    back = FeatureStats.load(tmp_path / "real_stats")
    assert back.n == 50
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.cov, stats.cov)


def test_frechet_distance_rejects_bad_input():
    x = np.zeros((5, 3))
    with pytest.raises(InvalidParameterError, match="same dimension; got 3 and 4"):
        frechet_distance(x, np.zeros((5, 4)))
    with pytest.raises(InvalidParameterError, match="at least 2 rows"):
        frechet_distance(x, np.zeros((1, 3)))
    with pytest.raises(InvalidParameterError, match="mean must have shape"):
        FeatureStats(3, np.zeros(3), np.eye(2))
