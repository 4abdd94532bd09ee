"""Samplers: registry, estimator contract, persistence, regions and moments."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from latentscope import create_store
from latentscope.analysis import BoundingBoxes, PCAFrame
from latentscope.exceptions import InvalidParameterError, NotFittedError, SamplerError
from latentscope.regions import Ball, Box, OrientedBox, PairedEllipses
from latentscope.samplers import (
    CubeSampler,
    EllipseSampler,
    GMMSampler,
    PathSampler,
    Sampler,
    all_samplers,
    load_sampler,
    make_sampler,
)
from latentscope.stream import Moments, run_reducers

NAMES = ["ball", "box", "cube", "ellipse", "gauss", "gmm", "kde", "mvn", "normal", "path", "pca-box", "pca-gauss", "shell"]
#: Options that keep the contract tests fast.
FAST = {"gmm": {"n_components": 2, "max_iter": 20}, "kde": {"n_calibration": 200, "calibration_rows": 1000}}


def _cloud(n=3000, d=6, seed=0):
    """An anisotropic, correlated, off-centre normal cloud."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    sd = np.geomspace(3.0, 0.3, d)
    return 2.0 + (rng.normal(size=(n, d)) * sd) @ q.T


@pytest.fixture(scope="module")
def cloud():
    return _cloud()


def test_all_samplers_lists_every_region():
    # the registry holds the CLI's --region values, each a Sampler subclass, and only the
    # installed plugins' samplers besides (the keras-ae plugin adds flow and diffusion)
    from latentscope.samplers import sampler_plugins

    found = all_samplers()
    assert set(NAMES) <= set(found) and set(found) - set(NAMES) <= set(sampler_plugins())
    assert all(issubclass(c, Sampler) and c.name == n and c.description for n, c in found.items())


@pytest.mark.parametrize("name", NAMES)
def test_sampler_contract(name, cloud, tmp_path):
    # init stores params only, fit returns self, same seed -> same float32 samples, save/load repeats the run
    s = make_sampler(name, **FAST.get(name, {}))
    assert not [k for k in vars(s) if k.endswith("_")]
    assert repr(s).startswith(type(s).__name__ + "(")
    if name not in ("cube", "ball", "shell", "normal"):
        with pytest.raises(NotFittedError, match="not fitted"):
            s.sample(3)
    assert s.fit(cloud, rng=0) is s
    a = s.sample(25, rng=7)
    assert a.shape == (25, cloud.shape[1]) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, s.sample(25, rng=7))
    np.testing.assert_array_equal(a, s.sample(25, rng=np.random.default_rng(7)))
    if name != "path":  # paths are deterministic
        assert not np.array_equal(a, s.sample(25, rng=8))
    assert s.sample(0, rng=0).shape == (0, cloud.shape[1])
    json.dumps(s.to_dict())
    s.save(tmp_path / "s")
    again = load_sampler(tmp_path / "s.json")
    assert type(again) is type(s)
    assert again.to_dict() == s.to_dict()
    np.testing.assert_array_equal(again.sample(25, rng=7), a)


def test_make_sampler_rejects_unknown_names_and_options():
    with pytest.raises(SamplerError, match="unknown region 'cubes'; choose one of: ball, box"):
        make_sampler("cubes")
    with pytest.raises(SamplerError, match="option 'halfwidth' does not apply to region 'mvn'"):
        make_sampler("mvn", halfwidth=2.0)


def test_sampler_fit_from_a_store_path(tmp_path, cloud):
    # fit accepts a store or its path; the result equals fitting the array
    with create_store(tmp_path / "z.h5", cloud.shape[1]) as st_:
        st_.append(cloud)
    a = make_sampler("mvn").fit(tmp_path / "z.h5").sample(10, rng=1)
    b = make_sampler("mvn").fit(cloud.astype(np.float32)).sample(10, rng=1)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# -- geometric samplers ------------------------------------------------------------------


