"""CoreCovariance: iterative trimming recovers the core of a contaminated normal cloud."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import gammainc

from latentscope import create_store, open_store
from latentscope.analysis import CoreCovariance, PCAFrame
from latentscope.analysis._radial import chi2_ppf
from latentscope.exceptions import InvalidParameterError


def _mvn(rng, n, dim):
    A = rng.normal(size=(dim, dim)) * np.geomspace(3, 0.3, dim)[:, None]
    return rng.normal(size=(n, dim)) @ A + 1.5, A.T @ A


def test_core_of_a_normal_cloud_is_the_full_covariance():
    # for a true MVN the consistency-corrected core equals the covariance and keeps ~trim of the rows
    rng = np.random.default_rng(0)
    X, cov = _mvn(rng, 60000, 6)
    core = CoreCovariance(trim=0.9).fit(X)
    assert core.converged_ and 1 <= core.n_iter_ <= 10 and core.n_passes_ == core.n_iter_ + 1
    assert core.core_fraction_ == pytest.approx(0.9, abs=0.01)
    np.testing.assert_allclose(core.eigenvalue_ratio_, 1.0, atol=0.06)
    assert core.mean_shift_ < 0.05
    assert np.nanmax(np.abs(core.outer_asymmetry_)) < 0.06
    assert core.threshold_ == pytest.approx(chi2_ppf(0.9, 6))
    assert core.consistency_factor_ == pytest.approx(0.9 / gammainc(4, chi2_ppf(0.9, 6) / 2))


def test_core_ignores_an_asymmetric_outer_layer(tmp_path):
    # 8 % outliers on one side inflate the full covariance; the core does not, and the asymmetry shows
    rng = np.random.default_rng(1)
    dim = 5
    scales = np.array([1.0, 2.0, 1.5, 0.6, 3.0])  # distinct, so the core's axes are the coordinate axes
    inner = rng.normal(size=(46000, dim)) * scales
    outer = rng.normal(size=(4000, dim)) * 0.5
    outer[:, 0] += 6.0
    X = np.vstack([inner, outer]).astype(np.float32)
    with create_store(tmp_path / "z.h5", dim) as s:
        s.append(X)
    with open_store(tmp_path / "z.h5") as store:
        core = CoreCovariance(trim=0.9, max_iter=20).fit(store)
    full = np.cov(X.T.astype(np.float64))
    assert full[0, 0] > 3.0
    np.testing.assert_allclose(core.covariance_, np.diag(scales**2), atol=0.06 * scales.max() ** 2)
    np.testing.assert_allclose(core.mean_, 0.0, atol=0.05)
    axis0 = int(np.argmax(np.abs(core.frame_.components_[:, 0])))
    # the outer layer: 4000 one-sided outliers + the ~10 % symmetric tail of the core
    assert abs(core.outer_asymmetry_[axis0]) > 0.4
    assert np.max(np.abs(np.delete(core.outer_asymmetry_, axis0))) < 0.1
    assert core.eigenvalue_ratio_.min() < 0.5  # the full covariance is inflated along axis 0
    core.save(tmp_path / "core")
    back = CoreCovariance.load(tmp_path / "core")
    np.testing.assert_array_equal(back.covariance_, core.covariance_)
    assert back.history_ == core.history_ and back.converged_ == core.converged_
    np.testing.assert_allclose(back.frame_.explained_variance_, core.core_eigenvalues_, rtol=1e-12)


def test_core_single_iteration_is_the_trimmed_covariance():
    # one step = consistency factor x covariance of the rows inside the chi-square radius
    rng = np.random.default_rng(2)
    X, _ = _mvn(rng, 20000, 4)
    core = CoreCovariance(trim=0.8, max_iter=1).fit(X)
    r = PCAFrame().fit(X).mahalanobis(X)
    keep = r**2 <= chi2_ppf(0.8, 4)
    ref = core.consistency_factor_ * np.cov(X[keep].T)
    np.testing.assert_allclose(core.covariance_, ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
    assert core.n_iter_ == 1 and core.history_[0]["kept_fraction"] == pytest.approx(keep.mean(), abs=2e-4)


def test_core_bad_input():
    with pytest.raises(InvalidParameterError, match="trim must lie in"):
        CoreCovariance(trim=1.0).fit(np.random.default_rng(0).normal(size=(10, 2)))
    with pytest.raises(InvalidParameterError, match="no variance"):
        CoreCovariance().fit(np.ones((10, 3)))
    with pytest.raises(InvalidParameterError, match="at least 2 rows"):
        CoreCovariance().fit(np.ones((1, 3)))
    with pytest.raises(InvalidParameterError, match="max_iter must be an integer"):
        CoreCovariance(max_iter=0).fit(np.ones((5, 3)))
