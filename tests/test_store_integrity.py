"""Damaged stores are errors: truncated copies, flipped bytes, missing chunks, never zero rows or a hang."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentscope.cli import main
from latentscope.exceptions import StoreError, StoreFormatError, StoreFormatWarning
from latentscope.store import _format as F
from latentscope.store import check_store, create_store, export_npz, open_store, salvage_store
from latentscope.store._integrity import pack_segments, parse_segments, sum64
from latentscope.store._recovery import _write_superblock, read_superblock, superblock_status

Z_DIM, N_BATCH, BATCH = 16, 4, 500
_CLI = (sys.executable, "-c", "import sys; from latentscope.cli import main; sys.exit(main())")


def _make_store(path: Path, *, keep_open: bool = False, seed: int = 0) -> tuple[dict, bytes]:
    """A real store (string ids, three kinds of columns, provenance, four appends).

    Returns the expected arrays and the file's bytes, copied while the writer still holds
    the file (``keep_open``: superblock flags say "open for SWMR write") or after it closed.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_t(3, (N_BATCH * BATCH, Z_DIM)).astype(np.float32)  # heavy tails
    ids = np.array([f"img-{i:05d}-é" for i in range(z.shape[0])])
    cols = {"age": rng.integers(0, 90, z.shape[0]), "score": rng.lognormal(size=z.shape[0]),
            "name": np.array([f"p{i}" * (i % 5) for i in range(z.shape[0])])}
    store = create_store(path, Z_DIM, backend="linear", source="test")
    for k in range(N_BATCH):
        sl = slice(k * BATCH, (k + 1) * BATCH)
        store.append(z[sl], ids=ids[sl], columns={name: v[sl] for name, v in cols.items()})
        store.set_provenance(batch=k)
    data = path.read_bytes() if keep_open else None
    store.close()
    return {"z": z, "ids": ids, **cols}, (data if keep_open else path.read_bytes())


class _Stores:
    """The expected arrays and the bytes of two copies of a store (a short repr for hypothesis)."""

    def __init__(self, root: Path) -> None:
        self.want, closed = _make_store(root / "closed.h5")
        _, live = _make_store(root / "live.h5", keep_open=True)
        self.data = {"closed": closed, "live": live}

    def __iter__(self):
        return iter((self.want, self.data))

    def __repr__(self) -> str:
        return "<stores>"


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    return _Stores(tmp_path_factory.mktemp("integrity"))


def _equal_or_error(path: Path, want: dict) -> str:
    """Read everything through the API: exactly the original rows, or a StoreError. Returns what happened."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with open_store(path) as s:
                got = {"z": s.read(), "ids": s.read_ids(), **{c: s.read_column(c) for c in s.column_names}}
                blocks = np.concatenate([b.z for b in s.iter_blocks(max_bytes=1 << 14)] or [np.empty((0, Z_DIM))])
                assert s.provenance["batch"] == N_BATCH - 1
    except StoreError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return "error"
    assert set(got) == set(want)
    for key, values in want.items():
        np.testing.assert_array_equal(got[key], values)
    np.testing.assert_array_equal(blocks, want["z"])
    return "rows"


def _cli(*argv) -> tuple[int, str]:
    """Exit status and stderr of the command (stdout for ``check``, whose report goes there)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, (out.getvalue() if argv and argv[0] == "check" and not err.getvalue() else err.getvalue())


# -- the checksum --------------------------------------------------------------------------
def _sum64_reference(raw: bytes) -> int:
    padded = raw + bytes(-len(raw) % 8)
    words = [int.from_bytes(padded[i : i + 8], "little") for i in range(0, len(padded), 8)]
    return (len(raw) + sum((2 * (i // 512) + 1) * w for i, w in enumerate(words))) % 2**64


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 9000), seed=st.integers(0, 2**32 - 1))
def test_sum64_matches_its_definition_and_sees_every_flipped_byte(n, seed):
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, n, dtype=np.uint8)
    assert sum64(raw) == _sum64_reference(raw.tobytes())
    if n:
        bad = raw.copy()
        bad[rng.integers(n)] ^= np.uint8(1 << int(rng.integers(8)))
        assert sum64(bad) != sum64(raw)


def test_sum64_sees_moved_pages_and_lengths():
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, 3 * 4096, dtype=np.uint8)
    swapped = np.concatenate([raw[4096:8192], raw[:4096], raw[8192:]])
    assert sum64(swapped) != sum64(raw)
    assert sum64(np.zeros(8, np.uint8)) != sum64(np.zeros(16, np.uint8))  # zeros appended count


