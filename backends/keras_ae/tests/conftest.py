"""Shared fixtures: one tiny model trained once per test session (TensorFlow's import
and the first traced training step cost most of the plugin's test time)."""

from __future__ import annotations

import pytest

#: A tiny configuration: 80 synthetic faces of 32x32 (16 for validation), z_dim 8, 3 epochs of 4 steps.
TINY = dict(preset="small", image_size=32, z_dim=8, filters="8,8,16,16", epochs=3, batch_size=16,
            val_fraction=0.2, seed=0, progress=False)
TINY_N = 80


def tiny_source():
    from latentscope.data import SyntheticFaces

    return SyntheticFaces(TINY_N, image_size=32)


@pytest.fixture(scope="session")
def tiny():
    """The tiny training options and a factory of the matching synthetic source."""
    return dict(TINY), tiny_source


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Directory of a tiny keras-ae model trained uninterrupted (the reference run)."""
    from latentscope_keras_ae import KerasAEBackend

    out = tmp_path_factory.mktemp("keras_ae") / "tiny"
    KerasAEBackend.train(tiny_source(), out, **TINY)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from latentscope_keras_ae import KerasAEBackend

    return KerasAEBackend.load(tiny_model_dir)
