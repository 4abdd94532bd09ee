"""The kde sampler: a smoothed bootstrap whose automatic bandwidth does not memorise."""

from __future__ import annotations

import numpy as np
import pytest

from latentscope.exceptions import InvalidParameterError
from latentscope.metrics import memorisation
from latentscope.samplers import KDESampler, make_sampler


def _clusters(n=2000, d=6, k=5, seed=0):
    """Well separated clusters: a fitted normal fills the gaps between them, a KDE does not."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    return centres[rng.integers(0, k, n)] + rng.normal(scale=0.7, size=(n, d))


def test_kde_keeps_the_data_mean_and_covariance():
    Z = _clusters()
    s = make_sampler("kde", bandwidth=0.4).fit(Z, rng=0)
    X = s.sample(40_000, rng=1, dtype=np.float64)
    cov = np.cov(Z, rowvar=False)
    np.testing.assert_allclose(X.mean(axis=0), Z.mean(axis=0), atol=0.1)
    assert np.abs(np.cov(X, rowvar=False) - cov).max() < 0.05 * np.abs(cov).max()


def test_kde_bandwidth_one_is_the_fitted_normal():
    Z = _clusters()
    s = make_sampler("kde", bandwidth=1.0).fit(Z, rng=0)
    X = s.sample(5000, rng=2, dtype=np.float64)
    # no trace of the clusters: whitened samples are standard normal in every direction
    w = (X - s.mean_) @ s.components_.T / np.sqrt(s.variances_)
    np.testing.assert_allclose(w.std(axis=0), 1.0, atol=0.05)
    assert np.abs(np.mean(w**4, axis=0) - 3.0).max() < 0.35


def test_kde_auto_bandwidth_does_not_memorise_but_a_tiny_one_does():
    both = _clusters(n=3000)
    Z, fresh = both[:2000], both[2000:]  # fresh: new draws of the same distribution, the baseline
    auto = make_sampler("kde", n_calibration=500).fit(Z, rng=0)
    assert 0.02 < auto.bandwidth_ < 1.0
    assert auto.calibration_ratio_ >= 1.0 and auto.train_nn_quantile_ > 0
    q = (0.05,)
    base = memorisation(Z, fresh, quantiles=q, rng=0).excess[0]
    got = memorisation(Z, auto.sample(1000, rng=3), quantiles=q, rng=0).excess[0]
    copy = memorisation(Z, make_sampler("kde", bandwidth=0.05).fit(Z, rng=0).sample(1000, rng=3), quantiles=q, rng=0)
    assert 0.5 < base < 1.6 and got < 1.6
    assert copy.excess[0] > 5.0
    # a larger target moves the samples farther from the training points
    far = make_sampler("kde", target=1.2, n_calibration=500).fit(Z, rng=0)
    assert far.bandwidth_ > auto.bandwidth_


def test_kde_keeps_at_most_max_rows_centres():
    Z = _clusters()
    s = KDESampler(bandwidth=0.5, max_rows=300).fit(Z, rng=0)
    assert s.n_centers_ == 300 and s.centers_.dtype == np.float32
    # every centre is a data row
    d = np.min(((s.centers_[:, None, :].astype(np.float64) - Z[None]) ** 2).sum(-1), axis=1)
    assert d.max() < 1e-8


@pytest.mark.parametrize("opts, match", [
    ({"bandwidth": 0.0}, "bandwidth must be 'auto' or a number in \\(0, 1\\]"),
    ({"bandwidth": 1.5}, "bandwidth must be"),
    ({"bandwidth": "wide"}, "bandwidth must be"),
    ({"target": -1.0}, "target"),
    ({"max_rows": 0}, "max_rows"),
])
def test_kde_rejects_bad_parameters(opts, match):
    with pytest.raises(InvalidParameterError, match=match):
        make_sampler("kde", **opts).fit(_clusters(n=50))
