"""Wrapping any Keras 3 encoder/decoder pair (``.keras`` files) as a keras-ae model directory.

The pair must map float images in [0, 1] of shape (H, W, 3) (channels last) to flat
z-points (z_dim,) and back. Files are loaded with ``safe_mode=True`` and refused when
they hold a ``Lambda`` layer (:func:`latentscope_keras_ae._io.load_keras_file`). The
directory's ``config.json`` records ``"architecture": "foreign"``: the AEConfig fields
other than ``image_size`` and ``z_dim`` then describe nothing (such a model cannot be
trained further with ``--resume``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentscope.exceptions import BackendError

from ._config import AEConfig
from ._io import CONFIG_NAME, load_keras_file

__all__ = ["wrap_keras", "export_onnx"]

_OWNER = "keras-ae"


def _shape(model: Any, which: str) -> tuple:
    shape = model.input_shape if which == "input" else model.output_shape
    if isinstance(shape, list):
        raise BackendError(f"{_OWNER}: the model has several {which}s; a wrapped pair needs one each.")
    return tuple(shape[1:])


def wrap_keras(cls: Any, encoder: str | Path, decoder: str | Path, out_dir: str | Path, *, image_size: Any = None,
               overwrite: bool = False) -> Any:
    """Check a Keras encoder/decoder pair against each other and write a keras-ae model directory.

    Parameters
    ----------
    cls : type
        :class:`~latentscope_keras_ae.KerasAEBackend`.
    encoder, decoder : path
        The two ``.keras`` files (Keras 3).
    out_dir : path
        Model directory to write.
    image_size : (int, int), optional
        Checked against the encoder's input (which must have a fixed height and width).
    overwrite : bool, default=False

    Returns
    -------
    KerasAEBackend

    Raises
    ------
    BackendError
        Missing, unreadable or unsafe files, or a pair that does not fit; the message names both files.
    """
    enc_path, dec_path, out = Path(encoder), Path(decoder), Path(out_dir)
    for role, path in (("encoder", enc_path), ("decoder", dec_path)):
        if path.suffix.lower() != ".keras":
            raise BackendError(f"{_OWNER}: {role} file {path} is not a .keras file.")
    if (out / CONFIG_NAME).exists() and not overwrite:
        raise BackendError(f"{out}: already holds a model; pass --overwrite to replace it.")
    enc = load_keras_file(enc_path)
    dec = load_keras_file(dec_path)
    enc_in, enc_out = _shape(enc, "input"), _shape(enc, "output")
    dec_in, dec_out = _shape(dec, "input"), _shape(dec, "output")
    if len(enc_in) != 3 or enc_in[2] != 3 or None in enc_in:
        raise BackendError(f"{_OWNER}: encoder {enc_path} must take RGB images of a fixed size (H, W, 3), channels last; "
                           f"it takes {enc_in}.")
    if image_size is not None and tuple(image_size) != enc_in[:2]:
        raise BackendError(f"{_OWNER}: encoder {enc_path} takes images of {enc_in[0]}x{enc_in[1]}; "
                           f"--image-size says {image_size[0]}x{image_size[1]}.")
    if len(enc_out) != 1 or enc_out[0] is None:
        raise BackendError(f"{_OWNER}: encoder {enc_path} must give flat z-points (z_dim,); it gives {enc_out}.")
    if dec_in != enc_out:
        raise BackendError(f"{_OWNER}: decoder {dec_path} takes {dec_in}, but encoder {enc_path} gives {enc_out}.")
    if dec_out != enc_in:
        raise BackendError(f"{_OWNER}: decoder {dec_path} gives images of shape {dec_out}, but encoder {enc_path} "
                           f"takes {enc_in}.")
    h, w = int(enc_in[0]), int(enc_in[1])
    if h % 2 or w % 2:
        raise BackendError(f"{_OWNER}: a wrapped Keras pair needs an even image height and width; encoder {enc_path} "
                           f"takes {h}x{w} (wrap an ONNX export of it instead).")
    config = AEConfig(image_size=(h, w), z_dim=int(enc_out[0]), encoder_filters=(1,), decoder_filters=(1,))
    probe = np.asarray(dec.predict_on_batch(np.asarray(enc.predict_on_batch(np.zeros((2, h, w, 3), np.float32)))))
    if not np.all(np.isfinite(probe)):
        raise BackendError(f"{_OWNER}: decoder {dec_path} gives non-finite images for the z of encoder {enc_path}.")
    model = cls(enc, dec, config, info={"architecture": "foreign",
                                        "source_files": {"encoder": str(enc_path), "decoder": str(dec_path)}})
    model.save(out)
    return cls.load(out)


def export_onnx(model: Any, out_dir: str | Path) -> tuple[Path, Path]:
    """Export a keras-ae model's encoder and decoder as ``encoder.onnx`` / ``decoder.onnx`` in ``out_dir``.

    Uses Keras 3's own ``Model.export(format="onnx")``, which needs the ``tf2onnx``
    module under the TensorFlow and JAX backends. Wrap the result with
    ``latentscope wrap --encoder DIR/encoder.onnx --decoder DIR/decoder.onnx --out MODEL``
    (range ``0,1``, layout ``nhwc``).

    Raises
    ------
    BackendError
        The exporter is missing or fails (its message, on one line).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w, _ = model.image_shape
    model.encoder(np.zeros((1, h, w, 3), np.float32))  # Keras exports only models that were called
    model.decoder(np.zeros((1, model.z_dim), np.float32))
    paths = (out / "encoder.onnx", out / "decoder.onnx")
    for net, path in zip((model.encoder, model.decoder), paths):
        try:
            net.export(str(path), format="onnx", verbose=False)
        except Exception as exc:
            raise BackendError(f"{_OWNER}: ONNX export of {net.name} failed: {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:300]}") from exc
    return paths