def test_segment_records_chain_and_reject_damage():
    recs = pack_segments([0, 64, 100], [64, 100, 128], [0, 0, 0], [1, 2, 3])
    segs = parse_segments(recs, 100, 64)
    assert list(segs.starts) == [0, 64] and list(segs.stops) == [64, 100]
    assert parse_segments(recs, 0, 64).starts.size == 0
    torn = recs.copy()
    torn[1, 3] += 1  # the checksum field of the second record changed
    assert parse_segments(torn, 100, 64) == "no valid checksums for rows 64..100"
    assert parse_segments(recs, 110, 64) == "no valid checksums for rows 100..110"
    assert len(parse_segments(torn, 100, 64, partial=True)) == 1


# -- truncated copies ----------------------------------------------------------------------
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["closed", "live"]), frac=st.floats(0, 1))
def test_a_store_cut_anywhere_gives_the_original_rows_or_one_line_errors(stores, tmp_path, kind, frac):
    want, data = stores
    raw = data[kind]
    cut = int(frac * len(raw))
    path = tmp_path / f"cut-{kind}-{cut}.h5"
    path.write_bytes(raw[:cut])
    outcome = _equal_or_error(path, want)
    if kind == "closed" and cut < len(raw):
        assert outcome == "error"  # a closed store is complete or an error: never fewer rows
    try:
        export_npz(path, tmp_path / "e.npz", overwrite=True)
    except StoreError:
        assert outcome == "error"
    else:
        with np.load(tmp_path / "e.npz") as got:
            for key, values in want.items():
                np.testing.assert_array_equal(got[key], values)
    report = check_store(path)
    assert report.ok == (outcome == "rows"), report.problems
    for argv in (["info", path], ["export", path, "--out", tmp_path / "c.npz", "--overwrite", "--no-progress"],
                 ["import", path, "--out", tmp_path / "copy.h5", "--overwrite", "--no-progress"],
                 ["check", path, "--no-progress"]):
        code, err = _cli(*argv)
        assert code == (0 if outcome == "rows" else 1), (argv, err)
        if code and argv[0] == "check":
            assert all(ln.startswith(("damaged: ", "note: ")) for ln in err.splitlines()), err
        elif code:
            assert err.startswith("error: ") and err.count("\n") == 1, err
    assert path.read_bytes() == raw[:cut]  # reading never changes the file


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subprocess timeouts on Linux")
def test_every_command_fails_fast_with_one_line_on_a_truncated_store(stores, tmp_path):
    want, data = stores
    env = {**os.environ, "LATENTSCOPE_NO_PROGRESS": "1"}
    for cut in (3000, len(data["closed"]) * 3 // 5):
        path = tmp_path / f"cut{cut}.h5"
        path.write_bytes(data["closed"][:cut])
        commands = [
            ["info", path], ["export", path, "--out", tmp_path / "o.npz"], ["check", path],
            ["analyze", path, "--out", tmp_path / "a", "--no-figures"],
            ["sample", path, "--region", "cube", "-n", "5", "--out", tmp_path / "s"],
            ["filaments", path, "--out", tmp_path / "f"],
        ]
        for argv in commands:
            res = subprocess.run([*_CLI, *map(str, argv)], capture_output=True,
                                 text=True, timeout=10, env=env)  # a hang fails here
            assert res.returncode == 1, (argv, res.stderr)
            if argv[0] == "check":  # its report goes to stdout
                assert res.stdout.startswith(f"damaged: {path}: the file is truncated") and not res.stderr
                continue
            lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], (argv, res.stderr)
        assert not (tmp_path / "o.npz").exists()


