"""latentscope backend plugin: the convolutional CelebA autoencoder in Keras 3.

Registered under the entry-point group ``latentscope.backends`` as ``keras-ae``.
Importing this package does not import Keras; building, training or loading a model
does. The package never sets ``KERAS_BACKEND``: TensorFlow, JAX and PyTorch all work.

Public names
------------
KerasAEBackend   the backend (train / load / save / encode / decode / fingerprint).
AEConfig         the architecture and optimiser settings.
PRESETS          named configurations: ``celeba96`` (reference) and ``small`` (CPUs).
"""

from __future__ import annotations

from ._backend import KerasAEBackend
from ._config import PRESETS, AEConfig, preset_config

__version__ = "0.1.0"
__all__ = ["KerasAEBackend", "AEConfig", "PRESETS", "preset_config", "__version__"]
