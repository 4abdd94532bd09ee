"""The one estimator base (get_params / set_params / repr / clone) and the one persistence format."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from latentscope._estimator import Estimator, clone
from latentscope._persist import _jsonable, load_state, save_state
from latentscope.analysis import (
    AttributeSplit,
    BoundingBoxes,
    ComponentStats,
    CoreCovariance,
    Correlations,
    HeldOutWhitening,
    PCAFrame,
    RadialDistribution,
)
from latentscope.exceptions import InvalidParameterError, StoreFormatError
from latentscope.filaments import FilamentDetector
from latentscope.metrics import PixelPCAFeatures
from latentscope.samplers import LandingReference, all_samplers, load_sampler, make_sampler


@pytest.fixture(scope="module")
def cloud():
    # heavy-tailed, correlated: t3 marginals through a random rotation
    rng = np.random.default_rng(7)
    t = rng.standard_t(3, size=(1500, 5)) * np.array([4.0, 2.0, 1.0, 0.5, 0.25])
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    return t @ q.T + 2.0


def _estimators():
    yield PCAFrame(n_components=3)
    yield BoundingBoxes(quantiles=(0.01, 0.99), bins=256)
    yield ComponentStats(bins=20, quantiles=(0.1, 0.9))
    yield CoreCovariance(trim=0.8)
    yield Correlations(n_pairs=2)
    yield RadialDistribution(bins=30)
    yield AttributeSplit("smile", threshold=0.5)
    yield LandingReference(level=0.9, n_reference=300)
    yield HeldOutWhitening(n_holdout=100)
    yield PixelPCAFeatures(8, max_images=100)
    yield FilamentDetector(k=12, fdr=0.1)
    for name, cls in all_samplers().items():
        yield cls()


ESTIMATORS = list(_estimators())
IDS = [type(e).__name__ + (f"[{getattr(e, 'name', '')}]" if getattr(e, "name", "") else "") for e in ESTIMATORS]


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_every_estimator_reads_its_params_from_the_signature(est):
    assert isinstance(est, Estimator)
    params = est.get_params()
    assert list(params) == type(est)._param_names()
    again = type(est)(**params)
    assert again.get_params() == params
    assert repr(again) == repr(est)
    # set_params with the same values changes nothing and returns the estimator
    assert est.set_params(**params) is est
    assert est.get_params() == params


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_clone_is_unfitted_with_equal_params(est):
    c = clone(est)
    assert type(c) is type(est) and c is not est
    assert repr(c) == repr(est)
    assert c.get_params().keys() == est.get_params().keys()
    for k, v in est.get_params().items():
        if isinstance(v, (list, tuple, np.ndarray)):
            np.testing.assert_array_equal(np.asarray(c.get_params()[k], dtype=object), np.asarray(v, dtype=object))


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_set_params_rejects_unknown_names_in_one_line(est):
    with pytest.raises(InvalidParameterError) as err:
        est.set_params(no_such_option=1)
    msg = str(err.value)
    assert "\n" not in msg and "'no_such_option'" in msg and type(est).__name__ in msg
    for name in est.get_params():
        assert name in msg


def test_repr_shows_only_non_default_params():
    assert repr(PCAFrame()) == "PCAFrame()"
    assert repr(PCAFrame(correlation=True, n_components=2)) == "PCAFrame(n_components=2, correlation=True)"
    # a value of another type than the default is shown even when it compares equal
    assert repr(PCAFrame(correlation=0)) == "PCAFrame(correlation=0)"
    assert repr(make_sampler("cube", halfwidth=2.5)) == "CubeSampler(halfwidth=2.5)"
    centre = np.arange(3.0)
    assert "center=array([0., 1., 2.])" in repr(make_sampler("ball", center=centre))
    assert repr(AttributeSplit("smile")) == "AttributeSplit(attribute='smile')"
    assert repr(PixelPCAFeatures(64)) == "PixelPCAFeatures()"


def test_set_params_changes_what_fit_does(cloud):
    pca = PCAFrame().fit(cloud)
    assert pca.n_components_ == 5
    pca.set_params(n_components=2).fit(cloud)
    assert pca.n_components_ == 2 and pca.transform(cloud).shape == (1500, 2)
    with pytest.raises(InvalidParameterError, match="n_components"):
        pca.set_params(n_components=9).fit(cloud)


def test_nested_params_reach_the_inner_estimator():
    inner = PCAFrame()
    bb = BoundingBoxes(pca=inner)
    deep = bb.get_params(deep=True)
    assert deep["pca"] is inner and deep["pca__correlation"] is False
    bb.set_params(pca__n_components=2)
    assert inner.n_components == 2
    with pytest.raises(InvalidParameterError, match="'quantiles' holds NoneType"):
        bb.set_params(quantiles__lo=0.1)
    with pytest.raises(InvalidParameterError, match="unknown parameter 'frame'"):
        bb.set_params(frame__n_components=2)


def test_clone_of_a_fitted_estimator_refits_to_the_same_result(cloud):
    s = make_sampler("pca-gauss").fit(cloud, rng=1)
    c = clone(s)
    assert s.is_fitted and not c.is_fitted
    c.fit(cloud, rng=1)
    np.testing.assert_array_equal(c.sample(50, rng=3), s.sample(50, rng=3))
    frame = PCAFrame(n_components=2).fit(cloud)
    fresh = clone(frame)
    assert not hasattr(fresh, "components_") and fresh.n_components == 2


def test_clone_copies_values_but_shares_fitted_inputs(cloud):
    frame = PCAFrame().fit(cloud)
    q = [0.01, 0.99]
    bb = BoundingBoxes(quantiles=q, pca=frame)
    c = clone(bb)
    assert c.pca is frame  # a fitted input, not a sub-model to refit
    assert c.quantiles == q and c.quantiles is not q
    ball = make_sampler("ball", center=np.zeros(5))
    cb = clone(ball)
    assert cb.center is not ball.center
    with pytest.raises(InvalidParameterError, match="clone: estimator must be an Estimator; got dict"):
        clone({"a": 1})


def test_jsonable_makes_plain_json():
    value = {1: np.float32(0.5), "a": (np.int64(3), np.arange(2)), "p": Path("x/y"), "n": [np.bool_(True)]}
    out = _jsonable(value)
    assert json.loads(json.dumps(out)) == {"1": 0.5, "a": [3, [0, 1]], "p": "x/y", "n": [True]}


@pytest.mark.parametrize("container", ["h5", "npz"])
def test_state_round_trip_and_errors(tmp_path, container):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([1, 2], np.int32)}
    jpath, apath = save_state(tmp_path / "thing", kind="Thing", params={"k": (1, 2)}, scalars={"n": np.int64(4)},
                              arrays=dict(arrays, none=None), container=container)
    assert jpath.name == "thing.json" and apath.name == f"thing.{container}"
    meta = json.loads(jpath.read_text())
    assert meta["kind"] == "Thing" and meta["arrays"] == ["a", "b"] and "library_version" in meta
    for path in (tmp_path / "thing", jpath, apath):
        st = load_state(path, "Thing")
        assert st.params == {"k": [1, 2]} and st.scalars == {"n": 4}
        assert st.arrays.keys() == arrays.keys()
        for k in arrays:
            np.testing.assert_array_equal(st.arrays[k], arrays[k])
    with pytest.raises(StoreFormatError, match="holds a 'Thing' result, not 'Other'"):
        load_state(tmp_path / "thing", "Other")
    apath.unlink()
    with pytest.raises(StoreFormatError, match=r"the saved arrays \['a', 'b'\] are missing"):
        load_state(tmp_path / "thing", "Thing")
    with pytest.raises(StoreFormatError, match="no such file"):
        load_state(tmp_path / "nothing")


def test_analysis_files_of_the_old_format_still_load(tmp_path, cloud):
    pca = PCAFrame(n_components=3).fit(cloud)
    stem = tmp_path / "pca"
    # the format analysis/_io.py wrote before the one persistence module
    meta = {"kind": "PCAFrame", "params": {"n_components": 3, "correlation": False},
            "scalars": {"n_samples_seen": pca.n_samples_seen_, "effective_dimension": pca.effective_dimension_,
                        "n_components_": 3}}
    (tmp_path / "pca.json").write_text(json.dumps(meta))
    with h5py.File(tmp_path / "pca.h5", "w") as h5:
        h5.attrs["kind"] = "PCAFrame"
        for name in ("mean", "scale", "components", "explained_variance", "covariance"):
            h5.create_dataset(name, data=getattr(pca, name + "_"))
    back = PCAFrame.load(stem)
    np.testing.assert_array_equal(back.components_, pca.components_)
    np.testing.assert_array_equal(back.transform(cloud), pca.transform(cloud))
    (tmp_path / "pca.h5").unlink()
    with pytest.raises(StoreFormatError, match="expected pca.json and pca.h5"):
        PCAFrame.load(stem)


def test_sampler_files_of_the_old_format_still_load(tmp_path, cloud):
    s = make_sampler("pca-box", quantiles=(0.05, 0.95)).fit(cloud, rng=0)
    # the format samplers/_base.py wrote before: to_dict() as the JSON, fitted arrays as .npz
    (tmp_path / "old.json").write_text(json.dumps(s.to_dict()))
    np.savez(tmp_path / "old.npz", **s.fitted_arrays())
    back = load_sampler(tmp_path / "old")
    assert back.to_dict() == s.to_dict()
    np.testing.assert_array_equal(back.sample(40, rng=5), s.sample(40, rng=5))
    # and the new files hold the one format under the same names
    s.save(tmp_path / "new")
    meta = json.loads((tmp_path / "new.json").read_text())
    assert meta["kind"] == "sampler" and meta["sampler"] == "pca-box" and meta["scalars"]["z_dim_"] == 5
    assert sorted(meta["arrays"]) == sorted(s.fitted_arrays())
    assert meta["fitted"] == meta["scalars"] and meta["fitted_arrays"] == meta["arrays"]  # the keys of before
    # an unfitted sampler saves and loads as unfitted
    make_sampler("cube", halfwidth=2.0, z_dim=3).save(tmp_path / "unfitted")
    assert "fitted" not in json.loads((tmp_path / "unfitted.json").read_text())
    again = load_sampler(tmp_path / "unfitted")
    assert not again.is_fitted and again.get_params() == {"halfwidth": 2.0, "center": None, "z_dim": 3}
    assert (tmp_path / "new.npz").exists() and not (tmp_path / "new.h5").exists()
    np.testing.assert_array_equal(load_sampler(tmp_path / "new.json").sample(40, rng=5), s.sample(40, rng=5))