def test_live_copy_truncated_inside_metadata_fails_within_milliseconds(stores, tmp_path):
    """HDF5 retries SWMR metadata reads with doubling sleeps (100 times by default: forever)."""
    want, data = stores
    for cut in (997, 3000, 20000):
        path = tmp_path / f"live{cut}.h5"
        path.write_bytes(data["live"][:cut])
        res = subprocess.run([*_CLI, "info", str(path)], capture_output=True,
                             text=True, timeout=10)
        assert res.returncode == 1 and res.stderr.startswith("error: "), res.stderr


# -- missing chunks, flipped bytes ---------------------------------------------------------
def _commit_more_rows(path: Path, extra: int) -> None:
    """Make the commit record claim rows that were never written (chunks never allocated)."""
    with h5py.File(path, "r+") as f:
        seq, n, now, skipped, gen = F.unpack_commit(f["commit"][...])
        for name in ("z", "ids"):
            f[name].resize(n + extra, axis=0)
        f["commit"][(seq + 1) % 2] = F.pack_commit(seq + 1, n + extra, now, skipped, gen)


@pytest.mark.parametrize("version", [1, 2])
def test_committed_rows_without_data_are_an_error_not_fill_values(tmp_path, rng, version):
    path = tmp_path / "z.h5"
    with create_store(path, 4, chunk_rows=8) as s:
        s.append(rng.standard_normal((10, 4)))
    if version == 1:
        _downgrade(path)
    _commit_more_rows(path, 30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StoreFormatWarning)
        with pytest.raises(StoreFormatError, match=r"rows 16\.\.24 of 'z' are missing"):
            open_store(path)
        report = check_store(path)
    # format 2 knows rows 10..16 were never written (no checksums); format 1 sees only whole missing chunks
    assert not report.ok and report.n_good == (10 if version == 2 else 16)
    salvage_store(path, tmp_path / "s.h5", report=report)
    with open_store(tmp_path / "s.h5") as s:
        assert s.n_rows == report.n_good


def _z_chunk_offset(path: Path, chunk: int = 0) -> int:
    with h5py.File(path, "r") as f:
        return int(f["z"].id.get_chunk_info(chunk).byte_offset)


def test_one_flipped_byte_in_z_is_found_by_reads_export_and_check(tmp_path):
    want, raw = _make_store(tmp_path / "good.h5")
    path = tmp_path / "bad.h5"
    damaged = bytearray(raw)
    at = _z_chunk_offset(tmp_path / "good.h5") + 4 * Z_DIM * 700 + 5  # row 700: in the second append
    damaged[at] ^= 0x01
    path.write_bytes(bytes(damaged))
    with open_store(path) as s:
        np.testing.assert_array_equal(s.read(slice(0, 500)), want["z"][:500])  # other appends still read
        with pytest.raises(StoreFormatError, match=r"rows 500\.\.1000 of 'z' do not match their checksum"):
            s.read()
        with pytest.raises(StoreFormatError, match="checksum"):
            list(s.iter_blocks())
        with pytest.raises(StoreFormatError, match="checksum"):
            s.read([3, 701])
    with pytest.raises(StoreFormatError, match="checksum"):
        export_npz(path, tmp_path / "o.npz")
    code, err = _cli("export", path, "--out", tmp_path / "o.npz", "--no-progress")
    assert code == 1 and "do not match their checksum" in err and err.count("\n") == 1
    code, out = _cli("check", path, "--no-progress", "--salvage", tmp_path / "s.h5")
    assert code == 1 and "damaged: rows 500..1000 of 'z'" in out and "salvaged 1,500 rows" in out
    report = check_store(path)
    assert report.problems == ["rows 500..1000 of 'z' do not match their checksum"] and report.n_good == 1500
    keep = np.r_[0:500, 1000:2000]
    with open_store(tmp_path / "s.h5") as s:
        np.testing.assert_array_equal(s.read(), want["z"][keep])
        np.testing.assert_array_equal(s.read_ids(), want["ids"][keep])
        np.testing.assert_array_equal(s.read_column("name"), want["name"][keep])
        assert s.provenance["dropped_rows"] == 500 and s.provenance["backend"] == "linear"


