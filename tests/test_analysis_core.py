"""CoreCovariance: C-steps with a fixed kept share recover the core of contaminated and heavy-tailed clouds."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import gammainc

from latentscope import create_store, open_store
from latentscope.analysis import CoreCovariance, PCAFrame
from latentscope.analysis._core import CoreConvergenceWarning
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
    assert core.threshold_ == pytest.approx(chi2_ppf(0.9, 6), rel=0.02)
    a = core.core_fraction_
    assert core.consistency_factor_ == pytest.approx(a / gammainc(4, chi2_ppf(a, 6) / 2))
    assert core.small_sample_factor_ == pytest.approx(1.0, abs=0.02)


def _cloud(kind, n=25000, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    lam = np.geomspace(10.0, 0.1, dim)
    E = rng.normal(size=(n, dim))
    if kind == "t5":  # multivariate t, 5 dof, unit covariance
        E = E / np.sqrt(rng.chisquare(5, size=(n, 1)) / 5) * np.sqrt(3 / 5)
    elif kind == "t3-copula":  # Gaussian copula with standardised t3 marginals
        E = stats.t.ppf(stats.norm.cdf(E), 3) / np.sqrt(3)
    return rng.normal(size=dim) * 3 + (E * np.sqrt(lam)) @ q.T, (q * lam) @ q.T


def test_core_of_a_25000_x_64_normal_has_the_true_trace():
    X, cov = _cloud("normal")
    core = CoreCovariance().fit(X)
    assert core.converged_ and core.core_fraction_ == pytest.approx(0.9, abs=0.01)
    assert np.trace(core.covariance_) == pytest.approx(np.trace(cov), rel=0.03)


@pytest.mark.parametrize("kind", ["t5", "t3-copula"])
def test_core_keeps_its_share_on_heavy_tails(kind):
    # radius trimming shrank to 17 % kept on t5; the C-steps keep trim and converge
    X, cov = _cloud(kind, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoreConvergenceWarning)
        core = CoreCovariance(trim=0.9).fit(X)
    assert core.converged_ and core.n_iter_ <= 10
    assert core.core_fraction_ == pytest.approx(0.9, abs=0.01)
    assert all(h["kept_fraction"] == pytest.approx(0.9, abs=0.01) for h in core.history_)
    # the core is narrower than the full covariance on heavy tails, but not by the old factor 0.3
    assert 0.5 < np.trace(core.covariance_) / np.trace(cov) < 1.0
    summary = core.summary()
    assert summary["converged"] is True and summary["n_iter"] == core.n_iter_


def test_core_ignores_an_asymmetric_outer_layer(tmp_path):
    # 8 % outliers on one side inflate the full covariance; a core that keeps less than the clean share (0.8 < 0.92)
    # does not, and the asymmetry shows
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
        core = CoreCovariance(trim=0.8, max_iter=20).fit(store)
    full = np.cov(X.T.astype(np.float64))
    assert full[0, 0] > 3.0
    np.testing.assert_allclose(core.covariance_, np.diag(scales**2), atol=0.06 * scales.max() ** 2)
    np.testing.assert_allclose(core.mean_, 0.0, atol=0.05)
    axis0 = int(np.argmax(np.abs(core.frame_.components_[:, 0])))
    # the outer layer: 4000 one-sided outliers + the ~13 % symmetric tail of the core
    assert abs(core.outer_asymmetry_[axis0]) > 0.4
    assert np.max(np.abs(np.delete(core.outer_asymmetry_, axis0))) < 0.1
    assert core.eigenvalue_ratio_.min() < 0.6  # the full covariance is inflated along axis 0
    core.save(tmp_path / "core")
    back = CoreCovariance.load(tmp_path / "core")
    np.testing.assert_array_equal(back.covariance_, core.covariance_)
    assert back.history_ == core.history_ and back.converged_ == core.converged_
    np.testing.assert_allclose(back.frame_.explained_variance_, core.core_eigenvalues_, rtol=1e-12)


def test_core_single_c_step_keeps_the_h_closest_rows_and_warns():
    # one step = consistency factor x covariance of the h rows of smallest radius under the full estimate; stopping
    # there is not convergence: a warning and the flag say so
    rng = np.random.default_rng(2)
    X, _ = _mvn(rng, 20000, 4)
    X[:1500] *= 3.0  # heavy outer layer: the first step moves the estimate
    with pytest.warns(CoreConvergenceWarning, match="did not reach a fixed point in max_iter=1"):
        core = CoreCovariance(trim=0.8, max_iter=1).fit(X)
    assert core.converged_ is False and core.summary()["converged"] is False
    r = PCAFrame().fit(X).mahalanobis(X)
    keep = np.argsort(r)[: int(core.core_fraction_ * X.shape[0])]
    ref = core.consistency_factor_ * np.cov(X[keep].T)
    np.testing.assert_allclose(core.covariance_, ref, rtol=3e-3, atol=3e-3 * np.abs(ref).max())
    assert core.n_iter_ == 1 and core.history_[0]["kept_fraction"] == pytest.approx(0.8, abs=0.002)
    assert core.small_sample_factor_ == 1.0


def test_core_bad_input():
    with pytest.raises(InvalidParameterError, match="trim must lie in"):
        CoreCovariance(trim=1.0).fit(np.random.default_rng(0).normal(size=(10, 2)))
    with pytest.raises(InvalidParameterError, match="no variance"):
        CoreCovariance().fit(np.ones((10, 3)))
    with pytest.raises(InvalidParameterError, match="at least 2 rows"):
        CoreCovariance().fit(np.ones((1, 3)))
    with pytest.raises(InvalidParameterError, match="max_iter must be an integer"):
        CoreCovariance(max_iter=0).fit(np.ones((5, 3)))
