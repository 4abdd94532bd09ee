"""The ``onnx`` backend: any autoencoder exported as an ONNX encoder/decoder pair.

A model directory holds ``encoder.onnx``, ``decoder.onnx`` and ``config.json``. The
config states how images reach the network and how z-points leave it:

- ``image_shape``: ``[height, width, 3]`` of the images;
- ``layout``: ``"nhwc"`` or ``"nchw"`` (both networks use it, for input and output);
- ``range``: the pixel range the encoder takes and the decoder gives: ``"0,1"``,
  ``"-1,1"``, ``"imagenet"`` (mean/std normalisation of [0, 1] pixels with the
  ImageNet statistics) or ``{"mean": [r, g, b], "std": [r, g, b]}``;
- ``latent_shape``: the encoder's output per item (``[z_dim]``, or a latent tensor
  such as ``[c, h, w]``, flattened in row-major (C) order into z-points) and
  ``decoder_input_shape``: the decoder's input per item (the z-points reshaped in
  the same order).

onnxruntime is imported only when a model is loaded (extra ``latentscope-ae[onnx]``).
Execution providers are chosen automatically (CUDA, ROCm, DirectML or CoreML where
onnxruntime offers one, always with the CPU as fallback) and can be overridden with
``providers=`` or the environment variable ``LATENTSCOPE_ONNX_PROVIDERS``
(comma-separated, e.g. ``CPUExecutionProvider``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from .._version import __version__
from ..exceptions import BackendError, InvalidParameterError
from ._protocol import preferred_batch_size

__all__ = ["OnnxBackend", "RANGES", "LAYOUTS"]

_FORMAT_VERSION = 1
_CONFIG = "config.json"
_ENCODER = "encoder.onnx"
_DECODER = "decoder.onnx"
_OWNER = "onnx"
LAYOUTS = ("nhwc", "nchw")
#: Named pixel ranges: (mean, std) applied to pixels scaled to [0, 1].
RANGES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "0,1": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "-1,1": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
#: GPU-like providers tried in this order before the CPU.
_ACCELERATED = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider")
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _import_ort() -> Any:
    try:
        import onnxruntime as ort  # noqa: PLC0415 - optional, heavy
    except ImportError as exc:
        raise BackendError("the onnx backend needs onnxruntime: pip install 'latentscope-ae[onnx]'.") from exc
    return ort


def check_range(value: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` float32 arrays of shape (3,) for a range name or a mean/std mapping."""
    if isinstance(value, str):
        key = value.replace(" ", "").replace("[", "").replace("]", "")
        if key not in RANGES:
            raise InvalidParameterError(f"onnx: range must be one of {', '.join(RANGES)} or a mean/std mapping; got {value!r}.")
        mean, std = RANGES[key]
    elif isinstance(value, dict) and set(value) == {"mean", "std"}:
        mean, std = value["mean"], value["std"]
    else:
        raise InvalidParameterError(f"onnx: range must be one of {', '.join(RANGES)} or a mean/std mapping; got {value!r}.")
    mean_a = np.asarray(mean, dtype=np.float32).reshape(-1)
    std_a = np.asarray(std, dtype=np.float32).reshape(-1)
    if mean_a.shape != (3,) or std_a.shape != (3,) or not np.all(std_a > 0) or not np.all(np.isfinite(mean_a)):
        raise InvalidParameterError(f"onnx: range mean and std must be 3 finite numbers each, std > 0; got {value!r}.")
    return mean_a, std_a


def choose_providers(providers: Sequence[str] | None = None) -> list[str]:
    """Execution providers for a session: ``providers``, else ``LATENTSCOPE_ONNX_PROVIDERS``, else automatic.

    Automatic: the first accelerated provider onnxruntime offers (CUDA, ROCm, DirectML,
    CoreML), then the CPU.

    Raises
    ------
    BackendError
        A requested provider is not available in this onnxruntime.
    """
    ort = _import_ort()
    available = list(ort.get_available_providers())
    if providers is None and os.environ.get("LATENTSCOPE_ONNX_PROVIDERS"):
        providers = [p.strip() for p in os.environ["LATENTSCOPE_ONNX_PROVIDERS"].split(",") if p.strip()]
    if providers is not None:
        missing = [p for p in providers if p not in available]
        if missing or not providers:
            raise BackendError(f"onnx: providers must be among the available ones ({', '.join(available)}); "
                               f"got {', '.join(providers) or 'none'}.")
        return list(providers)
    chosen = [p for p in _ACCELERATED if p in available][:1]
    return chosen + ["CPUExecutionProvider"]


