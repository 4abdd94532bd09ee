"""The ``keras-ae`` backend: the convolutional autoencoder of the brief in Keras 3.

Keras is imported only when a model is built, trained or loaded, so that listing
backends stays fast.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from latentscope.backends import preferred_batch_size
from latentscope.exceptions import BackendError, InvalidParameterError

from ._config import AEConfig
from ._io import (
    CONFIG_NAME,
    DECODER_NAME,
    ENCODER_NAME,
    MODEL_FORMAT,
    MODEL_VERSION,
    load_keras_file,
    read_model_json,
    write_json_atomic,
)
from ._predict import BatchRunner

__all__ = ["KerasAEBackend"]

_OWNER = "keras-ae"
#: Marks a ``seed=`` that was not given (the deprecated name of ``rng``).
_UNSET: Any = object()


class KerasAEBackend:
    """The CelebA-style convolutional autoencoder (Keras 3), as a latentscope backend.

    Build one with :meth:`train` or :meth:`load`; the constructor wraps models that
    already exist.

    Parameters
    ----------
    encoder, decoder : keras.Model
        Encoder (float images in [0, 1] -> z) and decoder (z -> images in [0, 1]).
    config : AEConfig
        The architecture both were built from.
    info : dict, optional
        Training facts stored in the model directory's config.json.

    Attributes
    ----------
    z_dim : int
    image_shape : tuple of int
        (height, width, 3).
    config : AEConfig
    info : dict
    model_dir : Path or None
        The directory the model was loaded from or trained into (None for a model
        built in memory); its training image cache is found from there.

    Examples
    --------
    >>> from latentscope_keras_ae import KerasAEBackend        # doctest: +SKIP
    >>> ae = KerasAEBackend.train("synthetic:2000", "model", preset="small", epochs=5)  # doctest: +SKIP
    >>> z = ae.encode(images)                                 # doctest: +SKIP
    """

    name: ClassVar[str] = "keras-ae"
    description: ClassVar[str] = "Convolutional autoencoder of the brief (Keras 3; presets celeba96, small)."

    def __init__(self, encoder: Any, decoder: Any, config: AEConfig, *, info: dict | None = None) -> None:
        self.encoder = encoder
        self.decoder = decoder
        self.config = config
        self.info = dict(info or {})
        self.model_dir: Path | None = None
        self._runners: dict[str, BatchRunner] = {}
        self._fingerprint: str | None = None
        enc_in = tuple(encoder.input_shape[1:])
        if enc_in != config.image_shape or int(encoder.output_shape[-1]) != config.z_dim:
            raise BackendError(
                f"{_OWNER}: the encoder maps {enc_in} -> {encoder.output_shape[-1]}, but the config says "
                f"{config.image_shape} -> {config.z_dim}."
            )
        if tuple(decoder.output_shape[1:]) != config.image_shape or int(decoder.input_shape[-1]) != config.z_dim:
            raise BackendError(
                f"{_OWNER}: the decoder maps {decoder.input_shape[-1]} -> {tuple(decoder.output_shape[1:])}, but the "
                f"config says {config.z_dim} -> {config.image_shape}."
            )

    # ---------------------------------------------------------------- basics
    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.image_shape

    def __repr__(self) -> str:
        c = self.config
        return (f"KerasAEBackend(image_shape={c.image_shape}, z_dim={c.z_dim}, encoder_filters={c.encoder_filters}, "
                f"decoder_filters={c.decoder_filters}, fingerprint={self.fingerprint()!r})")

    @classmethod
    def from_config(cls, config: AEConfig | None = None, *, rng: Any = 0, seed: Any = _UNSET,
                    **changes: Any) -> "KerasAEBackend":
        """A freshly initialised (untrained) model; ``changes`` override config fields.

        Parameters
        ----------
        config : AEConfig, optional
            The architecture (default: ``AEConfig()``).
        rng : int, SeedSequence, Generator or None, default=0
            Seeds the weight initialisation (``keras.utils.set_random_seed``, Keras'
            integer seed): an int is used as it is, a SeedSequence or Generator gives
            one integer; None leaves Keras' random state alone.
        seed : int or None
            Deprecated name of ``rng`` (DeprecationWarning).
        **changes
            Fields of the config to replace.
        """
        import keras

        from latentscope._validation import check_rng

        from ._model import build_decoder, build_encoder

        if seed is not _UNSET:
            warnings.warn("KerasAEBackend.from_config: seed= is deprecated; pass rng= instead.", DeprecationWarning,
                          stacklevel=2)
            rng = seed
        config = (config or AEConfig()).replace(**changes) if changes else (config or AEConfig())
        if rng is not None:
            if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
                keras_seed = int(rng)
            else:
                keras_seed = int(check_rng(rng).integers(2**31 - 1))
            keras.utils.set_random_seed(keras_seed)
        return cls(build_encoder(config), build_decoder(config), config)

    # -------------------------------------------------------------- training
    @classmethod
    def train(cls, source: Any, out_dir: str | Path, **options: Any) -> "KerasAEBackend":
        """Train a new autoencoder on ``source`` and save it in ``out_dir``.

        Parameters
        ----------
        source : ImageSource, str or ndarray
            An image source (re-opened at the model's image size when its own
            differs), a source spec such as ``"synthetic:2000"`` or
            ``"celeba:/data/celeba"``, or a uint8 array (n, h, w, 3).
        out_dir : path-like
            The model directory (see :mod:`latentscope_keras_ae._io` for its layout).
        preset : {"celeba96", "small"}, default="celeba96"
        epochs, batch_size, z_dim, image_size, loss, learning_rate, batch_norm : optional
            Override the preset's values. ``epochs`` is the total number of epochs
            (also when resuming).
        filters : str or sequence, optional
            Encoder filters (the decoder mirrors them), ``"64,64,128,128:128,128,64,64"``
            or a pair (encoder, decoder).
        resume : bool, default=False
            Continue an interrupted training from its last checkpoint (the same
            batches in the same order, the optimizer state restored).
        overwrite : bool, default=False
            Discard whatever ``out_dir`` holds and start afresh.
        seed : int, default=0
            Seeds weight initialisation (``keras.utils.set_random_seed``) and the
            data order of every epoch.
        progress : bool or callable, default=True
            True: progress bars (unless ``LATENTSCOPE_NO_PROGRESS`` is set) and one
            summary line per epoch on stderr (loss, validation loss, images/s).
            A callable ``progress(done_steps, total_steps)`` replaces the bars.
            False: silent.
        on_epoch : callable, optional
            Called with each epoch's record (dict: epoch, epochs, loss, val_loss,
            images_per_s, seconds, n_train, n_val).
        val_fraction : float, default=0.05
            The last part of the source (in source order) held out for validation.
        cache : path-like or False, optional
            HDF5 uint8 image cache; default ``out_dir/image_cache.h5``; False keeps
            the decoded images in memory only. A cache of other data at the default
            place is rebuilt; at a path you name it is an error.
        checkpoint_every : int, optional
            Also checkpoint every this many steps inside an epoch (long epochs).
        max_steps : int, optional
            Stop after this many steps in this call (checkpointing first); a later
            call with ``resume=True`` continues (e.g. under a batch-queue time limit).

        Notes
        -----
        Every epoch visits the training rows in an order drawn from ``(seed, epoch)``
        and drops its last incomplete batch, so every step has the same shape. After
        each epoch the directory gets a checkpoint (the autoencoder with its optimizer
        state), a row of ``history.csv``, ``recon/epoch_NNN.png`` and the current
        encoder/decoder, so it always holds a loadable model. A resumed run repeats
        exactly the batches an uninterrupted run would have used; on one machine and
        backend it ends with bitwise the same weights (tested with TensorFlow on CPU).

        Returns
        -------
        KerasAEBackend
            The trained model (also saved to ``out_dir``).

        Raises
        ------
        InvalidParameterError
            An unknown option or a bad value.
        BackendError
            ``out_dir`` holds another model or checkpoint (use ``resume`` or
            ``overwrite``), or a resumed run's options contradict the checkpoint.
        """
        from ._train import train as _train

        return _train(cls, source, out_dir, **options)

    # ------------------------------------------------------------- save/load
    @classmethod
    def load(cls, path: str | Path) -> "KerasAEBackend":
        """Load a model directory written by :meth:`save` or :meth:`train`.

        Model files are read with Keras' ``safe_mode=True``; a file whose architecture
        holds a ``Lambda`` layer is refused.

        Raises
        ------
        BackendError
            No model in ``path``, an unreadable or unsafe file, or files that do not
            match the config.
        """
        model_dir = Path(path)
        if model_dir.is_file() and model_dir.name == CONFIG_NAME:
            model_dir = model_dir.parent
        data = read_model_json(model_dir)
        try:
            config = AEConfig.from_dict(data["config"])
        except (KeyError, TypeError, InvalidParameterError) as exc:
            raise BackendError(f"{_OWNER}: {model_dir / CONFIG_NAME} holds no valid configuration: {exc}") from exc
        files = data.get("files", {})
        encoder = load_keras_file(model_dir / files.get("encoder", ENCODER_NAME))
        decoder = load_keras_file(model_dir / files.get("decoder", DECODER_NAME))
        info = {k: v for k, v in data.items() if k not in ("config", "files", "format", "format_version")}
        model = cls(encoder, decoder, config, info=info)
        model.model_dir = model_dir
        return model

    def save(self, path: str | Path) -> None:
        """Write ``encoder.keras``, ``decoder.keras`` and ``config.json`` into the
        directory ``path`` (created if needed); ``load`` gives identical encodings."""
        import keras

        model_dir = Path(path)
        model_dir.mkdir(parents=True, exist_ok=True)
        try:
            for model, name in ((self.encoder, ENCODER_NAME), (self.decoder, DECODER_NAME)):
                tmp = model_dir / f"{name}.tmp.keras"
                model.save(tmp)
                tmp.replace(model_dir / name)
        except OSError as exc:
            raise BackendError(f"{_OWNER}: cannot save the model to {model_dir}: {exc}") from exc
        data = {
            **self.info,
            "format": MODEL_FORMAT,
            "format_version": MODEL_VERSION,
            "backend": self.name,
            "config": self.config.to_dict(),
            "files": {"encoder": ENCODER_NAME, "decoder": DECODER_NAME},
            "fingerprint": self.fingerprint(),
            "keras_version": keras.__version__,
            "keras_backend": keras.backend.backend(),
        }
        write_json_atomic(model_dir / CONFIG_NAME, data)

    @classmethod
    def wrap(cls, encoder: str | Path, decoder: str | Path, out_dir: str | Path, **options: Any) -> "KerasAEBackend":
        """Wrap any Keras 3 encoder/decoder pair (``.keras`` files) as a model directory
        (``latentscope wrap``); see :func:`latentscope_keras_ae._wrap.wrap_keras`."""
        from ._wrap import wrap_keras

        return wrap_keras(cls, encoder, decoder, out_dir, **options)

    def image_cache(self) -> Any:
        """The uint8 image cache the training wrote, as a :class:`latentscope.data.ImageCacheInfo`.

        ``MODEL/image_cache.h5`` by default (or the ``cache=`` path training was given,
        recorded in ``config.json`` as ``image_cache``); None when the model has no
        directory, was trained without a cache file, or the file is gone. ``latentscope
        encode --from-cache`` reads the items it holds instead of decoding them.
        """
        from ._cache import cache_info
        from ._train import CACHE_NAME

        if self.model_dir is None:
            return None
        name = Path(str(self.info.get("image_cache", CACHE_NAME)))
        return cache_info(name if name.is_absolute() else self.model_dir / name)

    # ------------------------------------------------------------ identity
    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of the configuration and every weight of the
        encoder and decoder (BatchNorm statistics included), in layer order."""
        if self._fingerprint is None:
            h = hashlib.sha256(self.config.to_json().encode())
            for model in (self.encoder, self.decoder):
                for v in model.weights:
                    a = np.ascontiguousarray(v.numpy(), dtype="<f4")
                    h.update(repr(a.shape).encode())
                    h.update(a.tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def _weights_changed(self) -> None:
        self._fingerprint = None

    # ------------------------------------------------------------- encoding
    def _check_images(self, images: Any) -> np.ndarray:
        arr = np.asarray(images)
        if arr.dtype != np.uint8:
            raise InvalidParameterError(f"{_OWNER}: encode expects uint8 images; got dtype {arr.dtype}.")
        if arr.ndim != 4 or tuple(arr.shape[1:]) != self.image_shape:
            raise BackendError(
                f"{_OWNER}: the model encodes images of shape {self.image_shape}; got {tuple(arr.shape[1:])} "
                "(open the data at the model's image size)."
            )
        return arr

    @staticmethod
    def device() -> str:
        """``"gpu"`` or ``"cpu"``: where the active Keras backend computes (the sharded
        encode runs one shard at a time on a process whose model computes on a GPU)."""
        from ._device import accelerator

        return accelerator()

    @staticmethod
    def default_batch_size(task: str = "encode") -> int:
        """The device batch for ``task`` ("encode" or "decode") on the hardware the
        active Keras backend computes on: encode 256 / decode 128 on CPUs, 1024 / 512
        on GPUs. ``latentscope encode`` uses it when no ``--batch-size`` is given."""
        from ._device import default_batch_size

        if task not in ("encode", "decode"):
            raise InvalidParameterError(f"{_OWNER}: task must be 'encode' or 'decode'; got {task!r}.")
        return default_batch_size(task)

    def _runner(self, task: str) -> BatchRunner:
        if task not in self._runners:
            if task == "encode":
                from ._model import uint8_encoder

                self._runners[task] = BatchRunner(uint8_encoder(self.encoder))
            else:
                self._runners[task] = BatchRunner(self.decoder)
        return self._runners[task]

    def encode(self, images: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Encode uint8 images (n, h, w, 3) into float32 z-points (n, z_dim).

        The cast to float and the scaling to [0, 1] run inside the compiled encoder,
        on the device. Chunks are ``batch_size`` images (default:
        :meth:`default_batch_size`, 256 on CPUs, 1024 on GPUs); a final short chunk is
        padded to a power of two so that few shapes are compiled. Under JAX several
        chunks are in flight at once (a jitted ``stateless_call``), elsewhere each goes
        through ``predict_on_batch``.
        """
        arr = self._check_images(images)
        bs = preferred_batch_size(self, "encode", batch_size)
        out = np.empty((arr.shape[0], self.z_dim), dtype=np.float32)
        return self._runner("encode").run(arr, bs, out)

    def decode(self, z: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Decode z-points (n, z_dim) into uint8 images (n, h, w, 3) (rounded).

        Chunks are ``batch_size`` z-points (default: :meth:`default_batch_size`, 128 on
        CPUs, 512 on GPUs), resolved like ``encode``'s with
        :func:`latentscope.backends.preferred_batch_size`."""
        zz = np.asarray(z)
        if zz.ndim != 2 or zz.shape[1] != self.z_dim:
            raise InvalidParameterError(f"{_OWNER}: z must have shape (n, {self.z_dim}); got {zz.shape}.")
        if not np.issubdtype(zz.dtype, np.number):
            raise InvalidParameterError(f"{_OWNER}: z must be numeric; got dtype {zz.dtype}.")
        zz = zz.astype(np.float32, copy=False)
        bs = preferred_batch_size(self, "decode", batch_size)
        out = np.empty((zz.shape[0], *self.image_shape), dtype=np.uint8)
        return self._runner("decode").run(zz, bs, out, post=lambda y: np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8))

    def reconstruct(self, images: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """``decode(encode(images))``."""
        return self.decode(self.encode(images, batch_size=batch_size), batch_size=batch_size)
