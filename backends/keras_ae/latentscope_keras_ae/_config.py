"""The autoencoder's configuration and its named presets (no Keras import here)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from latentscope.exceptions import InvalidParameterError

__all__ = ["AEConfig", "PRESETS", "preset_config", "parse_filters"]

_OWNER = "keras-ae"
LOSSES = ("bce", "mse")


@dataclass(frozen=True)
class AEConfig:
    """Architecture and optimiser settings of the convolutional autoencoder.

    Parameters
    ----------
    image_size : tuple of int, default=(96, 96)
        (height, width) of the RGB input; both must be divisible by ``2 ** n_layers``.
    z_dim : int, default=256
        Latent dimension (the encoder's last Dense layer).
    encoder_filters : tuple of int, default=(64, 64, 128, 128)
        Channels of the stride-2 Conv2D layers (one per layer; four in the reference).
    decoder_filters : tuple of int, default=(128, 128, 64, 64)
        Channels of the stride-2 Conv2DTranspose layers that mirror the encoder
        (as many as ``encoder_filters``).
    output_conv : bool, default=True
        True: a final stride-1 Conv2D with 3 channels and sigmoid follows the
        transposed convolutions (the reference choice, "variant B" in the feasibility
        notes). False: the last Conv2DTranspose itself is the 3-channel sigmoid
        output, so ``decoder_filters[-1]`` must be 3.
    kernel_size : int, default=3
    batch_norm : bool, default=True
        BatchNormalization after every (transposed) convolution except the output.
    batch_norm_momentum : float, default=0.9
        Momentum of the BatchNorm moving statistics (Keras' default 0.99 needs
        hundreds of steps before inference-mode outputs are usable).
    negative_slope : float, default=0.2
        Slope of the LeakyReLU activations.
    loss : {"bce", "mse"}, default="bce"
        Per-pixel binary cross-entropy or mean squared error.
    learning_rate : float, default=5e-4
        Adam's learning rate.
    batch_size : int, default=128
        Training batch size.
    epochs : int, default=24
        Training epochs.
    """

    image_size: tuple[int, int] = (96, 96)
    z_dim: int = 256
    encoder_filters: tuple[int, ...] = (64, 64, 128, 128)
    decoder_filters: tuple[int, ...] = (128, 128, 64, 64)
    output_conv: bool = True
    kernel_size: int = 3
    batch_norm: bool = True
    batch_norm_momentum: float = 0.9
    negative_slope: float = 0.2
    loss: str = "bce"
    learning_rate: float = 5e-4
    batch_size: int = 128
    epochs: int = 24

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(v) for v in _seq(self.image_size, "image_size")))
        object.__setattr__(self, "encoder_filters", tuple(int(v) for v in _seq(self.encoder_filters, "encoder_filters")))
        object.__setattr__(self, "decoder_filters", tuple(int(v) for v in _seq(self.decoder_filters, "decoder_filters")))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`InvalidParameterError` for an inconsistent configuration."""
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise InvalidParameterError(f"{_OWNER}: image_size must be (height, width) with positive values; got {self.image_size}.")
        n = len(self.encoder_filters)
        if n < 1 or min(self.encoder_filters) < 1:
            raise InvalidParameterError(f"{_OWNER}: encoder_filters must be one or more positive ints; got {self.encoder_filters}.")
        if len(self.decoder_filters) != n or min(self.decoder_filters) < 1:
            raise InvalidParameterError(
                f"{_OWNER}: decoder_filters must hold {n} positive ints (one per encoder layer); got {self.decoder_filters}."
            )
        if not self.output_conv and self.decoder_filters[-1] != 3:
            raise InvalidParameterError(
                f"{_OWNER}: without output_conv the last Conv2DTranspose is the RGB output, so decoder_filters[-1] "
                f"must be 3; got {self.decoder_filters[-1]}."
            )
        f = 2 ** n
        if self.image_size[0] % f or self.image_size[1] % f:
            raise InvalidParameterError(
                f"{_OWNER}: image_size must be divisible by 2**{n} = {f} ({n} stride-2 layers); got {self.image_size}."
            )
        for name in ("z_dim", "kernel_size", "batch_size", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidParameterError(f"{_OWNER}: {name} must be an int >= 1; got {v!r}.")
        if self.loss not in LOSSES:
            raise InvalidParameterError(f"{_OWNER}: loss must be one of {LOSSES}; got {self.loss!r}.")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise InvalidParameterError(f"{_OWNER}: learning_rate must be a number > 0; got {self.learning_rate!r}.")
        if not (isinstance(self.batch_norm_momentum, (int, float)) and 0 <= self.batch_norm_momentum < 1):
            raise InvalidParameterError(f"{_OWNER}: batch_norm_momentum must lie in [0, 1); got {self.batch_norm_momentum!r}.")
        if not (isinstance(self.negative_slope, (int, float)) and 0 <= self.negative_slope < 1):
            raise InvalidParameterError(f"{_OWNER}: negative_slope must lie in [0, 1); got {self.negative_slope!r}.")

    # ------------------------------------------------------------ conveniences
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, 3)."""
        return (*self.image_size, 3)

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        """Shape of the last encoder feature map (and of the decoder's Reshape)."""
        f = 2 ** len(self.encoder_filters)
        return (self.image_size[0] // f, self.image_size[1] // f, self.encoder_filters[-1])

    def encoder_flops(self) -> int:
        """Multiply-adds times two of one encoder forward pass (convolutions and Dense)."""
        h, w = self.image_size
        cin, total = 3, 0
        for c in self.encoder_filters:
            h, w = h // 2, w // 2
            total += 2 * self.kernel_size ** 2 * cin * c * h * w
            cin = c
        total += 2 * h * w * cin * self.z_dim
        return total

    def replace(self, **changes: Any) -> "AEConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("image_size", "encoder_filters", "decoder_filters"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AEConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidParameterError(f"{_OWNER}: unknown configuration keys {unknown}.")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _seq(value: Any, name: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise InvalidParameterError(f"{_OWNER}: {name} must be a sequence of ints; got {value!r}.")
    try:
        for v in value:
            if isinstance(v, bool) or int(v) != v:
                raise ValueError
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{_OWNER}: {name} must be a sequence of ints; got {value!r}.") from None
    return value


#: Named configurations.
#:
#: ``celeba96`` is the reference AE of the brief (96x96, z=256, filters 64-64-128-128 /
#: 128-128-64-64, BCE, Adam 5e-4, batch 128, 24 epochs; about 17-20 images/s of
#: training on 2 CPU cores). ``small`` is for CPUs: 64x64 images, half the filters,
#: the same z_dim=256 so that every analysis (and the brief's reference numbers for
#: N=256, such as the radial shells) applies unchanged; the Dense layers cost few
#: FLOPs, so keeping z=256 barely slows training. Its batch of 32 and learning rate
#: of 2e-3 reached the validation loss of batch 64 / 5e-4 with half the images seen
#: (synthetic faces, 2,000 images).
PRESETS: dict[str, AEConfig] = {
    "celeba96": AEConfig(),
    "small": AEConfig(
        image_size=(64, 64),
        z_dim=256,
        encoder_filters=(32, 32, 64, 64),
        decoder_filters=(64, 64, 32, 32),
        learning_rate=2e-3,
        batch_size=32,
        epochs=10,
    ),
}


def preset_config(name: str) -> AEConfig:
    """The configuration of a named preset."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise InvalidParameterError(f"{_OWNER}: preset must be one of {sorted(PRESETS)}; got {name!r}.") from None


def parse_filters(value: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Normalise a ``filters`` option into (encoder_filters, decoder_filters).

    Accepted spellings: a sequence of ints (encoder; the decoder mirrors it in reverse
    order), a pair of sequences (encoder, decoder), or a string ``"64,64,128,128"``
    or ``"64,64,128,128:128,128,64,64"`` (``/`` also separates the two halves).
    """
    def ints(part: Any) -> tuple[int, ...]:
        if isinstance(part, str):
            items = [p for p in part.replace(" ", "").split(",") if p]
        else:
            items = list(part)
        try:
            out = tuple(int(p) for p in items)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"{_OWNER}: filters must be comma-separated ints; got {value!r}.") from None
        if not out or min(out) < 1:
            raise InvalidParameterError(f"{_OWNER}: filters must be positive ints; got {value!r}.")
        return out

    if isinstance(value, str):
        for sep in (":", "/"):
            if sep in value:
                enc_s, dec_s = value.split(sep, 1)
                return ints(enc_s), ints(dec_s)
        enc = ints(value)
        return enc, tuple(reversed(enc))
    try:
        items = list(value)
    except TypeError:
        raise InvalidParameterError(f"{_OWNER}: filters must be a sequence of ints or a string; got {value!r}.") from None
    if len(items) == 2 and all(not isinstance(i, (int, str)) and hasattr(i, "__iter__") for i in items):
        return ints(items[0]), ints(items[1])
    enc = ints(items)
    return enc, tuple(reversed(enc))