def _file_digest(*paths: Path) -> hashlib._Hash:
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023 - read loop
                h.update(chunk)
    return h


class _Net:
    """One onnxruntime session with its input/output names, dtype and fixed batch (or None)."""

    def __init__(self, path: Path, providers: list[str], output: str | None = None) -> None:
        ort = _import_ort()
        options = ort.SessionOptions()
        threads = os.environ.get("LATENTSCOPE_ONNX_THREADS")
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:
            raise BackendError(f"onnx: cannot load {path}: {' '.join(str(exc).split())[:300]}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"onnx: {path} must take exactly one input; it takes {len(inputs)} "
                               f"({', '.join(i.name for i in inputs)}).")
        self.path = path
        self.input = inputs[0].name
        self.input_shape = list(inputs[0].shape)
        self.dtype = _DTYPES.get(inputs[0].type)
        if self.dtype is None:
            raise BackendError(f"onnx: {path} takes {inputs[0].type}; only float, float16 and double inputs are supported.")
        names = [o.name for o in self.session.get_outputs()]
        if output is not None and output not in names:
            raise BackendError(f"onnx: {path} has no output {output!r} (outputs: {', '.join(names)}).")
        self.output = output or names[0]
        self.output_shape = list(next(o for o in self.session.get_outputs() if o.name == self.output).shape)
        first = self.input_shape[0] if self.input_shape else None
        self.fixed_batch = int(first) if isinstance(first, int) and first > 0 else None

    def run(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Run on ``x`` in batches (of the network's fixed batch when it has one; the last is padded)."""
        step = self.fixed_batch or batch_size
        parts = []
        for lo in range(0, x.shape[0], step):
            chunk = np.ascontiguousarray(x[lo : lo + step], dtype=self.dtype)
            n = chunk.shape[0]
            if self.fixed_batch and n < step:
                chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), dtype=self.dtype)])
            out = self.session.run([self.output], {self.input: chunk})[0]
            parts.append(np.asarray(out)[:n])
        return np.concatenate(parts) if parts else np.empty((0,), dtype=np.float32)


