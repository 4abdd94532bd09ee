"""``latentscope evaluate``: the region comparison from the shell."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from latentscope import create_store
from latentscope.cli import main
from latentscope.cli._cmd_evaluate import grid_filename


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """A linear model on 200 synthetic 32x32 faces and the store encoding them (source recorded)."""
    from latentscope.backends import encode_to_store, get_backend
    from latentscope.data import open_source

    root = tmp_path_factory.mktemp("cli_evaluate")
    src = open_source("synthetic:200", image_size=(32, 32))
    model = get_backend("linear").train(src, root / "model", z_dim=12)
    encode_to_store(model, src, root / "z.h5")
    return root / "model", root / "z.h5"


def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _base(linear, out):
    model, store = linear
    return ["evaluate", store, "--backend", "linear", "--model", model, "--out", out, "--no-progress"]


@pytest.mark.slow
def test_cli_evaluate_writes_table_chart_and_grids(linear, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "ev"
    args = _base(linear, out) + ["--regions", "cube,mvn,gmm", "--gmm-components", "2", "-n", 100, "--seed", 1,
                                 "--kid-subsets", 2]
    code, stdout, err = _run(args, capsys)
    assert code == 0, err
    assert "real images: 100 from synthetic:200?seed=0" in stdout
    assert "beat gmm (lower FD latent, higher precision and recall):" in stdout
    md = (out / "metrics.md").read_text()
    assert md.startswith("| region |") and "| store-z (reference) |" in md
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["label"] for r in rows] == ["cube", "mvn", "gmm", "store-z"]
    fd = {r["label"]: float(r["fd_latent"]) for r in rows}
    assert fd["cube"] > 5 * fd["mvn"]  # the cube misses the data's region; the fitted normal does not
    data = json.loads((out / "metrics.json").read_text())
    assert data["command"]["gmm_components"] == 2 and data["rows"][2]["options"] == {"n_components": 2}
    assert data["best"]["fd_latent"] != "cube" and data["real_kind"] == "images"
    chart = Image.open(out / "chart.png")
    assert chart.size[0] > 600 and chart.size[1] > 150
    for label in ("cube", "mvn", "gmm", "store-z"):
        grid = np.asarray(Image.open(out / "grids" / grid_filename(label)).convert("RGB"))
        assert grid.shape == (8 * 32 + 9 * 2, 8 * 32 + 9 * 2, 3)  # 8 x 8 tiles of 32 px, 2 px padding
    # a second run refuses to overwrite, then replaces the outputs with --overwrite
    code, _, err = _run(args, capsys)
    assert code == 1 and err.startswith("error: ") and "pass --overwrite" in err and err.count("\n") == 1
    code, _, err = _run(args[:-2] + ["--kid-subsets", 0, "--no-reference", "--grid", 2, "--overwrite"], capsys)
    assert code == 0, err
    assert [r["label"] for r in csv.DictReader((out / "metrics.csv").open())] == ["cube", "mvn", "gmm"]
    assert not (out / "grids" / "store-z.png").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--regions", "cube,moon"], "error: evaluate_regions: unknown region 'moon'; choose from: "),
        (["--regions", "mvn:level=0.9"], "error: make_sampler: option 'level' does not apply to region 'mvn'"),
        (["--regions", "mvn,mvn"], "error: evaluate_regions: region 'mvn' is listed twice."),
        (["--regions", "ellipse:level"], "error: region spec 'ellipse:level': options must be KEY=VALUE"),
        (["--data", "nosuch:1"], "error: "),
    ],
)
def test_cli_evaluate_bad_input_gives_one_line(linear, tmp_path, capsys, extra, message):
    code, _, err = _run(_base(linear, tmp_path / "x") + extra + ["-n", 20], capsys)
    assert code == 1 and err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "x" / "metrics.md").exists()


def test_cli_evaluate_model_and_store_must_agree(linear, tmp_path, capsys):
    model, _ = linear
    other = tmp_path / "z8.h5"
    with create_store(other, 8, backend="linear") as s:
        s.append(np.zeros((30, 8), dtype=np.float32))
    code, _, err = _run(["evaluate", other, "--backend", "linear", "--model", model, "--out", tmp_path / "x",
                         "--regions", "mvn", "-n", 20, "--no-progress"], capsys)
    assert code == 1
    assert err == ("error: the model's z_dim (12) differs from the store's (8); "
                   "use the model the store was encoded with.\n")


def test_grid_filename_is_safe():
    assert grid_filename("ellipse:level=0.9") == "ellipse_level-0.9.png"
    assert grid_filename("pca-box:quantiles=[0.02,0.98]") == "pca-box_quantiles-_0.02_0.98.png"
