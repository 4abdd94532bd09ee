"""Encoding at scale (latentscope.backends.encode_sharded, ``latentscope encode --shards``).

Every check compares a sharded Zarr store, read back with ``open_store``, with one
single-process ``encode_to_store`` of the same source: same rows (bit for bit), ids,
columns and provenance. Batches of 20 and shards of multiples of 20 items give both
runs the same batch boundaries, so the model sees the same matrices. Clusters are real
``distributed.LocalCluster`` worker processes; kills are real SIGKILLs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from latentscope.backends import LinearBackend, encode_sharded, encode_to_store
from latentscope.backends._encode import skipped_path
from latentscope.backends._encode_shards import backend_device, plan_shards, shard_skipped_path
from latentscope.cli import main
from latentscope.data import SyntheticFaces
from latentscope.exceptions import BackendError, DataSourceError, InvalidParameterError, StoreError

zarr = pytest.importorskip("zarr")
from latentscope.store import open_store, shard_status  # noqa: E402

N = 300
SOURCE = f"synthetic:{N}"
#: Provenance an encode writes (the rest are the store format's own keys and timings).
ENCODE_KEYS = ("backend", "model_fingerprint", "source", "source_items", "image_size", "source_attributes",
               "n_skipped", "skipped_list")


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "model"
    LinearBackend.train(SyntheticFaces(100, image_size=16, seed=1), out, z_dim=6, n_iter=2)
    return out


@pytest.fixture(scope="module")
def model(model_dir):
    return LinearBackend.load(model_dir)


@pytest.fixture(scope="module")
def reference(model, model_dir):
    """One single-process encode of ``SOURCE``, batches of 20."""
    path = model_dir.parent / "single.h5"
    encode_to_store(model, SOURCE, path, batch_size=20)
    return _contents(path)


def _contents(path):
    with open_store(path) as store:
        return (store.read(), np.asarray(store.read_ids()).astype(str),
                {name: store.read_column(name) for name in store.column_names},
                {k: store.provenance.get(k) for k in ENCODE_KEYS})


def _assert_same(path, reference):
    z, ids, columns, prov = _contents(path)
    np.testing.assert_array_equal(z, reference[0])
    np.testing.assert_array_equal(ids, reference[1])
    assert sorted(columns) == sorted(reference[2])
    for name in columns:
        np.testing.assert_array_equal(columns[name], reference[2][name], err_msg=name)
    assert prov == reference[3]


def _mtimes(directory):
    return {p: p.stat().st_mtime_ns for p in sorted(directory.rglob("*")) if p.is_file()}


# -- the plan and the device -------------------------------------------------------------

def test_plan_shards_cuts_contiguous_near_equal_ranges():
    assert plan_shards(10, 3) == [4, 3, 3]
    assert plan_shards(5, 5) == [1] * 5 and plan_shards(7, 1) == [7]
    sizes = plan_shards(1000, 7)
    assert sum(sizes) == 1000 and max(sizes) - min(sizes) == 1 and sizes == sorted(sizes, reverse=True)
    for bad in (0, 11, True, 2.0, "3"):
        with pytest.raises(InvalidParameterError, match=r"shards must be an integer from 1 to the number of images \(10\)"):
            plan_shards(10, bad)


def test_backend_device_reads_the_optional_device_method():
    class Gpu:
        def device(self):
            return "GPU"

    class Cuda:
        device = "cuda:0"

    class Broken:
        def device(self):
            raise RuntimeError("no driver")

    assert [backend_device(b) for b in (Gpu(), Cuda(), Broken(), object())] == ["gpu", "gpu", "cpu", "cpu"]


# -- in this process ---------------------------------------------------------------------

def test_a_process_whose_model_is_on_a_gpu_runs_one_shard_at_a_time(tmp_path, model):
    # two threads of one process (a dask worker with 2 threads) each run a shard; a model that
    # reports a GPU never encodes two batches at once, a CPU model is left alone
    from latentscope.backends._encode_shards import _ModelRef, _run_shard, _ShardJob
    from latentscope.store import create_sharded_store

    class Timed(LinearBackend):
        where = "gpu"

        def device(self):
            return self.where

        def encode(self, images, *, batch_size=None):
            start = time.perf_counter()
            if self.where == "cpu" and not any(t == threading.get_ident() for _, _, t in spans):
                barrier.wait(timeout=30)  # both shards inside encode at once (a lock would break it)
            time.sleep(0.02)
            out = super().encode(images, batch_size=batch_size)
            spans.append((start, time.perf_counter(), threading.get_ident()))
            return out

    def overlaps(where):
        timed = Timed(model.mean, model.components, image_shape=model.image_shape)
        timed.where = where
        path = tmp_path / f"{where}.zarr"
        create_sharded_store(path, timed.z_dim, shard_sizes=[60, 60], backend="linear", source="synthetic:120")
        ref = _ModelRef("linear", None, timed.fingerprint(), timed)
        jobs = [_ShardJob(model=ref, source="synthetic:120", strict=False, path=str(path), index=i, start=60 * i,
                          stop=60 * (i + 1), batch_size=10, commit_rows=60, workers=0, prefetch=0, from_cache=False)
                for i in range(2)]
        spans.clear()
        threads = [threading.Thread(target=_run_shard, args=(job, timed, lambda *a: None)) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [s["complete"] for s in shard_status(path)] == [True, True] and len(spans) == 12
        return sum(a0 < b1 and b0 < a1 for a0, a1, ta in spans for b0, b1, tb in spans if ta < tb)

    spans: list = []
    barrier = threading.Barrier(2)
    assert overlaps("gpu") == 0
    assert overlaps("cpu") > 0



def test_sharded_encode_equals_single_encode(tmp_path, model, reference):
    # three shards, one after another here: the store reads as one encode of the source
    calls = []
    path = tmp_path / "z.zarr"
    result = encode_sharded(model, SOURCE, path, shards=3, batch_size=20, commit_rows=40,
                            progress=lambda done, total: calls.append((done, total)))
    assert (result.n_rows, result.n_written, result.n_skipped, result.resumed) == (N, N, 0, False)
    assert (result.n_shards, result.shards_encoded, result.shard_rows) == (3, (0, 1, 2), (100, 100, 100))
    assert [(s["planned"], s["rows"], s["complete"]) for s in shard_status(path)] == [(100, 100, True)] * 3
    _assert_same(path, reference)
    assert calls[-1] == (N, N) and all(t == N for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) >= 15  # one per batch
    assert not skipped_path(path).exists()
    again = encode_sharded(model, SOURCE, path, shards=3, batch_size=20)
    assert again.resumed and again.n_written == 0 and again.shards_encoded == ()


def test_rerun_resumes_the_interrupted_shard_and_skips_complete_ones(tmp_path, model, reference):
    # stopped inside shard 1: shard 0 stays untouched, shard 1 resumes after its last commit
    path = tmp_path / "z.zarr"

    def stop_in_shard_1(done, total):
        if done >= 150:
            raise _Stop

    with pytest.raises(_Stop):
        encode_sharded(model, SOURCE, path, shards=3, batch_size=20, commit_rows=20, progress=stop_in_shard_1)
    status = shard_status(path)
    assert [s["complete"] for s in status] == [True, False, False]
    assert 0 < status[1]["rows"] < 100 and status[2]["rows"] == 0
    before = _mtimes(path / "parts" / "00000")
    assert before
    calls = []
    result = encode_sharded(model, SOURCE, path, shards=3, batch_size=20, commit_rows=20,
                            progress=lambda done, total: calls.append(done))
    assert result.resumed and result.shards_encoded == (1, 2)
    assert result.n_written == N - 100 - status[1]["rows"]
    assert calls[0] > 100  # the bar starts where the store stands
    assert _mtimes(path / "parts" / "00000") == before
    _assert_same(path, reference)


def test_a_full_shard_killed_before_it_was_marked_complete_is_only_marked(tmp_path, model):
    # stopped right after shard 0's last commit: the rerun writes nothing into it and marks it
    path = tmp_path / "z.zarr"

    def stop_at_40(done, total):
        if done >= 40:
            raise _Stop

    with pytest.raises(_Stop):
        encode_sharded(model, "synthetic:80", path, shards=2, batch_size=20, commit_rows=20, progress=stop_at_40)
    assert [(s["rows"], s["complete"]) for s in shard_status(path)] == [(40, False), (0, False)]
    before = _mtimes(path / "parts" / "00000" / "z")
    assert before  # the chunk files of shard 0's z-points
    result = encode_sharded(model, "synthetic:80", path, shards=2, batch_size=20)
    assert result.shards_encoded == (0, 1) and result.n_written == 40
    assert [(s["rows"], s["complete"]) for s in shard_status(path)] == [(40, True), (40, True)]
    assert _mtimes(path / "parts" / "00000" / "z") == before


def test_sharded_encode_refuses_another_plan_model_or_store(tmp_path, model):
    src = "synthetic:40"
    path = tmp_path / "z.zarr"
    encode_sharded(model, src, path, shards=2, batch_size=8)
    with pytest.raises(StoreError, match=r"planned as 2 shards of 20 items, this run plans 3 shards of 13-14; "
                                         r"rerun with --shards 2") as info:
        encode_sharded(model, src, path, shards=3)
    assert "\n" not in str(info.value)
    other = LinearBackend(model.mean, model.components * np.float32(2), image_shape=model.image_shape)
    with pytest.raises(BackendError, match="written by model .*; write to a new store"):
        encode_sharded(other, src, path, shards=2)
    with pytest.raises(BackendError, match=r"encoded from 'synthetic:40\?seed=0', not 'synthetic:40\?seed=1'"):
        encode_sharded(model, "synthetic:40?seed=1", path, shards=2)
    with pytest.raises(InvalidParameterError, match=r"a sharded store is a Zarr store, so store_path must end in "
                                                    r"\.zarr; got '.*z\.h5'"):
        encode_sharded(model, src, tmp_path / "z.h5", shards=2)
    for bad in (0, 41):
        with pytest.raises(InvalidParameterError, match=r"shards must be an integer from 1 to the number of images \(40\)"):
            encode_sharded(model, src, tmp_path / "new.zarr", shards=bad)
    assert not (tmp_path / "new.zarr").exists()
    encode_to_store(model, src, tmp_path / "plain.zarr")
    with pytest.raises(StoreError, match="exists and is not a sharded store"):
        encode_sharded(model, src, tmp_path / "plain.zarr", shards=2)
    with pytest.raises(StoreError, match="the store was written in 2 shards; continue it with --shards 2"):
        encode_to_store(model, src, path)
    result = encode_sharded(model, src, path, shards=4, overwrite=True)
    assert result.n_shards == 4 and not result.resumed and result.n_rows == 40


@pytest.fixture
def folder_with_bad_files(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(9):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    (root / "03.png").write_bytes(b"")
    (root / "07.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def test_unreadable_images_are_skipped_and_listed_per_shard(tmp_path, model, folder_with_bad_files):
    # the single-store policy: rows without them, their names listed (per shard, then all together)
    spec = f"folder:{folder_with_bad_files}"
    (tmp_path / "single").mkdir()
    single = encode_to_store(model, spec, tmp_path / "single" / "z.zarr", batch_size=3)
    path = tmp_path / "z.zarr"
    result = encode_sharded(model, spec, path, shards=3, batch_size=3)
    assert (result.n_rows, result.n_skipped, result.skipped_file) == (7, 2, skipped_path(path))
    assert result.shard_rows == (3, 2, 2)
    assert result.skipped_file.read_text() == single.skipped_file.read_text()
    assert not shard_skipped_path(path, 0).exists()
    assert [line.split("\t")[0] for i in (1, 2) for line in shard_skipped_path(path, i).read_text().splitlines()] \
        == ["03.png", "07.png"]
    _assert_same(path, _contents(tmp_path / "single" / "z.zarr"))
    with pytest.raises(DataSourceError, match=r"cannot read item 3 \(03.png\)"):
        encode_sharded(model, spec, tmp_path / "strict.zarr", shards=3, strict=True)


def test_nothing_readable_leaves_no_store(tmp_path, model):
    (tmp_path / "imgs").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "imgs" / name).write_bytes(b"")
    with pytest.raises(DataSourceError, match="none of the 2 items could be read"):
        encode_sharded(model, f"folder:{tmp_path / 'imgs'}", tmp_path / "z.zarr", shards=2)
    assert not (tmp_path / "z.zarr").exists() and not shard_skipped_path(tmp_path / "z.zarr", 0).parent.exists()


def test_from_cache_reads_each_shard_from_the_training_cache(tmp_path, model):
    # a cache of the first 50 of 60 faces, item 45 altered on purpose: shards read what it holds
    import h5py

    from latentscope.data import ImageCacheInfo

    class Caching(LinearBackend):
        def image_cache(self):
            return ImageCacheInfo(tmp_path / "cache.h5", source="synthetic:50?seed=0")

    batch = SyntheticFaces(50, image_size=16).read()
    with h5py.File(tmp_path / "cache.h5", "w") as f:
        f["images"] = batch.images
        f["images"][45] = 255 - batch.images[45]
        f["ids"] = np.asarray(batch.ids).astype(str).astype(object).astype(h5py.string_dtype())
    caching = Caching(model.mean, model.components, image_shape=model.image_shape)
    result = encode_sharded(caching, "synthetic:60", tmp_path / "z.zarr", shards=3, batch_size=10, from_cache=True)
    assert result.n_rows == 60 and result.n_from_cache == 50
    encode_to_store(caching, "synthetic:60", tmp_path / "one.h5", batch_size=10)
    with open_store(tmp_path / "z.zarr") as a, open_store(tmp_path / "one.h5") as b:
        za, zb = a.read(), b.read()
    assert np.flatnonzero(np.abs(za - zb).max(axis=1) > 0).tolist() == [45]


# -- the command line --------------------------------------------------------------------

def _cli(model_dir, out, *extra, data=SOURCE):
    return ["encode", "--backend", "linear", "--model", str(model_dir), "--data", data, "--out", str(out),
            "--batch-size", "20", "--no-progress", *extra]


def test_cli_sharded_encode_and_its_errors(tmp_path, model_dir, reference, capsys):
    out = tmp_path / "z.zarr"
    assert main(_cli(model_dir, out, "--shards", "3")) == 0
    assert f"wrote {out}: {N} rows (z_dim 6) in 3 shards (3 encoded now)" in capsys.readouterr().out
    _assert_same(out, reference)
    cases = [
        (("--shards", "2"), tmp_path / "z.h5", 1, "--shards writes a sharded Zarr store, so --out must end in .zarr"),
        (("--shards", "0"), tmp_path / "a.zarr", 2, "--shards must be >= 1"),
        (("--shards", "301"), tmp_path / "a.zarr", 1, f"--shards must be at most the number of images ({N} in"),
        (("--scheduler", "tcp://127.0.0.1:1"), tmp_path / "a.zarr", 1, "--scheduler needs --shards K"),
        (("--shards", "4"), out, 1, "planned as 3 shards of 100 items, this run plans 4 shards of 75; "
                                    "rerun with --shards 3"),
        (("--shards", "2", "--workers", "1", "--scheduler", "tcp://127.0.0.1:1"), tmp_path / "a.zarr", 1,
         "--scheduler and --workers are exclusive"),
        (("--shards", "2", "--workers", "0"), tmp_path / "a.zarr", 2, "--workers must be >= 1"),
    ]
    for extra, target, code, message in cases:
        assert main(_cli(model_dir, target, *extra)) == code, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "a.zarr").exists()


def test_cli_workers_without_shards_still_means_decoding_threads(tmp_path, model_dir, reference, capsys):
    assert main(_cli(model_dir, tmp_path / "z.h5", "--workers", "1")) == 0
    assert "use --decode-threads N" in capsys.readouterr().err
    _assert_same(tmp_path / "z.h5", reference)


def test_cli_without_dask_says_which_extra(tmp_path, model_dir):
    # a real process without dask: the in-process shards still run, a cluster is a one-line error
    code = ("import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None; "
            "from latentscope.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "LATENTSCOPE_NO_PROGRESS": "1"}
    run = subprocess.run([sys.executable, "-c", code, *_cli(model_dir, tmp_path / "z.zarr", "--shards", "2",
                                                             "--workers", "2")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 1 and "pip install 'latentscope-ae[dask]'" in run.stderr, run.stderr
    assert run.stderr.count("\n") == 1
    run = subprocess.run([sys.executable, "-c", code, *_cli(model_dir, tmp_path / "z.zarr", "--shards", "2")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0 and "in 2 shards (2 encoded now)" in run.stdout, run.stderr


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_cli_killed_mid_shard_resumes_without_encoding_complete_shards(tmp_path, model, model_dir):
    # SIGKILL while shards run one after another; the rerun encodes only the incomplete ones
    n, shards = 800, 4
    reference_path = tmp_path / "single.h5"
    encode_to_store(model, f"synthetic:{n}", reference_path, batch_size=20)
    ref = _contents(reference_path)
    out = tmp_path / "z.zarr"
    cmd = [sys.executable, "-m", "latentscope",
           *_cli(model_dir, out, "--shards", str(shards), "--commit-rows", "40", data=f"synthetic:{n}")]
    env = {**os.environ, "LATENTSCOPE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            status = shard_status(out)
        except StoreError:
            status = []
        if status and status[0]["complete"] and status[1]["rows"] >= 40:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    status = shard_status(out)
    complete = [s["index"] for s in status if s["complete"]]
    assert complete and len(complete) < shards and 0 < sum(s["rows"] for s in status) < n
    untouched = {i: _mtimes(out / "parts" / f"{i:05d}") for i in complete}
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {out}: {n} rows (z_dim 6) in {shards} shards ({shards - len(complete)} encoded now)" \
        in resumed.stdout
    assert {i: _mtimes(out / "parts" / f"{i:05d}") for i in complete} == untouched
    _assert_same(out, ref)


# -- on a real LocalCluster --------------------------------------------------------------

@pytest.mark.slow
def test_cli_sharded_encode_on_a_local_cluster_equals_single_encode(tmp_path, model_dir, reference, capsys):
    # --workers 2: a LocalCluster of 2 worker processes runs the 3 shard tasks
    pytest.importorskip("distributed")
    assert main(_cli(model_dir, tmp_path / "z.zarr", "--shards", "3", "--workers", "2")) == 0
    assert "in 3 shards (3 encoded now)" in capsys.readouterr().out
    _assert_same(tmp_path / "z.zarr", reference)


@pytest.fixture(scope="module")
def gpu_cluster():
    """Two worker processes that advertise one GPU each (the resource, not a device)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  resources={"GPU": 1}, silence_logs=50) as lc, distributed.Client(lc) as client:
        yield client


