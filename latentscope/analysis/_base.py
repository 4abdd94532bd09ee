"""Shared behaviour of the analysis classes: parameters, repr, save and load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._validation import check_is_fitted
from ..exceptions import InvalidParameterError
from ._io import load_fitted, save_fitted

__all__ = ["Analysis", "pass_progress", "check_int"]

ProgressFn = Callable[[str, int, int], None]


def pass_progress(progress: ProgressFn | None, name: str) -> Callable[[int, int], None] | None:
    """Adapt ``progress(pass_name, done, total)`` to the per-pass ``(done, total)`` form."""
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def check_int(value: Any, name: str, owner: str, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise InvalidParameterError(f"{owner}: {name} must be an integer >= {lo}; got {value!r}.")
    return int(value)


def pairs_to_key(pairs: dict) -> dict[str, np.ndarray]:
    """Flatten {(i, j): (xedges, yedges, counts)} into HDF5 dataset names."""
    out = {}
    for (i, j), (xe, ye, c) in pairs.items():
        out[f"pair_{i}_{j}_xedges"] = xe
        out[f"pair_{i}_{j}_yedges"] = ye
        out[f"pair_{i}_{j}_counts"] = c
    return out


def pairs_from_key(arrays: dict) -> dict:
    out = {}
    for name in arrays:
        if name.startswith("pair_") and name.endswith("_counts"):
            i, j = (int(v) for v in name[5:-7].split("_"))
            out[(i, j)] = (arrays[f"pair_{i}_{j}_xedges"], arrays[f"pair_{i}_{j}_yedges"], arrays[name])
    return out


class Analysis:
    """Mixin: keyword parameters, ``repr``, ``save``/``load`` of fitted attributes.

    Subclasses list their constructor parameters in ``_params``, their fitted array
    attributes (without the trailing underscore) in ``_arrays`` and scalar ones in
    ``_scalars``; ``_extra_arrays``/``_restore`` handle anything else.
    """

    _kind: str = ""
    _params: tuple[str, ...] = ()
    _arrays: tuple[str, ...] = ()
    _scalars: tuple[str, ...] = ()
    _fitted_marker: str = "n_samples_seen_"

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters."""
        return {p: getattr(self, p) for p in self._params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if not hasattr(v, "components_"))
        return f"{type(self).__name__}({args})"

    def _check_fitted(self) -> None:
        check_is_fitted(self, self._fitted_marker)

    def _json_params(self) -> dict[str, Any]:
        out = {}
        for k, v in self.get_params().items():
            if hasattr(v, "components_") or hasattr(v, "iter_blocks"):
                continue
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _extra_scalars(self) -> dict[str, Any]:
        return {}

    def _restore(self, scalars: dict, arrays: dict) -> None:
        pass

    def save(self, path: str | Path) -> None:
        """Save the fitted state to ``path.json`` (parameters, scalars) and ``path.h5`` (arrays)."""
        self._check_fitted()
        arrays = {a: getattr(self, a + "_") for a in self._arrays if getattr(self, a + "_", None) is not None}
        arrays.update(self._extra_arrays())
        scalars = {s: getattr(self, s + "_", None) for s in self._scalars}
        scalars.update(self._extra_scalars())
        save_fitted(path, self._kind, self._json_params(), scalars, arrays)

    @classmethod
    def load(cls, path: str | Path):
        """Load an analysis written by :meth:`save`."""
        params, scalars, arrays = load_fitted(path, cls._kind)
        self = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items() if k in cls._params})
        for a in cls._arrays:
            if a in arrays:
                setattr(self, a + "_", arrays[a])
        for s in cls._scalars:
            if s in scalars:
                setattr(self, s + "_", scalars[s])
        self._restore(scalars, arrays)
        return self
