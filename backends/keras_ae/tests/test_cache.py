"""The HDF5 image cache and the shuffled epoch plans (no Keras needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentscope.data import SyntheticFaces
from latentscope.exceptions import BackendError
from latentscope_keras_ae._cache import BatchReader, EpochPlan, array_images, build_cache


class _Interrupted(Exception):
    pass


class _StopsAfter:
    """A real source that dies after yielding ``k`` batches (an interrupted build)."""

    def __init__(self, source, k):
        self._source, self._k = source, k
        self.spec, self.image_size, self.image_shape = source.spec, source.image_size, source.image_shape

    def __len__(self):
        return len(self._source)

    def iter_batches(self, batch_size, **kw):
        for i, batch in enumerate(self._source.iter_batches(batch_size, **kw)):
            if i == self._k:
                raise _Interrupted
            yield batch


def test_build_cache_holds_the_source_images(tmp_path):
    src = SyntheticFaces(40, image_size=16)
    cache = build_cache(src, tmp_path / "c.h5", batch_size=16)
    try:
        assert cache.n == 40 and cache.image_shape == (16, 16, 3)
        np.testing.assert_array_equal(cache.read(0, 40), src.read().images)
    finally:
        cache.close()


def test_build_cache_continues_an_interrupted_build(tmp_path):
    src = SyntheticFaces(50, image_size=16)
    with pytest.raises(_Interrupted):
        build_cache(_StopsAfter(src, 2), tmp_path / "c.h5", batch_size=16)
    cache = build_cache(src, tmp_path / "c.h5", batch_size=16)
    try:
        np.testing.assert_array_equal(cache.read(0, cache.n), src.read().images)
    finally:
        cache.close()


def test_build_cache_refuses_a_named_cache_of_other_data(tmp_path):
    build_cache(SyntheticFaces(20, image_size=16), tmp_path / "c.h5").close()
    with pytest.raises(BackendError, match=r"does not fit this data: it caches 'synthetic:20\?seed=0'"):
        build_cache(SyntheticFaces(21, image_size=16), tmp_path / "c.h5", replace_mismatch=False)
    # the default location in a model directory is simply rebuilt
    cache = build_cache(SyntheticFaces(21, image_size=16), tmp_path / "c.h5", replace_mismatch=True)
    assert cache.n == 21
    cache.close()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), bs=st.integers(1, 40), seg=st.one_of(st.none(), st.integers(1, 120)),
       epoch=st.integers(0, 3), drop_last=st.booleans())
def test_epoch_plan_visits_every_row_once(n, bs, seg, epoch, drop_last):
    plan = EpochPlan.make(n, bs, seed=1, epoch=epoch, segment_rows=seg, block_rows=16, drop_last=drop_last)
    rows = np.concatenate(plan.batches)
    assert np.unique(rows).size == rows.size and set(rows) <= set(range(n))
    if drop_last and n >= bs:
        assert all(len(b) == bs for b in plan.batches) and n - rows.size < bs
    else:
        assert rows.size == n and all(len(b) <= bs for b in plan.batches)
    for b, s in zip(plan.batches, plan.batch_segment):
        assert np.isin(b, plan.segments[s]).all()
    again = EpochPlan.make(n, bs, seed=1, epoch=epoch, segment_rows=seg, block_rows=16)
    assert all(np.array_equal(a, b) for a, b in zip(plan.batches, again.batches))


def test_epoch_plan_differs_between_epochs():
    a, b = EpochPlan.make(100, 10, 0, 0), EpochPlan.make(100, 10, 0, 1)
    assert not np.array_equal(np.concatenate(a.batches), np.concatenate(b.batches))


def test_batch_reader_streams_segments_from_the_file(tmp_path):
    src = SyntheticFaces(70, image_size=16)
    cache = build_cache(src, tmp_path / "c.h5", batch_size=32)
    try:
        images = src.read().images
        plan = EpochPlan.make(70, 8, 0, 0, segment_rows=24, block_rows=5)
        got = list(BatchReader(cache).iterate(plan, start=2))
        assert len(got) == len(plan) - 2
        for x, idx in zip(got, plan.batches[2:]):
            np.testing.assert_allclose(x, images[idx].astype(np.float32) / 255, rtol=0, atol=1e-7)
            assert x.dtype == np.float32
    finally:
        cache.close()


def test_array_images_rejects_floats():
    from latentscope.exceptions import DataSourceError

    with pytest.raises(DataSourceError, match="uint8 array"):
        array_images(np.zeros((2, 8, 8, 3), np.float32))


def test_batch_reader_in_memory_uses_the_training_rows_only():
    images = SyntheticFaces(30, image_size=16).read().images
    cache = array_images(images)
    plan = EpochPlan.make(24, 5, 0, 2, drop_last=True)  # rows 24.. are held out
    got = list(BatchReader(cache).iterate(plan))
    assert len(got) == 4
    for x, idx in zip(got, plan.batches):
        assert idx.max() < 24
        np.testing.assert_allclose(x, images[idx].astype(np.float32) / 255, rtol=0, atol=1e-7)
