"""Sharded Zarr stores: parts written independently (other processes, SIGKILL, resume), read as a growing prefix."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback

import numpy as np
import pytest

pytest.importorskip("zarr")

from latentscope.exceptions import InvalidParameterError, StoreError, StoreFormatError  # noqa: E402
from latentscope.store import (  # noqa: E402
    check_store,
    create_sharded_store,
    create_store,
    open_shard,
    open_store,
    shard_status,
)
from latentscope.store._transfer import export_store  # noqa: E402
from latentscope.stream import as_zsource  # noqa: E402

DIM, CHUNK = 5, 32
SIZES = [130, 0, 75, 200]


def _rows(i: int, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi of shard i: lognormal marginals times a rotation, off-centre; the same in any process."""
    rng = np.random.default_rng([7, i])
    x = rng.lognormal(0.0, 0.7, (SIZES[i], DIM)) * np.array([5.0, 2.0, 1.0, 0.5, 0.2])
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((DIM, DIM)))
    return (x @ q + 3.0).astype(np.float32)[lo:hi]


def _write(path, i: int, lo: int, hi: int, step: int = 25, complete: bool = True) -> None:
    with open_shard(path, i) as w:
        assert w.n_rows == lo
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            w.append(_rows(i, a, b), ids=[f"s{i}-{k}" for k in range(a, b)],
                     columns={"source_index": np.arange(a, b) + 1000 * i})
        if complete:
            w.mark_complete()


def _expected(parts) -> np.ndarray:
    return np.concatenate([_rows(i, 0, SIZES[i]) for i in parts]) if parts else np.empty((0, DIM), np.float32)


def test_prefix_semantics_and_shard_status(tmp_path):
    path = tmp_path / "big.zarr"
    create_sharded_store(path, DIM, shard_sizes=SIZES, chunk_rows=CHUNK, backend="linear", source="synthetic:x",
                         source_items=sum(SIZES), image_size=[8, 8])
    assert shard_status(path) == [{"index": i, "planned": s, "rows": 0, "complete": False} for i, s in enumerate(SIZES)]
    reader = open_store(path)
    assert reader.sharded and reader.n_rows == 0 and reader.provenance["source_items"] == 405
    _write(path, 2, 0, 75)  # a later shard finishes first: not visible yet
    assert reader.refresh() == 0
    _write(path, 0, 0, 60, complete=False)
    assert reader.refresh() == 60  # the committed rows of the first incomplete part
    first = reader.read()
    _write(path, 0, 60, 130)
    assert reader.refresh() == 130  # shard 0 complete; shard 1 (empty) is not complete yet
    _write(path, 1, 0, 0)  # a shard with zero rows completes
    assert reader.refresh() == 205  # 0, 1 and the already complete 2; 3 has nothing committed
    np.testing.assert_array_equal(reader.read(slice(0, 60)), first)  # visible rows never change
    np.testing.assert_array_equal(reader.read(), _expected([0, 1, 2]))
    assert [s["complete"] for s in shard_status(path)] == [True, True, True, False]
    _write(path, 3, 0, 100, complete=False)
    assert reader.refresh() == 305
    _write(path, 3, 100, 200)
    assert reader.refresh() == 405
    z = _expected([0, 1, 2, 3])
    np.testing.assert_array_equal(reader.read(), z)
    ids = reader.read_ids()
    assert list(ids[:2]) == ["s0-0", "s0-1"] and ids[130] == "s2-0" and ids[-1] == "s3-199"
    np.testing.assert_array_equal(reader.read_column("source_index")[[0, 129, 130, 205]], [0, 129, 2000, 3000])
    rows = np.array([404, 0, 131, 131, 250])
    np.testing.assert_array_equal(reader.read(rows), z[rows])
    assert reader.column_names == ["source_index"] and reader.summary()["shards"][3]["rows"] == 200
    reader.close()
    src = as_zsource(path)
    try:  # blocks across part boundaries
        got = np.concatenate([b.z for b in src.iter_blocks(max_bytes=CHUNK * DIM * 4 * 2)])
        np.testing.assert_array_equal(got, z)
        d = pickle.loads(pickle.dumps(src.store.to_dask(chunks=64)))
        np.testing.assert_array_equal(d.compute(scheduler="sync"), z)
    finally:
        src.close()
    assert check_store(path).ok
    stats = export_store(path, tmp_path / "copy.h5")
    assert stats["rows"] == 405
    with open_store(tmp_path / "copy.h5") as h:
        np.testing.assert_array_equal(h.read(), z)
        assert h.provenance["source_items"] == 405 and list(h.read_ids()[-1:]) == ["s3-199"]