class OnnxBackend:
    """An autoencoder given as two ONNX files (encoder, decoder), run with onnxruntime.

    Create the model directory with ``latentscope wrap`` (or :meth:`wrap`), then
    :meth:`load` it; see the module docstring for the ``config.json`` keys.

    Parameters
    ----------
    root : path
        The model directory (``encoder.onnx``, ``decoder.onnx``, ``config.json``).
    config : dict
        The parsed ``config.json``.
    providers : sequence of str, optional
        onnxruntime execution providers (default: :func:`choose_providers`).

    Attributes
    ----------
    z_dim : int
    image_shape : tuple of int
        ``(height, width, 3)``.
    providers : list of str
        The providers the sessions run on.
    """

    name: ClassVar[str] = "onnx"
    description: ClassVar[str] = "Any autoencoder as an ONNX encoder/decoder pair (onnxruntime; made by `latentscope wrap`)."

    def __init__(self, root: str | Path, config: dict, *, providers: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        shape = tuple(int(s) for s in config.get("image_shape", ()))
        if len(shape) != 3 or shape[2] != 3 or min(shape) < 1:
            raise BackendError(f"onnx: {self.root / _CONFIG}: image_shape must be [height, width, 3]; got {config.get('image_shape')!r}.")
        layout = str(config.get("layout", "")).lower()
        if layout not in LAYOUTS:
            raise BackendError(f"onnx: {self.root / _CONFIG}: layout must be 'nhwc' or 'nchw'; got {config.get('layout')!r}.")
        try:
            self._mean, self._std = check_range(config.get("range", "0,1"))
        except InvalidParameterError as exc:
            raise BackendError(f"onnx: {self.root / _CONFIG}: {exc}") from exc
        self.image_shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        self.layout = layout
        self.range = config.get("range", "0,1")
        self.latent_shape = tuple(int(s) for s in config["latent_shape"])
        self.decoder_input_shape = tuple(int(s) for s in config.get("decoder_input_shape", self.latent_shape))
        if int(np.prod(self.latent_shape)) != int(np.prod(self.decoder_input_shape)):
            raise BackendError(f"onnx: {self.root / _CONFIG}: latent_shape {list(self.latent_shape)} and decoder_input_shape "
                               f"{list(self.decoder_input_shape)} hold different numbers of values.")
        self.config = dict(config)
        self.providers = choose_providers(providers)
        self._encoder = _Net(self.root / _ENCODER, self.providers, config.get("encoder_output"))
        self._decoder = _Net(self.root / _DECODER, self.providers, config.get("decoder_output"))
        self._fingerprint: str | None = None

    # -- the Backend protocol ------------------------------------------------------------
    @property
    def z_dim(self) -> int:
        return int(np.prod(self.latent_shape))

    @classmethod
    def train(cls, source: Any, out_dir: str | Path, **options: Any) -> "OnnxBackend":
        """Not supported: an ONNX model is trained elsewhere and brought in with ``latentscope wrap``."""
        raise BackendError("the onnx backend does not train; export your trained encoder and decoder to ONNX and run "
                           "'latentscope wrap --encoder ENC.onnx --decoder DEC.onnx --out DIR'.")

    @classmethod
    def load(cls, path: str | Path, *, providers: Sequence[str] | None = None) -> "OnnxBackend":
        """Load a model directory written by :meth:`wrap` (``latentscope wrap``).

        Raises
        ------
        BackendError
            Not an onnx model directory, an unsupported format, unreadable ONNX files, or
            files that do not match the recorded fingerprint.
        """
        root = Path(path)
        cfg_path = root / _CONFIG
        if not cfg_path.is_file() or not (root / _ENCODER).is_file() or not (root / _DECODER).is_file():
            raise BackendError(f"{root}: not an onnx model directory (expected {_CONFIG}, {_ENCODER} and {_DECODER}).")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BackendError(f"{cfg_path}: unreadable model config ({exc}).") from exc
        if not isinstance(config, dict) or config.get("backend") != cls.name:
            raise BackendError(f"{root}: a model of backend {config.get('backend') if isinstance(config, dict) else None!r}, not 'onnx'.")
        if config.get("format_version") != _FORMAT_VERSION:
            raise BackendError(f"{root}: onnx model format {config.get('format_version')!r} is not supported "
                               f"(supported: {_FORMAT_VERSION}).")
        if "latent_shape" not in config:
            raise BackendError(f"{cfg_path}: latent_shape is missing.")
        model = cls(root, config, providers=providers)
        if config.get("fingerprint") and config["fingerprint"] != model.fingerprint():
            raise BackendError(f"{root}: the ONNX files do not match the recorded fingerprint "
                               f"({model.fingerprint()} != {config['fingerprint']}); the model files changed or are damaged.")
        return model

    def save(self, path: str | Path) -> None:
        """Copy the two ONNX files and write ``config.json`` into ``path``."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        if out.resolve() != self.root.resolve():
            for name in (_ENCODER, _DECODER):
                tmp = out / (name + ".tmp")
                tmp.write_bytes((self.root / name).read_bytes())
                tmp.replace(out / name)
        config = {**self.config, "fingerprint": self.fingerprint()}
        write_config(out, config)

    def default_batch_size(self, task: str = "encode") -> int:
        """1024 / 512 (encode / decode) on an accelerated provider, 256 / 128 on the CPU."""
        gpu = self.providers[0] != "CPUExecutionProvider"
        return (1024 if gpu else 256) if task == "encode" else (512 if gpu else 128)

    def to_network(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (n, h, w, 3) -> float32 network input in the model's range and layout."""
        x = images.astype(np.float32)
        x *= np.float32(1 / 255)
        x -= self._mean
        x /= self._std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if self.layout == "nchw" else x

    def from_network(self, y: np.ndarray) -> np.ndarray:
        """Decoder output in the model's range and layout -> uint8 images (n, h, w, 3)."""
        y = np.asarray(y, dtype=np.float32)
        if self.layout == "nchw":
            y = y.transpose(0, 2, 3, 1)
        y = y * self._std + self._mean
        y *= 255.0
        y += 0.5
        np.clip(y, 0, 255, out=y)
        return y.astype(np.uint8)

    def encode(self, images: Any, *, batch_size: int | None = None) -> np.ndarray:
        """uint8 images (n, h, w, 3) -> float32 z-points (n, z_dim) (latent tensors flattened in C order)."""
        images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise InvalidParameterError(f"OnnxBackend.encode: images must have shape (n, {', '.join(map(str, self.image_shape))}); "
                                        f"got {images.shape}.")
        batch_size = preferred_batch_size(self, "encode", batch_size, owner="OnnxBackend")
        out = np.empty((images.shape[0], self.z_dim), dtype=np.float32)
        for lo in range(0, images.shape[0], batch_size):
            z = self._encoder.run(self.to_network(images[lo : lo + batch_size]), batch_size)
            if z.shape[1:] != self.latent_shape:
                raise BackendError(f"onnx: {self._encoder.path} gave z of shape {z.shape[1:]} per item; the config says "
                                   f"{list(self.latent_shape)}.")
            out[lo : lo + batch_size] = z.reshape(z.shape[0], -1)
        return out

    def decode(self, z: Any, *, batch_size: int | None = None) -> np.ndarray:
        """float z-points (n, z_dim) -> uint8 images (n, h, w, 3), rounded and clipped."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InvalidParameterError(f"OnnxBackend.decode: z must have shape (n, {self.z_dim}); got {z.shape}.")
        batch_size = preferred_batch_size(self, "decode", batch_size, owner="OnnxBackend")
        out = np.empty((z.shape[0], *self.image_shape), dtype=np.uint8)
        for lo in range(0, z.shape[0], batch_size):
            chunk = z[lo : lo + batch_size].reshape(-1, *self.decoder_input_shape)
            y = self._decoder.run(chunk, batch_size)
            expected = self.image_shape if self.layout == "nhwc" else (3, *self.image_shape[:2])
            if tuple(y.shape[1:]) != tuple(expected):
                raise BackendError(f"onnx: {self._decoder.path} gave images of shape {tuple(y.shape[1:])}; expected "
                                   f"{tuple(expected)} ({self.layout}).")
            out[lo : lo + batch_size] = self.from_network(y)
        return out

    def fingerprint(self) -> str:
        """First 16 hex digits of the SHA-256 of the two ONNX files' bytes and the input/output convention."""
        if self._fingerprint is None:
            h = _file_digest(self.root / _ENCODER, self.root / _DECODER)
            convention = {k: self.config.get(k) for k in ("image_shape", "layout", "range", "latent_shape", "decoder_input_shape")}
            h.update(json.dumps(convention, sort_keys=True).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    @classmethod
    def wrap(cls, encoder: str | Path, decoder: str | Path, out_dir: str | Path, **options: Any) -> "OnnxBackend":
        """Check an ONNX encoder/decoder pair against each other and write a model directory.

        See :func:`latentscope.backends._onnx_wrap.wrap_onnx` for the options.
        """
        from ._onnx_wrap import wrap_onnx  # noqa: PLC0415

        return wrap_onnx(cls, encoder, decoder, out_dir, **options)

    def __repr__(self) -> str:
        h, w, _ = self.image_shape
        return (f"<OnnxBackend z_dim={self.z_dim} image={h}x{w} layout={self.layout} "
                f"providers={','.join(self.providers)} fingerprint={self.fingerprint()}>")


def write_config(out: Path, config: dict) -> None:
    """Write ``config.json`` atomically (with the library version and a creation time)."""
    config = {"backend": OnnxBackend.name, "format_version": _FORMAT_VERSION, **config}
    config.setdefault("library_version", __version__)
    config.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    tmp = out / (_CONFIG + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / _CONFIG)
