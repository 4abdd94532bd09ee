"""``flow``: a RealNVP normalizing flow on the whitened latents (Generative Latent Flow style)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from latentscope._validation import check_positive

from ._priors import LearnedPrior

__all__ = ["FlowSampler"]


@functools.lru_cache(maxsize=1)
def _classes() -> tuple[type, type]:
    import keras
    from keras import ops

    class Coupling(keras.layers.Layer):
        """Affine coupling: half the coordinates (a fixed permutation) scale and shift the other half."""

        def __init__(self, dim: int, hidden: int, index: int, seed: int, clamp: float = 2.0, dropout: float = 0.0,
                     **kw: Any) -> None:
            super().__init__(**kw)
            perm = np.random.default_rng(1000 + index).permutation(dim)  # fixed by (dim, index): nothing to save
            self.d1 = dim // 2
            self.perm = perm.astype("int32")
            self.inv = np.argsort(perm).astype("int32")
            self.clamp = float(clamp)
            init = lambda k: keras.initializers.GlorotUniform(seed=seed + 7 * index + k)  # noqa: E731
            self.h1 = keras.layers.Dense(hidden, activation="gelu", kernel_initializer=init(1))
            self.h2 = keras.layers.Dense(hidden, activation="gelu", kernel_initializer=init(2))
            self.out = keras.layers.Dense(2 * (dim - self.d1), kernel_initializer="zeros")  # starts as the identity
            self.drop = keras.layers.Dropout(float(dropout), seed=seed + 7 * index + 3) if dropout > 0 else None

        def _st(self, a: Any, training: Any = None) -> tuple[Any, Any]:
            h = self.h2(self.h1(a))
            if self.drop is not None:
                h = self.drop(h, training=training)
            raw = self.out(h)
            s, t = ops.split(raw, 2, axis=-1)
            return self.clamp * ops.tanh(s / self.clamp), t

        def call(self, x: Any, training: Any = None) -> tuple[Any, Any]:
            xp = ops.take(x, self.perm, axis=1)
            a, b = xp[:, : self.d1], xp[:, self.d1:]
            s, t = self._st(a, training)
            y = ops.concatenate([a, b * ops.exp(s) + t], axis=1)
            return ops.take(y, self.inv, axis=1), ops.sum(s, axis=1)

        def inverse(self, y: Any) -> Any:
            yp = ops.take(y, self.perm, axis=1)
            a, b = yp[:, : self.d1], yp[:, self.d1:]
            s, t = self._st(a)
            x = ops.concatenate([a, (b - t) * ops.exp(-s)], axis=1)
            return ops.take(x, self.inv, axis=1)

    class FlowNet(keras.Model):
        """x -> base point u and log|det|; the output is the negative log-likelihood per coordinate."""

        def __init__(self, dim: int, n_layers: int, hidden: int, seed: int, dropout: float = 0.0, **kw: Any) -> None:
            super().__init__(**kw)
            self.dim = dim
            self.couplings = [Coupling(dim, hidden, i, seed, dropout=dropout) for i in range(n_layers)]

        def call(self, x: Any, training: Any = None) -> Any:
            logdet = ops.zeros_like(x[:, 0])
            for layer in self.couplings:
                x, ld = layer(x, training=training)
                logdet = logdet + ld
            nll = 0.5 * ops.sum(x * x, axis=1) + 0.5 * self.dim * math.log(2 * math.pi) - logdet
            return nll / self.dim

        def inverse(self, u: Any) -> Any:
            for layer in reversed(self.couplings):
                u = layer.inverse(u)
            return u

    return Coupling, FlowNet


def _mean_loss(y_true: Any, y_pred: Any) -> Any:
    from keras import ops

    return ops.mean(y_pred)


class FlowSampler(LearnedPrior):
    """A RealNVP normalizing flow fitted to the whitened latents (the PCA frame).

    Generative Latent Flow (Xiao, Yan and Amit, 2019) fits a flow to an autoencoder's
    latents; this is its ex-post form, like RAE's mixture: ``n_layers`` affine coupling
    layers (Dinh, Sohl-Dickstein and Bengio, ICLR 2017), each scaling and shifting half
    of the coordinates (a fixed permutation per layer) by a two-layer MLP of the other
    half (scales soft-clamped to ``exp(+-2)``, the last layer zero-initialised so the
    flow starts as the identity). It is trained by maximum likelihood (Adam) on the
    whitened fit rows with early stopping on a held-out split; samples are
    ``f^-1(T u)``, ``u ~ N(0, I)``, mapped back to the latent space.

    Parameters
    ----------
    n_layers : int, default=6
        Coupling layers.
    hidden : int or "auto", default="auto"
        Width of the coupling MLPs; "auto": the power of two nearest to (training rows) / 32,
        between 32 and 128 (:func:`~latentscope_keras_ae._priors.auto_hidden`).
    epochs : int, default=200
        At most this many passes over the training rows.
    patience : int, default=10
        Stop after this many epochs without a better held-out loss (the best weights are kept).
    batch_size : int, default=256
    learning_rate : float, default=5e-4
    weight_decay : float, default=1e-4
        Decoupled weight decay (AdamW; 0: plain Adam): pulls the coupling nets toward the
        identity flow.
    dropout : float, default=0.0
        Dropout rate after the hidden layers of the coupling nets while training.
    val_fraction : float, default=0.1
        Share of the fit rows held out for early stopping.
    temperature : float, default=1.0
        Standard deviation T of the base normal when sampling (T < 1: more typical samples).
    max_samples : int or None, default=200000
        Fit on at most this many rows (drawn with the fit ``rng``); None: all rows.
    progress : bool or None, default=None
        A tqdm bar over the epochs on stderr (None: when stderr is a terminal).

    Attributes
    ----------
    z_dim_ : int
    mean_, components_, scales_ : ndarray
        The whitening frame: ``y = (z - mean_) components_.T / scales_``.
    weights_ : ndarray
        The network weights, flattened (shapes in ``weight_shapes_``).
    history_ : dict
        ``loss`` and ``val_loss`` (nats per coordinate) per epoch, ``epochs_run``, ``stopped_early``.
    best_epoch_ : int
    n_fit_rows_ : int
        Training rows (the held-out rows excluded).
    hidden_ : int
        The width used.
    fit_seconds_ : float
    """

    name = "flow"
    description = "RealNVP normalizing flow on the whitened latents (keras-ae plugin; early stopping, temperature)"

    def __init__(
        self,
        *,
        n_layers: int = 6,
        hidden: int | str = "auto",
        epochs: int = 200,
        patience: int = 10,
        batch_size: int = 256,
        learning_rate: float = 5e-4,
        weight_decay: float = 1e-4,
        dropout: float = 0.0,
        val_fraction: float = 0.1,
        temperature: float = 1.0,
        max_samples: int | None = 200000,
        progress: bool | None = None,
    ) -> None:
        self.n_layers = n_layers
        self.hidden = hidden
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.val_fraction = val_fraction
        self.temperature = temperature
        self.max_samples = max_samples
        self.progress = progress

    def _check_params(self, owner: str) -> None:
        self._check_common(owner)
        check_positive(self.n_layers, "n_layers", owner=owner, integer=True)

    def _build(self, dim: int, seed: int) -> Any:
        if dim < 2:
            from latentscope.exceptions import InvalidParameterError

            raise InvalidParameterError(f"FlowSampler.fit: the whitened latents need at least 2 dimensions; got {dim}.")
        _, FlowNet = _classes()
        model = FlowNet(dim, int(self.n_layers), int(self.hidden_), int(seed), dropout=float(self.dropout))
        model(np.zeros((2, dim), np.float32))  # build the weights
        return model

    def _loss(self) -> Any:
        return _mean_loss

    def _epoch_data(self, Y: np.ndarray, rng: np.random.Generator,
                    min_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return Y, np.zeros((Y.shape[0],), np.float32)

    def _generate(self, model: Any, n: int, rng: np.random.Generator) -> np.ndarray:
        import keras

        u = (float(self.temperature) * rng.standard_normal((n, model.dim))).astype(np.float32)
        out = [keras.ops.convert_to_numpy(model.inverse(u[i:i + 8192])) for i in range(0, n, 8192)]
        return np.concatenate(out)
