"""Shared fixtures of the core test suite."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A numpy Generator seeded from LATENTSCOPE_TEST_SEED (default 0)."""
    return np.random.default_rng(int(os.environ.get("LATENTSCOPE_TEST_SEED", "0")))


def celeba_sample_path():
    """The shared CelebA sample (``../shared/data`` or ``$LATENTSCOPE_SHARED_DATA``), or None."""
    from pathlib import Path

    env = os.environ.get("LATENTSCOPE_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = root / "celeba_sample"
    return path if (path / "img_align_celeba").is_dir() else None


@pytest.fixture(scope="session")
def celeba_tiny(tmp_path_factory):
    """A tiny keras-ae (32x32, z_dim 32, 3 epochs) trained once on the CelebA sample's 660 test-split
    images, with its z-point store: ``(model, source, store_path)``. Skips without the sample or the
    keras-ae plugin."""
    path = celeba_sample_path()
    if path is None:
        pytest.skip("the shared CelebA sample is not available")
    keras_ae = pytest.importorskip("latentscope_keras_ae")
    from latentscope.backends import encode_to_store
    from latentscope.data import CelebASource

    out = tmp_path_factory.mktemp("celeba_tiny")
    source = CelebASource(path, image_size=32, split="test")
    model = keras_ae.KerasAEBackend.train(source, out / "model", preset="small", image_size=32, z_dim=32,
                                          filters="8,8,16,16", epochs=3, batch_size=32, val_fraction=0.1, seed=0,
                                          progress=False)
    encode_to_store(model, source, out / "z.h5")
    return model, source, out / "z.h5"
