"""Bounding boxes and streamed quantiles: equal to in-memory numpy, for any block size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from latentscope import create_store, open_store
from latentscope.analysis import BoundingBoxes, FineHistogram, PCAFrame, streaming_quantiles
from latentscope.exceptions import InvalidParameterError, NonFiniteError
from latentscope.regions import Box, OrientedBox

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


def _matrix(min_rows=2, max_rows=60, max_dim=5):
    shape = st.tuples(st.integers(min_rows, max_rows), st.integers(1, max_dim))
    return shape.flatmap(lambda s: arrays(np.float32, s, elements=finite))


@settings(max_examples=40, deadline=None)
@given(X=_matrix(1), block_rows=st.integers(1, 17), bins=st.sampled_from([4, 7, 64, 4100]))
def test_fine_histogram_equals_numpy_on_its_edges(X, block_rows, bins):
    # every fine count equals numpy.histogram on the same edges, whatever the blocks
    lo, hi = X.min(0), X.max(0)
    h = FineHistogram(lo, hi, bins)
    for i in range(0, X.shape[0], block_rows):
        h.update(X[i:i + block_rows])
    r = h.result()
    for c in range(X.shape[1]):
        ref, _ = np.histogram(X[:, c], bins=r.edges[c])
        np.testing.assert_array_equal(r.counts[0, c], ref)


@settings(max_examples=30, deadline=None)
@given(X=_matrix(1), block_rows=st.integers(1, 17))
def test_fine_histogram_coarse_equals_numpy(X, block_rows):
    # the 100-bin display histogram is numpy.histogram on edges fine_edges[::41]
    h = FineHistogram(X.min(0), X.max(0), 4100)
    for i in range(0, X.shape[0], block_rows):
        h.update(X[i:i + block_rows])
    edges, counts = h.result().coarse(100)
    for c in range(X.shape[1]):
        ref, _ = np.histogram(X[:, c], bins=edges[c])
        np.testing.assert_array_equal(counts[c], ref)
        if X[:, c].min() < X[:, c].max():  # a plain 100-bin histogram between min and max
            assert edges[c, 0] == X[:, c].min() and edges[c, -1] == X[:, c].max()


@settings(max_examples=30, deadline=None)
@given(X=_matrix(1), block_rows=st.integers(1, 17), q=st.lists(st.floats(0, 1), min_size=1, max_size=4))
def test_streaming_quantiles_within_one_bin_of_numpy(X, block_rows, q):
    # the interpolated quantiles are within one fine bin of numpy's linear quantiles
    got = streaming_quantiles(X, q, bins=256, max_bytes=max(1, block_rows * X.shape[1] * 4))
    ref = np.quantile(X.astype(np.float64), q, axis=0)
    width = np.maximum(X.max(0).astype(np.float64) - X.min(0), 1.0) / 256
    assert np.all(np.abs(got - ref) <= width * (1 + 1e-9) + 1e-9)


def test_streaming_quantiles_extremes_exact_and_transform():
    # levels 0 and 1 are the exact min and max; a transform is applied per block
    X = np.random.default_rng(0).normal(size=(5000, 3))
    q = streaming_quantiles(X, [0, 1], transform=lambda b: 2 * b)
    np.testing.assert_array_equal(q, [2 * X.min(0), 2 * X.max(0)])


def test_growing_histogram_covers_everything_and_matches_quantiles():
    # a growing histogram started far too narrow ends with every row and good quantiles
    X = np.random.default_rng(1).standard_t(3, size=(20000, 2)) * [1, 50]
    h = FineHistogram(-0.01, 0.01, 4096, grow=True)
    for i in range(0, len(X), 999):
        h.update(X[i:i + 999])
    r = h.result()
    assert r.counts.sum() == X.size and r.underflow.sum() == r.overflow.sum() == 0
    width = (r.hi - r.lo) / 4096
    ref = np.quantile(X, [0.01, 0.5, 0.99], axis=0)
    assert np.all(np.abs(r.quantiles([0.01, 0.5, 0.99]) - ref) <= width)


def test_fine_histogram_rejects_bad_input():
    with pytest.raises(InvalidParameterError, match="bins must be an integer >= 4"):
        FineHistogram(0, 1, 2)
    with pytest.raises(InvalidParameterError, match="multiple of 4"):
        FineHistogram(0, 1, 10, grow=True)
    with pytest.raises(NonFiniteError, match="non-finite"):
        FineHistogram(0, 1, 8).update(np.array([[np.nan]]))
    with pytest.raises(InvalidParameterError, match="quantile levels must be numbers in"):
        streaming_quantiles(np.ones((3, 2)), [1.5])


@settings(max_examples=30, deadline=None)
@given(X=_matrix(2, 80, 6), block_rows=st.integers(1, 23))
def test_minmax_boxes_contain_every_row(X, block_rows):
    # the min/max axis box and PCA box contain every row, for any block size
    bb = BoundingBoxes(max_bytes=block_rows * X.shape[1] * 4).fit(X)
    assert bb.axis_box_.contains(X).all()
    assert bb.pca_box_.contains(X).all()
    np.testing.assert_array_equal(bb.axis_box_.lo, X.min(0))
    np.testing.assert_array_equal(bb.axis_box_.hi, X.max(0))
    assert bb.fraction_inside_axis_ == bb.fraction_inside_pca_ == 1.0
    T = bb.pca_.transform(X)
    scale = max(1.0, float(np.abs(X).max()))
    assert np.all(bb.pca_box_.lo <= T.min(0)) and np.all(bb.pca_box_.lo >= T.min(0) - 1e-3 * scale)


def test_quantile_boxes_hold_the_expected_fraction(tmp_path):
    # a 1-99 % PCA box of a normal cloud holds about 0.98**dim of the rows
    rng = np.random.default_rng(3)
    dim = 6
    A = rng.normal(size=(dim, dim))
    X = (rng.normal(size=(40000, dim)) @ A + 3.0).astype(np.float32)
    with create_store(tmp_path / "z.h5", dim) as s:
        s.append(X)
    with open_store(tmp_path / "z.h5") as store:
        bb = BoundingBoxes(quantiles=(0.01, 0.99)).fit(store)
    assert bb.n_passes_ == 3
    assert bb.fraction_inside_pca_ == pytest.approx(0.98 ** dim, abs=0.01)
    # the reported fractions are exactly what contains() says
    assert bb.fraction_inside_pca_ == bb.pca_box_.fraction_inside(X)
    assert bb.fraction_inside_axis_ == bb.axis_box_.fraction_inside(X)
    ref = np.quantile(X.astype(np.float64), [0.01, 0.99], axis=0)
    width = (X.max(0).astype(np.float64) - X.min(0)) / 4096
    assert np.all(np.abs(bb.axis_box_.lo - ref[0]) <= width)
    assert np.all(np.abs(bb.axis_box_.hi - ref[1]) <= width)
    T = bb.pca_.transform(X)
    refp = np.quantile(T, [0.01, 0.99], axis=0)
    assert np.all(np.abs(bb.pca_box_.lo - refp[0]) <= 2 * (T.max(0) - T.min(0)) / 4096)


def test_bounding_boxes_are_regions_in_the_pca_frame():
    # axis_box_ is a Box, pca_box_ an OrientedBox at the data mean along the PCA axes
    X = np.random.default_rng(4).normal(size=(500, 3)) * [3, 1, 0.2] + 7
    bb = BoundingBoxes().fit(X)
    assert isinstance(bb.axis_box_, Box) and isinstance(bb.pca_box_, OrientedBox)
    np.testing.assert_allclose(bb.pca_box_.origin, X.mean(0))
    np.testing.assert_allclose(bb.pca_box_.axes, bb.pca_.components_)
    assert bb.log_volume_pca_ == pytest.approx(np.log(bb.pca_box_.hi - bb.pca_box_.lo).sum())


def test_bounding_boxes_with_a_given_frame_and_round_trip(tmp_path):
    # a supplied PCAFrame is used as is; save/load restores the same regions
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 4)) @ rng.normal(size=(4, 4))
    pca = PCAFrame().fit(X)
    bb = BoundingBoxes(pca=pca, quantiles=(0.005, 0.995)).fit(X)
    assert bb.pca_ is pca
    bb.save(tmp_path / "boxes")
    back = BoundingBoxes.load(tmp_path / "boxes")
    np.testing.assert_array_equal(back.pca_box_.lo, bb.pca_box_.lo)
    np.testing.assert_array_equal(back.axis_box_.hi, bb.axis_box_.hi)
    assert back.fraction_inside_pca_ == bb.fraction_inside_pca_
    np.testing.assert_array_equal(back.pca_.components_, pca.components_)


def test_bounding_boxes_bad_input(tmp_path):
    X = np.random.default_rng(6).normal(size=(50, 3))
    with pytest.raises(InvalidParameterError, match="quantiles must be None or a pair"):
        BoundingBoxes(quantiles=(0.9, 0.1)).fit(X)
    with pytest.raises(InvalidParameterError, match="covariance frame"):
        BoundingBoxes(pca=PCAFrame(correlation=True).fit(X)).fit(X)
    with pytest.raises(InvalidParameterError, match="at least 2 rows"):
        BoundingBoxes().fit(X[:1])
    with pytest.raises(InvalidParameterError, match="no rows"):
        BoundingBoxes().fit(X[:0])
    bad = X.copy()
    bad[7, 1] = np.inf
    with pytest.raises(NonFiniteError, match="non-finite"):
        BoundingBoxes().fit(bad)


def test_bounding_boxes_constant_component_and_1d():
    # a zero-variance component gives a zero width (log-volume -inf) but no error
    rng = np.random.default_rng(7)
    X = np.column_stack([rng.normal(size=200), np.full(200, 2.5)])
    bb = BoundingBoxes().fit(X)
    assert bb.axis_box_.lo[1] == bb.axis_box_.hi[1] == 2.5
    assert bb.log_volume_axis_ == -np.inf
    assert bb.pca_box_.contains(X).all()
    one = BoundingBoxes(quantiles=(0.1, 0.9)).fit(rng.normal(size=(1000, 1)))
    assert one.fraction_inside_axis_ == pytest.approx(0.8, abs=0.01)


def test_growing_histograms_fed_different_rows_merge():
    # two histograms from the same start that grew in opposite directions merge into one
    rng = np.random.default_rng(8)
    a = rng.normal(size=(3000, 2)) + [5.0, 0.0]
    b = rng.normal(size=(3000, 2)) - [5.0, 30.0]
    h1, h2, h = (FineHistogram(-1.0, 1.0, 64, grow=True) for _ in range(3))
    h1.update(a)
    h2.update(b)
    h.update(np.vstack([a, b]))
    r = h1.merge(h2).result()
    assert r.counts.sum() == 2 * 6000
    np.testing.assert_array_equal(r.lo, h.result().lo)
    width = (r.hi - r.lo) / 64
    assert np.all(np.abs(r.quantiles([0.25, 0.5, 0.75]) - h.result().quantiles([0.25, 0.5, 0.75])) <= width)