@pytest.mark.parametrize("b, mean, sd", [(1.0, 9.24, 0.26), (1.5, 13.86, 0.39), (2.0, 18.48, 0.52)])
def test_cube_lengths_reproduce_the_series(b, mean, sd):
    # uniform-cube vectors at z_dim 256 have |z| = b sqrt(N/3) +- b/sqrt(15) (the series' 2-decimal values;
    # E|z| lies below sqrt(E|z|^2) by about sd^2 / (2 mean) = 0.006 b)
    r = np.linalg.norm(CubeSampler(halfwidth=b, z_dim=256).sample(20000, rng=0).astype(np.float64), axis=1)
    assert r.mean() == pytest.approx(mean, abs=0.02)
    assert r.std() == pytest.approx(sd, abs=0.01)


def test_normal_and_ball_lengths():
    # N(0, I): |z| ~ sqrt(N - 1/2) +- 1/sqrt(2); uniform ball: mean radius R N / (N + 1)
    r = np.linalg.norm(make_sampler("normal", z_dim=256).sample(20000, rng=0).astype(np.float64), axis=1)
    assert r.mean() == pytest.approx(np.sqrt(255.5), abs=0.02)
    assert r.std() == pytest.approx(np.sqrt(0.5), abs=0.02)
    rb = np.linalg.norm(make_sampler("ball", radius=3.0, z_dim=256).sample(5000, rng=0).astype(np.float64), axis=1)
    assert rb.mean() == pytest.approx(3.0 * 256 / 257, rel=1e-3)
    assert rb.max() <= 3.0 + 1e-5


@settings(max_examples=30, deadline=None)
@given(dim=st.integers(1, 40), b=st.floats(0.01, 100), seed=st.integers(0, 2**32 - 1), off=st.floats(-50, 50))
def test_cube_samples_lie_in_their_box(dim, b, seed, off):
    # every sample lies in [c - b, c + b]; the region is a Box
    s = CubeSampler(halfwidth=b, center=np.full(dim, off))
    Z = s.sample(200, rng=seed, dtype=np.float64)
    assert isinstance(s.region_, Box) and s.region_.contains(Z).all()
    assert np.all(np.abs(s.sample(200, rng=seed) - off) <= b * (1 + 1e-6) + 1e-5 * abs(off))


@settings(max_examples=30, deadline=None)
@given(dim=st.integers(1, 40), r=st.floats(0.01, 100), seed=st.integers(0, 2**32 - 1))
def test_ball_samples_lie_in_their_ball(dim, r, seed):
    s = make_sampler("ball", radius=r, z_dim=dim)
    Z = s.sample(200, rng=seed, dtype=np.float64)
    assert isinstance(s.region_, Ball) and s.region_.contains(Z).all()


@settings(max_examples=15, deadline=None)
@given(dim=st.integers(2, 12), seed=st.integers(0, 2**32 - 1), level=st.floats(0.05, 0.995),
       q=st.sampled_from([None, (0.01, 0.99), (0.2, 0.7)]), shrink=st.floats(0.1, 1.5), k=st.integers(1, 12))
def test_fitted_samples_lie_in_their_regions(dim, seed, level, q, shrink, k):
    # box, pca-box, pca-gauss and ellipse samples satisfy their region's rule on random data
    X = _cloud(n=300, d=dim, seed=seed % 1000)
    k = min(k, dim)
    for name, opts in (("box", {"quantiles": q, "shrink": shrink}),
                       ("pca-box", {"quantiles": q, "shrink": shrink, "n_components": k}),
                       ("pca-gauss", {"quantiles": q, "shrink": shrink, "n_components": k}),
                       ("ellipse", {"level": level, "n_components": k})):
        s = make_sampler(name, **opts).fit(X)
        Z = s.sample(300, rng=seed, dtype=np.float64)
        assert s.region_.contains(Z).all(), name


def test_shell_radius_distributions():
    # sphere with spread 0; uniform radii stay in [R - s, R + s]; normal radii have the given mean and sd
    sph = np.linalg.norm(make_sampler("shell", radius=4.0, z_dim=50).sample(100, rng=0, dtype=np.float64), axis=1)
    np.testing.assert_allclose(sph, 4.0, rtol=1e-12)
    uni = np.linalg.norm(make_sampler("shell", radius=4.0, spread=1.0, distribution="uniform", z_dim=50)
                         .sample(4000, rng=0, dtype=np.float64), axis=1)
    assert uni.min() >= 3.0 - 1e-9 and uni.max() <= 5.0 + 1e-9
    assert stats.kstest(uni, stats.uniform(3.0, 2.0).cdf).pvalue > 1e-3
    nor = np.linalg.norm(make_sampler("shell", radius=10.0, spread=0.5, z_dim=50).sample(4000, rng=0), axis=1)
    assert nor.mean() == pytest.approx(10.0, abs=0.05) and nor.std() == pytest.approx(0.5, abs=0.05)


