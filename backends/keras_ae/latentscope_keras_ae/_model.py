"""Keras 3 model building for the convolutional autoencoder.

Backend-agnostic: only ``keras`` APIs (layers, ``keras.ops``), so the models run under
``KERAS_BACKEND=tensorflow``, ``jax`` or ``torch``. This module never sets
``KERAS_BACKEND``. It is self-contained apart from :mod:`._config` so that GPU
benchmarks can import it without the rest of the plugin.
"""

from __future__ import annotations

import keras
from keras import layers

from ._config import AEConfig

__all__ = ["build_encoder", "build_decoder", "build_autoencoder", "compile_autoencoder", "uint8_encoder"]


def _act(cfg: AEConfig, name: str):
    return layers.LeakyReLU(negative_slope=cfg.negative_slope, name=name)


def build_encoder(cfg: AEConfig) -> keras.Model:
    """Encoder: float images in [0, 1] of shape ``cfg.image_shape`` -> z (z_dim).

    ``len(encoder_filters)`` x [Conv2D(k, stride 2, same) -> BatchNorm? -> LeakyReLU],
    Flatten, Dense(z_dim) (linear).
    """
    x_in = keras.Input(shape=cfg.image_shape, name="image")
    x = x_in
    for i, c in enumerate(cfg.encoder_filters, start=1):
        x = layers.Conv2D(c, cfg.kernel_size, strides=2, padding="same", use_bias=not cfg.batch_norm, name=f"enc_conv{i}")(x)
        if cfg.batch_norm:
            x = layers.BatchNormalization(momentum=cfg.batch_norm_momentum, name=f"enc_bn{i}")(x)
        x = _act(cfg, f"enc_act{i}")(x)
    x = layers.Flatten(name="enc_flatten")(x)
    z = layers.Dense(cfg.z_dim, name="z")(x)
    return keras.Model(x_in, z, name="encoder")


def build_decoder(cfg: AEConfig) -> keras.Model:
    """Decoder: z -> float images in [0, 1] (sigmoid).

    Dense -> LeakyReLU -> Reshape(bottleneck), then one Conv2DTranspose(k, stride 2,
    same) -> BatchNorm? -> LeakyReLU per entry of ``decoder_filters``, and finally
    Conv2D(3, k, stride 1, sigmoid) when ``output_conv`` (else the last transposed
    convolution has 3 channels and the sigmoid).
    """
    h, w, c = cfg.bottleneck_shape
    z_in = keras.Input(shape=(cfg.z_dim,), name="z")
    x = layers.Dense(h * w * c, name="dec_dense")(z_in)
    x = _act(cfg, "dec_act0")(x)
    x = layers.Reshape((h, w, c), name="dec_reshape")(x)
    n = len(cfg.decoder_filters)
    for i, f in enumerate(cfg.decoder_filters, start=1):
        last = i == n and not cfg.output_conv
        if last:
            x = layers.Conv2DTranspose(3, cfg.kernel_size, strides=2, padding="same", activation="sigmoid", name="rgb")(x)
            break
        x = layers.Conv2DTranspose(f, cfg.kernel_size, strides=2, padding="same", use_bias=not cfg.batch_norm, name=f"dec_convt{i}")(x)
        if cfg.batch_norm:
            x = layers.BatchNormalization(momentum=cfg.batch_norm_momentum, name=f"dec_bn{i}")(x)
        x = _act(cfg, f"dec_act{i}")(x)
    if cfg.output_conv:
        x = layers.Conv2D(3, cfg.kernel_size, strides=1, padding="same", activation="sigmoid", name="rgb")(x)
    return keras.Model(z_in, x, name="decoder")


def build_autoencoder(cfg: AEConfig, encoder: keras.Model | None = None, decoder: keras.Model | None = None) -> keras.Model:
    """The autoencoder ``decoder(encoder(x))`` as one functional model named "autoencoder"."""
    encoder = encoder if encoder is not None else build_encoder(cfg)
    decoder = decoder if decoder is not None else build_decoder(cfg)
    x_in = keras.Input(shape=cfg.image_shape, name="image")
    return keras.Model(x_in, decoder(encoder(x_in)), name="autoencoder")


def compile_autoencoder(model: keras.Model, cfg: AEConfig) -> keras.Model:
    """Compile with Adam(cfg.learning_rate) and BCE or MSE."""
    loss = keras.losses.BinaryCrossentropy() if cfg.loss == "bce" else keras.losses.MeanSquaredError()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate), loss=loss)
    return model


def uint8_encoder(encoder: keras.Model) -> keras.Model:
    """Wrap ``encoder`` so that it takes uint8 images: the cast and the /255 scaling
    run inside the compiled graph, on the device (a quarter of the transfer bytes)."""
    shape = tuple(encoder.input_shape[1:])
    x_in = keras.Input(shape=shape, dtype="uint8", name="image_uint8")
    x = layers.Rescaling(1.0 / 255.0, name="to_unit")(x_in)
    return keras.Model(x_in, encoder(x), name="encoder_uint8")