def test_shard_provenance_and_errors(tmp_path):
    path = tmp_path / "p.zarr"
    create_sharded_store(path, DIM, shard_sizes=[10, 10], chunk_rows=CHUNK, note="root", k=1)
    with open_shard(path, 0) as w:
        w.set_provenance(n_skipped=2, k=2)
        with pytest.raises(StoreError, match="another process .* is writing"):
            open_shard(path, 0)
        with open_shard(path, 1) as other:  # another part: its own lock
            other.append(_rows(0, 0, 3))
        w.append(_rows(0, 0, 10))
        w.mark_complete()
        with pytest.raises(StoreError, match="the shard is complete"):
            w.append(_rows(0, 0, 1))
    with pytest.raises(StoreError, match="the shard is complete"):
        open_shard(path, 0)
    with open_store(path, "a") as whole:  # the whole store: provenance only
        whole.set_provenance(k=3, encode_items_per_second=12.5)
        with pytest.raises(StoreError, match="written part by part; use latentscope.store.open_shard"):
            whole.append(_rows(0, 0, 1))
    with open_store(path) as r:
        prov = r.provenance
        assert (prov["note"], prov["k"], prov["n_skipped"], prov["encode_items_per_second"]) == ("root", 3, 2, 12.5)
        assert r.n_rows == 13
    report = check_store(path)
    assert report.ok and any("shard 1 is not complete (3 rows" in note for note in report.notes)
    chunk = path / "parts" / "00000" / "z" / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[3] ^= 0x40
    chunk.write_bytes(bytes(raw))
    report = check_store(path)
    assert not report.ok and "(shard 0): damaged data: rows 0..10 of 'z'" in report.problems[0] and report.n_good == 3
    with open_store(path) as r, pytest.raises(StoreFormatError, match=r"\(shard 0\): damaged data.*parts/00000/z/c/0/0"):
        r.read()
    with pytest.raises(InvalidParameterError, match=r"shard index must lie in \[0, 2\); got 2"):
        open_shard(path, 2)
    with create_store(tmp_path / "plain.zarr", DIM):
        pass
    for bad in (tmp_path / "plain.zarr", tmp_path / "missing.zarr"):
        with pytest.raises(StoreError):
            shard_status(bad)
    with pytest.raises(StoreError, match="not a sharded store"):
        open_shard(tmp_path / "plain.zarr", 0)
    with pytest.raises(InvalidParameterError, match="shard_sizes must be a non-empty list"):
        create_sharded_store(tmp_path / "e.zarr", DIM, shard_sizes=[])
    with pytest.raises(InvalidParameterError, match="must end in .zarr"):
        create_sharded_store(tmp_path / "e.h5", DIM, shard_sizes=[3])


def _child(path: str, i: int, fd: int) -> None:
    code = 1
    try:
        with open_shard(path, i) as w:
            lo = w.n_rows
            for a in range(lo, SIZES[i], 10):
                b = min(SIZES[i], a + 10)
                w.append(_rows(i, a, b), ids=[f"s{i}-{k}" for k in range(a, b)],
                         columns={"source_index": np.arange(a, b) + 1000 * i})
                os.write(fd, b"c")
            w.mark_complete()
        os.write(fd, b"D")
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _fork(path, i: int) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        _child(str(path), i, w)
    os.close(w)
    return pid, r


def _drain(fd: int) -> bytes:
    out = bytearray()
    while chunk := os.read(fd, 4096):
        out += chunk
    os.close(fd)
    return bytes(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs fork and SIGKILL (Linux)")
def test_shard_writers_in_processes_killed_and_resumed(tmp_path):
    """Shard writers run in parallel processes; one is SIGKILLed mid-shard and its part resumes
    after its last commit; the store then equals the planned concatenation."""
    path = tmp_path / "k.zarr"
    create_sharded_store(path, DIM, shard_sizes=SIZES, chunk_rows=CHUNK)
    rng = np.random.default_rng(int(os.environ.get("LATENTSCOPE_TEST_SEED", "0")))
    victim, victim_fd = _fork(path, 3)
    others = [_fork(path, i) for i in (0, 1, 2)]
    got = bytearray()
    for _ in range(int(rng.integers(2, 12))):  # let it commit a few batches, then kill it
        got += os.read(victim_fd, 1)
    os.kill(victim, signal.SIGKILL)
    _, status = os.waitpid(victim, 0)
    got += _drain(victim_fd)
    assert os.WIFSIGNALED(status) and b"D" not in got
    for pid, fd in others:
        _, st = os.waitpid(pid, 0)
        assert _drain(fd).endswith(b"D") and os.WEXITSTATUS(st) == 0
    status3 = shard_status(path)[3]
    assert not status3["complete"] and status3["rows"] % 10 == 0 and status3["rows"] >= 10 * got.count(b"c")
    with open_store(path) as r:
        assert r.n_rows == 205 + status3["rows"]
        np.testing.assert_array_equal(r.read(slice(205, None)), _rows(3, 0, status3["rows"]))
    pid, fd = _fork(path, 3)  # resume the killed part
    _, st = os.waitpid(pid, 0)
    assert _drain(fd).endswith(b"D") and os.WEXITSTATUS(st) == 0
    assert all(s["complete"] for s in shard_status(path))
    with open_store(path) as r:
        np.testing.assert_array_equal(r.read(), _expected([0, 1, 2, 3]))
        np.testing.assert_array_equal(r.read_column("source_index")[205:], np.arange(200) + 3000)
        assert not list(path.rglob("*.partial"))
