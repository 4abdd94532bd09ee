"""FilamentDetector on the estimator base, and saved in the one persistence format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentscope import create_store, open_store
from latentscope._estimator import Estimator, clone
from latentscope._persist import save_state
from latentscope.exceptions import InvalidParameterError, StoreFormatError
from latentscope.filaments import COLUMNS, FilamentDetector, make_planted_cloud

SMALL = dict(n_filaments=3, n_blobs=1, n_sheets=1, filament_points=(80, 200), blob_points=(100, 200),
             sheet_points=(150, 250))


@pytest.fixture(scope="module")
def fitted():
    # lognormal-copula bulk, some duplicated and some non-finite rows
    z = make_planted_cloud(2500, 12, bulk="lognormal-copula", rng=11, **SMALL).z
    z[5] = z[6]
    z[9, 2] = np.nan
    return z, FilamentDetector(k=12, on_nonfinite="skip", rng=0).fit(z)


def test_params_repr_set_params_and_clone():
    det = FilamentDetector(k=20, knn="exact")
    assert isinstance(det, Estimator)
    params = det.get_params()
    assert list(params)[:3] == ["k", "fdr", "outer_k"] and params["k"] == 20 and params["rng"] is None
    assert repr(det) == "FilamentDetector(k=20, knn='exact')" and repr(FilamentDetector()) == "FilamentDetector()"
    assert det.set_params(min_members=40) is det and det.min_members == 40
    with pytest.raises(InvalidParameterError, match="FilamentDetector.set_params: unknown parameter 'kk'"):
        det.set_params(kk=3)
    twin = clone(det)
    assert twin is not det and twin.get_params() == det.get_params() and not hasattr(twin, "filaments_")


def test_clone_refits_to_the_same_detection(fitted):
    z, det = fitted
    again = clone(det).fit(z)
    np.testing.assert_array_equal(again.labels_, det.labels_)
    np.testing.assert_array_equal(again.density_, det.density_)


def test_save_and_load_round_trip(tmp_path, fitted):
    z, det = fitted
    assert len(det.filaments_) >= 1 and det.n_unique_ < det.n_points_
    jpath, hpath = det.save(tmp_path / "out" / "detector")
    assert (jpath.name, hpath.name) == ("detector.json", "detector.h5")
    meta = json.loads(jpath.read_text())
    assert meta["kind"] == "filaments" and meta["class"] == "FilamentDetector" and meta["params"]["k"] == 12
    back = FilamentDetector.load(tmp_path / "out" / "detector.json")
    assert back.get_params() == det.get_params()
    for name in ("labels_", "density_", "density_pvalue_", "contrast_", "null_contrast_", "local_dim_",
                 "linearity_", "flagged_", "candidates_", "structure_snr_", "pca_components_"):
        a, b = getattr(det, name), getattr(back, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b)
    assert len(back.filaments_) == len(det.filaments_)
    for f, g in zip(det.filaments_, back.filaments_):
        assert f.to_dict() == g.to_dict()
    s, t = det.summary(), back.summary()
    assert json.dumps(s, sort_keys=True) == json.dumps(t, sort_keys=True)
    # a loaded detector writes the same columns
    path = tmp_path / "z.h5"
    with create_store(path, z.shape[1]) as st:
        st.append(np.nan_to_num(z))  # a store holds finite rows; only the row count matters here
    with open_store(path, "a") as st:
        assert back.write_columns(st) == list(COLUMNS)
        np.testing.assert_array_equal(st.read_column("filament_id"), det.labels_.astype(np.int32))


def test_load_refuses_other_files_and_a_generator_rng_comes_back_as_none(tmp_path, fitted):
    z, _ = fitted
    with pytest.raises(StoreFormatError, match="no such file"):
        FilamentDetector.load(tmp_path / "missing")
    save_state(tmp_path / "other", kind="pca", params={}, scalars={}, arrays={"a": np.zeros(3)})
    with pytest.raises(StoreFormatError, match="not 'filaments'"):
        FilamentDetector.load(tmp_path / "other")
    det = FilamentDetector(k=8, rng=np.random.default_rng(1)).fit(z[10:810])
    det.save(tmp_path / "g")
    assert "Generator" in det.summary()["params"]["rng"]
    assert FilamentDetector.load(tmp_path / "g").rng is None