def _cached_models():
    from latentscope.backends import _encode_shards

    return sorted(_encode_shards._MODELS)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_killing_a_worker_mid_encode_still_finishes_with_the_same_rows(tmp_path, model, model_dir, gpu_cluster):
    # SIGKILL the worker process that is writing a shard; the scheduler reruns the task elsewhere,
    # the shard resumes after its last commit. The workers advertise GPU=1, so tasks ask for it;
    # each worker loads the model once.
    from latentscope.backends._encode_shards import _gpu_resources

    client = gpu_cluster
    n = 800
    encode_to_store(model, f"synthetic:{n}", tmp_path / "single.h5", batch_size=20)
    ref = _contents(tmp_path / "single.h5")
    out = tmp_path / "z.zarr"
    assert _gpu_resources(client) == {"GPU": 1}
    pids = client.run(os.getpid)
    box: dict = {"calls": []}

    def run():
        try:
            box["result"] = encode_sharded(model_dir, f"synthetic:{n}", out, shards=4, batch_size=20, commit_rows=40,
                                           client=client, progress=lambda done, total: box["calls"].append((done, total)))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while thread.is_alive() and killed is None and time.monotonic() < deadline:
        try:
            status = shard_status(out)
        except StoreError:
            status = []
        partial = {s["index"] for s in status if 0 < s["rows"] <= s["planned"] // 2}
        for address, keys in client.processing().items():
            if any(str(k).startswith("latentscope-encode-shard-") and int(str(k).split("-")[3]) in partial
                   for k in keys):
                killed = address
                os.kill(pids[address], signal.SIGKILL)
                break
        time.sleep(0.005)
    thread.join(timeout=180)
    assert killed is not None, "no shard was caught mid-way"
    assert "error" not in box, box.get("error")
    client.wait_for_workers(2, timeout=60)
    assert set(client.run(os.getpid).values()) != set(pids.values())  # the nanny restarted the killed one
    cached = client.run(_cached_models)
    assert all(len(v) <= 1 for v in cached.values()) and any(cached.values())
    assert {tuple(k) for v in cached.values() for k in v} == {("linear", str(model_dir), model.fingerprint())}
    result = box["result"]
    assert result.n_rows == n and all(s["complete"] for s in shard_status(out))
    calls = box["calls"]
    assert calls[-1] == (n, n) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    _assert_same(out, ref)
