"""Strings in a store: UTF-8 byte matrices for string datasets, fixed-length UTF-8 attributes.

A store holds no variable-length data at all (HDF5's global heap, where it would
live, is not protected by SWMR's ordered flushes). String ids and string columns are
``uint8`` matrices with a trailing byte axis, marked by the ``encoding`` attribute;
the byte axis grows (never shrinks) like the longest value, so appends never replace
a dataset under open readers.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from . import _format as F

__all__ = [
    "TEXT_CHUNK_WIDTH", "encode_strings", "decode_strings", "decode_raw", "grown_width", "is_text", "row_shape",
    "set_attr", "attr_value",
]

#: Bytes per chunk along the byte axis of string matrices.
TEXT_CHUNK_WIDTH = 32


def encode_strings(values: np.ndarray) -> np.ndarray:
    """str-like values -> UTF-8 bytes (numpy ``S``, at least 1 byte wide)."""
    if values.dtype.kind != "S":
        if values.dtype.kind == "O":  # e.g. h5py variable-length strings: bytes or str objects
            flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.ravel()]
            values = np.array(flat, dtype=str).reshape(values.shape)
        elif values.dtype.kind != "U":
            values = values.astype(str)
        try:
            values = values.astype("S")
        except UnicodeEncodeError:
            values = np.char.encode(values, "utf-8")
    if values.dtype.itemsize == 0:
        values = values.astype("S1")
    return values


def decode_strings(raw: np.ndarray) -> np.ndarray:
    """UTF-8 bytes (numpy ``S``) -> numpy ``str`` array."""
    try:
        return raw.astype("U")
    except UnicodeDecodeError:
        return np.char.decode(raw, "utf-8", errors="replace")


def decode_raw(buf: np.ndarray, text: bool) -> np.ndarray:
    """Stored rows as values: string matrices decoded to str."""
    if not text:
        return buf
    raw = np.ascontiguousarray(buf).view(f"S{buf.shape[-1]}")
    return decode_strings(raw.reshape(buf.shape[:-1]))


def grown_width(needed: int, current: int = 0) -> int:
    """Byte width for ``needed`` bytes: at least 16, doubled while too small."""
    width = max(16, int(current))
    while width < needed:
        width *= 2
    return width


def is_text(ds: h5py.Dataset) -> bool:
    """Whether a dataset is a UTF-8 string matrix."""
    return ds.attrs.get(F.ENCODING_ATTR) in ("utf-8", b"utf-8")


def row_shape(ds: h5py.Dataset, text: bool) -> tuple[int, ...]:
    """Per-row shape of the values (without the byte axis of a string matrix)."""
    return tuple(ds.shape[1:-1] if text else ds.shape[1:])


def set_attr(attrs: h5py.AttributeManager, key: str, value: Any) -> None:
    """Write an attribute without variable-length data (strings as fixed-length UTF-8)."""
    if isinstance(value, str):
        raw = value.encode("utf-8")
        attrs.create(key, np.array(raw, dtype=f"S{max(1, len(raw))}"),
                     dtype=h5py.string_dtype("utf-8", max(1, len(raw))))
    else:
        attrs[key] = value


def attr_value(value: Any) -> Any:
    """An attribute as a Python value (arrays as lists, bytes decoded as UTF-8)."""
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value
