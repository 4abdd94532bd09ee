"""Tests of the dependency-free linear backend (PCA of pixels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from latentscope.backends import Backend, LinearBackend, get_backend
from latentscope.data import SyntheticFaces
from latentscope.exceptions import BackendError, DataSourceError, InvalidParameterError


@pytest.fixture(scope="module")
def faces():
    return SyntheticFaces(300, image_size=16, seed=2)


@pytest.fixture(scope="module")
def model(faces):
    return LinearBackend.fit(faces, z_dim=12, seed=0)


def test_linear_is_a_registered_backend(model):
    # the entry point resolves to the class, which satisfies the Backend protocol
    assert get_backend("linear") is LinearBackend
    assert isinstance(model, Backend)
    assert model.z_dim == 12 and model.image_shape == (16, 16, 3)


def test_linear_matches_exact_pca(faces, model):
    # streamed subspace iteration recovers the exact principal subspace and variances
    X = faces.read().images.reshape(300, -1).astype(np.float64) / 255
    Xc = X - X.mean(axis=0)
    with threadpool_limits(limits=1, user_api="blas"):  # threaded LAPACK crawls on a busy machine
        _, s, vt = np.linalg.svd(Xc, full_matrices=False)
    var = s**2 / (len(X) - 1)
    np.testing.assert_allclose(model.mean, X.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(model.explained_variance, var[:12], rtol=1e-3)
    overlap = np.abs(np.sum(model.components * vt[:12], axis=1))
    assert overlap[:8].min() > 0.999
    np.testing.assert_allclose(model.explained_variance_ratio.sum(), var[:12].sum() / var.sum(), rtol=1e-3)


def test_linear_components_orthonormal(model):
    # the axes are orthonormal
    gram = model.components.astype(np.float64) @ model.components.T
    np.testing.assert_allclose(gram, np.eye(model.z_dim), atol=1e-5)


def test_linear_encode_decode_reconstructs(faces, model):
    # decode(encode(x)) is the best rank-12 reconstruction, and decode returns clipped uint8
    images = faces.read(0, 50).images
    z = model.encode(images, batch_size=7)
    assert z.shape == (50, 12) and z.dtype == np.float32
    recon = model.decode(z, batch_size=9)
    assert recon.dtype == np.uint8 and recon.shape == images.shape
    err = np.mean((recon.astype(float) - images) ** 2)
    assert err < np.mean((images.astype(float) - images.mean(axis=0)) ** 2) * 0.5
    far = model.decode(np.full((1, 12), 1e6, np.float32))
    assert set(np.unique(far)) <= {0, 255}


def test_linear_batch_size_does_not_change_results(faces, model):
    # encoding in different batch sizes gives the same z-points (up to float32 rounding)
    images = faces.read(0, 40).images
    np.testing.assert_allclose(model.encode(images, batch_size=40), model.encode(images, batch_size=3), rtol=1e-5, atol=1e-5)


def test_linear_save_load_roundtrip(tmp_path, faces, model):
    # a saved model reloads with identical encodings and fingerprint; files are npz + json
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.npz"]
    loaded = LinearBackend.load(tmp_path / "m")
    images = faces.read(0, 20).images
    np.testing.assert_array_equal(loaded.encode(images), model.encode(images))
    assert loaded.fingerprint() == model.fingerprint()
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["fingerprint"] == model.fingerprint() and config["z_dim"] == 12
    assert config["source"] == "synthetic:300?seed=2"
    with np.load(tmp_path / "m" / "model.npz", allow_pickle=False) as data:
        assert set(data.files) == {"mean", "components", "explained_variance"}


def test_linear_fingerprint_tracks_weights(model):
    # changing any weight changes the fingerprint
    other = LinearBackend(model.mean, model.components * np.float32(1.0001), image_shape=model.image_shape)
    assert other.fingerprint() != model.fingerprint() and len(model.fingerprint()) == 16


def test_linear_load_rejects_damaged_or_foreign(tmp_path, model):
    # missing files, another backend's config and tampered weights are one-line errors
    with pytest.raises(BackendError, match="not a linear model directory"):
        LinearBackend.load(tmp_path / "missing")
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "backend": "keras-ae"}))
    with pytest.raises(BackendError, match="a model of backend 'keras-ae'"):
        LinearBackend.load(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "fingerprint": "0" * 16}))
    with pytest.raises(BackendError, match="do not match the recorded fingerprint"):
        LinearBackend.load(tmp_path / "m")


def test_linear_train_saves_and_refuses_to_overwrite(tmp_path):
    # train fits and saves; a second train into the same folder needs overwrite=True
    src = SyntheticFaces(40, image_size=8)
    model = LinearBackend.train(src, tmp_path / "m", z_dim=4, n_iter=3)
    assert LinearBackend.load(tmp_path / "m").fingerprint() == model.fingerprint()
    with pytest.raises(BackendError, match="already holds a model"):
        LinearBackend.train(src, tmp_path / "m", z_dim=4)
    again = LinearBackend.train(src, tmp_path / "m", z_dim=5, overwrite=True)
    assert LinearBackend.load(tmp_path / "m").z_dim == again.z_dim == 5


def test_linear_z_dim_limited_by_images():
    # with n images at most n - 1 axes carry variance
    model = LinearBackend.fit(SyntheticFaces(10, image_size=8), z_dim=64)
    assert model.z_dim == 9


def test_linear_fit_resizes_and_accepts_specs():
    # image_size resizes the source; a spec string is opened
    model = LinearBackend.fit("synthetic:30", image_size=(8, 12), z_dim=3, n_iter=2)
    assert model.image_shape == (8, 12, 3) and model.z_dim == 3


def test_linear_fit_without_cache_equals_cached():
    # streaming the source each pass (no uint8 cache) gives the same model
    src = SyntheticFaces(60, image_size=8)
    a = LinearBackend.fit(src, z_dim=5, seed=1)
    b = LinearBackend.fit(src, z_dim=5, seed=1, max_cache_bytes=0)
    np.testing.assert_allclose(a.components, b.components, atol=1e-5)


def test_linear_errors():
    # bad shapes and parameters name what was expected
    model = LinearBackend(np.zeros(12), np.eye(2, 12), image_shape=(2, 2, 3))
    with pytest.raises(InvalidParameterError, match=r"images must have shape \(n, 2, 2, 3\)"):
        model.encode(np.zeros((1, 3, 3, 3), np.uint8))
    with pytest.raises(InvalidParameterError, match=r"z must have shape \(n, 2\)"):
        model.decode(np.zeros((1, 3)))
    with pytest.raises(InvalidParameterError, match="z_dim must be an integer >= 1"):
        LinearBackend.fit(SyntheticFaces(5, image_size=4), z_dim=0)
    with pytest.raises(InvalidParameterError, match="components must have shape"):
        LinearBackend(np.zeros(12), np.eye(2, 10), image_shape=(2, 2, 3))
    with pytest.raises(DataSourceError, match="at least 2 readable images"):
        LinearBackend.fit(SyntheticFaces(1, image_size=4))
