"""``--scheduler`` / ``--workers`` on the commands, against real ``dask scheduler`` / ``dask worker`` processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("zarr")

from latentscope.cli import main  # noqa: E402
from latentscope.store import create_store  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_distributed import heavy_cloud, walk_equal  # noqa: E402


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _dask_cli() -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    return [str(exe)] if exe.exists() else [shutil.which("dask") or "dask"]


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """``dask scheduler`` and ``dask worker --nworkers 2`` as separate processes; yields the address."""
    d = tmp_path_factory.mktemp("dask")
    sfile = d / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED": "error"}
    procs = []
    try:
        procs.append(subprocess.Popen(
            [*_dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sfile)], cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        deadline = time.time() + 60
        while not sfile.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert sfile.exists(), "the dask scheduler did not start"
        time.sleep(0.3)  # the file is complete once it parses
        address = json.loads(sfile.read_text())["address"]
        procs.append(subprocess.Popen(
            [*_dask_cli(), "worker", "--scheduler-file", str(sfile), "--nworkers", "2", "--nthreads", "1",
             "--no-dashboard"], cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("stores")
    z = heavy_cloud(70_000, 16, seed=2)  # 4.5 MB: two 4 MiB work units, so two tasks per pass
    out = {}
    for name in ("cloud.zarr", "cloud.h5"):
        with create_store(d / name, 16, chunk_rows=4096) as st:
            st.append(z)
        out[name] = d / name
    with create_store(d / "small.zarr", 16, chunk_rows=500) as st:
        st.append(z[:6000])
    out["small.zarr"] = d / "small.zarr"
    return out


# -- errors (no cluster needed) --------------------------------------------------------------
@pytest.mark.parametrize("command", ["analyze", "sample", "compare-samplers", "filaments"])
def test_both_options_are_a_one_line_error(capsys, tmp_path, stores, command):
    extra = ["--region", "gauss"] if command == "sample" else []
    code, _, err = _run(capsys, command, stores["cloud.zarr"], "--out", tmp_path / "o", *extra,
                        "--scheduler", "tcp://127.0.0.1:1", "--workers", "2", "--no-progress")
    assert code == 1 and err.count("\n") == 1 and "--scheduler and --workers are exclusive" in err, err


def test_workers_below_one_is_a_usage_error(capsys, tmp_path, stores):
    code, _, err = _run(capsys, "analyze", stores["cloud.zarr"], "--out", tmp_path / "o", "--workers", "0")
    assert code == 2 and err.count("\n") == 1 and "--workers" in err, err


def test_unreachable_scheduler_is_a_one_line_error(capsys, tmp_path, stores, monkeypatch):
    import socket

    from latentscope.stream import _cluster

    monkeypatch.setattr(_cluster, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = _run(capsys, "analyze", stores["cloud.zarr"], "--out", tmp_path / "o",
                        "--scheduler", f"tcp://127.0.0.1:{port}", "--no-progress")
    assert code == 1 and err.count("\n") == 1
    assert f"cannot reach the dask scheduler at tcp://127.0.0.1:{port}" in err, err
    assert not (tmp_path / "o" / "summary.json").exists()


def test_help_names_both_options_as_exclusive():
    from typer.main import get_command

    from latentscope.cli import app

    commands = get_command(app).commands
    for command in ("analyze", "sample", "compare-samplers", "filaments"):
        helps = {p.opts[0]: p.help for p in commands[command].params if p.opts and p.opts[0] in ("--scheduler", "--workers")}
        assert "Exclusive with --workers" in helps["--scheduler"] and "dask.distributed" in helps["--scheduler"]
        assert "Exclusive with --scheduler" in helps["--workers"] and "local" in helps["--workers"], command


# -- against real scheduler and worker processes -------------------------------------------------
@pytest.mark.slow
def test_analyze_against_a_scheduler_and_workers_in_other_processes(capsys, tmp_path, stores, scheduler):
    code, _, err = _run(capsys, "analyze", stores["cloud.zarr"], "--out", tmp_path / "local", "--no-figures",
                        "--no-progress")
    assert code == 0, err
    code, out, err = _run(capsys, "analyze", stores["cloud.zarr"], "--out", tmp_path / "dist", "--no-figures",
                          "--scheduler", scheduler, "--no-progress")
    assert code == 0, err
    a = json.loads((tmp_path / "local" / "summary.json").read_text())
    b = json.loads((tmp_path / "dist" / "summary.json").read_text())
    assert walk_equal(a, b) == [] and b["n_samples"] == 70_000
    # an HDF5 store works too: the workers run on this host
    code, _, err = _run(capsys, "analyze", stores["cloud.h5"], "--out", tmp_path / "h5", "--no-figures",
                        "--scheduler", scheduler, "--no-progress")
    assert code == 0, err
    c = json.loads((tmp_path / "h5" / "summary.json").read_text())
    assert walk_equal(a, c) == []


@pytest.mark.slow
def test_hdf5_store_with_a_remote_scheduler_is_a_one_line_error(capsys, tmp_path, stores, scheduler, monkeypatch):
    from latentscope.stream import _dask

    monkeypatch.setattr(_dask, "_this_host", lambda: "a-laptop")  # the workers' host is not this one
    code, _, err = _run(capsys, "analyze", stores["cloud.h5"], "--out", tmp_path / "o", "--no-figures",
                        "--scheduler", scheduler, "--no-progress")
    assert code == 1 and err.count("\n") == 1, err
    assert "latentscope export" in err and "cloud.zarr" in err, err


@pytest.mark.slow
def test_sample_and_compare_samplers_land_the_same_on_the_cluster(capsys, tmp_path, stores, scheduler):
    store = stores["small.zarr"]
    runs = {}
    for tag, extra in (("local", []), ("dist", ["--scheduler", scheduler])):
        code, _, err = _run(capsys, "sample", store, "--region", "mvn", "-n", "100", "--n-reference", "300",
                            "--out", tmp_path / f"s-{tag}", "--no-progress", *extra)
        assert code == 0, err
        code, _, err = _run(capsys, "compare-samplers", store, "--regions", "gauss,ball", "-n", "100",
                            "--n-reference", "300", "--out", tmp_path / f"c-{tag}", "--no-progress", *extra)
        assert code == 0, err
        runs[tag] = (json.loads((tmp_path / f"s-{tag}" / "landing.json").read_text()),
                     json.loads((tmp_path / f"c-{tag}" / "landing.json").read_text()))
    assert walk_equal(runs["local"][0], runs["dist"][0]) == []
    assert walk_equal(runs["local"][1], runs["dist"][1]) == []


@pytest.mark.slow
def test_filaments_on_the_cluster(capsys, tmp_path, stores, scheduler):
    z = heavy_cloud(1500, 6, seed=3)
    path = tmp_path / "small.zarr"
    with create_store(path, 6, chunk_rows=100) as st:
        st.append(z)
    out = {}
    for tag, extra in (("local", []), ("dist", ["--workers", "1"])):
        code, _, err = _run(capsys, "filaments", path, "--out", tmp_path / tag, "--k", "8", "--knn", "exact",
                            "--no-columns", "--no-progress", *extra)
        assert code == 0, err
        s = json.loads((tmp_path / tag / "filaments.json").read_text())
        s.pop("timings", None), s.pop("cpu_times", None)
        out[tag] = s
    assert walk_equal(out["local"], out["dist"]) == []
    assert np.isfinite(out["local"]["n_points"])
