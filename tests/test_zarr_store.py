"""Zarr z-point stores (NAME.zarr directories): the API and guarantees of the HDF5 store, on real directories."""

from __future__ import annotations

import json
import os
import pickle
import sys

import numpy as np
import pytest

pytest.importorskip("zarr")

from latentscope.cli import main  # noqa: E402
from latentscope.exceptions import (  # noqa: E402
    InvalidParameterError,
    NonFiniteError,
    StoreError,
    StoreFormatError,
    StoreReadOnlyError,
)
from latentscope.store import (  # noqa: E402
    ZarrStore,
    ZStore,
    check_store,
    create_store,
    is_store,
    open_store,
    salvage_store,
)
from latentscope.stream import as_zsource  # noqa: E402


def _cloud(n: int, dim: int, seed: int) -> np.ndarray:
    """Heavy tails, skew, a few dominant axes, an off-centre mean: t3 and lognormal marginals, rotated."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.standard_t(3, n) if j % 2 else rng.lognormal(0, 0.8, n) for j in range(dim)])
    x *= np.geomspace(6, 0.3, dim)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (x @ q + rng.uniform(-4, 9, dim)).astype(np.float32)


def _fill(store, z: np.ndarray) -> None:
    """The same appends on either kind of store: int ids, then string ids, columns of every kind."""
    n = len(z)
    a, b = n // 3, 2 * n // 3
    store.append(z[:a], ids=np.arange(a) * 3, columns={
        "x": np.linspace(0, 1, a), "flag": np.arange(a) % 2 == 0, "name": np.array([f"n{i}" for i in range(a)]),
        "vec": np.arange(a * 3, dtype=np.int16).reshape(a, 3)})
    store.append(z[a:b], ids=[f"image-{i:06d}-with-a-long-name" for i in range(a, b)],
                 columns={"x": np.full(b - a, 2.5)})  # flag, name, vec filled
    bad = z[b:].copy()
    bad[::5, 1] = np.nan
    store.append(bad, ids=[f"s{i}" for i in range(b, n)], on_nonfinite="skip", columns={"name": ["é"] * (n - b)})
    store.set_provenance(step="fill", params={"k": [1, 2]})
    store.write_column("late", np.arange(store.n_rows) % 7)


def test_round_trip_equals_the_hdf5_store(tmp_path):
    z = _cloud(1500, 12, 0)
    with create_store(tmp_path / "a.h5", 12, backend="linear", chunk_rows=128, note="x") as h, \
            create_store(tmp_path / "a.zarr", 12, backend="linear", chunk_rows=128, note="x") as zs:
        assert isinstance(h, ZStore) and isinstance(zs, ZarrStore) and is_store(zs)
        _fill(h, z)
        _fill(zs, z)
    with open_store(tmp_path / "a.h5") as h, open_store(tmp_path / "a.zarr") as zs:
        assert zs.shape == h.shape and zs.n_rows < 1500 and zs.n_skipped_nonfinite == h.n_skipped_nonfinite > 0
        np.testing.assert_array_equal(zs.read(), h.read())
        np.testing.assert_array_equal(zs.read_ids(), h.read_ids())
        assert zs.ids_kind == h.ids_kind == "str"
        assert zs.column_names == h.column_names
        assert zs.column_info() == h.column_info()
        for name in h.column_names:
            np.testing.assert_array_equal(zs.read_column(name), h.read_column(name))
        rows = np.array([5, 0, 5, 999, 3, 1200])
        np.testing.assert_array_equal(zs.read(rows), h.read(rows))
        np.testing.assert_array_equal(zs.read_column("vec", rows), h.read_column("vec", rows))
        mask = np.arange(zs.n_rows) % 3 == 1
        np.testing.assert_array_equal(zs.read_ids(mask), h.read_ids(mask))
        pz, ph = zs.provenance, h.provenance
        for key in ("backend", "note", "step", "params", "z_dim", "format", "n_skipped_nonfinite"):
            assert pz[key] == ph[key], key
        assert pz["storage"] == "zarr"
        kw = dict(max_bytes=128 * 12 * 4 * 3, columns=["x", "name"], ids=True, start=100)
        blocks = list(zs.iter_blocks(**kw))
        assert [(b.start, len(b)) for b in blocks] == [(b.start, len(b)) for b in h.iter_blocks(**kw)]
        assert blocks[0].start == 100 and blocks[1].start % 128 == 0 and blocks[-1].stop == zs.n_rows
        np.testing.assert_array_equal(np.concatenate([b.z for b in blocks]), h.read(slice(100, None)))
        np.testing.assert_array_equal(np.concatenate([b.columns["name"] for b in blocks]), h.read_column("name")[100:])
        info = zs.summary()
        assert info["rows"] == zs.n_rows and info["storage"] == "zarr" and info["uncommitted_rows"] == 0
        assert "ZarrStore" in zs._repr_html_() and "rows" in repr(zs)


def test_int_ids_and_columns_delete_and_replace(tmp_path):
    z = _cloud(300, 4, 1)
    with create_store(tmp_path / "b.zarr", 4, chunk_rows=64) as s:
        s.append(z, ids=np.arange(300) + 10**12, columns={"c": np.arange(300, dtype=np.float32)})
        assert s.ids_kind == "int"
        s.write_column("c", np.ones(300, np.float32))  # in place
        s.write_column("c", np.array(["a"] * 300))  # another kind: a new array
        s.delete_column("c")
        assert s.column_names == []
        with pytest.raises(InvalidParameterError, match="no column 'c'"):
            s.delete_column("c")
    with open_store(tmp_path / "b.zarr") as r:
        np.testing.assert_array_equal(r.read_ids(), np.arange(300) + 10**12)
        assert r.read_ids().dtype == np.int64 and r.column_names == []
        np.testing.assert_array_equal(r.read(), z)


def test_zsource_and_dask_on_a_zarr_store(tmp_path):
    dask = pytest.importorskip("dask")
    z = _cloud(2000, 8, 2)
    with create_store(tmp_path / "c.zarr", 8, chunk_rows=100) as s:
        s.append(z[:1500])
        s.append(z[1500:])
    src = as_zsource(tmp_path / "c.zarr")
    try:
        assert src.is_store and src.shape == (2000, 8)
        got = np.concatenate([b.z for b in src.iter_blocks(max_bytes=300 * 8 * 4)])
        np.testing.assert_array_equal(got, z)
        rows = np.array([1999, 0, 150, 150])
        np.testing.assert_array_equal(src.take(rows), z[rows])
        np.testing.assert_array_equal(src.read(100, 350), z[100:350])
        d = src.store.to_dask(chunks=300)
        assert d.shape == (2000, 8) and d.chunks[0][0] == 300
        again = pickle.loads(pickle.dumps(d))  # holds no open file: travels to distributed workers
        np.testing.assert_allclose(again.sum(axis=0).compute(scheduler="sync"), z.sum(axis=0, dtype=np.float64),
                                   rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(again[1234:1240]), z[1234:1240])
    finally:
        src.close()
    del dask


def test_a_flipped_byte_and_a_missing_chunk_are_errors(tmp_path):
    path = tmp_path / "d.zarr"
    z = _cloud(512, 8, 3)
    with create_store(path, 8, chunk_rows=128) as s:
        s.append(z)
    chunk = path / "z" / "c" / "2" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[37] ^= 0x10
    chunk.write_bytes(bytes(raw))
    with open_store(path) as r:
        np.testing.assert_array_equal(r.read(slice(0, 256)), z[:256])  # the other chunks stay readable
        with pytest.raises(StoreFormatError, match=r"rows 256\.\.384 of 'z' do not match their checksum.*c/2/0"):
            r.read()
        with pytest.raises(StoreFormatError, match="checksum"):
            list(r.iter_blocks())
    report = check_store(path)
    assert not report.ok and report.n_good == 384 and "rows 256..384 of 'z'" in report.problems[0]
    assert salvage_store(path, tmp_path / "s.zarr") == {"rows": 384, "dropped": 128}
    assert salvage_store(tmp_path / "s.zarr", tmp_path / "s.h5")["rows"] == 384  # salvaged twice: provenance kept
    with open_store(tmp_path / "s.h5") as s:
        keep = np.r_[0:256, 384:512]
        np.testing.assert_array_equal(s.read(), z[keep])
        np.testing.assert_array_equal(s.read_ids(), keep)
        assert s.provenance["salvaged_from"] == str(tmp_path / "s.zarr") and s.provenance["salvaged_rows"] == 384
    (path / "ids" / "c" / "1").unlink()
    with open_store(path) as r:
        with pytest.raises(StoreFormatError, match=r"rows 128\.\.256 of 'ids' are missing"):
            r.read_ids()
    assert len(check_store(path).problems) == 2
    (path / "commit.json").write_text((path / "commit.json").read_text().replace('"n_committed": 512', '"n_committed": 9'))
    with pytest.raises(StoreFormatError, match="damaged commit record"):
        open_store(path)


def test_one_writer_at_a_time_and_resume_after_an_interrupted_append(tmp_path):
    path = tmp_path / "e.zarr"
    z = _cloud(400, 6, 4)
    w = create_store(path, 6, chunk_rows=64)
    w.append(z[:100])
    with pytest.raises(StoreError, match="another process .* is writing to this store"):
        open_store(path, "a")
    reader = open_store(path)
    assert reader.n_rows == 100
    w.append(z[100:200])
    assert reader.n_rows == 100 and reader.refresh() == 200  # a snapshot until refresh()
    w.close()
    reader.close()
    # what a killed writer leaves: rows past the commit and a temporary file of zarr's LocalStore
    import zarr

    arr = zarr.open_array(zarr.storage.LocalStore(path), path="z", mode="r+")
    arr.resize((300, 6))
    arr[200:300] = np.full((100, 6), -1, np.float32)
    stray = path / "z" / "c" / "3" / "0.0123abcd.partial"
    stray.write_bytes(b"half")
    with open_store(path) as r:
        assert r.n_rows == 200 and r.summary()["uncommitted_rows"] == 100
    with open_store(path, "a") as w:
        assert w.recovered and w.n_rows == 200 and not stray.exists()
        w.append(z[200:])
    with open_store(path) as r:
        np.testing.assert_array_equal(r.read(), z)
        assert r.summary()["uncommitted_rows"] == 0


def test_bad_input_errors(tmp_path):
    path = tmp_path / "f.zarr"
    with create_store(path, 4, chunk_rows=16) as s:
        with pytest.raises(InvalidParameterError, match=r"shape \(n, 4\) to match the store's z_dim 4; got \(3, 5\)"):
            s.append(np.zeros((3, 5)))
        with pytest.raises(InvalidParameterError, match="numeric array"):
            s.append(np.array([["a"] * 4]))
        with pytest.raises(NonFiniteError, match=r"z row 1 of the batch \(store row 1\)"):
            s.append(np.array([[0, 0, 0, 0], [np.inf, 0, 0, 0]]))
        with pytest.raises(InvalidParameterError, match="on_nonfinite must be 'raise' or 'skip'"):
            s.append(np.zeros((1, 4)), on_nonfinite="drop")
        with pytest.raises(InvalidParameterError, match="ids must be 1-D with 2 entries"):
            s.append(np.zeros((2, 4)), ids=[1])
        with pytest.raises(InvalidParameterError, match="ids must be integers or strings"):
            s.append(np.zeros((2, 4)), ids=[1.5, 2.5])
        with pytest.raises(InvalidParameterError, match="column 'c' must have 2 rows"):
            s.append(np.zeros((2, 4)), columns={"c": [1]})
        with pytest.raises(InvalidParameterError, match="reserved"):
            s.append(np.zeros((2, 4)), columns={"z": [1, 2]})
        s.append(np.zeros((2, 4)), columns={"c": [1, 2]})
        with pytest.raises(InvalidParameterError, match="column 'd' is new but the store already holds 2 rows"):
            s.append(np.zeros((1, 4)), columns={"d": [1]})
        with pytest.raises(InvalidParameterError, match="column 'c' holds int64 values; got dtype"):
            s.append(np.zeros((1, 4)), columns={"c": ["a"]})
        with pytest.raises(InvalidParameterError, match="write_column: 'w' must have 2 rows"):
            s.write_column("w", [1, 2, 3])
        with pytest.raises(InvalidParameterError, match="exists; pass overwrite=True"):
            s.write_column("c", [3, 4], overwrite=False)
        with pytest.raises(InvalidParameterError, match="created cannot be changed"):
            s.set_provenance(created="now")
        with pytest.raises(StoreError, match="mark_complete is for shard writers"):
            s.mark_complete()
    with open_store(path) as r:
        with pytest.raises(StoreReadOnlyError, match="open read-only"):
            r.append(np.zeros((1, 4)))
        with pytest.raises(InvalidParameterError, match="no column 'nope'; the store has: c"):
            r.read_column("nope")
        with pytest.raises(InvalidParameterError, match="row 2 is out of range for 2 committed rows"):
            r.read(2)
    with pytest.raises(StoreError, match="file exists; pass overwrite=True"):
        create_store(path, 4)
    with pytest.raises(InvalidParameterError, match="z_dim must be an integer >= 1; got 0"):
        create_store(tmp_path / "g.zarr", 0)
    with pytest.raises(InvalidParameterError, match="mode must be 'r' or 'a'"):
        open_store(path, "w")
    with pytest.raises(StoreError, match="no such file or directory"):
        open_store(tmp_path / "missing.zarr")
    (tmp_path / "plain.zarr").mkdir()
    with pytest.raises(StoreFormatError, match="not a Zarr store"):
        open_store(tmp_path / "plain.zarr")
    with pytest.raises(StoreError, match="not a latentscope Zarr store; not overwriting"):
        create_store(tmp_path / "plain.zarr", 4, overwrite=True)
    with create_store(path, 4, overwrite=True) as s:  # an existing Zarr store is replaced
        assert s.n_rows == 0
    if sys.platform.startswith("linux") and os.geteuid() != 0:
        os.chmod(path, 0o555)
        try:
            with pytest.raises(StoreReadOnlyError, match="read-only"):
                open_store(path, "a")
        finally:
            os.chmod(path, 0o755)


def _run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out + err


def test_cli_import_export_info_check(tmp_path, capsys):
    z = _cloud(700, 5, 5)
    ids = np.array([f"img{i}" for i in range(700)])
    np.savez(tmp_path / "a.npz", z=z, ids=ids, male=np.arange(700) % 2 == 0)
    code, out = _run(capsys, "import", tmp_path / "a.npz", "--out", tmp_path / "a.zarr", "--no-progress")
    assert code == 0 and "wrote 700 rows" in out
    code, out = _run(capsys, "info", tmp_path / "a.zarr")
    assert code == 0 and "700" in out and "(zarr)" in out and "male (bool)" in out
    code, out = _run(capsys, "info", tmp_path / "a.zarr", "--json")
    assert json.loads(out)["rows"] == 700
    with open_store(tmp_path / "a.zarr", "a") as s:
        s.set_provenance(model_note="carried")
    code, out = _run(capsys, "export", tmp_path / "a.zarr", "--out", tmp_path / "b.h5", "--no-progress")
    assert code == 0 and "wrote 700 rows" in out
    code, out = _run(capsys, "export", tmp_path / "b.h5", "--out", tmp_path / "c.zarr", "--no-progress")
    assert code == 0
    with open_store(tmp_path / "b.h5") as h, open_store(tmp_path / "c.zarr") as c:
        assert isinstance(h, ZStore) and isinstance(c, ZarrStore)
        for s in (h, c):
            np.testing.assert_array_equal(s.read(), z)
            np.testing.assert_array_equal(s.read_ids(), ids)
            np.testing.assert_array_equal(s.read_column("male"), np.arange(700) % 2 == 0)
            assert s.provenance["model_note"] == "carried" and s.provenance["source"].endswith("a.npz")
    code, out = _run(capsys, "export", tmp_path / "c.zarr", "--out", tmp_path / "c.zarr", "--no-progress")
    assert code == 1 and "is the input store itself" in out
    code, out = _run(capsys, "export", tmp_path / "a.zarr", "--out", tmp_path / "c.zarr", "--no-progress")
    assert code == 1 and "file exists" in out
    code, out = _run(capsys, "export", tmp_path / "a.zarr", "--out", tmp_path / "c.zarr", "--overwrite", "--no-progress")
    assert code == 0
    code, out = _run(capsys, "check", tmp_path / "c.zarr", "--no-progress")
    assert code == 0 and out.startswith("OK: ") and "checksums verified" in out
    chunk = tmp_path / "c.zarr" / "z" / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[10] ^= 1
    chunk.write_bytes(bytes(raw))
    code, out = _run(capsys, "check", tmp_path / "c.zarr", "--no-progress")
    assert code == 1 and "damaged: " in out and "do not match their checksum" in out
    code, out = _run(capsys, "export", tmp_path / "c.zarr", "--out", tmp_path / "c.npz", "--no-progress")
    assert code == 1 and out.startswith("error: ") and "checksum" in out and len(out.strip().splitlines()) == 1
    code, out = _run(capsys, "check", tmp_path / "c.zarr", "--salvage", tmp_path / "s.zarr", "--no-progress")
    assert code == 1 and "salvaged 0 rows" in out  # every row of the only z chunk is lost


def test_analyze_on_zarr_equals_hdf5(tmp_path, capsys):
    z = _cloud(3000, 6, 6)
    for name in ("a.h5", "a.zarr"):
        with create_store(tmp_path / name, 6, chunk_rows=256) as s:
            s.append(z[:1700], columns={"grp": np.arange(1700) % 2 == 0})
            s.append(z[1700:], columns={"grp": np.arange(1300) % 3 == 0})
        code, out = _run(capsys, "analyze", tmp_path / name, "--out", tmp_path / f"out-{name}", "--no-figures",
                         "--by", "grp", "--no-progress")
        assert code == 0, out

    def numbers(d, key=""):
        if isinstance(d, dict):
            for k, v in d.items():
                if k not in ("timings_s", "store", "path", "source", "created", "command"):
                    yield from numbers(v, f"{key}/{k}")
        elif isinstance(d, list):
            for i, v in enumerate(d):
                yield from numbers(v, f"{key}[{i}]")
        elif isinstance(d, (int, float)) and not isinstance(d, bool):
            yield key, float(d)

    a = dict(numbers(json.loads((tmp_path / "out-a.h5" / "summary.json").read_text())))
    b = dict(numbers(json.loads((tmp_path / "out-a.zarr" / "summary.json").read_text())))
    assert a.keys() == b.keys() and len(a) > 50
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-12, abs=0, nan_ok=True), key


def test_encode_into_a_zarr_store_equals_hdf5(tmp_path):
    from latentscope.backends import LinearBackend, encode_to_store
    from latentscope.data import SyntheticFaces

    model = LinearBackend.fit(SyntheticFaces(60, image_size=8, seed=2), z_dim=4, n_iter=2)
    src = SyntheticFaces(40, image_size=8)
    for name in ("e.h5", "e.zarr"):
        assert encode_to_store(model, src, tmp_path / name, batch_size=16).n_rows == 40
    with open_store(tmp_path / "e.h5") as h, open_store(tmp_path / "e.zarr") as zs:
        assert isinstance(zs, ZarrStore)
        np.testing.assert_array_equal(zs.read(), h.read())
        np.testing.assert_array_equal(zs.read_ids(), h.read_ids())
        assert zs.column_names == h.column_names
        for name in h.column_names:
            np.testing.assert_array_equal(zs.read_column(name), h.read_column(name))
        assert zs.provenance["model_fingerprint"] == h.provenance["model_fingerprint"] == model.fingerprint()
