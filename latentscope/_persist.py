"""The one persistence format of fitted objects, and the one ``_jsonable``.

A saved object is a *stem* (``out/pca``) and two files next to it:

- ``<stem>.json``: ``{"kind", "class", "library_version", "params", "scalars", "arrays"}``
  (plus any extra keys the owner adds, such as ``"sampler"``): the constructor
  parameters, the fitted scalars and the names of the fitted arrays;
- ``<stem>.h5`` (HDF5, one dataset per array; ``attrs["kind"]``) or, for
  samplers, ``<stem>.npz`` (the file name the ``sample`` command has always
  written).

Files written before this format still load: analysis files (``kind``/``params``/
``scalars`` without an ``arrays`` list; every HDF5 dataset is read) and sampler
files (``sampler``/``params``/``fitted``/``fitted_arrays`` with a ``.npz``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._version import __version__
from .exceptions import InvalidParameterError, StoreFormatError

__all__ = ["_jsonable", "SavedState", "save_state", "load_state", "state_stem", "state_files"]

_SUFFIXES = (".json", ".h5", ".npz")
_CONTAINERS = ("h5", "npz")


def _jsonable(v: Any) -> Any:
    """Plain-JSON form of ``v``: numpy scalars and arrays, tuples, paths and dict keys converted."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return v


def state_stem(path: str | Path) -> Path:
    """The stem of a saved object: ``path`` without a ``.json``/``.h5``/``.npz`` suffix."""
    stem = Path(path)
    return stem.with_suffix("") if stem.suffix in _SUFFIXES else stem


def _with(stem: Path, suffix: str) -> Path:
    return stem.parent / (stem.name + suffix)


def state_files(path: str | Path, *, container: str = "h5") -> tuple[Path, Path]:
    """The two files ``(json, arrays)`` of the object saved at ``path``."""
    stem = state_stem(path)
    return _with(stem, ".json"), _with(stem, "." + container)


@dataclass
class SavedState:
    """What :func:`load_state` read: the JSON document split into its parts, and the arrays."""

    kind: str
    params: dict[str, Any]
    scalars: dict[str, Any]
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def save_state(
    path: str | Path,
    *,
    kind: str,
    params: dict[str, Any],
    scalars: dict[str, Any],
    arrays: dict[str, Any],
    cls: str | None = None,
    extra: dict[str, Any] | None = None,
    container: str = "h5",
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and the array file of a fitted object; returns both paths.

    Parameters
    ----------
    path : str or Path
        The stem (a ``.json``/``.h5``/``.npz`` suffix is dropped).
    kind : str
        What the file holds; :func:`load_state` checks it.
    params, scalars : dict
        Constructor parameters and fitted scalars (made JSON-able).
    arrays : dict of str to array-like
        Fitted arrays (``None`` values are skipped).
    cls : str, optional
        Class name recorded in the JSON (default: ``kind``).
    extra : dict, optional
        More top-level JSON keys.
    container : {"h5", "npz"}, default="h5"
    """
    if container not in _CONTAINERS:
        raise InvalidParameterError(f"save_state: container must be 'h5' or 'npz'; got {container!r}.")
    jpath, apath = state_files(path, container=container)
    jpath.parent.mkdir(parents=True, exist_ok=True)
    kept = {name: np.asarray(arr) for name, arr in arrays.items() if arr is not None}
    meta: dict[str, Any] = {"kind": kind, "class": cls or kind, "library_version": __version__}
    meta.update(_jsonable(extra or {}))
    meta.update({"params": _jsonable(params), "scalars": _jsonable(scalars), "arrays": sorted(kept)})
    jpath.write_text(json.dumps(meta, indent=2, default=str))
    if container == "h5":
        with h5py.File(apath, "w") as h5:
            h5.attrs["kind"] = kind
            for name, arr in kept.items():
                h5.create_dataset(name, data=arr)
    else:
        np.savez(apath, **kept)
    return jpath, apath


def _read_arrays(stem: Path, names: list[str] | None) -> dict[str, np.ndarray]:
    hpath, npath = _with(stem, ".h5"), _with(stem, ".npz")
    if hpath.exists():
        with h5py.File(hpath, "r") as h5:
            return {name: h5[name][()] for name in (h5.keys() if names is None else names) if name in h5}
    if npath.exists():
        with np.load(npath, allow_pickle=False) as npz:
            return {name: npz[name] for name in (npz.files if names is None else names) if name in npz.files}
    return {}


def load_state(path: str | Path, kind: str | None = None) -> SavedState:
    """Read an object written by :func:`save_state` (or by the formats before it).

    Parameters
    ----------
    path : str or Path
        The stem, or one of its files.
    kind : str, optional
        The expected kind; a file of another kind is an error.

    Raises
    ------
    StoreFormatError
        Missing or unreadable files, another kind, or missing arrays.
    """
    stem = state_stem(path)
    jpath = _with(stem, ".json")
    if not jpath.exists():
        raise StoreFormatError(f"{jpath}: no such file (expected an object written by save()).")
    try:
        meta = json.loads(jpath.read_text())
    except json.JSONDecodeError as exc:
        raise StoreFormatError(f"{jpath}: not a saved object ({exc}).") from exc
    if not isinstance(meta, dict):
        raise StoreFormatError(f"{jpath}: not a saved object (a JSON object was expected).")
    if "kind" not in meta and "sampler" in meta:  # sampler files before the one format
        meta = dict(meta, kind="sampler", scalars=meta.get("fitted") or {}, arrays=meta.get("fitted_arrays", []))
    got = meta.get("kind")
    if kind is not None and got != kind:
        raise StoreFormatError(f"{jpath}: holds a {got!r} result, not {kind!r}.")
    names = meta.get("arrays")
    if names is None and not _with(stem, ".h5").exists():  # analysis files before the one format need their .h5
        raise StoreFormatError(f"{stem}: expected {jpath.name} and {stem.name}.h5 written by save().")
    arrays = _read_arrays(stem, names)
    missing = sorted(set(names or ()) - set(arrays))
    if missing:
        raise StoreFormatError(f"{stem}: the saved arrays {missing} are missing (expected {stem.name}.h5 or .npz).")
    return SavedState(kind=str(got), params=dict(meta.get("params") or {}), scalars=dict(meta.get("scalars") or {}),
                      arrays=arrays, meta=meta)
