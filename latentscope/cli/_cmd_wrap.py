"""``latentscope wrap``: bring an encoder/decoder pair trained elsewhere in as a model directory.

``.onnx`` files give an ``onnx`` model, ``.keras`` files a ``keras-ae`` model directory;
the backend class does the checks (``Backend.wrap(encoder, decoder, out, **options)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import Overwrite

__all__ = ["register"]

#: File suffix -> backend that wraps such a pair.
_WRAPPERS = {".onnx": "onnx", ".keras": "keras-ae"}


def _backend_for(encoder: Path, decoder: Path) -> str:
    from ..exceptions import InvalidParameterError

    kinds = (encoder.suffix.lower(), decoder.suffix.lower())
    if kinds[0] != kinds[1] or kinds[0] not in _WRAPPERS:
        raise InvalidParameterError(f"--encoder and --decoder must both be .onnx or both .keras files; "
                                    f"got {encoder.name} and {decoder.name}.")
    return _WRAPPERS[kinds[0]]


def round_trip_error(model: Any, data: str, n: int) -> tuple[int, float, float]:
    """Encode and decode ``n`` images of ``data``: (images, RMSE, mean absolute error) in 0..255 pixel units."""
    import numpy as np

    from ..data import open_source

    source = open_source(data, image_size=tuple(model.image_shape[:2]))
    images = source.read(0, min(n, len(source))).images
    recon = model.decode(model.encode(images))
    diff = recon.astype(np.float64) - images.astype(np.float64)
    return len(images), float(np.sqrt(np.mean(diff * diff))), float(np.mean(np.abs(diff)))


def wrap_cmd(
    encoder: Annotated[Path, typer.Option("--encoder", help="Encoder file: .onnx, or .keras (Keras 3).")],
    decoder: Annotated[Path, typer.Option("--decoder", help="Decoder file of the same kind.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    layout: Annotated[Optional[str], typer.Option(
        "--layout", help="Image tensor layout of an ONNX pair: nhwc or nchw (default: read from the encoder's input).")] = None,
    pixel_range: Annotated[str, typer.Option(
        "--range", help="Pixel range an ONNX pair takes and gives: 0,1, -1,1 or imagenet (mean/std).")] = "0,1",
    image_size: Annotated[Optional[str], typer.Option(
        "--image-size", help="Image size N or HxW, needed when the encoder takes any size.")] = None,
    data: Annotated[Optional[str], typer.Option(
        "--data", help="Images for the round-trip check (default: synthetic faces).")] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="Images in the round-trip check.")] = 16,
    overwrite: Overwrite = False,
) -> None:
    """Check an encoder/decoder pair against each other and write a model directory.

    The decoder must take what the encoder gives and give images of the shape the
    encoder takes; a few images are encoded and decoded and the reconstruction error
    is printed. Afterwards every command takes the directory as --model, without
    --backend (its config.json names the backend). Keras files are loaded with
    safe_mode and refused when they hold a Lambda layer.
    """
    from ..backends import get_backend
    from ..data import check_image_size
    from ..exceptions import InvalidParameterError

    name = _backend_for(encoder, decoder)
    options: dict[str, Any] = {"overwrite": overwrite}
    if image_size is not None:
        options["image_size"] = check_image_size(image_size, owner="--image-size")
    if name == "onnx":
        options.update(layout=layout, range=pixel_range)
    elif layout not in (None, "nhwc") or pixel_range != "0,1":
        raise InvalidParameterError(f"--layout/--range: keras-ae models take NHWC images in [0, 1]; "
                                    f"got --layout {layout} --range {pixel_range}.")
    cls = get_backend(name)
    model = cls.wrap(encoder, decoder, out, **options)
    h, w = tuple(model.image_shape)[:2]
    typer.echo(f"wrapped {name} model in {out} (z_dim {model.z_dim}, images {h}x{w}, fingerprint {model.fingerprint()})")
    spec = data or f"synthetic:{n}"
    count, rmse, mae = round_trip_error(model, spec, n)
    typer.echo(f"round trip of {count} images ({spec}): RMSE {rmse:.2f}, mean |error| {mae:.2f} (pixel values 0-255)")
    typer.echo(f"next: latentscope encode --model {out} --data SOURCE --out z.h5")


def register(app: typer.Typer) -> None:
    """Add ``wrap`` to the ``latentscope`` app."""
    app.command("wrap")(wrap_cmd)
