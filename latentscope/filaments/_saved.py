"""Saving and loading a fitted :class:`FilamentDetector` in the one persistence format.

The detector is written by :func:`latentscope._persist.save_state` as ``<stem>.json``
(parameters, fitted scalars, the names of the arrays) and ``<stem>.h5`` (the
per-point results, the null's sorted statistics, the PCA frame and the filaments,
flattened: members and spine nodes concatenated with offsets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._persist import _jsonable, load_state, save_state
from ..exceptions import StoreFormatError
from ._filament import Filament

__all__ = ["KIND", "detector_params", "save_detector", "load_detector"]

#: The ``kind`` of a saved detector.
KIND = "filaments"

#: Fitted arrays saved as they are.
_ARRAYS = ("labels_", "density_", "density_pvalue_", "contrast_", "null_contrast_", "null_kth_distance_",
           "local_dim_", "linearity_", "flagged_", "candidates_", "structure_linearity_", "structure_snr_",
           "structure_dim_", "pca_mean_", "pca_components_", "pca_variance_")
#: Fitted scalars (and dicts of them) saved in the JSON.
_SCALARS = ("n_points_", "n_unique_", "z_dim_", "knn_method_", "bandwidth_", "outer_k_", "timings_", "cpu_times_")
#: Per-filament scalar fields, saved as one array each.
_FIELDS_INT = ("id", "start_index", "end_index")
_FIELDS_FLOAT = ("length", "thickness", "linearity", "snr", "density", "p_value")


def detector_params(detector: Any) -> dict[str, Any]:
    """The detector's parameters as plain JSON (a Generator or SeedSequence ``rng`` as its repr)."""
    params = detector.get_params()
    rng = params["rng"]
    params["rng"] = rng if isinstance(rng, (int, np.integer, type(None))) else repr(rng)
    return _jsonable(params)


def _offsets(sizes: list[int]) -> np.ndarray:
    return np.cumsum([0, *sizes]).astype(np.int64)


def save_detector(detector: Any, path: str | Path) -> tuple[Path, Path]:
    """Write a fitted detector to ``<stem>.json`` and ``<stem>.h5``; return both paths."""
    fils: list[Filament] = detector.filaments_
    dim = int(detector.z_dim_)
    arrays: dict[str, Any] = {name: getattr(detector, name) for name in _ARRAYS}
    arrays.update({
        "filament_members": np.concatenate([f.members for f in fils]) if fils else np.zeros(0, np.int64),
        "filament_offsets": _offsets([f.n_members for f in fils]),
        "filament_spines": np.concatenate([f.spine for f in fils]) if fils else np.zeros((0, dim), np.float32),
        "filament_spine_offsets": _offsets([f.spine.shape[0] for f in fils]),
    })
    for name in ("direction", "start", "end"):
        arrays[f"filament_{name}"] = np.array([getattr(f, name) for f in fils], np.float32).reshape(len(fils), dim)
    for name in _FIELDS_INT:
        arrays[f"filament_{name}"] = np.array([getattr(f, name) for f in fils], np.int64)
    for name in _FIELDS_FLOAT:
        arrays[f"filament_{name}"] = np.array([getattr(f, name) for f in fils], np.float64)
    scalars = {name: getattr(detector, name) for name in _SCALARS}
    return save_state(path, kind=KIND, params=detector_params(detector), scalars=scalars, arrays=arrays,
                      cls=type(detector).__name__)


def load_detector(cls: type, path: str | Path) -> Any:
    """Read a detector written by :func:`save_detector` (an instance of ``cls``)."""
    state = load_state(path, KIND)
    params = dict(state.params)
    if isinstance(params.get("rng"), str):  # a Generator was saved as its repr: not restorable
        params["rng"] = None
    det = cls(**params)
    a = state.arrays
    try:
        for name in _ARRAYS:
            setattr(det, name, a[name])
        for name in _SCALARS:
            setattr(det, name, state.scalars[name])
        members, offsets = a["filament_members"].astype(np.int64), a["filament_offsets"]
        spines, spine_offsets = a["filament_spines"], a["filament_spine_offsets"]
    except KeyError as exc:
        raise StoreFormatError(f"{path}: a saved FilamentDetector lacks {exc.args[0]!r}.") from None
    det.flagged_ = det.flagged_.astype(bool)
    det.candidates_ = det.candidates_.astype(bool)
    det.filaments_ = [
        Filament(
            members=members[offsets[i]:offsets[i + 1]],
            spine=spines[spine_offsets[i]:spine_offsets[i + 1]],
            direction=a["filament_direction"][i], start=a["filament_start"][i], end=a["filament_end"][i],
            **{name: int(a[f"filament_{name}"][i]) for name in _FIELDS_INT},
            **{name: float(a[f"filament_{name}"][i]) for name in _FIELDS_FLOAT},
        )
        for i in range(offsets.size - 1)
    ]
    return det