def test_match_options_reproduce_the_data_radii(cloud):
    # "match" fits the size so that the mean squared length about the centre equals the data's
    ms = float((np.linalg.norm(cloud, axis=1) ** 2).mean())
    for name, opt in (("cube", "halfwidth"), ("normal", "scale"), ("ball", "radius")):
        Z = make_sampler(name, **{opt: "match"}).fit(cloud).sample(20000, rng=0).astype(np.float64)
        assert (np.linalg.norm(Z, axis=1) ** 2).mean() == pytest.approx(ms, rel=0.02), name
    shell = make_sampler("shell", radius="match", spread="match", center="mean").fit(cloud)
    rc = np.linalg.norm(cloud - cloud.mean(0), axis=1)
    assert shell.radius_ == pytest.approx(rc.mean()) and shell.spread_ == pytest.approx(rc.std())
    np.testing.assert_allclose(shell.center_, cloud.mean(0))


# -- fitted samplers -----------------------------------------------------------------------


def test_mvn_matches_mean_and_covariance(cloud):
    s = make_sampler("mvn").fit(cloud)
    Z = s.sample(40000, rng=1).astype(np.float64)
    np.testing.assert_allclose(Z.mean(0), cloud.mean(0), atol=0.05)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.cov(cloud, rowvar=False), atol=0.15)
    np.testing.assert_allclose(s.covariance_, np.cov(cloud, rowvar=False), atol=1e-10)
    # fitting from the analysis result gives the same sampler
    t = make_sampler("mvn").fit(PCAFrame().fit(cloud))
    np.testing.assert_allclose(t.sample(5, rng=2), s.sample(5, rng=2), rtol=1e-5, atol=1e-6)


def test_mvn_core_covariance_ignores_an_outer_layer(cloud):
    # covariance="core" uses the robust trimmed core: far outliers move neither its mean nor its covariance
    from latentscope.analysis import CoreCovariance

    rng = np.random.default_rng(5)
    polluted = np.vstack([cloud, 40.0 + rng.normal(size=(150, cloud.shape[1]))])
    core = make_sampler("mvn", covariance="core").fit(polluted)
    full = make_sampler("mvn").fit(polluted)
    np.testing.assert_allclose(core.mean_, cloud.mean(0), atol=0.15)
    assert np.abs(full.mean_ - cloud.mean(0)).min() > 1.0
    np.testing.assert_allclose(np.diag(core.covariance_), cloud.var(0), rtol=0.1)
    again = make_sampler("mvn", covariance="core").fit(CoreCovariance().fit(polluted))
    np.testing.assert_allclose(again.covariance_, core.covariance_)


def test_gauss_matches_per_component_moments_and_ignores_correlations(cloud):
    s = make_sampler("gauss").fit(cloud)
    Z = s.sample(40000, rng=1).astype(np.float64)
    np.testing.assert_allclose(Z.mean(0), cloud.mean(0), atol=0.05)
    np.testing.assert_allclose(Z.std(0), cloud.std(0, ddof=1), rtol=0.02)
    off = np.corrcoef(Z, rowvar=False) - np.eye(cloud.shape[1])
    assert np.abs(off).max() < 0.03
    (m,) = run_reducers(cloud, [Moments()])
    np.testing.assert_allclose(make_sampler("gauss").fit(m.result()).std_, s.std_)


