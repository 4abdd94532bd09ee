"""A real ``latentscope encode`` process killed with SIGKILL resumes without gaps or duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from latentscope.backends import LinearBackend
from latentscope.data import SyntheticFaces
from latentscope.exceptions import StoreError
from latentscope.store import open_store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)"),
]

N_ITEMS = 2000


def _encode_cmd(model_dir, store):
    return [sys.executable, "-m", "latentscope", "encode", "--backend", "linear", "--model", str(model_dir),
            "--data", f"synthetic:{N_ITEMS}", "--out", str(store), "--batch-size", "20", "--commit-rows", "20",
            "--no-progress"]


def _rows(path) -> int:
    try:
        with open_store(path) as store:
            return store.n_rows
    except StoreError:
        return 0


def _contents(path):
    with open_store(path) as store:
        return store.read(), store.read_ids(), {name: store.read_column(name) for name in store.column_names}


def test_encode_killed_and_resumed_equals_uninterrupted(tmp_path):
    # SIGKILL in the middle of a run, then rerun: rows, ids and columns equal one clean run
    model_dir = tmp_path / "model"
    LinearBackend.train(SyntheticFaces(100, image_size=24, seed=1), model_dir, z_dim=8, n_iter=2)
    env = {**os.environ, "LATENTSCOPE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

    full = tmp_path / "full.h5"
    subprocess.run(_encode_cmd(model_dir, full), env=env, check=True, capture_output=True, timeout=300)

    part = tmp_path / "part.h5"
    proc = subprocess.Popen(_encode_cmd(model_dir, part), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if part.exists() and _rows(part) >= N_ITEMS // 10:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    killed_at = _rows(part)
    assert 0 < killed_at < N_ITEMS, killed_at

    resumed = subprocess.run(_encode_cmd(model_dir, part), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout

    z_full, ids_full, cols_full = _contents(full)
    z_part, ids_part, cols_part = _contents(part)
    assert z_part.shape == (N_ITEMS, 8)
    np.testing.assert_array_equal(ids_part, ids_full)
    assert len(set(ids_part)) == N_ITEMS
    np.testing.assert_array_equal(z_part, z_full)
    assert cols_part.keys() == cols_full.keys()
    for name in cols_full:
        np.testing.assert_array_equal(cols_part[name], cols_full[name])
