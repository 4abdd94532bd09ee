"""The keras-ae backend: training, resuming, saving/loading, encoding, bad input."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from latentscope.backends import Backend
from latentscope.exceptions import BackendError, InvalidParameterError, LatentscopeError
from latentscope_keras_ae import KerasAEBackend

from latentscope.data import SyntheticFaces

# The same options as conftest.TINY (test modules cannot import conftest under
# --import-mode=importlib; test_tiny_options_match_conftest keeps them in step).
TINY = dict(preset="small", image_size=32, z_dim=8, filters="8,8,16,16", epochs=3, batch_size=16,
            val_fraction=0.2, seed=0, progress=False)


def tiny_source():
    return SyntheticFaces(80, image_size=32)


def _images(n=10):
    return tiny_source().read(0, n).images


def test_tiny_options_match_conftest(tiny):
    options, source = tiny
    assert options == TINY and source().spec == tiny_source().spec


def test_backend_satisfies_the_protocol(tiny_model):
    assert isinstance(tiny_model, Backend)
    assert tiny_model.name == "keras-ae"
    assert tiny_model.z_dim == 8 and tiny_model.image_shape == (32, 32, 3)


def test_train_lowers_the_loss_on_synthetic_faces(tiny_model_dir):
    with open(tiny_model_dir / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < losses[0] - 0.01
    assert all(float(r["images_per_s"]) > 0 and r["val_loss"] for r in rows)


def test_train_writes_checkpoint_grids_and_config(tiny_model_dir):
    assert sorted(p.name for p in (tiny_model_dir / "recon").iterdir()) == [
        "epoch_001.png", "epoch_002.png", "epoch_003.png"]
    info = json.loads((tiny_model_dir / "config.json").read_text())
    assert info["format"] == "latentscope-keras-ae" and info["complete"] is True
    assert info["epochs_done"] == 3 and info["n_val"] == 16 and info["source"].startswith("synthetic:80")
    state = json.loads((tiny_model_dir / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (3, 0)
    assert (tiny_model_dir / "image_cache.h5").is_file()


def test_train_resume_after_interruption_gives_the_same_weights(tiny_model, tmp_path):
    out = tmp_path / "m"
    # Stop mid-epoch 2 (4 steps per epoch), as an interruption would, then resume.
    first = KerasAEBackend.train(tiny_source(), out, max_steps=6, **TINY)
    assert first.info["complete"] is False and first.info["epochs_done"] == 1
    with pytest.raises(BackendError, match="already holds a training checkpoint; pass resume=True"):
        KerasAEBackend.train(tiny_source(), out, **TINY)
    resumed = KerasAEBackend.train(tiny_source(), out, resume=True, progress=False)
    assert resumed.fingerprint() == tiny_model.fingerprint()
    with open(out / "history.csv", newline="") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2, 3]
    # resuming with options that contradict the checkpoint is refused
    with pytest.raises(BackendError, match=r"options differ from the checkpoint \(z_dim 9 != 8\)"):
        KerasAEBackend.train(tiny_source(), out, resume=True, z_dim=9, progress=False)


def test_save_load_gives_identical_encodings(tiny_model, tmp_path):
    x = _images(10)
    z = tiny_model.encode(x)
    tiny_model.save(tmp_path / "copy")
    again = KerasAEBackend.load(tmp_path / "copy")
    np.testing.assert_array_equal(again.encode(x), z)
    assert again.fingerprint() == tiny_model.fingerprint()
    assert again.config == tiny_model.config


def test_encode_decode_shapes_and_dtypes(tiny_model):
    x = _images(10)
    z = tiny_model.encode(x, batch_size=4)
    assert z.shape == (10, 8) and z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_allclose(tiny_model.encode(x, batch_size=64), z, rtol=1e-5, atol=1e-5)
    y = tiny_model.decode(z)
    assert y.shape == (10, 32, 32, 3) and y.dtype == np.uint8
    assert tiny_model.encode(x[:0]).shape == (0, 8)


def test_default_batch_sizes_follow_the_hardware(tiny_model):
    # these tests run on CPUs: 256 to encode, 128 to decode; the core asks the backend
    from latentscope.backends import preferred_batch_size
    from latentscope_keras_ae._device import accelerator

    expected = {"cpu": (256, 128), "gpu": (1024, 512)}[accelerator()]
    assert (tiny_model.default_batch_size("encode"), tiny_model.default_batch_size("decode")) == expected
    assert preferred_batch_size(tiny_model) == expected[0]
    with pytest.raises(InvalidParameterError, match="task must be 'encode' or 'decode'; got 'fit'"):
        tiny_model.default_batch_size("fit")


def test_fingerprint_changes_with_the_weights(tiny_model):
    fresh = KerasAEBackend.from_config(tiny_model.config, seed=1)
    assert fresh.fingerprint() != tiny_model.fingerprint()
    assert len(tiny_model.fingerprint()) == 16


def test_encode_rejects_images_of_another_size(tiny_model):
    with pytest.raises(BackendError, match=r"encodes images of shape \(32, 32, 3\); got \(64, 64, 3\)"):
        tiny_model.encode(np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(InvalidParameterError, match="uint8"):
        tiny_model.encode(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(InvalidParameterError, match=r"z must have shape \(n, 8\)"):
        tiny_model.decode(np.zeros((2, 5)))


def test_load_reports_a_directory_without_a_model(tmp_path):
    with pytest.raises(BackendError, match="holds no keras-ae model: config.json is missing") as info:
        KerasAEBackend.load(tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(BackendError, match="does not exist"):
        KerasAEBackend.load(tmp_path / "nope")


def test_load_refuses_a_model_file_with_a_lambda_layer(tiny_model_dir, tmp_path):
    import keras

    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad, ignore=shutil.ignore_patterns("*.h5", "checkpoint", "recon"))
    x_in = keras.Input((32, 32, 3))
    h = keras.layers.Lambda(lambda t: t * 2.0)(x_in)
    h = keras.layers.Flatten()(h)
    keras.Model(x_in, keras.layers.Dense(8)(h), name="encoder").save(bad / "encoder.keras")
    with pytest.raises(BackendError, match="refusing to load .*encoder.keras: it contains a Lambda layer"):
        KerasAEBackend.load(bad)


def test_load_reports_a_corrupt_model_file(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad, ignore=shutil.ignore_patterns("*.h5", "checkpoint", "recon"))
    (bad / "decoder.keras").write_bytes(b"not a zip")
    with pytest.raises(BackendError, match="decoder.keras is not a readable .keras model file"):
        KerasAEBackend.load(bad)


def test_train_rejects_unknown_options_and_occupied_directories(tiny_model_dir, tmp_path):
    with pytest.raises(InvalidParameterError, match=r"unknown training option\(s\) \['epocs'\]"):
        KerasAEBackend.train(tiny_source(), tmp_path / "x", epocs=3)
    with pytest.raises(BackendError, match="already holds a training checkpoint"):
        KerasAEBackend.train(tiny_source(), tiny_model_dir, **TINY)
    with pytest.raises(LatentscopeError, match="image size is"):
        KerasAEBackend.train(np.zeros((4, 16, 16, 3), np.uint8), tmp_path / "y", **TINY)
