"""Real processes: a writer SIGKILLed at random moments, and readers beside a live writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import traceback

import h5py
import numpy as np
import pytest

from latentscope.store import create_store, open_store

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs fork and SIGKILL (Linux)")

Z_DIM, CHUNK, N_BATCHES, MAX_BATCH = 8, 64, 300, 200
SEED = 11


def _sizes(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, MAX_BATCH, N_BATCHES)


def _batch(seed: int, k: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, k]).standard_normal((n, Z_DIM)).astype(np.float32)


def _ids(k: int, n: int) -> list[str]:
    width = 4 + (k // 50) * 9  # later ids outgrow the initial 16-byte width
    return [f"{k}-{i}".rjust(width, "x") for i in range(n)]


def _expected(seed: int, k0: int, k1: int):
    sizes = _sizes(seed)
    z = np.concatenate([_batch(seed, k, int(sizes[k])) for k in range(k0, k1)])
    ids = sum((_ids(k, int(sizes[k])) for k in range(k0, k1)), [])
    batch = np.concatenate([np.full(int(sizes[k]), k) for k in range(k0, k1)])
    return z, ids, batch


def _writer(path: str, seed: int, out_fd: int, flush_marks: bool) -> None:
    """Body of a forked child: resume the store and append the remaining batches.

    Writes b"R" when the store is open, b"c" after each append returned (its rows
    are committed), b"f" before each HDF5 flush (with ``flush_marks``), b"D" at the end.
    """
    code = 1
    try:
        if flush_marks:
            real_flush = h5py.File.flush

            def flush(self):
                os.write(out_fd, b"f")
                real_flush(self)

            h5py.File.flush = flush
        store = open_store(path, "a") if os.path.exists(path) else create_store(path, Z_DIM, chunk_rows=CHUNK)
        sizes = _sizes(seed)
        cum = np.r_[0, np.cumsum(sizes)]
        k = int(np.searchsorted(cum, store.n_rows))
        assert cum[k] == store.n_rows, "resumed between batches"
        os.write(out_fd, b"R")
        while k < N_BATCHES:
            n = int(sizes[k])
            store.append(_batch(seed, k, n), ids=_ids(k, n), columns={"batch": np.full(n, k, np.int32)})
            if k % 7 == 0:  # provenance updates between appends, as encode does
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


def _start(path, seed: int, flush_marks: bool = False) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        _writer(str(path), seed, w, flush_marks)
    os.close(w)
    return pid, r


def _read_until(fd: int, marker: bytes, count: int = 1) -> bytes:
    """Read from the child's pipe until ``count`` markers were seen (or EOF); return what was read."""
    got = bytearray()
    seen = 0
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