def test_box_samples_are_uniform_in_the_data_ranges(cloud):
    s = make_sampler("box").fit(cloud)
    np.testing.assert_allclose(s.lo_, cloud.min(0))
    np.testing.assert_allclose(s.hi_, cloud.max(0))
    Z = s.sample(5000, rng=3, dtype=np.float64)
    assert s.region_.contains(Z).all()
    for k in range(cloud.shape[1]):
        assert stats.kstest(Z[:, k], stats.uniform(s.lo_[k], s.hi_[k] - s.lo_[k]).cdf).pvalue > 1e-3
    shrunk = make_sampler("box", quantiles=(0.05, 0.95), shrink=0.5).fit(cloud)
    q = np.quantile(cloud, [0.05, 0.95], axis=0)
    np.testing.assert_allclose((shrunk.lo_ + shrunk.hi_) / 2, q.mean(0), atol=0.02)
    np.testing.assert_allclose(shrunk.hi_ - shrunk.lo_, 0.5 * (q[1] - q[0]), rtol=0.02)


def test_pca_box_samples_are_uniform_in_the_pca_box(cloud):
    # uniform marginals along every principal axis, all inside the (oriented) box
    s = make_sampler("pca-box").fit(cloud)
    bb = BoundingBoxes(quantiles=(0.01, 0.99)).fit(cloud)
    np.testing.assert_allclose(s.lo_, bb.pca_box_.lo)
    Z = s.sample(5000, rng=4, dtype=np.float64)
    assert isinstance(s.region_, OrientedBox) and s.region_.contains(Z).all()
    T = s.region_.to_frame(Z)
    for k in range(cloud.shape[1]):
        assert stats.kstest(T[:, k], stats.uniform(s.lo_[k], s.hi_[k] - s.lo_[k]).cdf).pvalue > 1e-3
    # float32 output: inside up to one float32 rounding
    T32 = s.region_.to_frame(s.sample(5000, rng=4))
    assert np.all((T32 >= s.lo_ - 1e-4) & (T32 <= s.hi_ + 1e-4))
    # fitted from a BoundingBoxes result: the same box
    np.testing.assert_allclose(make_sampler("pca-box").fit(bb).lo_, s.lo_)


def test_pca_box_shrink_and_components(cloud):
    full = make_sampler("pca-box", quantiles=None).fit(cloud)
    half = make_sampler("pca-box", quantiles=None, shrink=0.5).fit(cloud)
    np.testing.assert_allclose(half.hi_ - half.lo_, 0.5 * (full.hi_ - full.lo_))
    two = make_sampler("pca-box", n_components=2).fit(cloud)
    T = two.region_.to_frame(two.sample(100, rng=0, dtype=np.float64))
    np.testing.assert_allclose(T[:, 2:], 0.0, atol=1e-9)
    assert T[:, :2].std(0).min() > 0.1


def test_pca_gauss_is_a_truncated_normal_in_the_frame(cloud):
    s = make_sampler("pca-gauss").fit(cloud)
    Z = s.sample(20000, rng=5, dtype=np.float64)
    assert s.region_.contains(Z).all()
    T = s.region_.to_frame(Z)
    for k in (0, 3, 5):
        sd = np.sqrt(s.variances_[k])
        law = stats.truncnorm(s.lo_[k] / sd, s.hi_[k] / sd, scale=sd)
        assert stats.kstest(T[:, k], law.cdf).pvalue > 1e-3
    assert np.abs(np.corrcoef(T, rowvar=False) - np.eye(cloud.shape[1])).max() < 0.03


def test_ellipse_rule_holds_and_pairs_follow_the_truncated_law(cloud):
    # every chosen pair lies in its 2-D confidence ellipse; r^2 ~ chi2(2) truncated at -2 ln(1 - p)
    s = make_sampler("ellipse", level=0.9).fit(cloud)
    assert s.groups_ == [(0, 1), (2, 3), (4, 5)]
    Z = s.sample(20000, rng=6, dtype=np.float64)
    region = s.region_
    assert isinstance(region, PairedEllipses) and region.contains(Z).all()
    r2 = region.group_radii(Z)
    bound = -2.0 * np.log(1 - 0.9)
    assert r2.max() <= bound * (1 + 1e-12)
    for g in range(3):
        assert stats.kstest(r2[:, g], lambda x: (1 - np.exp(-x / 2)) / 0.9).pvalue > 1e-3
    # float32 output: inside up to one float32 rounding
    assert (region.group_radii(s.sample(5000, rng=6)) <= bound * (1 + 1e-4)).all()


