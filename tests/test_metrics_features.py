"""Feature spaces (pixel PCA, latent re-encoding) and the one-call evaluate_set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentscope.exceptions import InvalidParameterError, NotFittedError
from latentscope.metrics import PixelPCAFeatures, evaluate_set, frechet_distance, latent_features, reencode

SHAPE = (8, 8, 3)


class ProjectionBackend:
    """A tiny linear autoencoder: orthonormal projection of centred pixels (a real backend object)."""

    name = "test-projection"
    description = "orthonormal pixel projection for tests"

    def __init__(self, z_dim: int = 6, seed: int = 0) -> None:
        n_pix = int(np.prod(SHAPE))
        q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n_pix, z_dim)))
        self.W = q
        self.z_dim = z_dim
        self.image_shape = SHAPE
        self.calls = 0

    def encode(self, images, *, batch_size=256):
        self.calls += 1
        x = images.reshape(images.shape[0], -1) / 255.0 - 0.5
        return (x @ self.W).astype(np.float32)

    def decode(self, z, *, batch_size=256):
        x = np.asarray(z, dtype=np.float64) @ self.W.T + 0.5
        return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8).reshape(-1, *SHAPE)


def _images(rng, n, brightness=0.0, rank=5):
    """Smooth random images: a few fixed patterns mixed with random weights, plus noise."""
    patterns = np.random.default_rng(99).normal(size=(rank, int(np.prod(SHAPE))))
    x = 0.5 + brightness + 0.08 * rng.normal(size=(n, rank)) @ patterns + 0.02 * rng.normal(size=(n, patterns.shape[1]))
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8).reshape(n, *SHAPE)


def test_pixel_pca_matches_exact_pca_of_scaled_pixels():
    rng = np.random.default_rng(0)
    imgs = _images(rng, 200)
    feat = PixelPCAFeatures(n_components=4).fit(imgs)
    x = imgs.reshape(200, -1) / 255.0
    evals = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1][:4]
    np.testing.assert_allclose(feat.explained_variance_, evals, rtol=1e-6)  # pixels held as float32
    np.testing.assert_allclose(feat.components_ @ feat.components_.T, np.eye(4), atol=1e-10)
    t = feat.transform(imgs)
    assert t.shape == (200, 4) and feat.exact_
    np.testing.assert_allclose(t.var(axis=0, ddof=1), evals, rtol=1e-4)


def test_pixel_pca_randomized_agrees_with_full_on_the_leading_axes():
    rng = np.random.default_rng(1)
    imgs = _images(rng, 300)
    full = PixelPCAFeatures(n_components=3, svd_solver="full").fit(imgs)
    rand = PixelPCAFeatures(n_components=3, svd_solver="randomized", rng=2).fit(imgs)
    assert not rand.exact_
    np.testing.assert_allclose(rand.explained_variance_, full.explained_variance_, rtol=1e-3)
    np.testing.assert_allclose(np.abs(np.sum(rand.components_ * full.components_, axis=1)), 1.0, atol=1e-3)


def test_pixel_pca_fits_from_batches_and_caps_images():
    rng = np.random.default_rng(3)
    imgs = _images(rng, 120)
    from_array = PixelPCAFeatures(n_components=3, max_images=100).fit(imgs)
    from_batches = PixelPCAFeatures(n_components=3, max_images=100).fit(imgs[i : i + 32] for i in range(0, 120, 32))
    assert from_array.n_images_seen_ == from_batches.n_images_seen_ == 100
    np.testing.assert_allclose(from_array.components_, from_batches.components_, atol=1e-10)


def test_pixel_pca_errors_and_save_load(tmp_path):
    imgs = _images(np.random.default_rng(4), 20)
    with pytest.raises(NotFittedError, match="not fitted"):
        PixelPCAFeatures().transform(imgs)
    with pytest.raises(InvalidParameterError, match="n_components must be <= min\\(n_images - 1, n_pixels\\) = 19; got 64"):
        PixelPCAFeatures().fit(imgs)
    with pytest.raises(InvalidParameterError, match="images must be uint8 arrays"):
        PixelPCAFeatures(n_components=2).fit(imgs.astype(np.float32))
    feat = PixelPCAFeatures(n_components=2).fit(imgs)
    with pytest.raises(InvalidParameterError, match="must have shape \\(8, 8, 3\\)"):
        feat.transform(np.zeros((2, 4, 4, 3), np.uint8))
    feat.save(tmp_path / "pca")
    back = PixelPCAFeatures.load(tmp_path / "pca")
    np.testing.assert_array_equal(back.transform(imgs), feat.transform(imgs))


def test_latent_features_and_reencode_go_through_the_backend():
    rng = np.random.default_rng(5)
    backend = ProjectionBackend()
    imgs = _images(rng, 50)
    z = latent_features(backend, imgs)
    assert z.shape == (50, 6)
    np.testing.assert_array_equal(latent_features(backend, [imgs[:20], imgs[20:]]), z)
    # decoding then encoding a code of this linear AE returns it up to 8-bit quantisation
    back = reencode(backend, z)
    np.testing.assert_allclose(back, z, atol=np.sqrt(192) * 0.5 / 255)


def test_evaluate_set_scores_both_spaces_and_separates_a_shifted_generator():
    rng = np.random.default_rng(6)
    real, good, bad = _images(rng, 400), _images(rng, 300), _images(rng, 300, brightness=0.1)
    backend = ProjectionBackend()
    kw = dict(backend=backend, kid_subsets=10, kid_subset_size=200, rng=7)
    ev_good, ev_bad = evaluate_set(real, good, **kw), evaluate_set(real, bad, **kw)
    assert set(ev_good.scores) == {"latent", "pixel-pca"} and ev_good.manifold_space == "latent"
    assert ev_good.scores["latent"].dim == 6 and ev_good.scores["pixel-pca"].dim == 64
    for space in ("latent", "pixel-pca"):
        assert ev_good.scores[space].fd < 0.2 * ev_bad.scores[space].fd
        assert ev_good.scores[space].kid.mean < 0.2 * ev_bad.scores[space].kid.mean
    assert ev_good.precision_recall.precision > 0.8 > ev_bad.precision_recall.precision
    assert ev_good.density_coverage.coverage > 0.8 > ev_bad.density_coverage.coverage
    assert ev_good.memorisation.fraction_below[1] < 0.15
    # the latent FD is the FD of the encoded sets
    fd = frechet_distance(backend.encode(real).astype(np.float64), backend.encode(good).astype(np.float64))
    assert ev_good.scores["latent"].fd == pytest.approx(fd, rel=1e-9)
    json.dumps(ev_good.to_dict())


def test_evaluate_set_without_backend_uses_pixel_pca_and_flags_copies():
    rng = np.random.default_rng(8)
    real = _images(rng, 300)
    fake = np.concatenate([real[:100], _images(rng, 100)])
    pca = PixelPCAFeatures(n_components=8).fit(real)
    ev = evaluate_set(real, fake, pixel_pca=pca, kid_subsets=5, kid_subset_size=100, rng=9)
    assert set(ev.scores) == {"pixel-pca"} and ev.manifold_space == "pixel-pca"
    assert ev.memorisation.fraction_below[0] >= 0.5
    summary = ev.to_dict()
    assert summary["knn_method"] == "exact" and summary["spaces"]["pixel-pca"]["dim"] == 8


def test_evaluate_set_rejects_bad_arguments():
    imgs = _images(np.random.default_rng(10), 10)
    with pytest.raises(InvalidParameterError, match="with pixel_pca=False a backend is required"):
        evaluate_set(imgs, imgs, pixel_pca=False)
    with pytest.raises(InvalidParameterError, match="manifold_space='latent' is not computed"):
        evaluate_set(imgs, imgs, manifold_space="latent")
    with pytest.raises(InvalidParameterError, match="same shape"):
        evaluate_set(imgs, np.zeros((10, 4, 4, 3), np.uint8))
    with pytest.raises(InvalidParameterError, match="uint8 array of shape \\(n, h, w, c\\)"):
        evaluate_set(imgs.astype(float), imgs)


def test_random_conv_features_are_fixed_and_see_texture():
    # the same seed gives the same map on every call; a flat image has no spatial spread in any channel
    from latentscope.metrics import RandomConvFeatures

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(6, 48, 40, 3), dtype=np.uint8)
    f = RandomConvFeatures(channels=(4, 8), size=32, seed=3)
    a = f.transform(imgs)
    assert a.shape == (6, 2 * (4 + 8)) and f.n_features_out == 24
    np.testing.assert_array_equal(a, RandomConvFeatures(channels=(4, 8), size=32, seed=3).transform(imgs))
    assert not np.allclose(a, RandomConvFeatures(channels=(4, 8), size=32, seed=4).transform(imgs))
    flat = np.full((2, 32, 32, 3), 120, np.uint8)
    b = RandomConvFeatures(channels=(4, 8), size=32, seed=3).transform(flat)
    # away from the zero-padded border a flat image gives one value per channel: small spread only
    assert np.all(b[:, 4:8] < a[:, 4:8].mean(0))
    np.testing.assert_array_equal(f.transform([imgs[:3]]), a[:3])  # an iterable of batches
    with pytest.raises(InvalidParameterError, match="channels must be positive integers"):
        RandomConvFeatures(channels=(4, 0))
    with pytest.raises(InvalidParameterError, match="seed must be an integer >= 0"):
        RandomConvFeatures(seed=-1)
