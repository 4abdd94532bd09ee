"""Radial distributions and their references (checked against Monte Carlo samples)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentscope.analysis import (
    BallRadius,
    CubeRadius,
    GaussianRadius,
    PCAFrame,
    RadialDistribution,
    match_cube_halfwidth,
)
from latentscope.exceptions import InvalidParameterError


def _ks(sample, ref):
    s = np.sort(sample)
    f = ref.cdf(s)
    n = s.size
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


@settings(max_examples=12, deadline=None)
@given(dim=st.sampled_from([1, 2, 3, 7, 64, 256]), scale=st.floats(0.2, 5.0),
       kind=st.sampled_from(["cube", "gaussian", "ball"]))
def test_radius_references_match_monte_carlo(dim, scale, kind):
    # mean, std and CDF of each reference agree with lengths of vectors drawn from its generator
    ref = {"cube": CubeRadius, "gaussian": GaussianRadius, "ball": BallRadius}[kind](scale, dim)
    r = ref.sample(20000, rng=dim)
    assert ref.mean() == pytest.approx(r.mean(), abs=5 * r.std() / np.sqrt(r.size) + 1e-3 * ref.mean())
    assert ref.std() == pytest.approx(r.std(), rel=0.05, abs=1e-3 * ref.mean())
    assert _ks(r, ref) < 0.015
    grid = np.linspace(max(0, ref.mean() - 6 * ref.std()), ref.mean() + 6 * ref.std(), 4001)
    if kind != "ball":  # the density integrates to one
        assert np.trapezoid(ref.pdf(grid), grid) == pytest.approx(1.0, abs=2e-3)


def test_radius_references_reproduce_the_series_numbers():
    # N = 256: cube b = 1, 1.5, 2 -> 9.24 +- 0.26, 13.86 +- 0.39, 18.48 +- 0.52; N(0, I) -> 15.98 +- 0.707
    for b, m, s in ((1.0, 9.24, 0.26), (1.5, 13.86, 0.39), (2.0, 18.48, 0.52)):
        c = CubeRadius(b, 256)
        assert c.mean() == pytest.approx(m, abs=0.015) and c.std() == pytest.approx(s, abs=0.01)  # exact E|R| < b sqrt(N/3)
        assert c.approx_mean == pytest.approx(m, abs=0.005) and c.approx_std == pytest.approx(s, abs=0.005)
    g = GaussianRadius(1.0, 256)
    assert g.mean() == pytest.approx(np.sqrt(255.5), abs=1e-3) and g.std() == pytest.approx(0.707, abs=1e-3)
    assert BallRadius(2.0, 256).mean() == pytest.approx(2 * 256 / 257)


def test_match_cube_halfwidth_recovers_the_generator():
    # lengths of cube vectors with b = 1.5 give back b = 1.5 (both methods)
    r = CubeRadius(1.5, 256).sample(20000, rng=0)
    assert match_cube_halfwidth(r, 256) == pytest.approx(1.5, rel=0.003)
    assert match_cube_halfwidth(r, 256, method="mean") == pytest.approx(1.5, rel=0.003)
    with pytest.raises(InvalidParameterError, match="dim is required"):
        match_cube_halfwidth(r)
    with pytest.raises(InvalidParameterError, match="method must be"):
        match_cube_halfwidth(r, 256, method="median")


def test_radial_distribution_equals_numpy():
    # the streamed radii statistics equal the in-memory norms; the origin's position is right
    rng = np.random.default_rng(3)
    dim = 12
    A = rng.normal(size=(dim, dim))
    X = rng.normal(size=(30000, dim)) @ A + 2.0
    rd = RadialDistribution(max_bytes=1 << 16).fit(X)
    pca = PCAFrame().fit(X)
    radii = {"origin": np.linalg.norm(X, axis=1), "centered": np.linalg.norm(X - X.mean(0), axis=1),
             "mahalanobis": pca.mahalanobis(X)}
    for kind, r in radii.items():
        st_ = rd.stats_[kind]
        assert st_["mean"] == pytest.approx(r.mean(), rel=1e-5)
        assert st_["std"] == pytest.approx(r.std(), rel=1e-4)
        assert st_["max"] == pytest.approx(r.max(), rel=1e-5)
        w = (rd.fine_[kind].hi[0] - rd.fine_[kind].lo[0]) / rd.fine_[kind].bins
        assert st_["quantiles"]["0.5"] == pytest.approx(np.median(r), abs=w)
        assert rd.hist_counts_[kind].sum() == len(X)
    r0 = float(pca.mahalanobis(np.zeros(dim)))
    assert rd.origin_mahalanobis_ == pytest.approx(r0, rel=1e-9)
    assert rd.fraction_closer_than_origin_ == np.mean(radii["mahalanobis"] < r0)
    assert rd.fraction_closer_than_origin_euclidean_ == np.mean(radii["centered"] < np.linalg.norm(X.mean(0)))
    assert rd.rank_ == dim and rd.references_["chi"].dim == dim
    # the Mahalanobis radius of normal data follows chi with dim degrees of freedom
    assert rd.stats_["mahalanobis"]["mean"] == pytest.approx(GaussianRadius(1.0, dim).mean(), rel=0.01)


def test_radial_distribution_round_trip_and_degenerate(tmp_path):
    # save/load keeps the results; a rank-deficient cloud uses its rank as degrees of freedom
    rng = np.random.default_rng(4)
    B = rng.normal(size=(2, 5))
    X = rng.normal(size=(4000, 2)) @ B  # rank 2 in 5 dimensions
    rd = RadialDistribution().fit(X)
    assert rd.rank_ == 2
    assert rd.stats_["mahalanobis"]["mean"] == pytest.approx(GaussianRadius(1.0, 2).mean(), rel=0.03)
    rd.save(tmp_path / "rad")
    back = RadialDistribution.load(tmp_path / "rad")
    assert back.stats_ == rd.stats_ and back.cube_halfwidth_ == rd.cube_halfwidth_
    np.testing.assert_array_equal(back.hist_counts_["origin"], rd.hist_counts_["origin"])
    assert set(back.references_) == set(rd.references_)
    with pytest.raises(InvalidParameterError, match="at least 2 rows"):
        RadialDistribution().fit(X[:1])
    one = RadialDistribution().fit(rng.normal(size=(500, 1)))
    assert one.references_["chi"].dim == 1


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 60), dim=st.integers(1, 5), block_rows=st.integers(1, 9),
       offset=st.floats(-50, 50))
def test_radial_distribution_equals_numpy_for_any_block_size(seed, n, dim, block_rows, offset):
    # |z| and |z - mean| statistics equal the in-memory norms whatever the blocks
    X = (np.random.default_rng(seed).normal(size=(n, dim)) * 3 + offset).astype(np.float32)
    rd = RadialDistribution(max_bytes=block_rows * dim * 4).fit(X)
    X64 = X.astype(np.float64)
    for kind, r in (("origin", np.linalg.norm(X64, axis=1)), ("centered", np.linalg.norm(X64 - X64.mean(0), axis=1))):
        scale = float(r.max()) + 1.0
        assert rd.stats_[kind]["mean"] == pytest.approx(r.mean(), abs=1e-5 * scale)
        assert rd.stats_[kind]["max"] == pytest.approx(r.max(), abs=1e-5 * scale)
        assert rd.stats_[kind]["min"] == pytest.approx(r.min(), abs=1e-5 * scale)
    assert rd.n_samples_seen_ == n
