"""Kernel distance (KID estimator)."""

from __future__ import annotations

import numpy as np
import pytest

from latentscope.exceptions import InvalidParameterError
from latentscope.metrics import kid


def _mmd2_loops(x, y):
    """Unbiased MMD^2 written out term by term (reference for the vectorised code)."""
    d, m = x.shape[1], x.shape[0]
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return sxx + syy - 2 * sxy


def test_kid_single_subset_equals_written_out_estimator():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 3)) + 0.3
    res = kid(x, y, n_subsets=1, subset_size=12, rng=0)
    assert res.mean == pytest.approx(_mmd2_loops(x, y), rel=1e-10)
    assert res.std == 0.0 and res.subset_size == 12


def test_kid_same_distribution_is_about_zero():
    # unbiased: the mean over subsets is within two per-subset standard deviations of 0
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1500, 16)), rng.normal(size=(1500, 16))
    res = kid(x, y, n_subsets=20, subset_size=400, rng=2)
    assert abs(res.mean) < 2 * res.std


def test_kid_set_against_itself_is_minus_order_one_over_m():
    # X against itself (all m rows): the cross term keeps the diagonal k(x, x) that the
    # within-set terms drop, so MMD^2_u = -2/(m-1) * (mean k(x_i, x_i) - mean k(x_i, x_j)) exactly:
    # slightly negative, O(1/m), and small against a real shift
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 16))
    same = kid(x, x, n_subsets=1, subset_size=400, rng=0).mean
    k = (x @ x.T / 16 + 1.0) ** 3
    assert same == pytest.approx(-2 / 399 * (np.diag(k).mean() - k.mean()), rel=1e-9)
    y = rng.normal(size=(400, 16))
    assert abs(same) < 0.1 * kid(x, y + 0.5, n_subsets=1, subset_size=400, rng=0).mean


def test_kid_grows_monotonically_with_mean_shift():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(1000, 8)), rng.normal(size=(1000, 8))
    results = [kid(x, y + s, n_subsets=10, subset_size=300, rng=5) for s in (0.0, 0.25, 0.5, 1.0)]
    means = [r.mean for r in results]
    assert all(a < b for a, b in zip(means, means[1:]))
    assert abs(results[0].mean) < 2 * results[0].std
    assert results[2].mean > 3 * results[2].std


def test_kid_caps_subset_size_and_is_reproducible():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(80, 4)), rng.normal(size=(50, 4))
    a = kid(x, y, n_subsets=4, subset_size=1000, rng=7)
    b = kid(x, y, n_subsets=4, subset_size=1000, rng=7)
    assert a.subset_size == 50 and a == b


def test_kid_rejects_bad_parameters():
    x = np.zeros((10, 3))
    with pytest.raises(InvalidParameterError, match="subset_size must be >= 2"):
        kid(x, x, subset_size=1)
    with pytest.raises(InvalidParameterError, match="n_subsets must be an integer > 0"):
        kid(x, x, n_subsets=0)
    with pytest.raises(InvalidParameterError, match="same dimension"):
        kid(x, np.zeros((10, 2)))
