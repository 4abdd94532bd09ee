"""Distributed passes on a real dask.distributed LocalCluster (2 worker processes, 1 thread each).

Every check compares a pass on the cluster with the same pass in this process, on
real stores on disk (Zarr and HDF5) and on a heavy-tailed, skewed, rotated and
off-centre cloud: the cluster must give the same numbers (the passes use one fixed
plan of row ranges and one fixed merge tree, so they agree bit for bit).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("zarr")

from latentscope import stream  # noqa: E402
from latentscope.analysis import analyze  # noqa: E402
from latentscope.exceptions import InvalidParameterError  # noqa: E402
from latentscope.neighbors import nearest_distances, reference_distances  # noqa: E402
from latentscope.store import create_store  # noqa: E402
from latentscope.stream import Covariance, Moments, as_zsource, record_passes, run_pass, run_reducers  # noqa: E402

N, DIM = 20_000, 32
#: Block budget of the passes under test: units of 4 chunks (2,000 rows), so a pass has 10 ranges (tasks).
MB = 256 << 10


def heavy_cloud(n: int = N, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """t3 copula with lognormal and t3 marginals, a few dominant axes, a random rotation and an offset."""
    rng = np.random.default_rng(seed)
    t = rng.standard_t(3, size=(n, dim))
    u = 0.5 + np.arctan(t / math.sqrt(3.0)) / math.pi  # the t3 copula
    u = np.clip(u, 1e-9, 1 - 1e-9)
    x = np.where(np.arange(dim) % 2 == 0, np.exp(0.8 * np.sqrt(2) * _erfinv(2 * u - 1)), t)  # lognormal / t3
    x *= np.geomspace(4.0, 0.05, dim)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return (x @ q.T + np.linspace(-3.0, 7.0, dim)).astype(np.float32)


def _erfinv(y: np.ndarray) -> np.ndarray:
    from scipy.special import erfinv

    return erfinv(y)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=40)
    c = distributed.Client(cluster, set_as_default=False)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(scope="module")
def cloud():
    return heavy_cloud()


@pytest.fixture(scope="module")
def zarr_store(tmp_path_factory, cloud):
    path = tmp_path_factory.mktemp("zarr") / "cloud.zarr"
    with create_store(path, DIM, chunk_rows=500) as st:
        st.append(cloud, columns={"label": (np.arange(N) % 3).astype(np.int64)})
    return path


@pytest.fixture(scope="module")
def h5_store(tmp_path_factory, cloud):
    path = tmp_path_factory.mktemp("h5") / "cloud.h5"
    with create_store(path, DIM, chunk_rows=500) as st:
        st.append(cloud)
    return path


def walk_equal(a, b, path="", rtol=1e-8):
    """Every number of two summary.json trees within ``rtol`` (timings aside); returns the differences."""
    bad = []
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            if k != "timings_s":
                bad += walk_equal(a[k], b[k], f"{path}/{k}", rtol)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            bad += walk_equal(x, y, f"{path}[{i}]", rtol)
    elif isinstance(a, float) or isinstance(b, float):
        if not (a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= rtol * max(abs(a), abs(b))):
            bad.append((path, a, b))
    elif a != b:
        bad.append((path, a, b))
    return bad


class Sums:
    """A small reducer with groups: count, float64 sum and per-group counts."""

    def __init__(self, groups: int = 3) -> None:
        self.n, self.s, self.by = 0, 0.0, np.zeros(groups, np.int64)

    def update(self, z, g=None):
        self.n += z.shape[0]
        self.s += float(np.asarray(z, np.float64).sum())
        if g is not None:
            self.by += np.bincount(np.asarray(g, np.int64), minlength=self.by.size)
        return self

    def merge(self, other):
        self.n += other.n
        self.s += other.s
        self.by += other.by
        return self


# -- the context manager ------------------------------------------------------------------
def test_cluster_block_sets_the_active_client(client):
    assert stream.active_client() is None
    with stream.cluster() as none:
        assert none is None and stream.active_client() is None
    with stream.cluster(client=client) as c:
        assert c is client and stream.active_client() is client
        with stream.cluster() as inner:  # nothing given: the outer cluster stays active
            assert inner is None and stream.active_client() is client
    assert stream.active_client() is None
    assert client.status == "running"  # a client passed in is left open


def test_cluster_errors_are_one_line(client, monkeypatch):
    with pytest.raises(InvalidParameterError, match="give one of scheduler, workers or client"):
        with stream.cluster(scheduler="tcp://127.0.0.1:1", workers=2):
            pass
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidParameterError, match="workers must be an integer >= 1"):
            with stream.cluster(workers=bad):
                pass
    with pytest.raises(InvalidParameterError, match="client must be a distributed.Client"):
        with stream.cluster(client="tcp://x"):
            pass
    import socket

    from latentscope.stream import _cluster

    monkeypatch.setattr(_cluster, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InvalidParameterError, match=rf"cannot reach the dask scheduler at tcp://127.0.0.1:{port}") as e:
        with stream.cluster(scheduler=f"tcp://127.0.0.1:{port}"):
            pass
    assert "\n" not in str(e.value)


def test_missing_dask_is_a_one_line_error():
    code = ("import sys; sys.modules['distributed'] = None\n"
            "from latentscope.stream import cluster\n"
            "try:\n    cluster(workers=1).__enter__()\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert out.startswith("InvalidParameterError cluster:") and "pip install 'latentscope-ae[dask]'" in out, out


# -- passes ---------------------------------------------------------------------------------
def test_run_pass_on_the_cluster_is_bitwise_the_local_pass(client, zarr_store, cloud):
    from latentscope.analysis._passes import FirstPass

    kw = dict(max_bytes=MB)
    local = run_pass(zarr_store, FirstPass, n_threads=2, **kw).result()
    local3 = run_pass(zarr_store, FirstPass, n_threads=3, **kw).result()  # threads do not change the bits
    ticks = []
    with stream.cluster(client=client), record_passes() as passes:
        dist = run_pass(zarr_store, FirstPass, progress=lambda d, t: ticks.append((d, t)), **kw).result()
        again = run_pass(zarr_store, FirstPass, **kw).result()
    for other in (local3, dist, again):
        np.testing.assert_array_equal(other.cov.comoment, local.cov.comoment)
        np.testing.assert_array_equal(other.mean, local.mean)
    np.testing.assert_allclose(local.mean, cloud.astype(np.float64).mean(0), rtol=1e-10, atol=1e-12)
    assert ticks[0] == (0, N) and ticks[-1] == (N, N) and len(ticks) > 2
    p = passes[0]
    assert p.distributed and p.kind == "run_pass" and p.rows == N and p.bytes_read == N * DIM * 4 and p.tasks >= 8


def test_run_pass_labels_columns_and_groups_on_the_cluster(client, zarr_store, cloud):
    lab = np.arange(N) % 3
    with stream.cluster(client=client):
        by_col = run_pass(zarr_store, Sums, column="label", group_of=lambda g: g, max_bytes=MB)  # a lambda travels
        by_lab = run_pass(cloud, Sums, labels=lab, group_of=lambda g: g, max_bytes=MB)  # rows are scattered
    ref = run_pass(cloud, Sums, labels=lab, group_of=lambda g: g, max_bytes=MB)
    assert by_col.n == by_lab.n == N
    np.testing.assert_array_equal(by_col.by, np.bincount(lab))
    np.testing.assert_array_equal(by_lab.by, ref.by)
    assert by_lab.s == ref.s
    with stream.cluster(client=client), pytest.raises(InvalidParameterError, match="labels must have one value per row"):
        run_pass(cloud, Sums, labels=lab[:10], group_of=lambda g: g)


def test_dask_arrays_with_and_without_a_cluster(client, zarr_store, cloud):
    import dask.array as da

    x = da.from_array(cloud, chunks=(3000, DIM))
    src = as_zsource(x)
    assert src.shape == (N, DIM) and src.dtype == np.float32
    np.testing.assert_array_equal(src.take([5, 1, 5]), cloud[[5, 1, 5]])
    local = run_pass(x, Sums)  # no cluster: dask computes the chunks here
    with stream.cluster(client=client), record_passes() as passes:
        dist = run_pass(x, Sums)
        (m,) = run_reducers(x, [Moments()])
    assert local.s == dist.s and local.n == dist.n == N
    assert passes[0].tasks == 7 and passes[0].distributed  # one task per dask chunk
    np.testing.assert_allclose(m.result().mean, cloud.astype(np.float64).mean(0), rtol=1e-10, atol=1e-12)


def test_run_reducers_on_the_cluster(client, h5_store, cloud):
    mine = [Moments(), Covariance()]
    with stream.cluster(client=client), record_passes() as passes:
        out = run_reducers(h5_store, mine, max_bytes=MB)  # an HDF5 store: every worker is on this host
        (shifted,) = run_reducers(cloud, [Moments()], transform=lambda b: b[:, :2] * 2.0)
    assert out is mine and passes[0].distributed and passes[0].kind == "run_reducers"
    ref = run_reducers(cloud, [Moments(), Covariance()])
    np.testing.assert_allclose(mine[1].result().cov(), ref[1].result().cov(), rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(mine[0].result().max, ref[0].result().max)
    assert mine[0].result().n == N
    np.testing.assert_allclose(shifted.result().mean, 2.0 * cloud[:, :2].astype(np.float64).mean(0), rtol=1e-10)


def test_hdf5_store_with_remote_workers_is_refused(client, h5_store, monkeypatch):
    from latentscope.stream import _dask

    monkeypatch.setattr(_dask, "_this_host", lambda: "another-host")  # as seen from a host without the workers
    with stream.cluster(client=client), pytest.raises(InvalidParameterError,
                                                      match=r"latentscope export .*cloud\.h5 --out cloud\.zarr"):
        run_pass(h5_store, Sums)


def test_a_store_the_workers_do_not_see_is_a_one_line_error(client, tmp_path, cloud):
    from latentscope.exceptions import StoreError
    from latentscope.store import open_store

    path = tmp_path / "here.zarr"
    with create_store(path, DIM) as st:
        st.append(cloud[:1000])
    with open_store(path) as st:
        path.rename(tmp_path / "moved.zarr")  # this process holds it open; the workers look for the old path
        with stream.cluster(client=client), pytest.raises(StoreError, match="does not see this store") as e:
            run_pass(st, Sums)
    assert "\n" not in str(e.value) and "here.zarr" in str(e.value)


# -- neighbour scans -------------------------------------------------------------------------
def test_neighbour_scans_on_the_cluster_equal_the_local_scans(client, zarr_store, cloud):
    queries = cloud[:100].astype(np.float64) + 0.01
    kw = dict(k=5, return_indices=True, skip=np.arange(10, 20), max_bytes=MB)
    local = nearest_distances(queries, zarr_store, **kw)
    ref_local = reference_distances(zarr_store, 100, 3, rng=0, max_bytes=MB)
    with stream.cluster(client=client), record_passes() as passes:
        dist = nearest_distances(queries, zarr_store, **kw)
        ref_dist = reference_distances(zarr_store, 100, 3, rng=0, max_bytes=MB)
    for a, b in zip(local + ref_local, dist + ref_dist):
        np.testing.assert_array_equal(a, b)
    assert passes[0].kind == "search" and passes[0].tasks > 1


def test_neighbour_ties_are_broken_by_row_index(client, tmp_path):
    z = np.repeat(np.arange(40, dtype=np.float32)[:, None], 4, axis=1)
    z = np.concatenate([z, z, z])  # every point three times: exact ties
    q = z[:7].astype(np.float64) + 0.25
    local = nearest_distances(q, z, 3, return_indices=True, max_bytes=512)
    with stream.cluster(client=client):
        dist = nearest_distances(q, z, 3, return_indices=True, max_bytes=512)
    np.testing.assert_array_equal(local[1], dist[1])
    np.testing.assert_array_equal(np.sort(local[1], axis=1), np.stack([np.arange(3) * 40 + i for i in range(7)]))


# -- analyze ------------------------------------------------------------------------------------
def test_analyze_on_the_cluster_equals_the_local_analysis(client, zarr_store, tmp_path):
    analyze(zarr_store, tmp_path / "local", figures=False, max_bytes=MB)
    with record_passes() as passes:
        res = analyze(zarr_store, tmp_path / "dist", figures=False, client=client, max_bytes=MB)
    a = json.loads((tmp_path / "local" / "summary.json").read_text())
    b = json.loads((tmp_path / "dist" / "summary.json").read_text())
    assert walk_equal(a, b) == []
    assert res.n_passes == len(passes) and all(p.distributed and p.tasks == 10 for p in passes)
    assert a["n_samples"] == N and a["core"]["n_iter"] >= 1


def test_analyze_survives_a_killed_worker(client, zarr_store, tmp_path):
    analyze(zarr_store, tmp_path / "local", figures=False, core=False, max_bytes=MB)
    pids = client.run(os.getpid)
    killed = []

    def progress(stage, done, total):
        if stage == "pass 2" and 0 < done < total and not killed:
            os.kill(next(iter(pids.values())), signal.SIGKILL)  # one worker process dies mid-pass
            killed.append(stage)

    analyze(zarr_store, tmp_path / "dist", figures=False, core=False, client=client, progress=progress, max_bytes=MB)
    assert killed
    a = json.loads((tmp_path / "local" / "summary.json").read_text())
    b = json.loads((tmp_path / "dist" / "summary.json").read_text())
    assert walk_equal(a, b) == []
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it


# -- samplers, landing and filaments ------------------------------------------------------------
def test_sampler_fits_and_landing_on_the_cluster(client, tmp_path):
    from latentscope.samplers import LandingReference, make_sampler

    path = tmp_path / "small.zarr"
    with create_store(path, 12, chunk_rows=250) as st:
        st.append(heavy_cloud(6000, 12, seed=4))

    def run():
        out = {}
        for name in ("gauss", "mvn", "ball"):
            out[name] = make_sampler(name).fit(path, rng=1).sample(200, rng=2)
        ref = LandingReference(n_reference=300, max_bytes=64 << 10).fit(path, rng=3)  # several scan tasks
        rep = ref.report(out["mvn"], name="mvn").to_dict(per_sample=True)
        return out, rep

    local = run()
    with stream.cluster(client=client), record_passes() as passes:
        dist = run()
    assert any(p.distributed and p.kind == "run_reducers" for p in passes)
    assert any(p.distributed and p.kind == "search" and p.tasks > 4 for p in passes)
    for name in local[0]:
        np.testing.assert_allclose(dist[0][name], local[0][name], rtol=1e-9, atol=1e-9)
    assert json.dumps(local[1], default=str) == json.dumps(dist[1], default=str)


def test_filament_moments_on_the_cluster(client, cloud):
    from latentscope.filaments._cloud import moments

    U = np.ascontiguousarray(cloud[:, :8])
    local = moments(U)
    with stream.cluster(client=client), record_passes() as passes:
        dist = moments(U)
    assert passes and passes[0].distributed and passes[0].rows == N
    for a, b in zip(local, dist):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(local[1].sum(), np.cov(U.astype(np.float64), rowvar=False).trace(), rtol=1e-5)