def test_ellipse_odd_axes_chains_and_explicit_pairs():
    X = _cloud(d=5)
    odd = make_sampler("ellipse", level=0.95).fit(X)
    assert odd.groups_ == [(0, 1), (2, 3), (4,)]
    U = odd.region_.standard_coords(odd.sample(5000, rng=0, dtype=np.float64))
    assert np.abs(U[:, 4]).max() <= stats.norm.ppf(0.975) + 1e-9
    chain = make_sampler("ellipse", pairs="chain", n_components=4).fit(X)  # overlapping: rejection
    Zc = chain.sample(500, rng=1, dtype=np.float64)
    assert chain.region_.contains(Zc).all()
    np.testing.assert_allclose(chain.region_.standard_coords(Zc)[:, 4], 0.0, atol=1e-9)
    explicit = make_sampler("ellipse", pairs=[(0, 2)]).fit(X)
    assert explicit.groups_ == [(0, 2), (1,), (3,), (4,)]


def test_ellipse_rejection_with_too_low_acceptance_reports_the_rate():
    # chained pairs over 256 axes are accepted with probability ~0.95^255: a SamplerError with the rate
    X = np.random.default_rng(0).normal(size=(600, 256))
    s = make_sampler("ellipse", pairs="chain").fit(X)
    with pytest.raises(SamplerError, match=r"accepted \d+ of \d+ candidates \(rate [0-9.e-]+\), below min_acceptance=0.001"):
        s.sample(10, rng=0)


def test_gmm_fits_a_stated_subsample(cloud):
    s = GMMSampler(n_components=3, max_samples=1000).fit(cloud, rng=0)
    assert s.n_fit_rows_ == 1000 and s.weights_.shape == (3,) and s.covariances_.shape == (3, 6, 6)
    assert s.weights_.sum() == pytest.approx(1.0)
    Z = s.sample(20000, rng=1).astype(np.float64)
    np.testing.assert_allclose(Z.mean(0), cloud.mean(0), atol=0.1)
    again = GMMSampler(n_components=3, max_samples=1000).fit(cloud, rng=0)
    np.testing.assert_array_equal(again.means_, s.means_)
    assert GMMSampler(n_components=2, max_samples=None, max_iter=10).fit(cloud, rng=0).n_fit_rows_ == cloud.shape[0]


# -- paths --------------------------------------------------------------------------------


def test_path_in_a_coordinate_plane_keeps_other_components_at_the_mean(cloud):
    s = PathSampler(mode="plane", plane=(1, 4), extent=2.0).fit(cloud)
    Z = s.sample(11, dtype=np.float64)
    mean = cloud.mean(0)
    others = [0, 2, 3, 5]
    np.testing.assert_allclose(Z[:, others], np.broadcast_to(mean[others], (11, 4)), atol=1e-12)
    np.testing.assert_allclose(Z[5], mean, atol=1e-12)  # the middle point is the mean
    c2 = np.cov(cloud[:, [1, 4]], rowvar=False)
    lam = np.linalg.eigvalsh(c2)[-1]
    assert np.linalg.norm(Z[-1] - Z[0]) == pytest.approx(4.0 * np.sqrt(lam), rel=1e-6)
    explicit = PathSampler(mode="plane", plane=(0, 1), start=(0.0, 0.0), end=(1.0, 2.0)).fit(cloud)
    E = explicit.sample(3, dtype=np.float64)
    np.testing.assert_allclose(E[:, :2], [[0, 0], [0.5, 1.0], [1.0, 2.0]])