@pytest.mark.slow
def test_store_survives_sigkill_at_random_moments(tmp_path):
    """24 writers are SIGKILLed: while opening or repairing, mid-append, and inside flushes.

    After every kill the store opens, holds every batch whose append had returned,
    and the next writer resumes; the final rows equal an uninterrupted run's.
    """
    rng = np.random.default_rng(int(os.environ.get("LATENTSCOPE_TEST_SEED", "0")))
    path = tmp_path / "killed.h5"
    cum = np.r_[0, np.cumsum(_sizes(SEED))]
    k_done, kills, styles = 0, 0, []
    for it in range(24):
        style = ("early", "anytime", "in-flush")[it % 3] if it else "anytime"
        pid, fd = _start(path, SEED, flush_marks=style == "in-flush")
        seen = b""
        if style == "early":  # during fork/open/repair (or create)
            time.sleep(rng.uniform(0, 0.02))
        else:
            seen = _read_until(fd, b"R")
            if style == "anytime":  # after 0-11 more appends, at a random moment (however fast the machine)
                seen += _read_until(fd, b"c", int(rng.integers(0, 12)))
                time.sleep(rng.uniform(0, 0.005))
            else:
                seen += _read_until(fd, b"f", int(rng.integers(1, 40)))
                time.sleep(rng.uniform(0, 0.002))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        seen += _drain(fd)
        kills += os.WIFSIGNALED(status)
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0, "the writer failed"
        styles.append(style)
        k = _check_prefix(path, SEED, cum) if path.exists() else 0
        acked = seen.count(b"c")
        # every append that returned is kept; at most the one in flight is added
        assert k_done + acked <= k <= k_done + acked + 1, (style, k_done, acked, k)
        k_done = k
    assert kills >= 18, f"only {kills} of 24 writers were killed before finishing"
    pid, fd = _start(path, SEED)  # resume to the end
    _, status = os.waitpid(pid, 0)
    assert _drain(fd).endswith(b"D") and os.WEXITSTATUS(status) == 0
    ref = tmp_path / "uninterrupted.h5"
    pid, fd = _start(ref, SEED)
    _, status = os.waitpid(pid, 0)
    assert _drain(fd).endswith(b"D") and os.WEXITSTATUS(status) == 0
    with open_store(path) as a, open_store(ref) as b:
        assert a.n_rows == b.n_rows == cum[-1]
        np.testing.assert_array_equal(a.read(), b.read())
        np.testing.assert_array_equal(a.read_ids(), b.read_ids())
        np.testing.assert_array_equal(a.read_column("batch"), b.read_column("batch"))
    z, ids, _ = _expected(SEED, 0, N_BATCHES)
    with open_store(path) as a:
        np.testing.assert_array_equal(a.read(), z)
    with h5py.File(path, "r") as f:  # cleanly closed: plain HDF5 tools open it too
        assert f["z"].shape[1] == Z_DIM


_WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from latentscope.store import open_store
    path, seed, n_batches, rows, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    with open_store(path, "a") as s:
        print("R", flush=True)
        for k in range(1, n_batches):
            z = np.random.default_rng([seed, k]).standard_normal((rows, dim)).astype(np.float32)
            s.append(z, ids=[f"{k}-{i}" * (1 + k // 40) for i in range(rows)])
            time.sleep(0.002)
    """
)


@pytest.mark.slow
def test_readers_follow_a_writer_in_another_process(tmp_path):
    """One process appends; this one reads (a reader opened before the writer and fresh
    ones opened while it runs): no errors, and always a consistent prefix of batches."""
    seed, n_batches, rows, dim = 5, 250, 37, 16
    expect_z = [np.random.default_rng([seed, k]).standard_normal((rows, dim)).astype(np.float32)
                for k in range(n_batches)]
    expect_ids = [[f"{k}-{i}" * (1 + k // 40) for i in range(rows)] for k in range(n_batches)]
    path = tmp_path / "live.h5"
    with create_store(path, dim, chunk_rows=16) as s:
        s.append(expect_z[0], ids=expect_ids[0])
    early = open_store(path)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER_SCRIPT, str(path), str(seed), str(n_batches), str(rows),
                             str(dim)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"R", proc.stderr.read().decode()
        seen, last = [], 0
        while True:
            running = proc.poll() is None
            for reader in (early, None):
                with (open_store(path) if reader is None else _no_close(reader)) as r:
                    r.refresh()
                    n = r.n_rows
                    assert n % rows == 0 and n >= last
                    k = n // rows
                    k0 = max(0, k - 4)
                    np.testing.assert_array_equal(r.read(slice(k0 * rows, n)), np.concatenate(expect_z[k0:k]))
                    assert list(r.read_ids(slice(k0 * rows, n))) == sum(expect_ids[k0:k], [])
                    last = n
                    seen.append(n)
            if not running:
                break
        assert proc.wait() == 0, proc.stderr.read().decode()
        assert len(set(seen)) >= 3, "the reads did not overlap the writes"
        assert early.refresh() == n_batches * rows
        np.testing.assert_array_equal(early.read(), np.concatenate(expect_z))
        total = sum(len(b) for b in early.iter_blocks(max_bytes=4096, ids=True))
        assert total == n_batches * rows
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        early.close()


class _no_close:
    """Use an open store in a ``with`` block without closing it."""

    def __init__(self, store):
        self.store = store

    def __enter__(self):
        return self.store

    def __exit__(self, *exc):
        return None
