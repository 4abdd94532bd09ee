"""The z-point store: round trips, ids, columns, provenance, errors, recovery."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentscope.exceptions import (
    InvalidParameterError,
    NonFiniteError,
    StoreError,
    StoreFormatError,
    StoreReadOnlyError,
)
from latentscope.store import FORMAT_VERSION, Block, ZStore, create_store, open_store
from latentscope.store import _format as F
from latentscope.store._recovery import _write_superblock, clear_status_flags, lookup3, read_superblock, superblock_status


def _store(tmp_path: Path, z: np.ndarray, name: str = "z.h5", **kw) -> Path:
    path = tmp_path / name
    with create_store(path, z.shape[1], **kw) as s:
        s.append(z)
    return path


# -- round trips ----------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=0, max_size=7),
    z_dim=st.integers(1, 5),
    chunk=st.integers(1, 16),
    string_ids=st.booleans(),
    max_bytes=st.integers(1, 2000),
    seed=st.integers(0, 2**32 - 1),
)
def test_store_round_trip_any_batch_sizes(sizes, z_dim, chunk, string_ids, max_bytes, seed):
    rng = np.random.default_rng(seed)
    batches = [rng.standard_normal((n, z_dim)).astype(np.float32) for n in sizes]
    ids, labels = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "z.h5"
        with create_store(path, z_dim, chunk_rows=chunk) as s:
            start = 0
            for b in batches:
                n = b.shape[0]
                bid = [f"row-{start + i}" for i in range(n)] if string_ids else list(range(start, start + n))
                lab = np.arange(start, start + n) % 3
                assert s.append(b, ids=bid, columns={"label": lab}) == n
                ids += bid
                labels.append(lab)
                start += n
        total = sum(sizes)
        want = np.concatenate(batches) if batches else np.empty((0, z_dim), np.float32)
        with open_store(path) as r:
            assert r.shape == (total, z_dim)
            np.testing.assert_array_equal(r.read(), want)
            got_ids = r.read_ids()
            if total:
                assert list(got_ids) == (ids if string_ids else list(range(total)))
                np.testing.assert_array_equal(r.read_column("label"), np.concatenate(labels))
            blocks = list(r.iter_blocks(max_bytes=max_bytes, ids=True, columns=["label"] if total else []))
            assert sum(len(b) for b in blocks) == total
            if blocks:
                np.testing.assert_array_equal(np.concatenate([b.z for b in blocks]), want)
                assert list(np.concatenate([b.ids for b in blocks])) == list(got_ids)
                assert all(b.start % chunk == 0 for b in blocks)
                assert all(b.stop == nxt.start for b, nxt in zip(blocks, blocks[1:]))


def test_store_float64_and_int_input_is_stored_as_float32(tmp_path, rng):
    z = rng.standard_normal((10, 3))
    path = _store(tmp_path, z)
    with open_store(path) as s:
        assert s.read().dtype == np.float32
        np.testing.assert_array_equal(s.read(), z.astype(np.float32))
    with create_store(tmp_path / "i.h5", 2) as s:
        s.append(np.arange(6).reshape(3, 2))
        np.testing.assert_array_equal(s.read(), [[0, 1], [2, 3], [4, 5]])


def test_store_read_rows_any_selection(tmp_path, rng):
    z = rng.standard_normal((100, 4)).astype(np.float32)
    path = _store(tmp_path, z, chunk_rows=7)
    with open_store(path) as s:
        idx = np.array([99, 3, 3, 50, 0, -1, 64])
        np.testing.assert_array_equal(s.read(idx), z[idx])
        np.testing.assert_array_equal(s.read(idx.reshape(7, 1)), z[idx.reshape(7, 1)])
        np.testing.assert_array_equal(s.read(5), z[5])
        np.testing.assert_array_equal(s.read(-2), z[-2])
        for sl in (slice(None), slice(10, 20), slice(None, None, -3), slice(90, 5, -7), slice(5, 5), slice(3, 200, 11)):
            np.testing.assert_array_equal(s.read(sl), z[sl])
        mask = z[:, 0] > 0
        np.testing.assert_array_equal(s.read(mask), z[mask])
        assert s.read([]).shape == (0, 4)
        with pytest.raises(InvalidParameterError, match=r"row indices must lie in \[-100, 100\)"):
            s.read([0, 100])
        with pytest.raises(InvalidParameterError, match="row 100 is out of range"):
            s.read(100)
        with pytest.raises(InvalidParameterError, match="boolean mask must have shape"):
            s.read(np.ones(3, bool))


def test_store_iter_blocks_respects_budget_and_range(tmp_path, rng):
    z = rng.standard_normal((1000, 8)).astype(np.float32)
    path = _store(tmp_path, z, chunk_rows=32)
    with open_store(path) as s:
        chunk_bytes = 32 * 8 * 4
        blocks = list(s.iter_blocks(max_bytes=3 * chunk_bytes + 5))
        assert {len(b) for b in blocks[:-1]} == {96}
        assert all(b.z.nbytes <= 3 * chunk_bytes + 5 for b in blocks)
        assert all(b.z.flags.c_contiguous and b.z.dtype == np.float32 for b in blocks)
        part = list(s.iter_blocks(max_bytes=chunk_bytes, start=50, stop=130))
        assert [(b.start, b.stop) for b in part] == [(50, 64), (64, 96), (96, 128), (128, 130)]
        np.testing.assert_array_equal(np.concatenate([b.z for b in part]), z[50:130])
        assert list(s.iter_blocks(start=2000)) == []
        with pytest.raises(InvalidParameterError, match="max_bytes must be a positive integer"):
            list(s.iter_blocks(max_bytes=0))
        with pytest.raises(InvalidParameterError, match="0 <= start <= stop"):
            list(s.iter_blocks(start=10, stop=5))
        with pytest.raises(InvalidParameterError, match="no column 'nope'"):
            list(s.iter_blocks(columns=["nope"]))


def test_store_to_dask_view_of_committed_rows(tmp_path, rng):
    pytest.importorskip("dask.array")
    z = rng.standard_normal((300, 5)).astype(np.float32)
    path = _store(tmp_path, z, chunk_rows=16)
    with open_store(path) as s:
        d = s.to_dask(chunks=64)
        assert d.shape == (300, 5) and d.chunks[0][0] == 64
        np.testing.assert_array_equal(d.compute(), z)
        np.testing.assert_allclose(d.mean(axis=0).compute(), z.mean(axis=0), rtol=1e-5)
        np.testing.assert_array_equal(d[10:20, 2].compute(), z[10:20, 2])


# -- ids ------------------------------------------------------------------------------------
def test_store_ids_default_to_row_index_as_int64(tmp_path, rng):
    with create_store(tmp_path / "z.h5", 2) as s:
        s.append(rng.standard_normal((3, 2)))
        s.append(rng.standard_normal((2, 2)))
        assert s.ids_kind == "int"
        ids = s.read_ids()
        assert ids.dtype == np.int64
        np.testing.assert_array_equal(ids, np.arange(5))


def test_store_string_ids_convert_earlier_int_ids_and_grow(tmp_path, rng):
    with create_store(tmp_path / "z.h5", 2, chunk_rows=4) as s:
        s.append(rng.standard_normal((3, 2)), ids=[10, 11, 12])
        s.append(rng.standard_normal((2, 2)), ids=["a", "béta"])
        s.append(rng.standard_normal((2, 2)))
        long_id = "x" * 100 + "ü"
        s.append(rng.standard_normal((1, 2)), ids=[long_id])
        s.append(rng.standard_normal((1, 2)), ids=np.array([7]))
        assert s.ids_kind == "str"
        assert list(s.read_ids()) == ["10", "11", "12", "a", "béta", "5", "6", long_id, "7"]
        assert list(s.read_ids([7, 0])) == [long_id, "10"]


def test_store_ids_must_match_rows(tmp_path, rng):
    with create_store(tmp_path / "z.h5", 2) as s:
        with pytest.raises(InvalidParameterError, match="ids must be 1-D with 3 entries"):
            s.append(rng.standard_normal((3, 2)), ids=["a", "b"])
        with pytest.raises(InvalidParameterError, match="ids must be integers or strings"):
            s.append(rng.standard_normal((2, 2)), ids=[0.5, 1.5])
        assert s.n_rows == 0


# -- columns --------------------------------------------------------------------------------
def test_store_columns_kinds_and_fill_values(tmp_path, rng):
    with create_store(tmp_path / "z.h5", 2, chunk_rows=3) as s:
        s.append(rng.standard_normal((2, 2)), columns={
            "age": [30, 40], "score": [0.5, 1.5], "male": [True, False], "name": ["ann", "bo"],
            "vec": np.ones((2, 3)),
        })
        s.append(rng.standard_normal((2, 2)))  # all columns missing: filled
        s.append(rng.standard_normal((1, 2)), columns={"name": ["a much longer name than before"]})
        info = s.column_info()
        assert info["vec"] == (np.dtype(np.float64), (3,))
        assert info["name"][0].kind == "U"
        np.testing.assert_array_equal(s.read_column("age"), [30, 40, 0, 0, 0])
        np.testing.assert_array_equal(s.read_column("score"), [0.5, 1.5, np.nan, np.nan, np.nan])
        np.testing.assert_array_equal(s.read_column("male"), [True, False, False, False, False])
        assert list(s.read_column("name")) == ["ann", "bo", "", "", "a much longer name than before"]
        assert s.read_column("vec").shape == (5, 3)
        np.testing.assert_array_equal(s.read_column("age", [4, 0]), [0, 30])


def test_store_column_errors(tmp_path, rng):
    with create_store(tmp_path / "z.h5", 2) as s:
        s.append(rng.standard_normal((2, 2)), columns={"age": [1, 2]})
        with pytest.raises(InvalidParameterError, match="column 'new' is new but the store already holds 2 rows"):
            s.append(rng.standard_normal((1, 2)), columns={"new": [1]})
        with pytest.raises(InvalidParameterError, match="column 'age' holds int64 values; got dtype float64"):
            s.append(rng.standard_normal((1, 2)), columns={"age": [1.5]})
        with pytest.raises(InvalidParameterError, match="column 'age' must have 1 rows"):
            s.append(rng.standard_normal((1, 2)), columns={"age": [1, 2]})
        with pytest.raises(InvalidParameterError, match="'z' is reserved"):
            s.write_column("z", [1, 2])
        with pytest.raises(InvalidParameterError, match="non-empty str without '/'"):
            s.write_column("a/b", [1, 2])
        with pytest.raises(InvalidParameterError, match="must hold numbers, bools or strings"):
            s.write_column("when", np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[D]"))
        assert s.n_rows == 2


def test_store_write_column_in_place_replace_and_delete(tmp_path, rng):
    with create_store(tmp_path / "z.h5", 2) as s:
        s.append(rng.standard_normal((3, 2)))
        s.write_column("c", [1, 2, 3])
        s.write_column("c", [4, 5, 6])  # in place
        np.testing.assert_array_equal(s.read_column("c"), [4, 5, 6])
        s.write_column("c", ["x", "y", "z"])  # other kind: replaced
        assert list(s.read_column("c")) == ["x", "y", "z"]
        with pytest.raises(InvalidParameterError, match="exists; pass overwrite=True"):
            s.write_column("c", [1, 2, 3], overwrite=False)
        with pytest.raises(InvalidParameterError, match="must have 3 rows"):
            s.write_column("d", [1, 2])
        s.delete_column("c")
        assert s.column_names == []
        with pytest.raises(InvalidParameterError, match="no column 'c'"):
            s.read_column("c")


# -- provenance -----------------------------------------------------------------------------
def test_store_provenance_round_trip(tmp_path, rng):
    with create_store(tmp_path / "z.h5", 3, backend="keras-ae", model_fingerprint="abc", source="celeba",
                      image_size="96x96", params={"lr": 5e-4}) as s:
        created = s.provenance["created"]
        s.append(rng.standard_normal((2, 3)))
        s.set_provenance(note="hello", epochs=24, history=[1.0, 0.5])
        with pytest.raises(InvalidParameterError, match="z_dim cannot be changed"):
            s.set_provenance(z_dim=4)
    with open_store(tmp_path / "z.h5") as r:
        p = r.provenance
        assert p["format"] == F.FORMAT_NAME and p["format_version"] == FORMAT_VERSION
        assert p["z_dim"] == 3 and p["backend"] == "keras-ae" and p["model_fingerprint"] == "abc"
        assert p["source"] == "celeba" and p["image_size"] == "96x96" and p["params"] == {"lr": 5e-4}
        assert p["note"] == "hello" and p["epochs"] == 24 and p["history"] == [1.0, 0.5]
        assert p["created"] == created and p["updated"] >= created
        assert p["library_version"] and p["n_skipped_nonfinite"] == 0
        summary = r.summary()
        assert summary["rows"] == 2 and summary["size_bytes"] == r.nbytes_on_disk > 0


def test_store_files_open_in_plain_h5py(tmp_path, rng):
    z = rng.standard_normal((5, 3)).astype(np.float32)
    path = _store(tmp_path, z)
    assert superblock_status(path) == 0
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["z"][:], z)
        assert f.attrs["format"].decode() == F.FORMAT_NAME  # fixed-length UTF-8: no heap data
        assert "provenance" in f and "_trash" in f


# -- errors ---------------------------------------------------------------------------------
def test_create_store_errors(tmp_path):
    path = tmp_path / "z.h5"
    create_store(path, 4).close()
    with pytest.raises(StoreError, match="file exists; pass overwrite=True"):
        create_store(path, 4)
    with create_store(path, 8, overwrite=True) as s:
        assert s.z_dim == 8
    with pytest.raises(InvalidParameterError, match="z_dim must be an integer >= 1; got 0"):
        create_store(tmp_path / "y.h5", 0)
    with pytest.raises(InvalidParameterError, match="chunk_rows must be an integer >= 1"):
        create_store(tmp_path / "y.h5", 3, chunk_rows=0)
    assert not (tmp_path / "y.h5").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["z.h5"]  # no temporary files left


def test_open_store_errors_are_one_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.zeros(3)
    future = tmp_path / "future.h5"
    create_store(future, 2).close()
    with h5py.File(future, "r+") as f:
        f.attrs["format_version"] = 99
    cases = [
        (tmp_path / "missing.h5", StoreError, "no such file"),
        (tmp_path, StoreError, "is a directory"),
        (text, StoreFormatError, "not an HDF5 file"),
        (foreign, StoreFormatError, "an HDF5 file, but not a latentscope z-point store"),
        (future, StoreFormatError, "store format version 99 is not supported"),
    ]
    for path, exc, msg in cases:
        for mode in ("r", "a"):
            with pytest.raises(exc, match=msg) as info:
                open_store(path, mode)
            assert "\n" not in str(info.value)
    with pytest.raises(InvalidParameterError, match="mode must be 'r' or 'a'"):
        open_store(future, "w")


def test_append_z_dim_mismatch(tmp_path, rng):
    with create_store(tmp_path / "z.h5", 4) as s:
        with pytest.raises(InvalidParameterError, match=r"shape \(n, 4\) to match the store's z_dim 4; got \(3, 5\)"):
            s.append(rng.standard_normal((3, 5)))
        with pytest.raises(InvalidParameterError, match="match the store's z_dim"):
            s.append(rng.standard_normal(4))
        with pytest.raises(InvalidParameterError, match="numeric array"):
            s.append(np.array([["a"] * 4]))


def test_append_nonfinite_raises_with_row_or_skips_and_counts(tmp_path, rng):
    with create_store(tmp_path / "z.h5", 3) as s:
        s.append(rng.standard_normal((10, 3)))
        bad = rng.standard_normal((6, 3))
        bad[3, 1] = np.nan
        bad[5, 0] = np.inf
        bad[4, 2] = 1e39  # finite in float64, infinite in float32
        with pytest.raises(NonFiniteError, match=r"z row 3 of the batch \(store row 13\) .* \(3 such rows\)") as info:
            s.append(bad)
        assert "\n" not in str(info.value)
        assert s.n_rows == 10
        assert s.append(bad, ids=[f"b{i}" for i in range(6)], columns=None, on_nonfinite="skip") == 3
        assert s.n_rows == 13 and s.n_skipped_nonfinite == 3
        np.testing.assert_array_equal(s.read(slice(10, 13)), bad[:3].astype(np.float32))
        assert list(s.read_ids()[10:]) == ["b0", "b1", "b2"]
        assert s.append(np.full((2, 3), np.nan), on_nonfinite="skip") == 0
        assert s.n_skipped_nonfinite == 5
        with pytest.raises(InvalidParameterError, match="on_nonfinite must be 'raise' or 'skip'"):
            s.append(bad, on_nonfinite="drop")
    with open_store(tmp_path / "z.h5") as r:
        assert r.provenance["n_skipped_nonfinite"] == 5


def test_append_nonfinite_in_a_later_chunk_leaves_the_store_as_it_was(tmp_path, rng):
    # z is checked while it is written, chunk by chunk: a bad value in the third chunk of a
    # batch comes after two whole chunks were written; the store must not show them.
    path = tmp_path / "z.h5"
    z = rng.standard_t(3, size=(3000, 4)).astype(np.float32)
    z[:8] = 3e38  # finite values whose float32 sum overflows: the exact test decides
    bad = z.copy()
    bad[2500, 3] = np.inf
    with create_store(path, 4, chunk_rows=1024) as s:
        s.append(z[:100])
        with pytest.raises(NonFiniteError, match=r"z row 2500 of the batch \(store row 2600\)"):
            s.append(bad)
        assert s.n_rows == 100 and s.allocated_rows == 100
        assert s.append(bad, on_nonfinite="skip") == 2999
        assert s.append(z) == 3000
    keep = np.r_[np.arange(2500), np.arange(2501, 3000)]
    with open_store(path) as r:
        assert r.n_rows == 6099 and r.n_skipped_nonfinite == 1
        np.testing.assert_array_equal(r.read(), np.concatenate([z[:100], bad[keep], z]))
        np.testing.assert_array_equal(r.read_ids(), np.r_[np.arange(100), 100 + keep, np.arange(3099, 6099)])


def test_write_to_read_only_store_or_file(tmp_path, rng):
    path = _store(tmp_path, rng.standard_normal((4, 2)))
    with open_store(path) as r:
        for call in (lambda: r.append(np.zeros((1, 2))), lambda: r.write_column("c", [1, 2, 3, 4]),
                     lambda: r.set_provenance(a=1), lambda: r.delete_column("c")):
            with pytest.raises(StoreReadOnlyError, match="open read-only; open it with mode='a'"):
                call()
    os.chmod(path, 0o444)
    try:
        with pytest.raises(StoreReadOnlyError, match="the file is read-only"):
            open_store(path, "a")
        with open_store(path) as r:  # reading still works
            assert r.n_rows == 4
    finally:
        os.chmod(path, 0o644)


def test_closed_store_refuses_use(tmp_path, rng):
    path = _store(tmp_path, rng.standard_normal((4, 2)))
    s = open_store(path)
    s.close()
    s.close()  # idempotent
    assert s.closed and "closed" in repr(s)
    with pytest.raises(StoreError, match="the store is closed"):
        s.read()


# -- writers and readers --------------------------------------------------------------------
def test_second_writer_is_refused(tmp_path, rng):
    path = _store(tmp_path, rng.standard_normal((4, 2)))
    with open_store(path, "a"):
        with pytest.raises(StoreError, match="another process .* is writing to this store"):
            open_store(path, "a")
        with pytest.raises(StoreError, match="another process is writing to this store; not overwriting"):
            create_store(path, 2, overwrite=True)
    with open_store(path, "a") as again:  # the lock is released on close
        assert again.n_rows == 4


def test_reader_sees_snapshot_until_refresh(tmp_path, rng):
    z = rng.standard_normal((30, 3)).astype(np.float32)
    with create_store(tmp_path / "z.h5", 3, chunk_rows=4) as w:
        w.append(z[:10], ids=[f"i{i}" for i in range(10)])
        with open_store(tmp_path / "z.h5") as r:
            assert r.n_rows == 10
            w.append(z[10:25], ids=[f"i{i}" for i in range(10, 25)])
            assert r.n_rows == 10 and r.read().shape == (10, 3)
            assert r.refresh() == 25
            np.testing.assert_array_equal(r.read(), z[:25])
            w.write_column("k", np.arange(25))
            assert r.refresh() == 25 and r.column_names == ["k"]  # new dataset: the reader reopened
            np.testing.assert_array_equal(r.read_column("k"), np.arange(25))
            assert list(r.read_ids()[-2:]) == ["i23", "i24"]


def test_reader_open_before_writer_in_same_process_is_explained(tmp_path, rng):
    path = _store(tmp_path, rng.standard_normal((4, 2)))
    with open_store(path):
        with pytest.raises(StoreError, match="open for reading in this process"):
            open_store(path, "a")


# -- crash recovery (simulated; real kills are in test_store_crash.py) ----------------------
def test_resume_overwrites_rows_past_the_commit(tmp_path, rng):
    z = rng.standard_normal((40, 3)).astype(np.float32)
    path = tmp_path / "z.h5"
    with create_store(path, 3, chunk_rows=8) as s:
        s.append(z[:10], ids=[f"a{i}" for i in range(10)], columns={"c": np.arange(10)})
    with h5py.File(path, "r+") as f:  # what a killed append leaves: longer datasets, old commit
        for name in ("z", "ids", "id_strings", "columns/c"):
            f[name].resize(30, axis=0)
        f["z"][10:30] = 1e30
        f["ids"][10:30] = -7
        f["columns/c"][10:30] = 99
    with open_store(path) as r:
        assert r.n_rows == 10 and r.allocated_rows == 30 and r.summary()["uncommitted_rows"] == 20
        np.testing.assert_array_equal(r.read(), z[:10])
    with open_store(path, "a") as s:
        assert s.n_rows == 10
        s.append(z[10:15], ids=[f"a{i}" for i in range(10, 15)])
        s.append(z[15:40], ids=[f"a{i}" for i in range(15, 40)], columns={"c": np.arange(15, 40)})
    with open_store(path) as r:
        np.testing.assert_array_equal(r.read(), z)
        assert list(r.read_ids()) == [f"a{i}" for i in range(40)]
        np.testing.assert_array_equal(r.read_column("c"), np.r_[np.arange(10), np.zeros(5, int), np.arange(15, 40)])


def _set_flags(path: Path, flags: int, eoa_extra: int = 0) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        sb = read_superblock(fd)
        _write_superblock(fd, sb, status_flags=flags, eoa=sb.eoa + eoa_extra)
    finally:
        os.close(fd)


@pytest.mark.parametrize("flags", [0x05, 0x01])
def test_open_repairs_status_flags_left_by_a_dead_writer(tmp_path, rng, flags):
    z = rng.standard_normal((20, 3)).astype(np.float32)
    path = _store(tmp_path, z)
    _set_flags(path, flags)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r+")
    before = path.read_bytes()
    with open_store(path) as r:  # readers read without changing the file, with either flags
        assert not r.recovered and r.n_rows == 20
        np.testing.assert_array_equal(r.read(), z)
    assert path.read_bytes() == before and superblock_status(path) == flags
    with open_store(path, "a") as s:  # the next writer repairs
        assert s.recovered and s.n_rows == 20
        np.testing.assert_array_equal(s.read(), z)
    assert superblock_status(path) == 0
    with open_store(path, "a") as s:
        assert not s.recovered
        s.append(z)
    with h5py.File(path, "r") as f:
        assert f["z"].shape == (40, 3)


def test_repair_extends_a_file_shorter_than_its_allocation(tmp_path, rng):
    path = _store(tmp_path, rng.standard_normal((5, 3)))
    size = path.stat().st_size
    _set_flags(path, 0x05, eoa_extra=4096)
    fd = os.open(path, os.O_RDWR)
    try:
        assert clear_status_flags(fd, path)
        assert not clear_status_flags(fd, path)  # nothing left to do
    finally:
        os.close(fd)
    assert path.stat().st_size == size + 4096
    with open_store(path, "a") as s:
        assert s.n_rows == 5


def test_lookup3_known_values_and_superblock_checksum(tmp_path):
    # test vectors from Bob Jenkins' lookup3.c (driver5)
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"", 0xDEADBEEF) == 0xBD5B7DDE
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161
    path = tmp_path / "z.h5"
    create_store(path, 2).close()
    fd = os.open(path, os.O_RDONLY)
    try:
        sb = read_superblock(fd)  # validates HDF5's own checksum with lookup3
    finally:
        os.close(fd)
    assert sb.version == 3 and sb.status_flags == 0


def test_commit_record_ignores_a_torn_slot():
    a = F.pack_commit(7, 100, 1, 0, 0)
    b = F.pack_commit(8, 150, 2, 0, 0)
    assert F.unpack_commit(np.stack([a, b]))[:2] == (8, 150)
    torn = b.copy()
    torn[1] = 149
    assert F.unpack_commit(np.stack([a, torn]))[:2] == (7, 100)
    assert F.unpack_commit(np.stack([torn, torn])) is None


def test_block_dataclass():
    b = Block(10, np.zeros((4, 2), np.float32))
    assert b.stop == 14 and len(b) == 4 and b.columns == {} and b.ids is None
    assert isinstance(ZStore, type)
