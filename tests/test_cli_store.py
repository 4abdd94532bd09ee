"""``latentscope import``, ``export`` and ``info``."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from latentscope.cli import main
from latentscope.store import create_store, open_store


@pytest.fixture(autouse=True)
def _progress_on(monkeypatch):
    monkeypatch.delenv("LATENTSCOPE_NO_PROGRESS", raising=False)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@settings(max_examples=8, deadline=None)
@example(n=0, z_dim=1, ids_kind="none", with_columns=True, batch_rows=1, seed=0)  # empty, yet columns survive
@example(n=0, z_dim=1, ids_kind="str", with_columns=False, batch_rows=1, seed=0)  # empty ids: float64 in, int64 out
@given(
    n=st.integers(0, 50),
    z_dim=st.integers(1, 6),
    ids_kind=st.sampled_from(["none", "int", "str"]),
    with_columns=st.booleans(),
    batch_rows=st.integers(1, 64),
    seed=st.integers(0, 2**32 - 1),
)
def test_cli_import_export_round_trip(n, z_dim, ids_kind, with_columns, batch_rows, seed):
    rng = np.random.default_rng(seed)
    arrays = {"z": rng.standard_normal((n, z_dim)).astype(np.float32)}
    if ids_kind == "int":
        arrays["ids"] = rng.permutation(n).astype(np.int64) * 3
    elif ids_kind == "str":
        arrays["ids"] = np.array([f"img-{i}-é" for i in range(n)])
    if with_columns:
        arrays["age"] = rng.integers(0, 90, n)
        arrays["smiling"] = rng.random(n) > 0.5
        arrays["emb"] = rng.standard_normal((n, 2))
        arrays["name"] = np.array([f"p{i}" * (i % 4) for i in range(n)])
    with tempfile.TemporaryDirectory() as tmp:
        src, store, out = Path(tmp) / "in.npz", Path(tmp) / "z.h5", Path(tmp) / "out.npz"
        np.savez(src, **arrays)
        assert main(["import", str(src), "--out", str(store), "--batch-rows", str(batch_rows), "--no-progress"]) == 0
        assert main(["export", str(store), "--out", str(out), "--no-progress"]) == 0
        with np.load(out, allow_pickle=False) as got:
            assert set(got.files) == set(arrays) | {"ids"}
            for key, want in arrays.items():
                assert got[key].shape == want.shape
                np.testing.assert_array_equal(got[key], want)
                if n or key != "ids":  # an empty batch says nothing about the kind of ids: int64
                    assert got[key].dtype.kind == want.dtype.kind
            if ids_kind == "none":
                np.testing.assert_array_equal(got["ids"], np.arange(n))
        again, out2 = Path(tmp) / "z2.h5", Path(tmp) / "out2.npz"
        assert main(["import", str(out), "--out", str(again), "--no-progress"]) == 0
        assert main(["export", str(again), "--out", str(out2), "--no-progress"]) == 0
        assert out.read_bytes() == out2.read_bytes()


def test_cli_import_npy_and_hdf5_dataset(tmp_path, capsys, rng):
    z = rng.standard_normal((30, 4)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    code, out, err = _run(capsys, "import", tmp_path / "z.npy", "--out", tmp_path / "a.h5", "--backend", "mine",
                          "--model-fingerprint", "f00", "--no-progress")
    assert code == 0 and "wrote 30 rows (z_dim 4)" in out and err == ""
    with open_store(tmp_path / "a.h5") as s:
        np.testing.assert_array_equal(s.read(), z)
        assert s.provenance["backend"] == "mine" and s.provenance["model_fingerprint"] == "f00"
        assert s.provenance["source"].endswith("z.npy")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["enc/latents"] = z.astype(np.float64)
        f["enc/names"] = np.array([f"n{i}" for i in range(30)], dtype=h5py.string_dtype())
        f["enc/label"] = np.arange(30) % 2
        f["other"] = np.zeros((3, 3))
    (tmp_path / "ids.txt").write_text("".join(f"t{i}\n" for i in range(30)))
    code, out, _ = _run(capsys, "import", f"{tmp_path / 'f.h5'}:enc/latents", "--out", tmp_path / "b.h5",
                        "--ids", "enc/names", "--column", "enc/label", "--no-progress")
    assert code == 0
    with open_store(tmp_path / "b.h5") as s:
        np.testing.assert_array_equal(s.read(), z)
        assert list(s.read_ids()[:2]) == ["n0", "n1"]
        np.testing.assert_array_equal(s.read_column("label"), np.arange(30) % 2)
    code, _, _ = _run(capsys, "import", f"{tmp_path / 'f.h5'}:enc/latents", "--out", tmp_path / "c.h5",
                      "--ids", tmp_path / "ids.txt", "--no-progress")
    assert code == 0
    with open_store(tmp_path / "c.h5") as s:
        assert list(s.read_ids()[-1:]) == ["t29"]
    code, _, err = _run(capsys, "import", tmp_path / "f.h5", "--out", tmp_path / "d.h5", "--no-progress")
    assert code == 1 and "name the array of z-points as FILE:KEY" in err


def test_cli_import_append_skip_and_copy(tmp_path, capsys, rng):
    z = rng.standard_normal((20, 3))
    z[4, 1] = np.nan
    np.save(tmp_path / "bad.npy", z)
    code, _, err = _run(capsys, "import", tmp_path / "bad.npy", "--out", tmp_path / "s.h5", "--no-progress")
    assert code == 1 and err.count("\n") == 1 and "row 4 of" in err and "--skip-nonfinite" in err
    assert not (tmp_path / "s.h5").exists() and list(tmp_path.iterdir()) == [tmp_path / "bad.npy"]
    code, out, _ = _run(capsys, "import", tmp_path / "bad.npy", "--out", tmp_path / "s.h5", "--skip-nonfinite",
                        "--no-progress")
    assert code == 0 and "skipped 1 non-finite rows" in out
    code, out, _ = _run(capsys, "import", tmp_path / "bad.npy", "--out", tmp_path / "s.h5", "--append",
                        "--skip-nonfinite", "--no-progress")
    assert code == 0 and out.startswith("appended 19 rows")
    with open_store(tmp_path / "s.h5") as s:
        assert s.n_rows == 38 and s.n_skipped_nonfinite == 2
        s_z = s.read()
    np.save(tmp_path / "wide.npy", np.zeros((2, 5)))
    code, _, err = _run(capsys, "import", tmp_path / "wide.npy", "--out", tmp_path / "s.h5", "--append", "--no-progress")
    assert code == 1 and "has z_dim 3; the array has 5" in err
    code, _, _ = _run(capsys, "import", tmp_path / "s.h5", "--out", tmp_path / "copy.h5", "--no-progress")
    assert code == 0
    with open_store(tmp_path / "copy.h5") as c:
        np.testing.assert_array_equal(c.read(), s_z)


def test_cli_import_of_a_store_copies_ids_columns_and_provenance(tmp_path, capsys, rng):
    # a z-point store as input is copied as a store (not read as a generic HDF5 file), even when empty
    z = rng.standard_normal((7, 3)).astype(np.float32)
    with create_store(tmp_path / "s.h5", 3, backend="mine", model_fingerprint="f00", source="src") as s:
        s.append(z, ids=[f"im{i}" for i in range(7)], columns={"age": np.arange(7), "emb": np.ones((7, 2))})
    with create_store(tmp_path / "empty.h5", 3) as s:
        s.append(np.zeros((0, 3)), columns={"age": np.zeros(0, np.int64)})
    for name, n in (("s.h5", 7), ("empty.h5", 0)):
        code, _, _ = _run(capsys, "import", tmp_path / name, "--out", tmp_path / f"copy-{name}", "--no-progress")
        assert code == 0
        with open_store(tmp_path / name) as a, open_store(tmp_path / f"copy-{name}") as b:
            assert b.n_rows == n and b.column_names == a.column_names
            np.testing.assert_array_equal(b.read(), a.read())
            assert list(b.read_ids()) == list(a.read_ids())
            for c in a.column_names:
                np.testing.assert_array_equal(b.read_column(c), a.read_column(c))
            assert b.provenance["backend"] == a.provenance["backend"]
            assert b.provenance["model_fingerprint"] == a.provenance["model_fingerprint"]


def test_cli_export_is_reproducible(tmp_path, capsys, monkeypatch, rng):
    with create_store(tmp_path / "z.h5", 2) as s:
        s.append(rng.standard_normal((5, 2)), ids=list("abcde"), columns={"c": np.arange(5)})
    assert _run(capsys, "export", tmp_path / "z.h5", "--out", tmp_path / "a.npz", "--no-progress")[0] == 0
    later = time.time() + 86400.0
    monkeypatch.setattr(time, "time", lambda: later)
    assert _run(capsys, "export", tmp_path / "z.h5", "--out", tmp_path / "b.npz", "--no-progress")[0] == 0
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_cli_info_text_and_json(tmp_path, capsys, rng):
    with create_store(tmp_path / "z.h5", 3, backend="keras-ae", model_fingerprint="abc123", source="celeba",
                      image_size="96x96") as s:
        s.append(rng.standard_normal((7, 3)), ids=[f"{i:06d}.jpg" for i in range(7)], columns={"male": [True] * 7})
    code, out, err = _run(capsys, "info", tmp_path / "z.h5")
    assert code == 0 and err == ""
    for text in ("rows", "7", "z_dim", "male (bool)", "keras-ae", "abc123", "celeba", "on disk", "image_size"):
        assert text in out
    code, out, _ = _run(capsys, "info", tmp_path / "z.h5", "--json")
    info = json.loads(out)
    assert info["rows"] == 7 and info["z_dim"] == 3 and info["ids"] == "str"
    assert info["columns"] == {"male": {"dtype": "bool", "shape": []}}
    assert info["provenance"]["model_fingerprint"] == "abc123" and info["size_bytes"] > 0


def test_cli_export_npy_and_overwrite(tmp_path, capsys, rng):
    z = rng.standard_normal((10, 2)).astype(np.float32)
    with create_store(tmp_path / "z.h5", 2) as s:
        s.append(z)
    code, out, err = _run(capsys, "export", tmp_path / "z.h5", "--out", tmp_path / "z.npy")
    assert code == 0 and "wrote 10 rows" in out and "export" in err  # progress bar on stderr
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), z)
    code, _, err = _run(capsys, "export", tmp_path / "z.h5", "--out", tmp_path / "z.npy", "--no-progress")
    assert code == 1 and "file exists; pass --overwrite" in err
    code, _, err = _run(capsys, "export", tmp_path / "z.h5", "--out", tmp_path / "z.npy", "--overwrite", "--no-progress")
    assert code == 0 and err == ""
    code, _, err = _run(capsys, "export", tmp_path / "z.h5", "--out", tmp_path / "z.csv", "--no-progress")
    assert code == 1 and "must end in .npz or .npy" in err
    code, _, _ = _run(capsys, "export", tmp_path / "z.h5", "--out", tmp_path / "c.npz", "--compress", "--no-progress")
    assert code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "c.npz")["z"], z)


def test_cli_user_errors_exit_1_with_one_line(tmp_path, capsys):
    (tmp_path / "text.txt").write_text("hi")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros((2, 2))
    np.save(tmp_path / "z.npy", np.zeros((2, 2)))
    create_store(tmp_path / "taken.h5", 2).close()
    cases = [
        (["info", tmp_path / "missing.h5"], "no such file"),
        (["info", tmp_path / "text.txt"], "not an HDF5 file"),
        (["info", tmp_path / "plain.h5"], "not a latentscope z-point store"),
        (["export", tmp_path / "plain.h5", "--out", tmp_path / "o.npz"], "not a latentscope z-point store"),
        (["import", tmp_path / "missing.npy", "--out", tmp_path / "o.h5"], "no such file"),
        (["import", tmp_path / "text.txt", "--out", tmp_path / "o.h5"], "unknown array file"),
        (["import", tmp_path / "z.npy", "--out", tmp_path / "taken.h5"], "file exists; pass --overwrite"),
        (["import", f"{tmp_path / 'plain.h5'}:nope", "--out", tmp_path / "o.h5"], "no array 'nope'"),
        (["import", tmp_path / "z.npy", "--out", tmp_path / "o.h5", "--ids", "nope"], "holds one array"),
    ]
    for argv, message in cases:
        code, out, err = _run(capsys, *argv, *(["--no-progress"] if argv[0] != "info" else []))
        assert code == 1, argv
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o.h5").exists()


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    for argv in (["import", tmp_path / "z.npy"], ["export", tmp_path / "z.h5"], ["info"],
                 ["info", tmp_path / "z.h5", "--bogus"], ["import", "x.npy", "--out", "y.h5", "--batch-rows", "0"]):
        code, _, err = _run(capsys, *argv)
        assert code == 2, argv
        assert err.startswith("error: ") and err.count("\n") == 1, err


def test_cli_progress_goes_to_stderr_and_can_be_hidden(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "z.npy", np.zeros((5, 2)))
    code, out, err = _run(capsys, "import", tmp_path / "z.npy", "--out", tmp_path / "a.h5")
    assert code == 0 and "import" in err and "rows" in err and "import:" not in out
    code, out, err = _run(capsys, "import", tmp_path / "z.npy", "--out", tmp_path / "b.h5", "--no-progress")
    assert code == 0 and err == ""
    monkeypatch.setenv("LATENTSCOPE_NO_PROGRESS", "1")
    code, out, err = _run(capsys, "import", tmp_path / "z.npy", "--out", tmp_path / "c.h5")
    assert code == 0 and err == ""
