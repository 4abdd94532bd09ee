"""The example scripts in examples/: each runs as a real subprocess on a small store.

One session-wide fixture writes a 3,000 x 16 store from an anisotropic, off-centre
multivariate normal, trains a tiny linear backend on synthetic faces and encodes them
into a second store; every ``examples/*.py`` (except ``demo.py``, tested elsewhere) is
found by glob, so a new example is tested without editing this file. Scripts that take
``--backend`` run with the model on the encoded store, the others on the normal one.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
#: Whole-study scripts with their own tests (test_demo.py, test_reproduce_series.py), not per-store examples.
STUDIES = ("demo.py", "reproduce_series.py")
EXAMPLES = sorted(p for p in EXAMPLES_DIR.glob("*.py") if p.name not in STUDIES)
Z_DIM = 16

#: The figures each known example must write (a new example must write at least one PNG).
EXPECTED = {
    "01_component_histograms": ["component_histograms.png", "component_summary.png"],
    "02_correlations": ["correlation_matrix.png", "pair_densities.png"],
    "03_radial_distributions": ["radii_vs_generators.png", "radial.png"],
    "04_pca": ["spectrum.png", "pc_histograms.png", "pc_pairs.png", "boxes.png"],
    "05_sampling_regions": ["landing_radial.png", "grids.png"],
    "06_paths_in_planes": ["paths.png", "path_profiles.png", "strips.png"],
}

# One BLAS thread per process: on a loaded 2-core machine threaded BLAS spins (the
# mixture fit of 05 is several times slower with it).
ENV = {**os.environ, "MPLBACKEND": "Agg", "LATENTSCOPE_NO_PROGRESS": "1", "OPENBLAS_NUM_THREADS": "1",
       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def example_data(tmp_path_factory):
    """(normal store, encoded store, model folder) shared by every example run."""
    from latentscope import LinearBackend, create_store, encode_to_store, open_source

    root = tmp_path_factory.mktemp("examples-data")
    rng = np.random.default_rng(0)
    axes, _ = np.linalg.qr(rng.normal(size=(Z_DIM, Z_DIM)))
    lam = 4.0 * np.exp(-np.arange(Z_DIM) / 3.0) + 0.05  # a few dominant axes
    mean = rng.normal(0.8, 0.4, Z_DIM)  # off-centre
    Z = mean + (rng.normal(size=(3000, Z_DIM)) * np.sqrt(lam)) @ axes.T
    store = root / "mvn.h5"
    with create_store(store, Z_DIM) as s:
        s.append(Z.astype(np.float32))
    faces = open_source("synthetic:200", image_size=(32, 32))
    model = LinearBackend.train(faces, root / "model", z_dim=Z_DIM)
    encoded = root / "encoded.h5"
    encode_to_store(model, faces, encoded)
    return store, encoded, root / "model"


def _run(script: Path, data: tuple[Path, Path, Path], out: Path) -> subprocess.CompletedProcess:
    """Run one example: on the encoded store with the model if it decodes, else on the normal store."""
    store, encoded, model = data
    cmd = [sys.executable, str(script), str(store), "--out", str(out), "--seed", "0"]
    if "--backend" in script.read_text():
        cmd[2] = str(encoded)
        cmd += ["--backend", "linear", "--model", str(model)]
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(cmd, cwd=out.parent, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def example_runs(request, example_data, tmp_path_factory):
    """Start the selected examples two at a time as soon as the first test needs one."""
    selected = sorted({item.callspec.params["script"] for item in request.session.items
                       if getattr(item, "originalname", "") == "test_example_runs_and_writes_figures"})
    root = tmp_path_factory.mktemp("examples-out")
    pool = ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1)))
    futures = {script: pool.submit(_run, script, example_data, root / script.stem / "out") for script in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _check_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as im:
        assert im.width >= 200 and im.height >= 60, f"{path.name}: only {im.size}"
        px = np.asarray(im.convert("RGB")).reshape(-1, 3)
    colours = np.unique(px[:: max(1, px.shape[0] // 200_000)], axis=0).shape[0]
    assert colours >= 16, f"{path.name}: nearly uniform ({colours} colours)"


def test_examples_found():
    # the glob sees the six series examples (and skips demo.py)
    names = {p.stem for p in EXAMPLES}
    assert set(EXPECTED) <= names
    assert "demo" not in names


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_follows_the_conventions(script):
    # title docstring, a STORE argument with --out and --seed, public API only
    tree = ast.parse(script.read_text())
    doc = ast.get_docstring(tree)
    assert doc and doc.startswith("Title:") and "Usage:" in doc, f"{script.name}: needs a keras-io title docstring"
    src = script.read_text()
    assert '"store"' in src and '"--out"' in src and '"--seed"' in src
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("latentscope"):
            private = [part for part in node.module.split(".") if part.startswith("_")]
            private += [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{script.name}: imports private {node.module}: {private}"


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_and_writes_figures(script, example_runs):
    # the script exits 0, prints a summary and writes non-trivial PNGs
    proc = example_runs[script].result()
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert len(proc.stdout.strip().splitlines()) >= 3, proc.stdout
    out = Path(proc.args[proc.args.index("--out") + 1])
    pngs = sorted(out.glob("*.png"))
    missing = set(EXPECTED.get(script.stem, [])) - {p.name for p in pngs}
    assert pngs and not missing, f"{script.name}: missing figures {sorted(missing)}; wrote {[p.name for p in pngs]}"
    for png in pngs:
        _check_png(png)
