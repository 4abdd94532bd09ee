"""AttributeSplit: statistics per attribute group and the direction between the group means."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as ss

from latentscope import create_store, open_store
from latentscope.analysis import AttributeSplit, attribute_groups
from latentscope.exceptions import InvalidParameterError


def _data(rng, n=20000, dim=6):
    smiling = rng.random(n) < 0.4
    X = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim))
    X[smiling] += np.array([2.0, 0, 0, -1.0, 0, 0])[:dim]
    return X.astype(np.float32), np.where(smiling, 1, -1).astype(np.int8)


def test_attribute_split_from_a_store_column_equals_numpy(tmp_path):
    # group means/stds/skewness/histograms and the mean-difference direction match numpy
    rng = np.random.default_rng(0)
    X, lab = _data(rng)
    with create_store(tmp_path / "z.h5", X.shape[1]) as s:
        s.append(X, columns={"Smiling": lab})
    with open_store(tmp_path / "z.h5") as store:
        sp = AttributeSplit("Smiling", bins=30, max_bytes=1 << 16).fit(store)
    assert sp.group_names_ == ["not Smiling", "Smiling"]
    X64 = X.astype(np.float64)
    for g, v in enumerate((-1, 1)):
        sel = X64[lab == v]
        assert sp.group_n_[g] == len(sel)
        np.testing.assert_allclose(sp.group_mean_[g], sel.mean(0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(sp.group_std_[g], sel.std(0), rtol=1e-6)
        np.testing.assert_allclose(sp.group_skewness_[g], ss.skew(sel), atol=1e-5)
        for k in range(X.shape[1]):
            ref, _ = np.histogram(X[lab == v, k], bins=sp.hist_edges_[k])
            np.testing.assert_array_equal(sp.group_hist_counts_[g, k], ref)
    delta = X64[lab == 1].mean(0) - X64[lab == -1].mean(0)
    np.testing.assert_allclose(sp.direction_, delta / np.linalg.norm(delta), atol=1e-7)
    assert sp.direction_length_ == pytest.approx(np.linalg.norm(delta), rel=1e-7)
    dm = delta @ np.linalg.solve(np.cov(X64.T), delta)
    assert sp.direction_mahalanobis_ == pytest.approx(np.sqrt(dm), rel=1e-6)
    assert np.sum(sp.direction_pc_cosines_**2) == pytest.approx(1.0)
    p = (X64 - X64.mean(0)) @ sp.direction_
    assert sp.projection_mean_[1] == pytest.approx(p[lab == 1].mean(), abs=0.01 * p.std())
    assert sp.projection_counts_.sum() == len(X) and sp.separation_ > 0.5
    assert abs(sp.effect_size_[0]) > 0.3


def test_attribute_split_with_labels_threshold_and_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    X, _ = _data(rng, 3000, 3)
    age = rng.uniform(0, 80, size=len(X))
    sp = AttributeSplit(threshold=40.0).fit(X, labels=age)
    assert sp.group_names_ == ["label <= 40", "label > 40"]
    assert sp.group_n_.tolist() == [int(np.sum(age <= 40)), int(np.sum(age > 40))]
    sp.save(tmp_path / "attr")
    back = AttributeSplit.load(tmp_path / "attr")
    np.testing.assert_array_equal(back.group_mean_, sp.group_mean_)
    assert back.group_names_ == sp.group_names_
    three = attribute_groups(X, None, labels=rng.integers(0, 3, size=len(X)))
    assert three.names == ("label=0", "label=1", "label=2")


def test_attribute_split_errors(tmp_path):
    rng = np.random.default_rng(2)
    X, lab = _data(rng, 500, 3)
    with pytest.raises(InvalidParameterError, match="needs labels"):
        AttributeSplit("Smiling").fit(X)
    with pytest.raises(InvalidParameterError, match="more than 16 distinct values"):
        AttributeSplit().fit(X, labels=rng.normal(size=len(X)))
    with pytest.raises(InvalidParameterError, match="at least 2 values"):
        AttributeSplit().fit(X, labels=np.ones(len(X)))
    with pytest.raises(InvalidParameterError, match="one value per row"):
        AttributeSplit().fit(X, labels=lab[:10])
    with create_store(tmp_path / "z.h5", 3) as s:
        s.append(X)
    with open_store(tmp_path / "z.h5") as store, pytest.raises(InvalidParameterError, match="no column 'Smiling'"):
        AttributeSplit("Smiling").fit(store)
