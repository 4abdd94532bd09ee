"""Which accelerator the active Keras backend computes on, and batch sizes for it."""

from __future__ import annotations

import functools

__all__ = ["accelerator", "default_batch_size"]

#: Device batch sizes by (accelerator, task). An H100 needs large batches to hide
#: dispatch and transfer latency; on CPUs larger batches only cost memory.
_BATCH = {("cpu", "encode"): 256, ("cpu", "decode"): 128, ("gpu", "encode"): 1024, ("gpu", "decode"): 512}


@functools.lru_cache(maxsize=1)
def accelerator() -> str:
    """``"gpu"`` when the active Keras backend sees a GPU/TPU, else ``"cpu"``."""
    import keras

    name = keras.backend.backend()
    try:
        if name == "tensorflow":
            import tensorflow as tf

            return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
        if name == "jax":
            import jax

            return "cpu" if jax.default_backend() == "cpu" else "gpu"
        if name == "torch":
            import torch

            return "gpu" if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover - a broken backend install
        return "cpu"
    return "cpu"


def default_batch_size(task: str) -> int:
    """Default device batch for ``task`` ("encode" or "decode") on this hardware."""
    return _BATCH[(accelerator(), task)]
