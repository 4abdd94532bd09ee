"""``diffusion``: a small denoising diffusion model on the whitened latents, sampled by DDIM."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from latentscope._validation import check_positive
from latentscope.exceptions import InvalidParameterError

from ._priors import LearnedPrior

__all__ = ["DiffusionSampler"]

#: Diffusion steps of the training schedule, and the width of the time embedding.
_T = 1000
_EMB = 32
#: Optimiser steps per epoch at least (small fits draw several (t, eps) per row and epoch).
_MIN_STEPS = 50


def _alpha_bar() -> np.ndarray:
    """The cosine schedule of Nichol and Dhariwal (2021): abar_t for t = 1..T (abar_0 = 1)."""
    s = 0.008
    t = np.arange(_T + 1) / _T
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    beta = np.clip(1 - abar[1:] / abar[:-1], 0, 0.999)
    return np.cumprod(1 - beta)


def _embed(t: np.ndarray) -> np.ndarray:
    """Sinusoidal embedding of the step t in [1, T]."""
    freqs = np.exp(-math.log(1000.0) * np.arange(_EMB // 2) / (_EMB // 2))
    arg = (np.asarray(t, np.float64)[:, None] / _T) * 1000.0 * freqs[None, :]
    return np.concatenate([np.sin(arg), np.cos(arg)], axis=1).astype(np.float32)


def _check_steps(steps: Any, owner: str) -> None:
    check_positive(steps, "steps", owner=owner, integer=True)
    if int(steps) > _T:
        raise InvalidParameterError(f"{owner}: steps must be <= {_T}; got {steps!r}.")


def _build_net(dim: int, hidden: int, n_blocks: int, seed: int, dropout: float = 0.0) -> Any:
    import keras

    init = lambda k: keras.initializers.GlorotUniform(seed=seed + k)  # noqa: E731
    x_in = keras.Input((dim,), name="x_t")
    t_in = keras.Input((_EMB,), name="t_embedding")
    temb = keras.layers.Dense(hidden, activation="gelu", kernel_initializer=init(0))(t_in)
    h = keras.layers.Dense(hidden, kernel_initializer=init(1))(x_in)
    for b in range(n_blocks):  # residual MLP blocks, the time added in each
        u = keras.layers.Add()([h, keras.layers.Dense(hidden, kernel_initializer=init(10 + 3 * b))(temb)])
        u = keras.layers.LayerNormalization()(u)
        u = keras.layers.Dense(hidden, activation="gelu", kernel_initializer=init(11 + 3 * b))(u)
        if dropout > 0:
            u = keras.layers.Dropout(dropout, seed=seed + 12 + 3 * b)(u)
        u = keras.layers.Dense(hidden, kernel_initializer=init(12 + 3 * b))(u)
        h = keras.layers.Add()([h, u])
    out = keras.layers.Dense(dim, kernel_initializer="zeros")(keras.layers.LayerNormalization()(h))
    return keras.Model([x_in, t_in], out)


class DiffusionSampler(LearnedPrior):
    """A denoising diffusion model (DDPM) on the whitened latents, sampled with deterministic DDIM.

    Latent diffusion priors (D2C, Sinha et al. 2021; LSGM, Vahdat et al. 2021; Rombach
    et al. 2022) model an autoencoder's latents with a diffusion model. This is the
    ex-post form: on the whitened fit rows ``y_0`` a residual MLP ``v(y_t, t)``
    (``n_blocks`` blocks of width ``hidden``, a sinusoidal time embedding) is trained on
    ``y_t = sqrt(abar_t) y_0 + sqrt(1 - abar_t) eps`` (Ho, Jain and Abbeel 2020) to
    predict ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) y_0`` (the v-parameterisation of
    Salimans and Ho 2022: no division by ``sqrt(abar_t)``, so no blow-up at t = T) under the cosine schedule with T = 1000 (Nichol and Dhariwal 2021), a
    fresh ``(t, eps)`` per row and epoch (several per row when the rows make fewer than
    50 optimiser steps), with early stopping on a held-out split (its
    ``(t, eps)`` fixed). Sampling runs the deterministic DDIM update (eta = 0; Song, Meng
    and Ermon, ICLR 2021) over ``steps`` evenly spaced steps from ``y_T = T u``,
    ``u ~ N(0, I)``: the same ``u`` always gives the same sample.

    Parameters
    ----------
    steps : int, default=50
        DDIM steps when sampling (1 to 1000).
    n_blocks : int, default=3
    hidden : int or "auto", default="auto"
        Width of the MLP; "auto": the power of two nearest to (training rows) / 32, between
        32 and 256.
    epochs : int, default=200
        At most this many epochs (each at least 50 optimiser steps).
    patience : int, default=20
    batch_size : int, default=256
    learning_rate : float, default=1e-3
    weight_decay : float, default=1e-4
        Decoupled weight decay (AdamW; 0: plain Adam).
    dropout : float, default=0.1
        Dropout rate inside each residual block while training.
    val_fraction : float, default=0.1
    temperature : float, default=1.0
        Scale of the starting noise ``y_T``.
    max_samples : int or None, default=200000
    progress : bool or None, default=None

    Attributes
    ----------
    z_dim_, mean_, components_, scales_, weights_, history_, best_epoch_, n_fit_rows_, fit_seconds_
        As for :class:`~latentscope_keras_ae.FlowSampler` (``loss``: mean squared error of v).
    clip_ : float
        Bound of the predicted clean point in whitened units while sampling: 1.1 times the
        largest absolute whitened coordinate of the fit rows.
    """

    _scalar_attrs = LearnedPrior._scalar_attrs + ("clip_",)
    _max_hidden = 256
    name = "diffusion"
    description = "denoising diffusion model on the whitened latents, deterministic DDIM sampler (keras-ae plugin)"

    def __init__(
        self,
        *,
        steps: int = 50,
        n_blocks: int = 3,
        hidden: int | str = "auto",
        epochs: int = 200,
        patience: int = 20,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        dropout: float = 0.1,
        val_fraction: float = 0.1,
        temperature: float = 1.0,
        max_samples: int | None = 200000,
        progress: bool | None = None,
    ) -> None:
        self.steps = steps
        self.n_blocks = n_blocks
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
        check_positive(self.n_blocks, "n_blocks", owner=owner, integer=True)
        _check_steps(self.steps, owner)

    def _build(self, dim: int, seed: int) -> Any:
        return _build_net(dim, int(self.hidden_), int(self.n_blocks), int(seed), float(self.dropout))

    def _loss(self) -> Any:
        return "mse"

    def _after_fit(self, Y: np.ndarray) -> None:
        self.clip_ = float(1.1 * np.max(np.abs(Y)))

    def _epoch_data(self, Y: np.ndarray, rng: np.random.Generator,
                    min_rows: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        abar = _alpha_bar()
        # an epoch is at least 50 optimiser steps: each row gets several fresh (t, eps) draws
        # (the held-out rows: at least min_rows draws, fixed for the whole fit)
        min_rows = _MIN_STEPS * int(self.batch_size) if min_rows is None else int(min_rows)
        reps = max(1, int(np.ceil(min_rows / max(Y.shape[0], 1))))
        Y = np.tile(Y, (reps, 1))
        t = rng.integers(1, _T + 1, size=Y.shape[0])
        eps = rng.standard_normal(Y.shape).astype(np.float32)
        a = abar[t - 1][:, None]
        y_t = (np.sqrt(a) * Y + np.sqrt(1 - a) * eps).astype(np.float32)
        v = (np.sqrt(a) * eps - np.sqrt(1 - a) * Y).astype(np.float32)
        return [y_t, _embed(t)], v

    def _generate(self, model: Any, n: int, rng: np.random.Generator) -> np.ndarray:
        import keras

        _check_steps(self.steps, "DiffusionSampler.sample")
        abar = _alpha_bar()
        dim = int(model.inputs[0].shape[-1])
        clip = float(self.clip_)
        y = float(self.temperature) * rng.standard_normal((n, dim))
        ts = np.unique(np.linspace(_T, 1, int(self.steps)).round().astype(int))[::-1]
        for i, t in enumerate(ts):
            a = abar[t - 1]
            a_next = abar[ts[i + 1] - 1] if i + 1 < len(ts) else 1.0
            emb = _embed(np.array([t]))
            v = np.concatenate([
                keras.ops.convert_to_numpy(model([y[j:j + 8192].astype(np.float32), np.repeat(emb, len(y[j:j + 8192]), 0)],
                                                 training=False))
                for j in range(0, n, 8192)
            ]).astype(np.float64)
            # the predicted clean point (kept inside the fit rows' whitened range) and the noise it implies
            y0 = np.clip(math.sqrt(a) * y - math.sqrt(1 - a) * v, -clip, clip)
            eps = (y - math.sqrt(a) * y0) / math.sqrt(1 - a)
            y = math.sqrt(a_next) * y0 + math.sqrt(1 - a_next) * eps
        return y
