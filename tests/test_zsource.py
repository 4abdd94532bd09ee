"""The one z-source type and the block engine, on real HDF5 files, memmaps and arrays."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from latentscope.exceptions import InvalidParameterError
from latentscope.store import create_store, open_store
from latentscope.stream import (
    DEFAULT_MAX_BYTES,
    Covariance,
    ZSource,
    as_zsource,
    resolve_threads,
    run_blocks,
    run_pass,
    run_reducers,
)


def _heavy(n: int = 3000, dim: int = 7, seed: int = 0) -> np.ndarray:
    """A skewed, heavy-tailed, off-centre cloud (t3 and lognormal marginals)."""
    rng = np.random.default_rng(seed)
    z = np.column_stack([rng.standard_t(3, n) for _ in range(dim - 2)] + [rng.lognormal(0, 1, (n, 2))])
    return (z * np.linspace(3, 0.2, dim) + 5.0).astype(np.float32)


@pytest.fixture()
def store_path(tmp_path):
    z = _heavy()
    path = tmp_path / "z.h5"
    with create_store(path, z.shape[1], chunk_rows=128) as st:
        st.append(z, columns={"label": (np.arange(len(z)) % 3).astype(np.int64)})
    return path, z


def _kinds(store_path, tmp_path):
    path, z = store_path
    mm = np.lib.format.open_memmap(tmp_path / "z.npy", mode="w+", dtype=np.float32, shape=z.shape)
    mm[:] = z
    mm.flush()
    h5 = h5py.File(tmp_path / "raw.h5", "w")
    ds = h5.create_dataset("z", data=z, chunks=(100, z.shape[1]))
    store = open_store(path)
    return {"path": path, "str": str(path), "store": store, "array": z, "float64": z.astype(np.float64),
            "memmap": np.load(tmp_path / "z.npy", mmap_mode="r"), "h5py": ds}, (store, h5)


def test_every_kind_reads_the_same_rows(store_path, tmp_path):
    kinds, (store, h5) = _kinds(store_path, tmp_path)
    _, z = store_path
    rows = np.array([5, 2999, 0, 5, 17])
    try:
        for name, obj in kinds.items():
            src = as_zsource(obj, owner=name)
            assert src.shape == z.shape, name
            assert src.is_store == (name in ("path", "str", "store")), name
            blocks = list(src.iter_blocks(max_bytes=4096))
            assert len(blocks) > 1, name
            assert [b.start for b in blocks] == sorted(b.start for b in blocks)
            np.testing.assert_allclose(np.concatenate([b.z for b in blocks]), z, rtol=1e-7, err_msg=name)
            np.testing.assert_allclose(src.take(rows), z[rows], rtol=1e-7, err_msg=name)
            np.testing.assert_allclose(src.read(10, 20), z[10:20], rtol=1e-7, err_msg=name)
            assert src.dtype in (np.float32, np.float64)
            assert as_zsource(src) is src
            src.close()
        assert not store.closed  # a source never closes a store it was given
    finally:
        store.close()
        h5.close()


def test_path_source_owns_its_store(store_path):
    path, _ = store_path
    with as_zsource(path) as src:
        st = src.store
        assert not st.closed
    assert st.closed


def test_store_blocks_are_chunk_aligned_and_carry_columns(store_path):
    path, z = store_path
    with as_zsource(path) as src:
        blocks = list(src.iter_blocks(max_bytes=128 * 7 * 4 * 2, columns=("label",), start=100, stop=1000))
        assert blocks[0].start == 100 and blocks[-1].stop == 1000
        assert len(blocks) > 2 and all(b.stop % 128 == 0 for b in blocks[:-1])  # whole chunks
        lab = np.concatenate([b.columns["label"] for b in blocks])
        np.testing.assert_array_equal(lab, np.arange(100, 1000) % 3)
        np.testing.assert_array_equal(src.column("label", slice(0, 4)), [0, 1, 2, 0])


def test_labels_follow_array_blocks():
    z = _heavy(500)
    labels = np.arange(500)
    got = [b.columns["labels"] for b in as_zsource(z).iter_blocks(max_bytes=512, labels=labels)]
    np.testing.assert_array_equal(np.concatenate(got), labels)


@pytest.mark.parametrize("bad, words", [
    (np.zeros(3), "got shape (3,)"),
    (np.zeros((2, 2, 2)), "got shape (2, 2, 2)"),
    (np.array([["a", "b"]]), "numeric"),
    (object(), "got shape ()"),
])
def test_bad_sources_are_one_line_errors(bad, words):
    with pytest.raises(InvalidParameterError, match="queries") as err:
        as_zsource(bad, owner="queries")
    assert words in str(err.value) and "\n" not in str(err.value)


def test_bad_reads_name_what_was_wrong():
    src = as_zsource(_heavy(50))
    with pytest.raises(InvalidParameterError, match=r"\[0, 50\)"):
        src.take([0, 50])
    with pytest.raises(InvalidParameterError, match="integer"):
        src.take([0.5])
    with pytest.raises(InvalidParameterError, match="max_bytes"):
        list(src.iter_blocks(max_bytes=0))
    with pytest.raises(InvalidParameterError, match="store"):
        src.column("label")
    with pytest.raises(InvalidParameterError, match="labels"):
        list(src.iter_blocks(labels=np.zeros(3)))


class _Sums:
    """A mergeable reducer that also records the sizes of the units it saw."""

    def __init__(self):
        self.s = 0.0
        self.n = 0
        self.by_group = np.zeros(3)

    def update(self, z, groups):
        self.s += float(np.asarray(z, np.float64).sum())
        self.n += z.shape[0]
        if groups is not None:
            np.add.at(self.by_group, groups, 1)

    def merge(self, other):
        self.s += other.s
        self.n += other.n
        self.by_group += other.by_group


@pytest.mark.parametrize("n_threads", [1, 3])
def test_run_pass_threads_agree_and_cover_every_row(store_path, n_threads):
    path, z = store_path
    seen = []
    with as_zsource(path) as src:
        red = run_pass(src, _Sums, column="label", group_of=lambda lab: lab, n_threads=n_threads,
                       progress=lambda d, t: seen.append((d, t)))
    assert red.n == len(z)
    np.testing.assert_allclose(red.s, z.astype(np.float64).sum(), rtol=1e-9)
    np.testing.assert_array_equal(red.by_group, np.bincount(np.arange(len(z)) % 3))
    assert seen[-1] == (len(z), len(z))


def test_run_pass_cuts_big_blocks_into_work_units():
    from latentscope.stream import WORK_UNIT_BYTES

    z = np.random.default_rng(1).standard_t(3, (40_000, 64))  # 20 MiB of float64
    sizes = []

    class Rec(_Sums):
        def update(self, zz, groups):
            sizes.append(zz.shape[0])
            super().update(zz, groups)

    red = run_pass(z, Rec, max_bytes=DEFAULT_MAX_BYTES)
    assert red.n == 40_000 and max(sizes) * 64 * 8 <= WORK_UNIT_BYTES and len(sizes) > 1


def test_run_reducers_matches_numpy_on_a_heavy_cloud():
    z = _heavy(4000, 5)
    (cov,) = run_reducers(z, [Covariance()], max_bytes=1000)
    np.testing.assert_allclose(cov.result().cov(), np.cov(z.astype(np.float64), rowvar=False), rtol=1e-8)


def test_run_blocks_calls_each_item_once_with_progress():
    out = np.zeros(50)
    ticks = []

    def fn(i):
        out[i] += i

    run_blocks(fn, list(range(50)), n_threads=4, progress=lambda d, t: ticks.append(d))
    np.testing.assert_array_equal(out, np.arange(50))
    assert sorted(ticks) == list(range(1, 51))


def test_resolve_threads():
    assert 1 <= resolve_threads(None) <= 8
    assert resolve_threads(3) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InvalidParameterError, match="n_threads"):
            resolve_threads(bad, owner="analyze")


def test_zsource_is_the_public_type():
    assert isinstance(as_zsource(np.zeros((2, 2))), ZSource)
    assert "shape=(2, 2)" in repr(as_zsource(np.zeros((2, 2))))
