"""Small dense ONNX autoencoder pairs built with the ``onnx`` helper API (no deep-learning framework).

Used by the tests, the encode benchmark and the docs: an encoder ``tanh(flatten(x) @ We + be)``
(optionally reshaped to a latent tensor) and a decoder ``act(flatten(z) @ Wd + bd)`` reshaped to
images, where ``act`` is a sigmoid for the ``"0,1"`` range, ``tanh`` for ``"-1,1"`` and the
identity otherwise. :func:`reference_encode` is the same encoder in NumPy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_rng
from ..exceptions import InvalidParameterError

__all__ = ["dense_pair", "reference_encode"]


def _save(graph: Any, path: Path) -> None:
    from onnx import helper, save_model  # noqa: PLC0415 - optional

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="latentscope")
    model.ir_version = 8
    save_model(model, str(path))


def dense_pair(out_dir: str | Path, *, image_size: int = 16, z_dim: int = 8, layout: str = "nhwc", range: str = "0,1",
               latent_shape: tuple[int, ...] | None = None, decoder_flat: bool = False, rng: Any = 0,
               fixed_batch: int | None = None, scale: float = 0.05) -> dict[str, Any]:
    """Write ``encoder.onnx`` and ``decoder.onnx`` of a dense autoencoder into ``out_dir``.

    Parameters
    ----------
    out_dir : path
    image_size : int, default=16
    z_dim : int, default=8
    layout : {"nhwc", "nchw"}, default="nhwc"
    range : str, default="0,1"
        Chooses the decoder's output activation (sigmoid for "0,1", tanh for "-1,1").
    latent_shape : tuple of int, optional
        The encoder's output per item (product ``z_dim``; default ``(z_dim,)``).
    decoder_flat : bool, default=False
        The decoder takes flat ``(n, z_dim)`` z-points even when the encoder gives a tensor.
    rng : seed or Generator, default=0
    fixed_batch : int, optional
        A fixed batch dimension for both networks (default: symbolic ``N``).
    scale : float, default=0.05
        Standard deviation of the weights.

    Returns
    -------
    dict
        ``encoder``, ``decoder`` (paths) and the weights ``We``, ``be``, ``Wd``, ``bd``.
    """
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415 - optional

    rng = check_rng(rng)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h = w = int(image_size)
    dim = h * w * 3
    latent = tuple(latent_shape) if latent_shape is not None else (z_dim,)
    if int(np.prod(latent)) != z_dim:
        raise InvalidParameterError(f"dense_pair: latent_shape must hold z_dim={z_dim} values; got {latent}.")
    img = [h, w, 3] if layout == "nhwc" else [3, h, w]
    batch = fixed_batch if fixed_batch else "N"
    We = (rng.standard_normal((dim, z_dim)) * scale).astype(np.float32)
    be = (rng.standard_normal(z_dim) * 0.1).astype(np.float32)
    Wd = (rng.standard_normal((z_dim, dim)) * scale * 4).astype(np.float32)
    bd = (rng.standard_normal(dim) * 0.1).astype(np.float32)
    init = [numpy_helper.from_array(We, "We"), numpy_helper.from_array(be, "be"),
            numpy_helper.from_array(np.array([-1, *latent], dtype=np.int64), "zshape")]
    nodes = [helper.make_node("Flatten", ["x"], ["xf"], axis=1), helper.make_node("MatMul", ["xf", "We"], ["xw"]),
             helper.make_node("Add", ["xw", "be"], ["xb"]), helper.make_node("Tanh", ["xb"], ["zf"]),
             helper.make_node("Reshape", ["zf", "zshape"], ["z"])]
    graph = helper.make_graph(nodes, "encoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *img])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, *latent])], init)
    _save(graph, out / "encoder.onnx")
    dec_in = [z_dim] if decoder_flat else list(latent)
    act = {"0,1": "Sigmoid", "-1,1": "Tanh"}.get(range, "Identity")
    init = [numpy_helper.from_array(Wd, "Wd"), numpy_helper.from_array(bd, "bd"),
            numpy_helper.from_array(np.array([-1, *img], dtype=np.int64), "ishape")]
    nodes = [helper.make_node("Flatten", ["z"], ["zf"], axis=1), helper.make_node("MatMul", ["zf", "Wd"], ["yw"]),
             helper.make_node("Add", ["yw", "bd"], ["yb"]), helper.make_node(act, ["yb"], ["ya"]),
             helper.make_node("Reshape", ["ya", "ishape"], ["y"])]
    graph = helper.make_graph(nodes, "decoder", [helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, *dec_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, *img])], init)
    _save(graph, out / "decoder.onnx")
    return {"encoder": out / "encoder.onnx", "decoder": out / "decoder.onnx", "We": We, "be": be, "Wd": Wd, "bd": bd}


def reference_encode(images: np.ndarray, We: np.ndarray, be: np.ndarray, *, layout: str, mean: Any, std: Any) -> np.ndarray:
    """The encoder of :func:`dense_pair` in NumPy (float64): uint8 (n, h, w, 3) -> (n, z_dim)."""
    x = (images.astype(np.float64) / 255.0 - np.asarray(mean, dtype=np.float64)) / np.asarray(std, dtype=np.float64)
    if layout == "nchw":
        x = x.transpose(0, 3, 1, 2)
    return np.tanh(x.reshape(len(x), -1) @ We.astype(np.float64) + be.astype(np.float64))
