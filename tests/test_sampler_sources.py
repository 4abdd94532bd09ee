"""Samplers and analyses take their z-points through ``as_zsource``: every source kind gives the same fit."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from latentscope import create_store, open_store
from latentscope.analysis import AttributeSplit, BoundingBoxes, CoreCovariance, PCAFrame
from latentscope.exceptions import InvalidParameterError
from latentscope.samplers import LandingReference, Sampler, make_sampler
from latentscope.stream import as_zsource


@pytest.fixture(scope="module")
def cloud():
    # a mixture of two lognormal-marginal blobs: skewed, heavy right tail, not elliptical
    rng = np.random.default_rng(11)
    a = np.exp(rng.normal(size=(700, 4)) * 0.6) * [3.0, 1.0, 0.5, 0.2]
    b = np.exp(rng.normal(size=(500, 4)) * 0.4) * [1.0, 2.0, 0.3, 0.1] + [4.0, -1.0, 0.0, 0.5]
    return np.concatenate([a, b]).astype(np.float32)


@pytest.fixture(scope="module")
def paths(cloud, tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    store = d / "z.h5"
    with create_store(store, cloud.shape[1]) as st:
        st.append(cloud, columns={"smile": (cloud[:, 0] > np.median(cloud[:, 0])).astype(np.int8)})
    with h5py.File(d / "raw.h5", "w") as f:
        f["z"] = cloud
    np.save(d / "z.npy", cloud)
    return store, d / "raw.h5", d / "z.npy"


def _kinds(cloud, paths):
    store, raw, npy = paths
    yield "array", lambda: cloud
    yield "path", lambda: store
    yield "str", lambda: str(store)
    yield "memmap", lambda: np.load(npy, mmap_mode="r")
    yield "list", lambda: cloud.tolist()


SAMPLERS = ["pca-gauss", "pca-box", "mvn", "gauss", "box", "ellipse", "kde", "gmm", "path", "ball"]
OPTIONS = {"gmm": {"n_components": 3, "max_iter": 50}, "ball": {"radius": "match", "center": "mean"},
           "path": {"mode": "interp", "endpoints": (3, 700)}}


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_source_kind_fits_the_same_sampler(name, cloud, paths):
    ref = make_sampler(name, **OPTIONS.get(name, {})).fit(cloud, rng=2).sample(64, rng=9)
    for kind, make in _kinds(cloud, paths):
        got = make_sampler(name, **OPTIONS.get(name, {})).fit(make(), rng=2).sample(64, rng=9)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6, err_msg=kind)
    store, raw, _ = paths
    with open_store(store) as st:
        np.testing.assert_allclose(make_sampler(name, **OPTIONS.get(name, {})).fit(st, rng=2).sample(64, rng=9),
                                   ref, rtol=1e-6, atol=1e-6)
        assert st.n_rows == cloud.shape[0]  # the caller's store stays open
        src = as_zsource(st)
        make_sampler(name, **OPTIONS.get(name, {})).fit(src, rng=2)
        assert src.n_rows == cloud.shape[0]
    with h5py.File(raw, "r") as f:
        got = make_sampler(name, **OPTIONS.get(name, {})).fit(f["z"], rng=2).sample(64, rng=9)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_a_path_source_is_closed_after_fit(paths):
    store, _, _ = paths
    make_sampler("pca-gauss").fit(store)
    with open_store(store, "a") as st:  # a writer could not open it if fit had left a reader behind
        assert st.n_rows == 1200


def test_pca_is_passed_down_explicitly(cloud):
    frame = PCAFrame().fit(cloud)
    s = make_sampler("pca-gauss").fit(cloud, pca=frame)
    np.testing.assert_array_equal(s.region_.axes, frame.components_)
    assert not hasattr(Sampler, "_pca_hint") and "_pca_hint" not in vars(s)
    with pytest.raises(InvalidParameterError, match="pca must be a fitted covariance PCAFrame"):
        make_sampler("pca-gauss").fit(cloud, pca=PCAFrame(correlation=True).fit(cloud))
    with pytest.raises(InvalidParameterError, match="pca must be a fitted covariance PCAFrame"):
        make_sampler("pca-gauss").fit(cloud, pca=PCAFrame())
    with pytest.raises(InvalidParameterError, match="pca has z_dim 3; the source has 4"):
        make_sampler("mvn").fit(cloud, pca=PCAFrame().fit(cloud[:, :3]))


def test_fitted_analysis_inputs_are_typed(cloud):
    bb = BoundingBoxes().fit(cloud)
    np.testing.assert_allclose(make_sampler("box").fit(bb).lo_, cloud.min(0), rtol=1e-6)
    core = CoreCovariance().fit(cloud)
    np.testing.assert_allclose(make_sampler("gauss").fit(core).mean_, core.mean_)
    np.testing.assert_allclose(make_sampler("mvn", covariance="core").fit(core).mean_, core.mean_)

    class Lookalike:  # has the attributes the old code sniffed, but is no analysis result
        mean_ = np.zeros(4)
        covariance_ = np.eye(4)

    with pytest.raises(InvalidParameterError, match="mvn|MVNSampler"):
        make_sampler("mvn").fit(Lookalike())


def test_analyses_accept_every_source_kind(cloud, paths):
    store, raw, npy = paths
    ref = PCAFrame().fit(cloud)
    with h5py.File(raw, "r") as f:
        for src in (store, str(store), np.load(npy, mmap_mode="r"), f["z"]):
            np.testing.assert_allclose(PCAFrame().fit(src).covariance_, ref.covariance_, rtol=1e-6)
    by_col = AttributeSplit("smile").fit(store)
    by_lab = AttributeSplit().fit(cloud, labels=(cloud[:, 0] > np.median(cloud[:, 0])).astype(np.int8))
    np.testing.assert_allclose(by_col.group_mean_, by_lab.group_mean_, rtol=1e-6)
    core = CoreCovariance().fit(store)
    np.testing.assert_allclose(core.covariance_, CoreCovariance().fit(cloud).covariance_, rtol=1e-6)
    ref_land = LandingReference(n_reference=200).fit(cloud, rng=0)
    land = LandingReference(n_reference=200).fit(store, rng=0)
    np.testing.assert_allclose(land.reference_nn_, ref_land.reference_nn_, rtol=1e-6)
