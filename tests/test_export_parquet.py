"""Parquet export for Embedding Atlas: read back with pyarrow and checked against direct computations."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from latentscope.store import create_store, open_store

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _cloud(rng, n, d):
    """A non-Gaussian cloud: lognormal and t3 marginals mixed by a random rotation, two clusters."""
    heavy = rng.standard_t(3, size=(n, d))
    heavy[:, : d // 2] = rng.lognormal(0.0, 0.8, size=(n, d // 2))
    A = np.linalg.qr(rng.normal(size=(d, d)))[0] * np.linspace(3.0, 0.3, d)
    Z = heavy @ A
    Z[: n // 3] += 6.0
    return Z.astype(np.float32)


@pytest.fixture
def store(tmp_path, rng):
    n, d = 230, 6
    Z = _cloud(rng, n, d)
    path = tmp_path / "z.h5"
    with create_store(path, d, source="synthetic:230", chunk_rows=32) as s:
        s.append(Z, ids=np.arange(n) + 0, columns={
            "Smiling": np.where(rng.random(n) < 0.4, 1, -1).astype(np.int8),
            "filament_id": rng.integers(-1, 5, n).astype(np.int64),
            "density": rng.lognormal(size=n),
            "x": rng.normal(size=n),  # a reserved name: written as store_x
        })
    return path, Z


def _exact_knn(Z, k):
    D = np.sqrt(((Z[:, None, :].astype(np.float64) - Z[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(D, idx, axis=1)


def test_export_reads_back_with_pyarrow(store, tmp_path):
    from latentscope.analysis import PCAFrame
    from latentscope.export import export_parquet

    path, Z = store
    out = tmp_path / "cloud.parquet"
    # a small budget: many row groups, and the neighbour search over many data blocks
    stats = export_parquet(path, out, k=7, with_z=True, thumbnails=24, knn="exact", max_bytes=1 << 14)
    assert stats["rows"] == len(Z)
    f = pq.ParquetFile(out)
    assert f.metadata.num_row_groups > 1
    t = f.read()
    assert t.column_names[:5] == ["id", "Smiling", "density", "filament_id", "store_x"]  # the store's column order
    assert {"norm", "mahalanobis", "x", "y", "neighbors", "thumbnail", "z"} <= set(t.column_names)
    # row order and ids
    assert t["id"].to_pylist() == [str(i) for i in range(len(Z))]
    np.testing.assert_array_equal(np.stack(t["z"].to_numpy(zero_copy_only=False)), Z)
    with open_store(path) as s:
        for name in ("Smiling", "filament_id", "density"):
            np.testing.assert_array_equal(t[name].to_numpy(), s.read_column(name))
        np.testing.assert_array_equal(t["store_x"].to_numpy(), s.read_column("x"))
    Z64 = Z.astype(np.float64)
    np.testing.assert_allclose(t["norm"].to_numpy(), np.linalg.norm(Z64, axis=1), rtol=1e-12)
    # layout == the PCA projection, Mahalanobis == the frame's radius
    pca = PCAFrame().fit(Z64)
    T = pca.transform(Z64)
    np.testing.assert_allclose(t["x"].to_numpy(), T[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t["y"].to_numpy(), T[:, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t["mahalanobis"].to_numpy(), pca.mahalanobis(Z64), rtol=1e-8)
    # neighbours == exact kNN, in Embedding Atlas's form
    nb = t["neighbors"].to_pylist()
    assert set(nb[0]) == {"ids", "distances"}
    idx, dist = _exact_knn(Z, 7)
    got_i = np.array([r["ids"] for r in nb])
    got_d = np.array([r["distances"] for r in nb])
    np.testing.assert_allclose(got_d, dist, rtol=1e-6)
    assert (got_i == idx).mean() > 0.99  # equal up to ties of distance
    assert not (got_i == np.arange(len(Z))[:, None]).any()
    # thumbnails: decodable PNGs of the stated size, the source images
    from PIL import Image

    from latentscope.data import open_source

    src = open_source("synthetic:230", image_size=(24, 24)).read(0, 5)
    for i, item in enumerate(t["thumbnail"].to_pylist()[:5]):
        im = Image.open(io.BytesIO(item["bytes"]))
        assert im.format == "PNG" and im.size == (24, 24)
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), src.images[i])


def test_export_adds_sample_stores_with_a_kind_column(store, tmp_path, rng):
    from latentscope.export import export_parquet

    path, Z = store
    S = _cloud(rng, 40, Z.shape[1])
    spath = tmp_path / "samples.h5"
    with create_store(spath, Z.shape[1], source="sampler:ellipse") as s:
        s.append(S, ids=[f"ellipse-{i}" for i in range(40)])
    out = tmp_path / "both.parquet"
    export_parquet(path, out, samples=[spath], k=5, knn="exact", max_bytes=1 << 14)
    t = pq.read_table(out)
    assert t.num_rows == len(Z) + 40
    kinds = t["kind"].to_pylist()
    assert kinds == ["data"] * len(Z) + ["ellipse"] * 40
    assert t["filament_id"].to_pylist()[len(Z):] == [None] * 40
    idx, dist = _exact_knn(np.concatenate([Z, S]), 5)
    got_d = np.array([r["distances"] for r in t["neighbors"].to_pylist()])
    np.testing.assert_allclose(got_d, dist, rtol=1e-6)


def test_export_cli_parquet_and_npz(store, tmp_path):
    from typer.testing import CliRunner

    from latentscope.cli import app

    path, Z = store
    r = CliRunner().invoke(app, ["export", str(path), "--out", str(tmp_path / "a.parquet"), "-k", "3", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert pq.read_table(tmp_path / "a.parquet").num_rows == len(Z)
    r = CliRunner().invoke(app, ["export", str(path), "--out", str(tmp_path / "a.npz"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "a.npz")["z"].shape == Z.shape
    r = CliRunner().invoke(app, ["export", str(path), "--out", str(tmp_path / "a.npz"), "-k", "3", "--no-progress"])
    assert r.exit_code != 0 and "-k only work with a .parquet output" in str(r.exception) + r.output


def test_explore_prints_the_atlas_command(store, tmp_path):
    from typer.testing import CliRunner

    from latentscope.cli import app

    path, _ = store
    out = tmp_path / "e.parquet"
    r = CliRunner().invoke(app, ["explore", str(path), "--out", str(out), "--no-start", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert out.exists()
    assert f"embedding-atlas {out} --x x --y y --neighbors neighbors" in r.output


def test_export_errors_are_one_line(store, tmp_path):
    from latentscope.exceptions import InvalidParameterError
    from latentscope.export import export_parquet

    path, _ = store
    with pytest.raises(InvalidParameterError, match="must end in .parquet"):
        export_parquet(path, tmp_path / "a.csv")
    with pytest.raises(InvalidParameterError, match="k must be an integer >= 0"):
        export_parquet(path, tmp_path / "a.parquet", k=-1)
    with pytest.raises(InvalidParameterError, match="--backend and --model go together"):
        export_parquet(path, tmp_path / "a.parquet", thumbnails=8, backend="linear")


@pytest.mark.slow
def test_export_umap_layout_is_the_seeded_euclidean_umap(store, tmp_path):
    umap = pytest.importorskip("umap")
    from latentscope.export import export_parquet

    path, Z = store
    out = tmp_path / "u.parquet"
    export_parquet(path, out, k=0, layout="umap", rng=3, max_bytes=1 << 14)
    t = pq.read_table(out)
    got = np.column_stack([t["x"].to_numpy(), t["y"].to_numpy()])
    # the same map by hand: every row fits (the default 20,000 exceed 230), same seed stream
    gen = np.random.default_rng(3)
    rows = np.sort(gen.choice(len(Z), size=len(Z), replace=False))
    ref = umap.UMAP(n_components=2, metric="euclidean", random_state=int(gen.integers(2**31 - 1)), n_neighbors=15)
    ref.fit(Z[rows])
    np.testing.assert_allclose(got, ref.embedding_.astype(np.float32), rtol=1e-5, atol=1e-5)
    # with a subsample, the other rows are placed by transform, near their fitted neighbours
    export_parquet(path, out, k=0, layout="umap", rng=3, umap_fit_rows=150, overwrite=True)
    sub = pq.read_table(out)
    assert np.isfinite(sub["x"].to_numpy()).all() and np.isfinite(sub["y"].to_numpy()).all()
    # the shifted third of the cloud stays apart from the rest on the map
    got = np.column_stack([sub["x"].to_numpy(), sub["y"].to_numpy()])
    lab = np.arange(len(Z)) < len(Z) // 3
    d = ((got[:, None] - got[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (lab[d.argmin(1)] == lab).mean() > 0.95


def test_thumbnails_are_decoded_when_the_source_is_not_readable(tmp_path):
    from PIL import Image

    from latentscope.backends import get_backend
    from latentscope.data import open_source
    from latentscope.exceptions import InvalidParameterError
    from latentscope.export import export_parquet

    src = open_source("synthetic:120", image_size=(16, 16))
    model = get_backend("linear").train(src, tmp_path / "model", z_dim=6)
    Z = model.encode(src.read(0, 120).images)
    path = tmp_path / "z.h5"
    with create_store(path, 6, source=f"folder:{tmp_path / 'gone'}") as s:
        s.append(Z)
    with pytest.raises(InvalidParameterError, match="--thumbnails needs a readable image source"):
        export_parquet(path, tmp_path / "a.parquet", k=2, thumbnails=16)
    export_parquet(path, tmp_path / "a.parquet", k=2, thumbnails=16, backend="linear", model=tmp_path / "model")
    t = pq.read_table(tmp_path / "a.parquet")
    want = model.decode(Z)
    for i in (0, 57, 119):
        got = np.asarray(Image.open(io.BytesIO(t["thumbnail"][i].as_py()["bytes"])).convert("RGB"))
        np.testing.assert_array_equal(got, want[i])


@pytest.mark.slow
def test_embedding_atlas_loads_the_file(store, tmp_path):
    # Embedding Atlas's own CLI reads the file and exports its static application from it
    # (skipped where it is not installed: it pulls PyTorch and sentence-transformers)
    import shutil
    import subprocess
    import zipfile

    from latentscope.export import atlas_command, export_parquet

    exe = shutil.which("embedding-atlas")
    if exe is None:
        pytest.skip("embedding-atlas is not installed")
    path, Z = store
    out = tmp_path / "cloud.parquet"
    export_parquet(path, out, k=5, thumbnails=16)
    app = tmp_path / "atlas.zip"
    cmd = atlas_command(out)  # with --image it would also rank the points by PageRank, which needs PyTorch
    proc = subprocess.run([exe, *cmd[1:], "--export-application", str(app)], capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with zipfile.ZipFile(app) as zf:
        names = zf.namelist()
        assert "data/dataset.parquet" in names and "index.html" in names
        meta = json.loads(zf.read("data/metadata.json"))
        back = pq.read_table(io.BytesIO(zf.read("data/dataset.parquet")))
    assert meta["props"]["data"]["neighbors"] == "neighbors" and meta["props"]["data"]["projection"] == {"x": "x", "y": "y"}
    assert back["neighbors"].to_pylist() == pq.read_table(out)["neighbors"].to_pylist()
