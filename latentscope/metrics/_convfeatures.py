"""A fixed, seeded random convolutional network as a weight-free image feature space.

Why: the AE's own encoder is a poor judge of garbage (it may map uniform brown
images close to the training codes: precision 0.76 for decoded cube samples on one
model), and a pixel-PCA projection drops everything off its leading axes, so a flat
image lands near the centre of the real images' cloud. Features of a randomly
initialised, untrained convolutional network keep local structure (edges, texture)
and need no downloaded weights; Naeem et al. (2020, "Reliable Fidelity and Diversity
Metrics for Generative Models", section 5) showed that precision, recall, density
and coverage in the embedding of a randomly initialised network rank generators as
trained embeddings do. Flat or noisy images have pooled responses unlike those of
any real image, so they cannot score well here.

The network: ``len(channels)`` layers of 3x3 convolutions with stride 2 (zero
padding 1), weights drawn from N(0, 2 / fan_in) by ``numpy.random.default_rng(seed)``,
no biases, ReLU after each. The features are, for every layer, the spatial mean and
the spatial standard deviation of every channel (``2 * sum(channels)`` numbers per
image). Images are scaled to [-0.5, 0.5] and resampled to ``size`` x ``size`` first
(nearest pixel), so the space does not depend on the model's image size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_positive
from ..exceptions import InvalidParameterError
from ._features import iter_image_batches

__all__ = ["RandomConvFeatures"]


def _conv3x3_s2(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """3x3 convolution, stride 2, zero padding 1: (b, h, w, c) x (9 c, k) -> (b, ceil(h/2), ceil(w/2), k)."""
    b, h, wd, c = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ho, wo = (h + 1) // 2, (wd + 1) // 2
    cols = np.empty((b, ho, wo, 3, 3, c), dtype=x.dtype)
    for i in range(3):
        for j in range(3):
            cols[:, :, :, i, j, :] = p[:, i : i + 2 * ho : 2, j : j + 2 * wo : 2, :]
    return (cols.reshape(b * ho * wo, 9 * c) @ w).reshape(b, ho, wo, -1)


class RandomConvFeatures:
    """Pooled responses of a fixed random convolutional network (see the module docstring).

    Nothing is fitted: the same ``seed`` gives the same feature map on every machine
    and for every model, so scores in this space compare across models.

    Parameters
    ----------
    channels : sequence of int, default=(16, 32, 64)
        Output channels of the stride-2 layers.
    size : int, default=64
        Side the images are resampled to.
    seed : int, default=0
        Seed of the weights.
    batch_size : int, default=256
        Images per block (memory: about ``batch_size * size^2 * 9 * channels[0] / 4``
        floats for the first layer).

    Attributes
    ----------
    weights : list of ndarray
        Per layer, the (9 * c_in, c_out) float32 weights.
    n_features_out : int

    Examples
    --------
    >>> import numpy as np
    >>> imgs = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    >>> RandomConvFeatures(channels=(8, 16)).transform(imgs).shape
    (4, 48)
    """

    def __init__(self, channels: Any = (16, 32, 64), *, size: int = 64, seed: int = 0, batch_size: int = 256) -> None:
        owner = "RandomConvFeatures"
        chans = tuple(channels) if not isinstance(channels, (int, np.integer)) else (channels,)
        if not chans or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1 for c in chans):
            raise InvalidParameterError(f"{owner}: channels must be positive integers; got {channels!r}.")
        check_positive(size, "size", owner=owner, integer=True)
        check_positive(batch_size, "batch_size", owner=owner, integer=True)
        check_positive(seed, "seed", owner=owner, integer=True, minimum=0)
        self.channels = tuple(int(c) for c in chans)
        self.size = int(size)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self._in_channels: int | None = None
        self.weights: list[np.ndarray] = []

    def __repr__(self) -> str:
        return f"RandomConvFeatures(channels={self.channels!r}, size={self.size}, seed={self.seed})"

    @property
    def n_features_out(self) -> int:
        return 2 * sum(self.channels)

    def _build(self, c_in: int) -> None:
        rng = np.random.default_rng(self.seed)
        self.weights = []
        for c_out in self.channels:
            fan_in = 9 * c_in
            self.weights.append((rng.standard_normal((fan_in, c_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32))
            c_in = c_out
        self._in_channels = c_in if not self.weights else self.weights[0].shape[0] // 9

    def _resample(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[1:3]
        if (h, w) == (self.size, self.size):
            return x
        rows = np.minimum((np.arange(self.size) + 0.5) * h / self.size, h - 1).astype(np.intp)
        cols = np.minimum((np.arange(self.size) + 0.5) * w / self.size, w - 1).astype(np.intp)
        return x[:, rows][:, :, cols]

    def transform(self, images: Any) -> np.ndarray:
        """Features of uint8 images (array (n, h, w, c), image source or batches): (n, 2 sum(channels)) float64."""
        out = []
        for batch in iter_image_batches(images, owner="RandomConvFeatures.transform", batch_size=self.batch_size):
            c = batch.shape[3]
            if self._in_channels != c:
                self._build(c)
            for lo in range(0, batch.shape[0], self.batch_size):
                x = self._resample(batch[lo : lo + self.batch_size]).astype(np.float32) * np.float32(1 / 255)
                x -= np.float32(0.5)
                feats = []
                for w in self.weights:
                    x = np.maximum(_conv3x3_s2(x, w), 0.0)
                    flat = x.reshape(x.shape[0], -1, x.shape[3])
                    feats.append(flat.mean(axis=1, dtype=np.float64))
                    feats.append(flat.std(axis=1, dtype=np.float64))
                out.append(np.concatenate(feats, axis=1))
        if not out:
            return np.empty((0, self.n_features_out))
        return np.concatenate(out, axis=0)
