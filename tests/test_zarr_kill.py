"""Real processes on a Zarr store: a writer SIGKILLed at random moments, and a reader beside a live writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")

from latentscope.store import create_store, open_store  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs fork and SIGKILL (Linux)")

Z_DIM, CHUNK, N_BATCHES, MAX_BATCH = 8, 64, 120, 150
SEED = 5


def _sizes(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, MAX_BATCH, N_BATCHES)


def _batch(seed: int, k: int, n: int) -> np.ndarray:
    rng = np.random.default_rng([seed, k])  # heavy-tailed, off-centre: not only Gaussians on disk
    return (rng.standard_t(3, (n, Z_DIM)) * 3.0 + 7.0).astype(np.float32)


def _ids(k: int, n: int) -> list[str]:
    width = 4 + (k // 30) * 11  # later ids outgrow the initial 16-byte width (the byte matrix widens)
    return [f"{k}-{i}".rjust(width, "x") for i in range(n)]


def _expected(seed: int, k0: int, k1: int):
    sizes = _sizes(seed)
    z = np.concatenate([_batch(seed, k, int(sizes[k])) for k in range(k0, k1)])
    ids = sum((_ids(k, int(sizes[k])) for k in range(k0, k1)), [])
    batch = np.concatenate([np.full(int(sizes[k]), k) for k in range(k0, k1)])
    return z, ids, batch


def _writer(path: str, seed: int, out_fd: int, write_marks: bool) -> None:
    """Body of a forked child: resume the store (or create it) and append the remaining batches.

    Writes b"R" when the store is open, b"c" after each append returned (its rows are
    committed), b"w" before each file zarr writes (with ``write_marks``), b"D" at the end.
    """
    code = 1
    try:
        if write_marks:
            import zarr.storage._local as local

            real_put = local._put

            def put(p, value, exclusive=False):
                os.write(out_fd, b"w")
                return real_put(p, value, exclusive)

            local._put = put
        store = open_store(path, "a") if os.path.exists(path) else create_store(path, Z_DIM, chunk_rows=CHUNK)
        sizes = _sizes(seed)
        cum = np.r_[0, np.cumsum(sizes)]
        k = int(np.searchsorted(cum, store.n_rows))
        assert cum[k] == store.n_rows, "resumed between batches"
        os.write(out_fd, b"R")
        while k < N_BATCHES:
            n = int(sizes[k])
            store.append(_batch(seed, k, n), ids=_ids(k, n), columns={"batch": np.full(n, k, np.int32)})
            if k % 7 == 0:
                store.set_provenance(last_batch=k, note="x" * (k * 13))
            os.write(out_fd, b"c")
            k += 1
        store.close()
        os.write(out_fd, b"D")
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _start(path, seed: int, write_marks: bool = False) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        _writer(str(path), seed, w, write_marks)
    os.close(w)
    return pid, r


def _read_until(fd: int, marker: bytes, count: int = 1) -> bytes:
    got, seen = bytearray(), 0
    while seen < count:
        ch = os.read(fd, 1)
        if not ch:
            break
        got += ch
        seen += ch == marker
    return bytes(got)


def _drain(fd: int) -> bytes:
    out = bytearray()
    while chunk := os.read(fd, 4096):
        out += chunk
    os.close(fd)
    return bytes(out)


def _check_prefix(path, seed: int, cum: np.ndarray) -> int:
    """Open the store as a reader; its rows must be whole batches equal to the expected ones."""
    with open_store(path) as s:
        n = s.n_rows
        k = int(np.searchsorted(cum, n))
        assert cum[k] == n, f"{n} rows is not a batch boundary"
        if k:
            k0 = max(0, k - 3)
            z, ids, batch = _expected(seed, k0, k)
            lo = int(cum[k0])
            np.testing.assert_array_equal(s.read(slice(lo, n)), z)
            assert list(s.read_ids(slice(lo, n))) == ids
            np.testing.assert_array_equal(s.read_column("batch", slice(lo, n)), batch)
        last = s.provenance.get("last_batch", -1)  # readable, and never ahead of the rows
        assert last < k and (last == -1 or len(s.provenance["note"]) == last * 13)
    return k


def _partials(path: Path) -> list[str]:
    return [str(p) for p in path.rglob("*.partial")]


@pytest.mark.slow
def test_zarr_store_survives_sigkill_at_random_moments(tmp_path):
    """15 writers are SIGKILLed: while creating or opening, mid-append, and between two file writes.

    After every kill the store opens, holds every batch whose append had returned, and the
    next writer resumes (removing the killed writer's *.partial files); the final rows equal
    an uninterrupted run's.
    """
    rng = np.random.default_rng(int(os.environ.get("LATENTSCOPE_TEST_SEED", "0")))
    path = tmp_path / "killed.zarr"
    cum = np.r_[0, np.cumsum(_sizes(SEED))]
    k_done, kills, partials_seen = 0, 0, 0
    for it in range(15):
        style = ("early", "anytime", "in-write")[it % 3] if it else "anytime"
        pid, fd = _start(path, SEED, write_marks=style == "in-write")
        seen = b""
        if style == "early":
            time.sleep(rng.uniform(0, 0.05))
        else:
            seen = _read_until(fd, b"R")
            if style == "anytime":
                seen += _read_until(fd, b"c", int(rng.integers(0, 10)))
                time.sleep(rng.uniform(0, 0.01))
            else:  # between two file writes (chunks, array metadata, the commit record)
                seen += _read_until(fd, b"w", int(rng.integers(1, 60)))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        seen += _drain(fd)
        kills += os.WIFSIGNALED(status)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0, "the writer failed"
        partials_seen += bool(path.exists() and _partials(path))
        k = _check_prefix(path, SEED, cum) if path.exists() else 0
        acked = seen.count(b"c")
        assert k_done + acked <= k <= k_done + acked + 1, (style, k_done, acked, k)
        k_done = k
    assert kills >= 12, f"only {kills} of 15 writers were killed before finishing"
    pid, fd = _start(path, SEED)  # resume to the end
    _, status = os.waitpid(pid, 0)
    assert _drain(fd).endswith(b"D") and os.WEXITSTATUS(status) == 0
    assert _partials(path) == []  # the resuming writer removed what killed writers left
    ref = tmp_path / "uninterrupted.zarr"
    pid, fd = _start(ref, SEED)
    _, status = os.waitpid(pid, 0)
    assert _drain(fd).endswith(b"D") and os.WEXITSTATUS(status) == 0
    with open_store(path) as a, open_store(ref) as b:
        assert a.n_rows == b.n_rows == cum[-1]
        np.testing.assert_array_equal(a.read(), b.read())
        np.testing.assert_array_equal(a.read_ids(), b.read_ids())
        np.testing.assert_array_equal(a.read_column("batch"), b.read_column("batch"))
        assert a.provenance["last_batch"] == b.provenance["last_batch"]
    z, ids, _ = _expected(SEED, 0, N_BATCHES)
    with open_store(path) as a:
        np.testing.assert_array_equal(a.read(), z)
        assert list(a.read_ids()) == ids
    from latentscope.store import check_store

    assert check_store(path).ok


_WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from latentscope.store import open_store
    path, seed, n_batches, rows, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    with open_store(path, "a") as s:
        print("R", flush=True)
        for k in range(1, n_batches):
            z = np.random.default_rng([seed, k]).standard_normal((rows, dim)).astype(np.float32)
            s.append(z, ids=[f"{k}-{i}" * (1 + k // 8) for i in range(rows)], columns={"k": np.full(rows, k)})
    print("D", flush=True)
    """
)