def test_flipped_bytes_in_ids_and_string_columns_are_found(tmp_path):
    want, raw = _make_store(tmp_path / "good.h5")
    for dataset in ("ids", "id_strings", "columns/name", "columns/score"):
        with h5py.File(tmp_path / "good.h5", "r") as f:
            info = f[dataset].id.get_chunk_info(0)
        damaged = bytearray(raw)
        damaged[int(info.byte_offset) + 3] ^= 0x40
        path = tmp_path / "bad.h5"
        path.write_bytes(bytes(damaged))
        report = check_store(path)
        assert not report.ok and dataset in report.problems[0], (dataset, report.problems)


def test_check_reports_ok_and_notes_a_killed_writer(tmp_path, rng):
    path = tmp_path / "z.h5"
    with create_store(path, 3) as s:
        s.append(rng.standard_normal((50, 3)))
    code, _ = _cli("check", path, "--no-progress")
    assert code == 0
    fd = os.open(path, os.O_RDWR)
    try:
        sb = read_superblock(fd)
        _write_superblock(fd, sb, status_flags=0x05, eoa=sb.eoa)
    finally:
        os.close(fd)
    before = path.read_bytes()
    report = check_store(path)
    assert report.ok and any("writer stopped" in note for note in report.notes)
    assert path.read_bytes() == before and superblock_status(path) == 0x05
    with open_store(path, "a") as s:  # and it resumes
        s.append(rng.standard_normal((5, 3)))
    assert check_store(path).ok


# -- format 1 --------------------------------------------------------------------------------
def _downgrade(path: Path) -> None:
    """What latentscope 0.1 wrote: the same layout without /checksums, format_version 1."""
    with h5py.File(path, "r+") as f:
        del f[F.CHECKSUMS_GROUP]
        f.attrs["format_version"] = 1


def test_version_1_stores_read_with_one_line_warning_and_migrate(tmp_path, rng):
    path = tmp_path / "old.h5"
    z = rng.standard_normal((40, 3)).astype(np.float32)
    with create_store(path, 3) as s:
        s.append(z, ids=[f"a{i}" for i in range(40)], columns={"c": np.arange(40)})
    _downgrade(path)
    with pytest.warns(StoreFormatWarning, match="format version 1 has no checksums"):
        with open_store(path) as s:
            np.testing.assert_array_equal(s.read(), z)
            assert s.summary()["checksums"] is False
    with pytest.warns(StoreFormatWarning):  # appending keeps format 1
        with open_store(path, "a") as s:
            s.append(z[:2])
    code, err = _cli("info", path)
    assert code == 0 and err.startswith("warning: ") and err.count("\n") == 1
    report = check_store(path)
    assert report.ok and not report.verified and any("no checksums" in n for n in report.notes)
    assert _cli("import", path, "--out", tmp_path / "new.h5", "--no-progress")[0] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_store(tmp_path / "new.h5") as s:
            assert s.format_version == 2 and s.n_rows == 42
            assert list(s.read_ids()[:2]) == ["a0", "a1"]
    assert check_store(tmp_path / "new.h5").verified


def test_write_column_and_string_widening_keep_checksums_valid(tmp_path, rng):
    path = tmp_path / "z.h5"
    with create_store(path, 2, chunk_rows=8) as s:
        s.append(rng.standard_normal((20, 2)), ids=["a"] * 20, columns={"t": np.array(["x"] * 20)})
        s.append(rng.standard_normal((5, 2)), ids=["b" * 70] * 5, columns={"t": np.array(["y" * 100] * 5)})
        s.write_column("t", np.array(["zz"] * 25))  # in place
        s.write_column("v", rng.standard_normal(25))
        s.write_column("v", np.arange(25))  # replaced (new dtype kind)
        s.delete_column("v")
    report = check_store(path)
    assert report.ok, report.problems
    with open_store(path) as s:
        assert list(s.read_ids()) == ["a"] * 20 + ["b" * 70] * 5
        assert list(s.read_column("t")) == ["zz"] * 25