def test_path_along_a_principal_axis_and_interpolations(cloud):
    pca = PCAFrame().fit(cloud)
    pc = PathSampler(mode="pc", axis=1, extent=3.0).fit(cloud)
    T = pca.transform(pc.sample(7, dtype=np.float64))
    np.testing.assert_allclose(T[:, 1], np.linspace(-3, 3, 7) * np.sqrt(pca.explained_variance_[1]), atol=1e-9)
    np.testing.assert_allclose(np.delete(T, 1, axis=1), 0.0, atol=1e-9)
    lin = PathSampler(mode="interp", endpoints=(3, 8)).fit(cloud).sample(5, dtype=np.float64)
    np.testing.assert_allclose(lin[[0, -1]], cloud[[3, 8]])
    X = cloud.copy()
    X[8] = X[3][::-1]  # same norm: slerp about the origin keeps it
    sl = PathSampler(mode="interp", endpoints=(3, 8), method="slerp").fit(X).sample(9, dtype=np.float64)
    np.testing.assert_allclose(np.linalg.norm(sl, axis=1), np.linalg.norm(X[3]), rtol=1e-12)
    np.testing.assert_allclose(sl[[0, -1]], X[[3, 8]], atol=1e-12)


def test_path_pc_grid(cloud):
    pca = PCAFrame().fit(cloud)
    s = PathSampler(mode="pc-grid", plane=(0, 2), extent=1.0).fit(cloud)
    T = pca.transform(s.sample(9, dtype=np.float64))
    sd0, sd2 = np.sqrt(pca.explained_variance_[[0, 2]])
    np.testing.assert_allclose(T[:3, 0], [-sd0, 0, sd0], atol=1e-9)  # first row: axis i left to right
    np.testing.assert_allclose(T[::3, 2], [sd2, 0, -sd2], atol=1e-9)  # rows: axis j top to bottom
    with pytest.raises(SamplerError, match="needs a square n"):
        s.sample(10)


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("cube", {"halfwidth": 0}, "CubeSampler: halfwidth must be a number > 0 or 'match'; got 0"),
        ("cube", {"halfwidth": -1.5}, "halfwidth must be a number > 0"),
        ("ball", {"radius": "big"}, "radius must be a number > 0 or 'match'"),
        ("shell", {"distribution": "cauchy"}, "distribution must be 'normal' or 'uniform'"),
        ("normal", {"center": [0.0, 1.0]}, "center must have 6 entries"),
        ("box", {"quantiles": (0.9, 0.1)}, "quantiles must be None or a pair"),
        ("pca-box", {"shrink": 0}, "shrink must be a number > 0"),
        ("pca-gauss", {"n_components": 7}, r"n_components must be an integer in \[1, z_dim=6\]"),
        ("mvn", {"covariance": "diag"}, "covariance must be 'full' or 'core'"),
        ("ellipse", {"level": 1.0}, r"level must lie in \(0, 1\)"),
        ("ellipse", {"pairs": [(0, 6)]}, "every pair must hold two different axes"),
        ("gmm", {"n_components": 0}, "n_components must be an integer > 0"),
        ("path", {"plane": (2, 6)}, r"plane indices must lie in \[0, z_dim=6\); got 6"),
        ("path", {"mode": "pc", "axis": 9}, r"axis indices must lie in \[0, z_dim=6\)"),
        ("path", {"mode": "interp", "endpoints": (0, 5000)}, r"endpoints must be rows in \[0, 3000\)"),
        ("path", {"mode": "spiral"}, "mode must be one of"),
    ],
)
def test_sampler_bad_options(name, options, match, cloud):
    with pytest.raises(InvalidParameterError, match=match):
        make_sampler(name, **options).fit(cloud)


def test_geometric_sampler_needs_z_dim():
    with pytest.raises(InvalidParameterError, match="z_dim is unknown; pass z_dim"):
        CubeSampler().sample(3)
    with pytest.raises(NotFittedError, match="not fitted"):
        CubeSampler(halfwidth="match", z_dim=4).sample(3)
    with pytest.raises(InvalidParameterError, match="n must be an integer >= 0"):
        CubeSampler(z_dim=2).sample(-1)


def test_ellipse_region_round_trips_through_json():
    from latentscope.regions import region_from_dict

    r = PairedEllipses(np.zeros(3), np.eye(3), np.ones(3), [(0, 1), (2,)], 0.9)
    back = region_from_dict(json.loads(r.to_json()))
    assert back.groups == ((0, 1), (2,)) and back.level == 0.9
    assert np.isfinite(back.log_volume)
    Z = back.sample(1000, rng=0)
    assert back.contains(Z).all()
    assert EllipseSampler.name == "ellipse"