def test_reader_beside_a_writer_process_sees_whole_committed_batches(tmp_path):
    """A writer in another process appends (ids widening as it goes); the reader's snapshot holds
    only whole committed batches with their ids and columns, and refresh() moves it forward."""
    path = tmp_path / "live.zarr"
    seed, n_batches, rows, dim = 3, 40, 50, 6
    with create_store(path, dim, chunk_rows=32) as s:
        s.append(np.random.default_rng([seed, 0]).standard_normal((rows, dim)).astype(np.float32),
                 ids=[f"0-{i}" for i in range(rows)], columns={"k": np.zeros(rows, np.int64)})
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", _WRITER_SCRIPT, str(path), str(seed), str(n_batches), str(rows),
                             str(dim)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "R"
        seen = set()
        with open_store(path) as r:
            while True:
                n = r.refresh()
                assert n % rows == 0, f"{n} rows is not a whole number of batches"
                seen.add(n)
                k = n // rows - 1  # check the last committed batch, read in this snapshot
                z = r.read(slice(k * rows, n))
                np.testing.assert_array_equal(
                    z, np.random.default_rng([seed, k]).standard_normal((rows, dim)).astype(np.float32))
                assert list(r.read_ids(slice(k * rows, n))) == [f"{k}-{i}" * (1 + k // 8) for i in range(rows)]
                np.testing.assert_array_equal(r.read_column("k", slice(k * rows, n)), np.full(rows, k))
                if proc.poll() is not None and r.refresh() == n:
                    break
        assert proc.wait(timeout=60) == 0
        assert max(seen) == n_batches * rows and len(seen) >= 3, sorted(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
