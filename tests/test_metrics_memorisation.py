"""Memorisation check: nearest-training distances against the data's own."""

from __future__ import annotations

import numpy as np
import pytest

from latentscope import create_store, open_store
from latentscope.exceptions import InvalidParameterError
from latentscope.metrics import memorisation


def test_memorisation_fresh_samples_fall_below_quantile_at_rate_q():
    # a generator that samples the data distribution afresh: P(nn distance <= q-quantile) ~ q;
    # binomial spread for 1000 items at q = 0.05 is 0.007, plus the quantile's own noise
    rng = np.random.default_rng(0)
    train = rng.normal(size=(3000, 8))
    res = memorisation(train, rng.normal(size=(1000, 8)), quantiles=(0.05, 0.5), n_train_queries=None, rng=1)
    assert res.fraction_below[0] == pytest.approx(0.05, abs=0.03)
    assert res.fraction_below[1] == pytest.approx(0.5, abs=0.06)
    assert res.method == "exact" and res.n_train == 3000


def test_memorisation_flags_copies_of_training_points():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(2000, 8))
    copied = rng.choice(2000, 150, replace=False)
    near_copies = train[copied] + 1e-3 * rng.normal(size=(150, 8))
    generated = np.vstack([near_copies, rng.normal(size=(350, 8))])
    res = memorisation(train, generated, quantiles=(0.01,), rng=3)
    assert res.fraction_below[0] >= 150 / 500
    np.testing.assert_array_equal(res.nearest_train_index[:150], copied)
    assert res.generated_nn_distance[:150].max() < res.thresholds[0]
    assert res.excess[0] > 20
    summary = res.to_dict()
    assert summary["n_generated"] == 500 and summary["fraction_below"] == [res.fraction_below[0]]


def test_memorisation_streams_a_training_store(tmp_path):
    rng = np.random.default_rng(4)
    train = rng.normal(size=(1200, 5)).astype(np.float32)
    store = create_store(tmp_path / "train.h5", 5)
    store.append(train)
    store.close()
    generated = np.vstack([train[:10], rng.normal(size=(90, 5))])
    with open_store(tmp_path / "train.h5") as s:
        from_store = memorisation(s, generated, n_train_queries=300, rng=5, max_bytes=4096)
    in_memory = memorisation(train, generated, n_train_queries=300, rng=5)
    np.testing.assert_allclose(from_store.generated_nn_distance, in_memory.generated_nn_distance, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(from_store.train_nn_distance, in_memory.train_nn_distance, rtol=1e-6, atol=1e-6)
    assert from_store.train_nn_distance.shape == (300,)


def test_memorisation_accepts_images_in_pixel_space():
    rng = np.random.default_rng(6)
    train = rng.integers(0, 256, size=(200, 4, 4, 3), dtype=np.uint8)
    res = memorisation(train, train[:20], quantiles=(0.05,), rng=7)
    # exact copies: zero up to the rounding of |a|^2 + |b|^2 - 2 a.b
    assert res.generated_nn_distance.max() < 1e-6 and res.fraction_below[0] == 1.0


def test_memorisation_rejects_bad_arguments():
    x = np.zeros((10, 3))
    with pytest.raises(InvalidParameterError, match="quantiles must lie in \\(0, 1\\); got 5"):
        memorisation(x, x, quantiles=(5,))
    with pytest.raises(InvalidParameterError, match="same dimension; got 3 and 2"):
        memorisation(x, np.zeros((4, 2)))


def test_memorisation_faiss_engine_streams_a_store_path_like_the_exact_one(tmp_path):
    # a store path is opened and streamed; the faiss engine finds the exact engine's neighbours
    from latentscope.neighbors import faiss_available

    if not faiss_available():
        pytest.skip("faiss is not installed (the knn extra)")
    rng = np.random.default_rng(8)
    train = np.exp(rng.normal(size=(1500, 6)) * 0.7)  # lognormal marginals
    with create_store(tmp_path / "t.h5", 6) as s:
        s.append(train)
    gen = np.exp(rng.normal(size=(300, 6)) * 0.7)
    ex = memorisation(tmp_path / "t.h5", gen, n_train_queries=400, knn="exact", rng=3)
    fa = memorisation(tmp_path / "t.h5", gen, n_train_queries=400, knn="faiss", rng=3)
    assert fa.method == "faiss" and ex.method == "exact"
    np.testing.assert_array_equal(fa.nearest_train_index, ex.nearest_train_index)
    np.testing.assert_allclose(fa.train_nn_distance, ex.train_nn_distance, rtol=1e-12)
    np.testing.assert_array_equal(fa.fraction_below, ex.fraction_below)
