"""``latentscope wrap`` on a foreign Keras pair (plain Keras layers, not the keras-ae architecture)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentscope.cli import main
from latentscope.store import open_store


def _foreign_pair(tmp_path, *, z_dim=6, size=16, lam=False):
    import keras

    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    if lam:
        x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    z = keras.layers.Dense(z_dim, activation="tanh")(x)
    enc = keras.Model(inp, z)
    zin = keras.Input((z_dim,))
    y = keras.layers.Dense(size * size * 3, activation="sigmoid")(zin)
    y = keras.layers.Reshape((size, size, 3))(y)
    dec = keras.Model(zin, y)
    enc.save(tmp_path / "enc.keras")
    dec.save(tmp_path / "dec.keras")
    return enc, dec


def test_foreign_keras_pair_wraps_encodes_and_decodes(tmp_path, capsys):
    enc, dec = _foreign_pair(tmp_path)
    model = tmp_path / "m"
    code = main(["wrap", "--encoder", str(tmp_path / "enc.keras"), "--decoder", str(tmp_path / "dec.keras"),
                 "--out", str(model)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "wrapped keras-ae model" in out and "RMSE" in out
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["backend"] == "keras-ae" and cfg["architecture"] == "foreign"
    store = tmp_path / "z.h5"
    assert main(["encode", "--model", str(model), "--data", "synthetic:40", "--out", str(store), "--no-progress"]) == 0
    from latentscope.data import SyntheticFaces
    from latentscope_keras_ae import KerasAEBackend

    images = SyntheticFaces(40, image_size=16).read(0, 40).images
    with open_store(store) as zs:
        z = zs.read()
    np.testing.assert_allclose(z, np.asarray(enc(images.astype(np.float32) / 255.0)), atol=1e-5)
    wrapped = KerasAEBackend.load(model)
    decoded = wrapped.decode(z[:5])
    expected = np.clip(np.rint(np.asarray(dec(z[:5])) * 255.0), 0, 255)
    assert decoded.dtype == np.uint8 and np.abs(decoded.astype(int) - expected).max() <= 1


def test_wrap_refuses_lambda_and_mismatched_keras_pairs(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    _foreign_pair(tmp_path / "a", z_dim=6)
    _foreign_pair(tmp_path / "b", z_dim=5)
    _foreign_pair(tmp_path / "c", lam=True)
    cases = [
        (tmp_path / "a" / "enc.keras", tmp_path / "b" / "dec.keras", "takes (5,), but encoder"),
        (tmp_path / "c" / "enc.keras", tmp_path / "c" / "dec.keras", "contains a Lambda layer"),
        (tmp_path / "a" / "dec.keras", tmp_path / "a" / "enc.keras", "must take RGB images"),
    ]
    for i, (enc, dec, message) in enumerate(cases):
        code = main(["wrap", "--encoder", str(enc), "--decoder", str(dec), "--out", str(tmp_path / f"o{i}")])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / f"o{i}" / "config.json").exists()
    code = main(["wrap", "--encoder", str(cases[0][0]), "--decoder", str(tmp_path / "a" / "dec.keras"), "--out",
                 str(tmp_path / "o9"), "--range", "-1,1"])
    assert code == 1 and "keras-ae models take NHWC images in [0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_keras_ae_small_model_wraps_like_any_pair(tiny_model_dir, tmp_path, capsys):
    # the plugin's own files are a Keras pair too: wrapping them gives the same z-points
    from latentscope.data import SyntheticFaces
    from latentscope_keras_ae import KerasAEBackend

    code = main(["wrap", "--encoder", str(tiny_model_dir / "encoder.keras"), "--decoder",
                 str(tiny_model_dir / "decoder.keras"), "--out", str(tmp_path / "w")])
    assert code == 0, capsys.readouterr().err
    images = SyntheticFaces(20, image_size=32).read(0, 20).images
    np.testing.assert_allclose(KerasAEBackend.load(tmp_path / "w").encode(images),
                               KerasAEBackend.load(tiny_model_dir).encode(images), atol=1e-6)


@pytest.mark.slow
def test_keras_ae_model_exported_to_onnx_encodes_the_same_z(tiny_model, tmp_path):
    # Keras 3's own ONNX export needs tf2onnx (not a dependency; skipped without it)
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    from latentscope.backends import OnnxBackend
    from latentscope.data import SyntheticFaces
    from latentscope_keras_ae._wrap import export_onnx

    enc, dec = export_onnx(tiny_model, tmp_path / "export")
    onnx_model = OnnxBackend.wrap(enc, dec, tmp_path / "m")
    images = SyntheticFaces(30, image_size=32).read(0, 30).images
    z = tiny_model.encode(images)
    np.testing.assert_allclose(onnx_model.encode(images), z, atol=1e-4, rtol=0)
    assert np.abs(onnx_model.decode(z).astype(int) - tiny_model.decode(z).astype(int)).max() <= 1
