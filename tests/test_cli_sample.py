"""``latentscope sample`` and ``latentscope compare-samplers``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from latentscope import create_store, open_store
from latentscope.cli import main
from latentscope.samplers import load_sampler


def _cloud(n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return 1.5 + (rng.normal(size=(n, d)) * np.geomspace(2.0, 0.2, d)) @ q.T


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "z.h5"
    with create_store(path, 8, backend="test", source="synthetic") as s:
        s.append(_cloud())
    return path


def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_sample_writes_samples_landing_and_a_repeatable_run(store_path, tmp_path, capsys):
    out = tmp_path / "mvn"
    code, stdout, err = _run(["sample", store_path, "--region", "mvn", "-n", 20, "--seed", 3, "--out", out,
                              "--no-progress", "--n-reference", 200], capsys)
    assert code == 0, err
    assert "mvn: 20 z-points" in stdout and "in-fragment" in stdout and "(held-out data" in stdout
    with open_store(out / "samples.h5") as s:
        Z = s.read()
        prov = s.provenance
    assert Z.shape == (20, 8)
    assert prov["sampler"]["sampler"] == "mvn" and prov["seed"] == 3 and prov["backend"] == "test"
    landing = json.loads((out / "landing.json").read_text())
    assert 0.0 <= landing["in_fragment_rate"] <= 1.0 and landing["knn"].startswith("exact")
    assert (out / "landing.png").stat().st_size > 10_000
    # the saved sampler and the documented seed scheme repeat the run
    sample_rng = np.random.default_rng(np.random.SeedSequence(3).spawn(3)[1])
    np.testing.assert_array_equal(load_sampler(out / "sampler").sample(20, rng=sample_rng), Z)
    # same seed -> same samples; existing outputs need --overwrite
    code, _, err = _run(["sample", store_path, "--region", "mvn", "-n", 20, "--seed", 3, "--out", out, "--no-progress"], capsys)
    assert code == 1 and err.startswith("error:") and "pass --overwrite" in err and err.count("\n") == 1
    code, _, err = _run(["sample", store_path, "--region", "mvn", "-n", 20, "--seed", 3, "--out", out,
                         "--no-progress", "--overwrite", "--n-reference", 200], capsys)
    assert code == 0, err
    with open_store(out / "samples.h5") as s:
        np.testing.assert_array_equal(s.read(), Z)


def test_cli_sample_region_options(store_path, tmp_path, capsys):
    # region options reach the sampler
    out = tmp_path / "path"
    code, _, err = _run(["sample", store_path, "--region", "path", "--mode", "pc-grid", "--plane", "0,2", "--extent", 1.5,
                         "-n", 9, "--out", out, "--no-progress", "--n-reference", 100], capsys)
    assert code == 0, err
    saved = json.loads((out / "sampler.json").read_text())
    assert saved["params"]["plane"] == [0, 2] and saved["params"]["extent"] == 1.5
    out2 = tmp_path / "cube"
    code, _, err = _run(["sample", store_path, "--region", "cube", "--halfwidth", "match", "--center", "mean",
                         "-n", 5, "--out", out2, "--no-progress", "--n-reference", 100], capsys)
    assert code == 0, err
    assert json.loads((out2 / "sampler.json").read_text())["fitted"]["halfwidth_"] > 0
    out3 = tmp_path / "pcabox"
    code, _, err = _run(["sample", store_path, "--region", "pca-box", "--quantile", 0.05, "--shrink", 0.8,
                         "--components", 3, "-n", 5, "--out", out3, "--no-progress", "--n-reference", 100], capsys)
    assert code == 0, err
    params = json.loads((out3 / "sampler.json").read_text())["params"]
    assert params == {"quantiles": [0.05, 0.95], "shrink": 0.8, "n_components": 3}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--region", "mvn", "--halfwidth", "2"], "error: --halfwidth does not apply to region 'mvn' (it applies to: cube)."),
        (["--region", "cube", "--halfwidth", "0"], "error: CubeSampler: halfwidth must be a number > 0 or 'match'; got 0.0."),
        (["--region", "cube", "--halfwidth", "-1"], "error: CubeSampler: halfwidth must be a number > 0 or 'match'; got -1.0."),
        (["--region", "cube", "--halfwidth", "wide"], "error: --halfwidth must be a number or 'match'; got 'wide'."),
        (["--region", "path", "--plane", "2,8"], "error: PathSampler: plane indices must lie in [0, z_dim=8); got 8."),
        (["--region", "path", "--plane", "2"], "error: --plane must be two integers 'i,j'; got '2'."),
        (["--region", "pca-gauss", "--components", "9"], "error: PCAGaussSampler: n_components must be an integer in [1, z_dim=8]; got 9."),
        (["--region", "box", "--quantile", "0.7"], "error: --quantile must lie in [0, 0.5)"),
        (["--region", "spiral"], "error: --region must be one of: ball, box, cube"),
        (["--region", "ellipse", "--pairs", "chain", "--level", "0.1"],
         "error: EllipseSampler: rejection sampling accepted"),
        (["--region", "mvn", "--backend", "linear"], "error: --backend and --model go together"),
    ],
)
def test_cli_sample_bad_input_gives_one_line(store_path, tmp_path, capsys, args, message):
    code, _, err = _run(["sample", store_path, "-n", 10, "--out", tmp_path / "o", "--no-progress", *args], capsys)
    assert code == 1
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "o" / "samples.h5").exists()


def test_cli_rejection_error_gives_the_observed_rate(store_path, tmp_path, capsys):
    code, _, err = _run(["sample", store_path, "--region", "ellipse", "--pairs", "chain", "--level", "0.1", "-n", 10,
                         "--out", tmp_path / "o", "--no-progress"], capsys)
    assert code == 1 and "(rate " in err and "below min_acceptance=0.001" in err


def test_cli_compare_samplers_writes_table_and_figure(store_path, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, err = _run(["compare-samplers", store_path, "--regions", "cube,normal,gauss,mvn,pca-box,ellipse",
                              "-n", 50, "--out", out, "--no-progress", "--n-reference", 200], capsys)
    assert code == 0, err
    assert "in-fragment rates (held-out data " in stdout and "): cube " in stdout
    md = (out / "landing.md").read_text()
    assert "| region | in-fragment |" in md and "| ellipse |" in md and "exact" in md
    rows = list(csv.DictReader((out / "landing.csv").open()))
    assert [r["name"] for r in rows] == ["cube", "normal", "gauss", "mvn", "pca-box", "ellipse"]
    assert all(0.0 <= float(r["in_fragment_rate"]) <= 1.0 for r in rows)
    data = json.loads((out / "landing.json").read_text())
    assert len(data["reports"]) == 6 and "halfwidth_=" in data["parameters"]["cube"]
    assert (out / "radial.png").stat().st_size > 10_000
    with open_store(out / "ellipse" / "samples.h5") as s:
        assert s.shape == (50, 8)
    code, _, err = _run(["compare-samplers", store_path, "--regions", "cube,moon", "--out", out, "--no-progress"], capsys)
    assert code == 1 and err.startswith("error: --regions must list regions from:") and err.count("\n") == 1


# -- with the linear backend (written last: it trains a small model) -------------------------


@pytest.fixture(scope="module")
def linear_model(tmp_path_factory):
    """A linear backend trained on 200 synthetic 32x32 faces, and a store of their z-points."""
    from latentscope.backends import get_backend
    from latentscope.data import open_source

    root = tmp_path_factory.mktemp("linear")
    src = open_source("synthetic:200", image_size=(32, 32))
    model = get_backend("linear").train(src, root / "model", z_dim=12)
    images = np.concatenate([b.images for b in src.iter_batches(100)])
    with create_store(root / "z.h5", model.z_dim, backend="linear", model_fingerprint=model.fingerprint()) as s:
        s.append(model.encode(images))
    return root / "model", root / "z.h5"


@pytest.mark.slow
def test_cli_sample_decodes_an_image_grid(linear_model, tmp_path, capsys):
    # pca-box samples decoded by the linear backend: PNG files and one grid that is not blank
    from PIL import Image

    model, store = linear_model
    out = tmp_path / "faces"
    code, stdout, err = _run(["sample", store, "--region", "pca-box", "-n", 16, "--backend", "linear", "--model", model,
                              "--out", out, "--no-progress", "--n-reference", 100], capsys)
    assert code == 0, err
    assert "images ->" in stdout
    assert len(list((out / "images").glob("*.png"))) == 16
    grid = np.asarray(Image.open(out / "grid.png").convert("RGB"))
    assert grid.shape == (4 * 32 + 5 * 2, 4 * 32 + 5 * 2, 3)  # 4 x 4 tiles of 32 px, 2 px padding
    tiles = grid[2:-2, 2:-2].astype(float)
    assert tiles.std() > 10.0 and len(np.unique(grid.reshape(-1, 3), axis=0)) > 100
    one = np.asarray(Image.open(out / "images" / "sample_00000.png"))
    assert one.shape == (32, 32, 3)


@pytest.mark.slow
def test_cli_compare_samplers_grids_and_model_mismatch(linear_model, store_path, tmp_path, capsys):
    model, store = linear_model
    out = tmp_path / "cmp"
    code, _, err = _run(["compare-samplers", store, "--regions", "normal,mvn,ellipse", "-n", 8, "--backend", "linear",
                         "--model", model, "--out", out, "--no-progress", "--n-reference", 100], capsys)
    assert code == 0, err
    assert (out / "grids.png").stat().st_size > 10_000 and (out / "mvn" / "grid.png").exists()
    # the model's z_dim (12) differs from this store's (8): one line, nothing written
    code, _, err = _run(["sample", store_path, "--region", "mvn", "-n", 4, "--backend", "linear", "--model", model,
                         "--out", tmp_path / "x", "--no-progress"], capsys)
    assert code == 1
    assert err == "error: the model's z_dim (12) differs from the store's (8); use a model trained for this store.\n"
