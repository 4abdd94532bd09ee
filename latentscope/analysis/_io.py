"""Saving fitted analyses: scalars and parameters as JSON, arrays as HDF5."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..exceptions import StoreFormatError

__all__ = ["save_fitted", "load_fitted"]


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def save_fitted(path: str | Path, kind: str, params: dict, scalars: dict, arrays: dict) -> None:
    """Write ``path``.json (kind, params, scalars) and ``path``.h5 (arrays).

    ``path`` is a stem: ``out/pca`` gives ``out/pca.json`` and ``out/pca.h5``.
    """
    stem = Path(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta = {"kind": kind, "params": _jsonable(params), "scalars": _jsonable(scalars)}
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str))
    with h5py.File(stem.with_suffix(".h5"), "w") as h5:
        h5.attrs["kind"] = kind
        for name, arr in arrays.items():
            if arr is not None:
                h5.create_dataset(name, data=np.asarray(arr))


def load_fitted(path: str | Path, kind: str) -> tuple[dict, dict, dict]:
    """Read what :func:`save_fitted` wrote; returns (params, scalars, arrays)."""
    stem = Path(path)
    jpath, hpath = stem.with_suffix(".json"), stem.with_suffix(".h5")
    if not jpath.exists() or not hpath.exists():
        raise StoreFormatError(f"{stem}: expected {jpath.name} and {hpath.name} written by save().")
    meta = json.loads(jpath.read_text())
    if meta.get("kind") != kind:
        raise StoreFormatError(f"{jpath}: holds a {meta.get('kind')!r} result, not {kind!r}.")
    with h5py.File(hpath, "r") as h5:
        arrays = {name: h5[name][()] for name in h5.keys()}
    return meta.get("params", {}), meta.get("scalars", {}), arrays
