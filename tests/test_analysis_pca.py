"""PCAFrame: exact, orthonormal, equal to scikit-learn, independent of the block size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from latentscope import create_store, open_store
from latentscope.analysis import PCAFrame
from latentscope.exceptions import InvalidParameterError, NotFittedError

finite = st.floats(-50, 50, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(X=st.tuples(st.integers(2, 40), st.integers(1, 6)).flatmap(lambda s: arrays(np.float32, s, elements=finite)),
       block_rows=st.integers(1, 9))
def test_pca_frame_is_orthonormal_and_round_trips(X, block_rows):
    # rows of components_ are orthonormal; inverse_transform(transform(Z)) == Z; independent of blocks
    pca = PCAFrame(max_bytes=block_rows * X.shape[1] * 4).fit(X)
    V = pca.components_
    np.testing.assert_allclose(V @ V.T, np.eye(V.shape[0]), atol=1e-10)
    X64 = X.astype(np.float64)
    scale = float(np.abs(X64).max()) + 1.0
    np.testing.assert_allclose(pca.inverse_transform(pca.transform(X64)), X64, atol=1e-9 * scale)
    whole = PCAFrame().fit(X)
    np.testing.assert_allclose(pca.explained_variance_, whole.explained_variance_, rtol=1e-8, atol=1e-9 * scale**2)
    np.testing.assert_allclose(pca.covariance_, np.atleast_2d(np.cov(X64, rowvar=False)), rtol=1e-7, atol=1e-9 * scale**2)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), dim=st.integers(2, 8))
def test_pca_frame_equals_scikit_learn(seed, dim):
    # eigenvalues and axes (up to sign) equal sklearn.decomposition.PCA on distinct spectra
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, dim)) * np.geomspace(5, 0.5, dim) @ np.linalg.qr(rng.normal(size=(dim, dim)))[0] + 3
    ours = PCAFrame().fit(X)
    ref = PCA().fit(X)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(np.abs(ours.components_ @ ref.components_.T), np.eye(dim), atol=1e-6)
    T = ours.transform(X)
    np.testing.assert_allclose(np.abs(T), np.abs(ref.transform(X)), atol=1e-8)
    np.testing.assert_allclose(np.cov(T, rowvar=False), np.diag(ours.explained_variance_), atol=1e-9)


def test_pca_frame_store_save_load_and_mahalanobis(tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(5000, 4)) @ rng.normal(size=(4, 4))).astype(np.float32)
    with create_store(tmp_path / "z.h5", 4) as s:
        s.append(X)
    with open_store(tmp_path / "z.h5") as store:
        pca = PCAFrame().fit(store)
    pca.save(tmp_path / "pca")
    back = PCAFrame.load(tmp_path / "pca")
    np.testing.assert_array_equal(back.components_, pca.components_)
    d = X.astype(np.float64) - X.mean(0)
    ref = np.sqrt(np.einsum("ij,jk,ik->i", d, np.linalg.inv(np.cov(X.T.astype(np.float64))), d))
    np.testing.assert_allclose(back.mahalanobis(X), ref, rtol=1e-6)


def test_pca_frame_errors():
    with pytest.raises(InvalidParameterError, match="at least 2 rows"):
        PCAFrame().fit(np.ones((1, 3)))
    with pytest.raises(InvalidParameterError, match="n_components must be an integer"):
        PCAFrame(n_components=5).fit(np.random.default_rng(0).normal(size=(10, 3)))
    with pytest.raises(NotFittedError):
        PCAFrame().transform(np.ones((2, 3)))
