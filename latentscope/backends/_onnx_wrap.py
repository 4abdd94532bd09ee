"""Checking an ONNX encoder/decoder pair against each other and writing an ``onnx`` model directory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..exceptions import BackendError, InvalidParameterError
from ._onnx import _DECODER, _ENCODER, LAYOUTS, _Net, check_range, choose_providers, write_config

__all__ = ["wrap_onnx"]


def _dims(shape: list) -> tuple:
    """Per-item dims of an ONNX shape with None for symbolic ones."""
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape[1:])


def _layout_of(enc: _Net, layout: str | None) -> str:
    dims = _dims(enc.input_shape)
    if len(dims) != 3:
        raise BackendError(f"onnx: encoder {enc.path} must take images of rank 4 (batch, ...); it takes shape {enc.input_shape}.")
    if layout is not None:
        layout = str(layout).lower()
        if layout not in LAYOUTS:
            raise InvalidParameterError(f"wrap: layout must be 'nhwc' or 'nchw'; got {layout!r}.")
        channels = dims[2] if layout == "nhwc" else dims[0]
        if channels not in (None, 3):
            raise BackendError(f"onnx: encoder {enc.path} takes shape {enc.input_shape}, which has {channels} channels "
                               f"in layout {layout}; expected 3 (RGB).")
        return layout
    last, first = dims[2], dims[0]
    if last == 3 and first != 3:
        return "nhwc"
    if first == 3 and last != 3:
        return "nchw"
    raise BackendError(f"onnx: cannot tell the layout of encoder {enc.path} from its input shape {enc.input_shape}; "
                       "give --layout nhwc or --layout nchw.")


def _image_size(enc: _Net, layout: str, image_size: Any) -> tuple[int, int]:
    dims = _dims(enc.input_shape)
    hw = dims[:2] if layout == "nhwc" else dims[1:]
    if image_size is not None:
        from ..data import check_image_size  # noqa: PLC0415

        size = check_image_size(image_size, owner="wrap: image_size")
        if any(d is not None and d != s for d, s in zip(hw, size)):
            raise BackendError(f"onnx: encoder {enc.path} takes images of {hw[0]}x{hw[1]}; --image-size says {size[0]}x{size[1]}.")
        return size
    if None in hw:
        raise BackendError(f"onnx: encoder {enc.path} takes images of any size (shape {enc.input_shape}); give --image-size H,W.")
    return int(hw[0]), int(hw[1])


def wrap_onnx(cls: Any, encoder: str | Path, decoder: str | Path, out_dir: str | Path, *, layout: str | None = None,
              range: Any = "0,1", image_size: Any = None, encoder_output: str | None = None,
              decoder_output: str | None = None, providers: Sequence[str] | None = None,
              overwrite: bool = False) -> Any:
    """Check an ONNX encoder/decoder pair against each other and write an ``onnx`` model directory.

    The encoder must take one rank-4 image tensor (NHWC or NCHW); the decoder must take
    what the encoder gives (the same per-item shape, or the same number of values) and
    give images of the encoder's input shape. Both are run on two probe images.

    Parameters
    ----------
    cls : type
        :class:`~latentscope.backends.OnnxBackend`.
    encoder, decoder : path
        The two ``.onnx`` files.
    out_dir : path
        Model directory to write (the files are copied into it).
    layout : {"nhwc", "nchw"}, optional
        Default: read from the encoder's input shape (the axis of size 3).
    range : str or dict, default="0,1"
        ``"0,1"``, ``"-1,1"``, ``"imagenet"`` or ``{"mean": [...], "std": [...]}``.
    image_size : int or (height, width), optional
        Needed when the encoder's input has symbolic height and width.
    encoder_output, decoder_output : str, optional
        Output names to use (default: each network's first output).
    providers : sequence of str, optional
        Execution providers for the checks.
    overwrite : bool, default=False

    Returns
    -------
    OnnxBackend
        The loaded model of the new directory.

    Raises
    ------
    BackendError
        Missing or unreadable files, or a pair that does not fit; the message names both files.
    """
    enc_path, dec_path, out = Path(encoder), Path(decoder), Path(out_dir)
    for role, path in (("encoder", enc_path), ("decoder", dec_path)):
        if not path.is_file():
            raise BackendError(f"onnx: {role} file {path} does not exist.")
        if path.suffix.lower() != ".onnx":
            raise BackendError(f"onnx: {role} file {path} is not an .onnx file.")
    if (out / "config.json").exists() and not overwrite:
        raise BackendError(f"{out}: already holds a model; pass --overwrite to replace it.")
    mean, std = check_range(range)
    chosen = choose_providers(providers)
    enc = _Net(enc_path, chosen, encoder_output)
    dec = _Net(dec_path, chosen, decoder_output)
    layout = _layout_of(enc, layout)
    h, w = _image_size(enc, layout, image_size)
    probe_shape = (2, h, w, 3) if layout == "nhwc" else (2, 3, h, w)
    probe = ((np.random.default_rng(0).random(probe_shape, dtype=np.float32) - mean.mean()) / std.mean()).astype(np.float32)
    try:
        z = enc.run(probe, 2)
    except Exception as exc:
        raise BackendError(f"onnx: encoder {enc_path} fails on images of shape {probe_shape[1:]}: "
                           f"{' '.join(str(exc).split())[:200]}") from exc
    latent = tuple(int(d) for d in z.shape[1:])
    if not latent:
        raise BackendError(f"onnx: encoder {enc_path} gives one number per image; a latent needs at least one axis.")
    dec_dims = _dims(dec.input_shape)
    if None in dec_dims:
        if len(dec_dims) != len(latent) or any(d is not None and d != s for d, s in zip(dec_dims, latent)):
            raise BackendError(f"onnx: decoder {dec_path} takes shape {dec.input_shape}, which does not fit the z of "
                               f"shape {list(latent)} per image that encoder {enc_path} gives.")
        dec_in = latent
    else:
        dec_in = tuple(int(d) for d in dec_dims)
        if int(np.prod(dec_in)) != int(np.prod(latent)):
            raise BackendError(f"onnx: decoder {dec_path} takes z of shape {list(dec_in)} per image, but encoder {enc_path} "
                               f"gives {list(latent)} ({int(np.prod(latent))} values, not {int(np.prod(dec_in))}).")
    try:
        y = dec.run(z.reshape(-1, *dec_in), 2)
    except Exception as exc:
        raise BackendError(f"onnx: decoder {dec_path} fails on the z of encoder {enc_path}: "
                           f"{' '.join(str(exc).split())[:200]}") from exc
    if tuple(y.shape[1:]) != tuple(probe_shape[1:]):
        raise BackendError(f"onnx: decoder {dec_path} gives images of shape {tuple(y.shape[1:])}, but encoder {enc_path} "
                           f"takes {tuple(probe_shape[1:])} ({layout}).")
    out.mkdir(parents=True, exist_ok=True)
    for src, name in ((enc_path, _ENCODER), (dec_path, _DECODER)):
        if src.resolve() != (out / name).resolve():
            shutil.copyfile(src, out / (name + ".tmp"))
            (out / (name + ".tmp")).replace(out / name)
    config = {
        "image_shape": [h, w, 3],
        "layout": layout,
        "range": range if isinstance(range, str) else {"mean": mean.tolist(), "std": std.tolist()},
        "latent_shape": list(latent),
        "decoder_input_shape": list(dec_in),
        "encoder_output": enc.output,
        "decoder_output": dec.output,
        "source_files": {"encoder": str(enc_path), "decoder": str(dec_path)},
    }
    model = cls(out, config, providers=providers)
    write_config(out, {**config, "fingerprint": model.fingerprint()})
    return cls.load(out, providers=providers)
