"""``latentscope wrap`` on ONNX pairs, then encode / sample / evaluate without --backend."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from latentscope.backends._onnx_build import dense_pair  # noqa: E402
from latentscope.cli import main  # noqa: E402
from latentscope.store import open_store  # noqa: E402


def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_wrap_writes_a_model_dir_and_prints_the_round_trip_error(tmp_path, capsys):
    pair = dense_pair(tmp_path / "src", layout="nchw", range="-1,1", rng=1)
    code, out, err = _run(["wrap", "--encoder", pair["encoder"], "--decoder", pair["decoder"], "--out", tmp_path / "m",
                           "--range", "-1,1"], capsys)
    assert code == 0, err
    assert "wrapped onnx model in" in out and "z_dim 8, images 16x16" in out
    rmse = float(out.split("RMSE ")[1].split(",")[0])
    assert 0 < rmse < 255
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (cfg["backend"], cfg["layout"], cfg["range"]) == ("onnx", "nchw", "-1,1")
    # an existing model directory needs --overwrite
    code, _, err = _run(["wrap", "--encoder", pair["encoder"], "--decoder", pair["decoder"], "--out", tmp_path / "m"], capsys)
    assert code == 1 and "already holds a model" in err


def test_wrap_rejects_pairs_that_do_not_fit_with_one_line_naming_both(tmp_path, capsys):
    a = dense_pair(tmp_path / "a", z_dim=8, rng=1)
    b = dense_pair(tmp_path / "b", z_dim=6, rng=1)
    small = dense_pair(tmp_path / "c", z_dim=8, image_size=8, rng=1)
    nchw = dense_pair(tmp_path / "d", z_dim=8, layout="nchw", rng=1)
    cases = [
        (a["encoder"], b["decoder"], [], "takes z of shape [6] per image, but encoder"),
        (a["encoder"], small["decoder"], [], "gives images of shape (8, 8, 3), but encoder"),
        (a["encoder"], nchw["decoder"], [], "gives images of shape (3, 16, 16), but encoder"),
        (a["encoder"], a["decoder"], ["--image-size", "32"], "takes images of 16x16; --image-size says 32x32"),
        (a["encoder"], a["decoder"], ["--layout", "nchw"], "which has 16 channels in layout nchw"),
        (a["encoder"], a["decoder"], ["--range", "0,255"], "range must be one of"),
        (a["encoder"], tmp_path / "missing.onnx", [], "decoder file"),
        (a["encoder"], tmp_path / "dec.keras", [], "must both be .onnx or both .keras files"),
    ]
    for i, (enc, dec, extra, message) in enumerate(cases):
        code, _, err = _run(["wrap", "--encoder", enc, "--decoder", dec, "--out", tmp_path / f"o{i}", *extra], capsys)
        assert code != 0, message
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert message in err, err
        if "but encoder" in message:
            assert str(enc) in err and str(dec) in err
        assert not (tmp_path / f"o{i}" / "config.json").exists()


@pytest.mark.slow
def test_after_wrap_everything_works_without_backend(tmp_path, capsys):
    pair = dense_pair(tmp_path / "src", image_size=16, z_dim=8, rng=2)
    model = tmp_path / "m"
    assert _run(["wrap", "--encoder", pair["encoder"], "--decoder", pair["decoder"], "--out", model], capsys)[0] == 0
    store = tmp_path / "z.h5"
    code, out, err = _run(["encode", "--model", model, "--data", "synthetic:400", "--out", store, "--no-progress"], capsys)
    assert code == 0, err
    with open_store(store) as zs:
        assert zs.n_rows == 400 and zs.provenance["backend"] == "onnx"
    code, _, err = _run(["sample", store, "--region", "pca-box", "-n", "16", "--model", model, "--out", tmp_path / "s",
                         "--no-progress"], capsys)
    assert code == 0, err
    from PIL import Image

    grid = np.asarray(Image.open(tmp_path / "s" / "grid.png").convert("RGB"))
    assert grid.std() > 1.0  # decoded images, not a blank canvas
    code, _, err = _run(["evaluate", store, "--model", model, "--out", tmp_path / "e", "--regions", "mvn,gmm", "-n", "60",
                         "--kid-subsets", "0", "--gmm-components", "2", "--no-progress"], capsys)
    assert code == 0, err
    assert (tmp_path / "e" / "metrics.md").is_file()
    code, _, err = _run(["filaments", store, "--model", model, "--out", tmp_path / "f", "--images", "3", "--no-columns",
                         "--no-progress"], capsys)
    assert code == 0, err
