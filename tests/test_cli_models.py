"""Tests of `latentscope train` and `latentscope encode` with the linear backend."""

from __future__ import annotations

import json

import pytest

from latentscope.backends import LinearBackend
from latentscope.cli import main
from latentscope.store import open_store


@pytest.fixture
def trained(tmp_path, capsys):
    model_dir = tmp_path / "model"
    code = main(["train", "--backend", "linear", "--data", "synthetic:80", "--out", str(model_dir), "--z-dim", "6",
                 "--image-size", "16", "--seed", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    return model_dir


def test_cli_train_linear_fits_and_saves(trained, capsys):
    # train --backend linear fits the PCA and saves a loadable model
    model = LinearBackend.load(trained)
    assert model.z_dim == 6 and model.image_shape == (16, 16, 3)
    assert json.loads((trained / "config.json").read_text())["source"] == "synthetic:80?seed=0"


def test_cli_train_refuses_existing_model_unless_overwrite(trained, capsys):
    # a second train into the same folder is a one-line error; --overwrite replaces it
    capsys.readouterr()
    args = ["train", "--backend", "linear", "--data", "synthetic:30", "--out", str(trained), "--image-size", "8", "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "already holds a model" in err and err.count("\n") == 1
    assert main([*args, "--overwrite"]) == 0
    assert LinearBackend.load(trained).image_shape == (8, 8, 3)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--epochs", "3"], "backend 'linear' does not support --epochs"),
        (["--preset", "big", "--filters", "8,8"], "does not support --preset, --filters"),
        (["--resume"], "does not support --resume"),
        (["--image-size", "0x5"], "image_size must be"),
        (["--filters", "8,a"], "--filters must be positive integers"),
    ],
)
def test_cli_train_bad_options_are_one_line_errors(tmp_path, capsys, extra, match):
    # options a backend does not take, and malformed values, exit 1 with one line
    code = main(["train", "--backend", "linear", "--data", "synthetic:10", "--out", str(tmp_path / "m"), *extra])
    err = capsys.readouterr().err
    assert code == 1 and match in err and err.count("\n") == 1, err


def test_cli_unknown_backend_and_bad_data(tmp_path, capsys):
    # unknown backends and data specs exit 1 with one line
    assert main(["train", "--backend", "nope", "--data", "synthetic:10", "--out", str(tmp_path / "m")]) == 1
    assert "no latentscope backend named 'nope'" in capsys.readouterr().err
    assert main(["train", "--backend", "linear", "--data", "webcam:0", "--out", str(tmp_path / "m")]) == 1
    assert "spec must be 'celeba:PATH'" in capsys.readouterr().err


def test_cli_encode_writes_store_and_resumes(trained, tmp_path, capsys):
    # encode writes a store with ids, columns and provenance; rerunning it resumes (no new rows)
    store = tmp_path / "z.h5"
    args = ["encode", "--backend", "linear", "--model", str(trained), "--data", "synthetic:50", "--out", str(store),
            "--batch-size", "16", "--no-progress"]
    assert main(args) == 0
    assert f"wrote {store}: 50 rows (z_dim 6)" in capsys.readouterr().out
    with open_store(store) as s:
        assert s.shape == (50, 6) and "smile" in s.column_names
        assert s.provenance["model_fingerprint"] == LinearBackend.load(trained).fingerprint()
    assert main(args) == 0
    assert "resumed" in capsys.readouterr().out
    with open_store(store) as s:
        assert s.n_rows == 50


def test_cli_encode_infers_backend_from_model(trained, tmp_path, capsys):
    # without --backend the model's config.json names it
    assert main(["encode", "--model", str(trained), "--data", "synthetic:5", "--out", str(tmp_path / "z.h5"), "--no-progress"]) == 0


def test_cli_encode_with_another_model_is_one_line_error(trained, tmp_path, capsys):
    # appending to a store with a different model fails with one line, naming the remedy
    store = tmp_path / "z.h5"
    base = ["encode", "--backend", "linear", "--data", "synthetic:20", "--out", str(store), "--no-progress"]
    assert main([*base, "--model", str(trained)]) == 0
    other = tmp_path / "other"
    assert main(["train", "--backend", "linear", "--data", "synthetic:40", "--out", str(other), "--z-dim", "6",
                 "--image-size", "16", "--seed", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main([*base, "--model", str(other)]) == 1
    err = capsys.readouterr().err
    assert "written by model" in err and "--overwrite" in err and err.count("\n") == 1
    assert main([*base, "--model", str(other), "--overwrite"]) == 0


def test_cli_encode_missing_model(tmp_path, capsys):
    # a folder without a model is a one-line error
    assert main(["encode", "--backend", "linear", "--model", str(tmp_path), "--data", "synthetic:5",
                 "--out", str(tmp_path / "z.h5")]) == 1
    assert "not a linear model directory" in capsys.readouterr().err


def test_cli_encode_progress_reports_rate(trained, tmp_path, capsys, monkeypatch):
    # the progress bar on stderr shows images per second
    monkeypatch.delenv("LATENTSCOPE_NO_PROGRESS", raising=False)
    assert main(["encode", "--model", str(trained), "--data", "synthetic:40", "--out", str(tmp_path / "z.h5"),
                 "--batch-size", "8"]) == 0
    assert "img/s" in capsys.readouterr().err
