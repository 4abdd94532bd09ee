"""The onnx backend on small ONNX pairs built with the onnx helper API (no deep-learning framework)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from latentscope.backends import OnnxBackend, encode_to_store, get_backend, load_model  # noqa: E402
from latentscope.backends._onnx import check_range, choose_providers  # noqa: E402
from latentscope.backends._onnx_build import dense_pair, reference_encode  # noqa: E402
from latentscope.data import SyntheticFaces  # noqa: E402
from latentscope.exceptions import BackendError, InvalidParameterError, StoreError  # noqa: E402
from latentscope.store import open_store  # noqa: E402


def _images(n, size=16, seed=3):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("pixel_range", ["0,1", "-1,1", "imagenet"])
def test_encode_equals_numpy_reference(tmp_path, layout, pixel_range):
    pair = dense_pair(tmp_path / "src", layout=layout, range=pixel_range, rng=1)
    model = OnnxBackend.wrap(pair["encoder"], pair["decoder"], tmp_path / "m", range=pixel_range)
    assert model.layout == layout  # read from the encoder's input shape
    images = _images(37)
    mean, std = check_range(pixel_range)
    ref = reference_encode(images, pair["We"], pair["be"], layout=layout, mean=mean, std=std)
    z = model.encode(images, batch_size=8)
    assert z.dtype == np.float32 and z.shape == (37, 8)
    np.testing.assert_allclose(z, ref, atol=1e-5, rtol=0)
    # a wrong layout or range gives other z-points: the test can fail
    other = reference_encode(images, pair["We"], pair["be"], layout=layout, mean=(0, 0, 0), std=(1, 1, 1))
    if pixel_range != "0,1":
        assert np.abs(z - other).max() > 1e-3


def test_decode_maps_range_and_layout_back_to_uint8(tmp_path):
    for layout, pixel_range in (("nchw", "-1,1"), ("nhwc", "0,1")):
        pair = dense_pair(tmp_path / layout, layout=layout, range=pixel_range, rng=2)
        model = OnnxBackend.wrap(pair["encoder"], pair["decoder"], tmp_path / f"m-{layout}", range=pixel_range)
        z = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
        y = z.astype(np.float64) @ pair["Wd"] + pair["bd"]
        y = (np.tanh(y) + 1) / 2 if pixel_range == "-1,1" else 1 / (1 + np.exp(-y))
        y = y.reshape(5, 3, 16, 16).transpose(0, 2, 3, 1) if layout == "nchw" else y.reshape(5, 16, 16, 3)
        expected = np.clip(np.floor(y * 255 + 0.5), 0, 255)
        got = model.decode(z, batch_size=2)
        assert got.dtype == np.uint8 and got.shape == (5, 16, 16, 3)
        assert np.abs(got.astype(int) - expected).max() <= 1  # float32 rounding at .5


def test_latent_tensor_is_flattened_in_c_order_and_reshaped_back(tmp_path):
    pair = dense_pair(tmp_path / "src", latent_shape=(2, 2, 2), rng=4)
    model = OnnxBackend.wrap(pair["encoder"], pair["decoder"], tmp_path / "m")
    assert model.latent_shape == (2, 2, 2) and model.z_dim == 8
    images = _images(6)
    ref = reference_encode(images, pair["We"], pair["be"], layout="nhwc", mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(model.encode(images), ref, atol=1e-5, rtol=0)
    flat = dense_pair(tmp_path / "flat", latent_shape=(2, 4), decoder_flat=True, rng=4)
    m2 = OnnxBackend.wrap(flat["encoder"], flat["decoder"], tmp_path / "m2")
    assert m2.decoder_input_shape == (8,)
    np.testing.assert_array_equal(m2.decode(m2.encode(images)), model.decode(model.encode(images)))


def test_batches_and_fixed_batch_networks_agree(tmp_path):
    pair = dense_pair(tmp_path / "a", rng=5)
    fixed = dense_pair(tmp_path / "b", rng=5, fixed_batch=4)
    m = OnnxBackend.wrap(pair["encoder"], pair["decoder"], tmp_path / "ma")
    mf = OnnxBackend.wrap(fixed["encoder"], fixed["decoder"], tmp_path / "mb")
    images = _images(11)
    z = m.encode(images)
    for bs in (1, 3, 11, 256):
        np.testing.assert_allclose(m.encode(images, batch_size=bs), z, atol=1e-6, rtol=0)
    np.testing.assert_allclose(mf.encode(images, batch_size=3), z, atol=1e-6, rtol=0)  # padded last batch
    assert mf.decode(z).shape == (11, 16, 16, 3)
    assert m.default_batch_size("encode") == (256 if m.providers[0] == "CPUExecutionProvider" else 1024)


def test_save_load_config_and_fingerprint(tmp_path):
    pair = dense_pair(tmp_path / "src", rng=6)
    model = OnnxBackend.wrap(pair["encoder"], pair["decoder"], tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["backend"] == "onnx" and cfg["layout"] == "nhwc" and cfg["latent_shape"] == [8]
    assert cfg["fingerprint"] == model.fingerprint() and len(model.fingerprint()) == 16
    assert load_model(tmp_path / "m").fingerprint() == model.fingerprint()  # the config names the backend
    assert get_backend("onnx") is OnnxBackend
    model.save(tmp_path / "copy")
    copy = OnnxBackend.load(tmp_path / "copy")
    images = _images(4)
    np.testing.assert_array_equal(copy.encode(images), model.encode(images))
    assert copy.fingerprint() == model.fingerprint()
    other = dense_pair(tmp_path / "other", rng=7)
    assert OnnxBackend.wrap(other["encoder"], other["decoder"], tmp_path / "m3").fingerprint() != model.fingerprint()
    # damaged files are refused by the recorded fingerprint
    (tmp_path / "copy" / "decoder.onnx").write_bytes((tmp_path / "m3" / "decoder.onnx").read_bytes())
    with pytest.raises(BackendError, match="do not match the recorded fingerprint"):
        OnnxBackend.load(tmp_path / "copy")


def test_providers_default_to_cpu_fallback_and_can_be_overridden(monkeypatch):
    chosen = choose_providers()
    assert chosen[-1] == "CPUExecutionProvider" and len(chosen) <= 2
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match="providers must be among the available ones"):
        choose_providers(["NoSuchExecutionProvider"])
    monkeypatch.setenv("LATENTSCOPE_ONNX_PROVIDERS", "CPUExecutionProvider")
    assert choose_providers() == ["CPUExecutionProvider"]


def test_bad_inputs_are_one_line_errors(tmp_path):
    pair = dense_pair(tmp_path / "src", rng=8)
    model = OnnxBackend.wrap(pair["encoder"], pair["decoder"], tmp_path / "m")
    with pytest.raises(InvalidParameterError, match=r"images must have shape \(n, 16, 16, 3\)"):
        model.encode(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(InvalidParameterError, match=r"z must have shape \(n, 8\)"):
        model.decode(np.zeros((2, 3)))
    with pytest.raises(InvalidParameterError, match="range must be one of"):
        check_range("0,255")
    with pytest.raises(BackendError, match="does not train"):
        OnnxBackend.train("synthetic:10", tmp_path / "t")
    with pytest.raises(BackendError, match="not an onnx model directory"):
        OnnxBackend.load(tmp_path / "src")
    with pytest.raises(BackendError, match="its config.json names no backend; name it with --backend"):
        load_model(tmp_path / "src")
    with pytest.raises(BackendError, match="not a linear model directory"):
        load_model(tmp_path / "m", "linear")


def test_encode_to_store_records_provenance(tmp_path):
    pair = dense_pair(tmp_path / "src", rng=9)
    model = OnnxBackend.wrap(pair["encoder"], pair["decoder"], tmp_path / "m")
    source = SyntheticFaces(50, image_size=16, seed=1)
    encode_to_store(model, source, tmp_path / "z.h5", batch_size=16)
    with open_store(tmp_path / "z.h5") as store:
        assert store.provenance["backend"] == "onnx"
        assert store.provenance["model_fingerprint"] == model.fingerprint()
        np.testing.assert_allclose(store.read(), model.encode(source.read(0, 50).images), atol=1e-6)


N_ITEMS = 2000


def _encode_cmd(model_dir, store):
    # no --backend: the model directory's config names it
    return [sys.executable, "-m", "latentscope", "encode", "--model", str(model_dir), "--data", f"synthetic:{N_ITEMS}",
            "--out", str(store), "--batch-size", "20", "--commit-rows", "20", "--no-progress"]


def _rows(path) -> int:
    try:
        with open_store(path) as store:
            return store.n_rows
    except StoreError:
        return 0


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_encode_killed_and_resumed_equals_uninterrupted(tmp_path):
    pair = dense_pair(tmp_path / "src", image_size=24, layout="nchw", range="-1,1", rng=10)
    OnnxBackend.wrap(pair["encoder"], pair["decoder"], tmp_path / "model", range="-1,1")
    env = {**os.environ, "LATENTSCOPE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "LATENTSCOPE_ONNX_THREADS": "1"}
    full = tmp_path / "full.h5"
    subprocess.run(_encode_cmd(tmp_path / "model", full), env=env, check=True, capture_output=True, timeout=300)
    part = tmp_path / "part.h5"
    proc = subprocess.Popen(_encode_cmd(tmp_path / "model", part), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if part.exists() and _rows(part) >= N_ITEMS // 10:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    killed_at = _rows(part)
    assert 0 < killed_at < N_ITEMS, killed_at
    resumed = subprocess.run(_encode_cmd(tmp_path / "model", part), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    with open_store(full) as a, open_store(part) as b:
        assert b.n_rows == N_ITEMS
        np.testing.assert_array_equal(b.read_ids(), a.read_ids())
        np.testing.assert_array_equal(b.read(), a.read())
        assert b.provenance["backend"] == "onnx"
