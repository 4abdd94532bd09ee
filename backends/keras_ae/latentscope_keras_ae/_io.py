"""Reading and writing model directories: ``.keras`` files plus a JSON config.

Layout of a model directory::

    config.json       format marker, AEConfig, training facts, fingerprint
    encoder.keras     the encoder (float images in [0, 1] -> z)
    decoder.keras     the decoder (z -> float images in [0, 1])
    history.csv       loss per epoch            (written by training)
    recon/epoch_NNN.png reconstruction grids    (written by training)
    checkpoint/       full autoencoder with optimizer state + state.json (training)
    image_cache.h5    decoded uint8 training images (training)
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from latentscope.exceptions import BackendError

__all__ = ["MODEL_FORMAT", "CONFIG_NAME", "read_model_json", "write_json_atomic", "load_keras_file", "check_no_lambda"]

MODEL_FORMAT = "latentscope-keras-ae"
MODEL_VERSION = 1
CONFIG_NAME = "config.json"
ENCODER_NAME = "encoder.keras"
DECODER_NAME = "decoder.keras"
_OWNER = "keras-ae"

#: Layer classes refused in a model file even if Keras' safe mode were off:
#: they carry arbitrary Python code.
_FORBIDDEN = {"Lambda", "TFOpLambda"}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_model_json(model_dir: Path) -> dict[str, Any]:
    """The model directory's config.json, checked for the format marker."""
    cfg_path = model_dir / CONFIG_NAME
    if not model_dir.exists():
        raise BackendError(f"{_OWNER}: model directory {model_dir} does not exist.")
    if not cfg_path.is_file():
        hint = ""
        if (model_dir / "checkpoint" / "state.json").is_file():
            hint = " (it holds an unfinished training: continue it with resume=True / --resume)"
        raise BackendError(f"{_OWNER}: {model_dir} holds no keras-ae model: {CONFIG_NAME} is missing{hint}.")
    try:
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendError(f"{_OWNER}: cannot read {cfg_path}: {_one_line(exc)}") from exc
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise BackendError(f"{_OWNER}: {cfg_path} is not a keras-ae model config (format marker missing).")
    if int(data.get("format_version", 0)) > MODEL_VERSION:
        raise BackendError(
            f"{_OWNER}: {cfg_path} has format version {data.get('format_version')}; this plugin reads up to {MODEL_VERSION}. "
            "Upgrade latentscope-keras-ae."
        )
    return data


def _walk_class_names(node: Any):
    if isinstance(node, dict):
        name = node.get("class_name")
        if isinstance(name, str):
            yield name
        for v in node.values():
            yield from _walk_class_names(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_class_names(v)


def check_no_lambda(path: Path) -> None:
    """Refuse a ``.keras`` archive whose architecture holds a Lambda layer."""
    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise BackendError(f"{_OWNER}: {path} is not a readable .keras model file: {_one_line(exc)}") from exc
    bad = sorted(set(_walk_class_names(config)) & _FORBIDDEN)
    if bad:
        raise BackendError(
            f"{_OWNER}: refusing to load {path}: it contains a {bad[0]} layer, which can run arbitrary Python code."
        )


def load_keras_file(path: Path, *, compile: bool = False):
    """``keras.saving.load_model(path, safe_mode=True)`` with one-line errors."""
    import keras

    if not path.is_file():
        raise BackendError(f"{_OWNER}: model file {path} is missing.")
    check_no_lambda(path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:
        raise BackendError(f"{_OWNER}: cannot load {path}: {_one_line(exc)}") from exc
