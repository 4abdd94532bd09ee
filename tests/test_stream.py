"""Streaming reducers and the one-pass runner, against numpy and scipy."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from latentscope.exceptions import InvalidParameterError
from latentscope.store import create_store
from latentscope.stream import (
    Covariance,
    Histogram,
    HistogramResult,
    Moments,
    iter_array_blocks,
    run_reducers,
    source_shape,
)


def _np_hist(x: np.ndarray, bins: int, lo, hi) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    lo = np.broadcast_to(lo, (x.shape[1],))
    hi = np.broadcast_to(hi, (x.shape[1],))
    return np.stack([np.histogram(x[:, j], bins, range=(float(lo[j]), float(hi[j])))[0] for j in range(x.shape[1])])


def _fold(reducers: list, order: list[int]):
    """Merge reducers pairwise in the order given by ``order`` (a random merge tree)."""
    pool = list(reducers)
    for pick in order:
        if len(pool) == 1:
            break
        i = pick % len(pool)
        a = pool.pop(i)
        j = (pick // 7) % len(pool)
        pool[j] = pool[j].merge(a) if pick % 2 else a.merge(pool[j])
    while len(pool) > 1:
        pool[0].merge(pool.pop())
    return pool[0]


@st.composite
def _partitioned(draw):
    n = draw(st.integers(0, 60))
    dim = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    offset = draw(st.sampled_from([0.0, 5.0, -1e4]))
    x = rng.standard_normal((n, dim)) * scale + offset
    if draw(st.booleans()):
        x = np.round(x, 1)  # ties and values on bin edges
    if draw(st.booleans()):
        x = x.astype(np.float32)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    bounds = [0, *cuts, n]
    blocks = [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    order = draw(st.lists(st.integers(0, 10_000), max_size=12))
    return x, blocks, order


@settings(max_examples=60, deadline=None)
@given(_partitioned())
def test_reducers_equal_numpy_for_any_partition_and_merge_order(case):
    x, blocks, order = case
    x64 = x.astype(np.float64)
    n, dim = x.shape
    moments = _fold([Moments().update(b) for b in blocks], order).result()
    cov = _fold([Covariance().update(b) for b in blocks], order).result()
    lo, hi = (x64.min() - 1.0, x64.max() + 1.0) if n else (-1.0, 1.0)
    lo = lo + 0.25 * (hi - lo)  # some values fall outside the range
    hist = _fold([Histogram(lo, hi, bins=7).update(b) for b in blocks], order).result()

    assert moments.n == cov.n == n
    if n == 0:
        assert np.isnan(moments.mean).all() and np.isnan(cov.cov()).all()
        assert hist.counts.sum() == 0
        return
    scale = np.abs(x64).max() + 1.0
    np.testing.assert_allclose(moments.mean, x64.mean(axis=0), rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(moments.var, x64.var(axis=0), rtol=1e-9, atol=1e-12 * scale**2)
    np.testing.assert_array_equal(moments.min, x64.min(axis=0))
    np.testing.assert_array_equal(moments.max, x64.max(axis=0))
    centered = x64 - x64.mean(axis=0)
    np.testing.assert_allclose(moments.m3, (centered**3).sum(axis=0), rtol=1e-7, atol=1e-9 * scale**3 * n)
    np.testing.assert_allclose(moments.m4, (centered**4).sum(axis=0), rtol=1e-7, atol=1e-9 * scale**4 * n)
    np.testing.assert_allclose(cov.mean, x64.mean(axis=0), rtol=1e-12, atol=1e-12 * scale)
    if n > 1:
        np.testing.assert_allclose(cov.cov(), np.cov(x64, rowvar=False).reshape(dim, dim), rtol=1e-9,
                                   atol=1e-12 * scale**2)
    np.testing.assert_array_equal(hist.counts, _np_hist(x64, 7, lo, hi))
    np.testing.assert_array_equal(hist.underflow, (x64 < lo).sum(axis=0))
    np.testing.assert_array_equal(hist.overflow, (x64 > hi).sum(axis=0))


def test_histogram_matches_numpy_exactly_at_edges():
    for bins, lo, hi in [(1, 0.0, 1.0), (3, -1.0, 2.0), (10, 0.1, 0.7), (100, -5.0, 12.0), (7, 1e6, 1e6 + 1),
                         (1000, -1e-3, 3e-3)]:
        edges = np.linspace(lo, hi, bins + 1)
        values = np.concatenate([
            edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), (edges[:-1] + edges[1:]) / 2,
            [lo - 1, hi + 1, -np.inf, np.inf, np.nan],
        ])
        x = np.stack([values, values[::-1]], axis=1)
        res = Histogram(lo, hi, bins).update(x).result()
        np.testing.assert_array_equal(res.counts, _np_hist(x, bins, lo, hi))
        np.testing.assert_array_equal(res.edges[0], np.histogram(values[np.isfinite(values)], bins, range=(lo, hi))[1])
        finite = values[~np.isnan(values)]
        assert res.underflow[0] == (finite < lo).sum() and res.overflow[0] == (finite > hi).sum()
        assert res.nan[0] == 1
        assert (res.counts.sum(axis=1) + res.underflow + res.overflow + res.nan == len(values)).all()
        assert res.counts[0, -1] >= 1  # hi itself falls in the last bin


def test_histogram_per_component_ranges_and_float32_input(rng):
    x = (rng.standard_normal((5000, 3)) * [1, 10, 100]).astype(np.float32)
    lo, hi = np.array([-2.0, -15.0, -50.0]), np.array([2.5, 10.0, 400.0])
    res = Histogram(lo, hi, bins=33).update(x[:1234]).merge(Histogram(lo, hi, bins=33).update(x[1234:])).result()
    np.testing.assert_array_equal(res.counts, _np_hist(x, 33, lo, hi))
    assert isinstance(res, HistogramResult)
    assert res.centers.shape == (3, 33)
    dens = res.density()
    np.testing.assert_allclose((dens * np.diff(res.edges, axis=1)).sum(axis=1), 1.0)
    np.testing.assert_allclose(dens[0], np.histogram(x[:, 0].astype(np.float64), 33, range=(-2.0, 2.5), density=True)[0])


def test_histogram_invalid_parameters():
    with pytest.raises(InvalidParameterError, match="bins must be an integer >= 1; got 0"):
        Histogram(0, 1, bins=0)
    with pytest.raises(InvalidParameterError, match="greater than its lo; got lo=1.0, hi=1.0"):
        Histogram(1, 1)
    with pytest.raises(InvalidParameterError, match="for component 1"):
        Histogram([0, 0], [1, np.nan])
    with pytest.raises(InvalidParameterError, match="same ranges"):
        Histogram(0, 1, 4).update(np.zeros((1, 2))).merge(Histogram(0, 2, 4).update(np.zeros((1, 2))))
    with pytest.raises(InvalidParameterError, match="same bins"):
        Histogram(0, 1, 4).merge(Histogram(0, 1, 5))
    with pytest.raises(InvalidParameterError, match="block must have 3 columns"):
        Histogram([0, 0, 0], [1, 1, 1]).update(np.zeros((2, 2)))


def test_moments_skewness_and_kurtosis_match_scipy(rng):
    x = np.column_stack([rng.gamma(2.0, size=3000), rng.standard_t(5, size=3000), np.full(3000, 7.0),
                         rng.uniform(size=3000)])
    res = Moments()
    for lo in range(0, 3000, 451):
        res.update(x[lo : lo + 451])
    r = res.result()
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want_skew = scipy.stats.skew(x)
            want_kurt = scipy.stats.kurtosis(x)
            want_skew_u = scipy.stats.skew(x, bias=False)
            want_kurt_u = scipy.stats.kurtosis(x, bias=False)
    np.testing.assert_allclose(r.skewness, want_skew, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(r.excess_kurtosis, want_kurt, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(r.sample_skewness, want_skew_u, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(r.sample_excess_kurtosis, want_kurt_u, rtol=1e-9, equal_nan=True)
    assert np.isnan(r.skewness[2]) and np.isnan(r.excess_kurtosis[2])  # constant component, as scipy
    np.testing.assert_allclose(r.var_unbiased, x.var(axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(r.std, x.std(axis=0), rtol=1e-12)


def test_moments_are_stable_with_a_large_offset(rng):
    x = 1e9 + rng.standard_normal((20000, 2))
    m = Moments()
    for lo in range(0, 20000, 3):  # many tiny blocks: many merges
        m.update(x[lo : lo + 3])
    np.testing.assert_allclose(m.result().var, (x - 1e9).var(axis=0), rtol=1e-6)


def test_reducers_handle_empty_blocks_and_empty_merges(rng):
    x = rng.standard_normal((10, 3))
    for cls in (Moments, Covariance, lambda: Histogram(-3, 3, 5)):
        a = cls().update(np.empty((0, 3)))
        assert a.result() is not None  # the dimension is known from the empty block
        a.update(x[:4]).update(np.empty((0, 3)))
        empty = cls()
        a.merge(empty)
        b = cls().merge(a)  # merging into a reducer that saw nothing
        b.update(x[4:])
        full = cls().update(x)
        rb, rf = b.result(), full.result()
        if isinstance(rb, HistogramResult):
            np.testing.assert_array_equal(rb.counts, rf.counts)
        else:
            np.testing.assert_allclose(rb.mean, rf.mean)
    with pytest.raises(InvalidParameterError, match="no block was seen"):
        Moments().result()
    with pytest.raises(InvalidParameterError, match="no block was seen"):
        Covariance().result()
    with pytest.raises(InvalidParameterError, match="no block was seen"):
        Histogram(0, 1).result()
    r = Moments(dim=2).result()
    assert r.n == 0 and np.isnan(r.mean).all() and np.isnan(r.var).all() and np.isnan(r.skewness).all()
    c = Covariance(dim=2).result()
    assert np.isnan(c.cov()).all() and np.isnan(c.corr()).all()
    h = Histogram([0, 0], [1, 1], bins=3).result()
    assert h.counts.shape == (2, 3) and h.counts.sum() == 0


def test_reducers_refuse_mismatched_dims_and_kinds(rng):
    for cls in (Moments, Covariance):
        r = cls().update(rng.standard_normal((3, 2)))
        with pytest.raises(InvalidParameterError, match="block must have 2 columns"):
            r.update(rng.standard_normal((3, 4)))
        with pytest.raises(InvalidParameterError, match="must be 2-D"):
            r.update(np.zeros(2))
        with pytest.raises(InvalidParameterError, match="same dim; got 2 and 4"):
            r.merge(cls().update(rng.standard_normal((3, 4))))
        with pytest.raises(InvalidParameterError, match=f"other must be a {cls.__name__}"):
            r.merge(Histogram(0, 1))
        with pytest.raises(InvalidParameterError, match="real numbers"):
            r.update(np.array([["a", "b"]]))
        with pytest.raises(InvalidParameterError, match="dim must be an integer >= 1"):
            cls(dim=0)


def test_covariance_corr_and_constant_components(rng):
    x = rng.standard_normal((500, 4)) @ rng.standard_normal((4, 4))
    x[:, 3] = 2.0
    r = Covariance().update(x).result()
    np.testing.assert_allclose(r.corr()[:3, :3], np.corrcoef(x[:, :3], rowvar=False), rtol=1e-10)
    assert np.isnan(r.corr()[3]).all() and np.isnan(r.corr()[:, 3]).all()
    np.testing.assert_allclose(r.cov(ddof=0), np.cov(x, rowvar=False, ddof=0), atol=1e-12)
    np.testing.assert_array_equal(r.comoment, r.comoment.T)


def test_run_reducers_over_store_and_array(tmp_path, rng):
    x = rng.standard_normal((2000, 5)).astype(np.float32)
    with create_store(tmp_path / "z.h5", 5, chunk_rows=64) as s:
        s.append(x)
        calls = []
        m_store, h_store = run_reducers(s, [Moments(), Histogram(-2, 2, 9)], max_bytes=64 * 5 * 4 * 3,
                                        progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 2000) and calls[-1] == (2000, 2000)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:])) and len(calls) == 1 + 11
    m_arr, h_arr = run_reducers(x, [Moments(), Histogram(-2, 2, 9)], max_bytes=1000)
    np.testing.assert_allclose(m_store.result().mean, m_arr.result().mean, rtol=1e-12)
    np.testing.assert_array_equal(h_store.result().counts, h_arr.result().counts)
    (t,) = run_reducers(x, [Moments()], transform=lambda b: b[:, :2] * 2.0, start=100, stop=700)
    np.testing.assert_allclose(t.result().mean, (x[100:700, :2].astype(np.float64) * 2).mean(axis=0), rtol=1e-12)
    assert t.result().n == 600
    (e,) = run_reducers(np.empty((0, 3)), [Covariance()])
    assert e.result().comoment.shape == (3, 3)
    with pytest.raises(InvalidParameterError, match="needs an update"):
        run_reducers(x, [object()])
    with pytest.raises(InvalidParameterError, match="2-D array"):
        run_reducers(np.zeros(5), [Moments()])


def test_iter_array_blocks_reads_h5py_datasets_lazily(tmp_path, rng):
    x = rng.standard_normal((100, 3))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = x
        ds = f["x"]
        assert source_shape(ds) == (100, 3)
        blocks = list(iter_array_blocks(ds, max_bytes=3 * 8 * 30))
        assert [len(b) for b in blocks] == [30, 30, 30, 10] and all(isinstance(b, np.ndarray) for b in blocks)
        np.testing.assert_array_equal(np.concatenate(blocks), x)
        (m,) = run_reducers(ds, [Moments()])
        np.testing.assert_allclose(m.result().mean, x.mean(axis=0))
    with pytest.raises(InvalidParameterError, match="max_bytes must be a positive integer"):
        list(iter_array_blocks(x, max_bytes=0))
