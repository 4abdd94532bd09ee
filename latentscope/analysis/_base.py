"""Shared behaviour of the analysis classes: the estimator base, save and load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._estimator import Estimator
from .._persist import load_state, save_state
from .._validation import check_is_fitted

__all__ = ["Analysis", "pass_progress"]

ProgressFn = Callable[[str, int, int], None]


def pass_progress(progress: ProgressFn | None, name: str) -> Callable[[int, int], None] | None:
    """Adapt ``progress(pass_name, done, total)`` to the per-pass ``(done, total)`` form."""
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


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


class Analysis(Estimator):
    """Base of the analysis classes: the estimator base plus ``save``/``load`` of fitted attributes.

    Parameters come from the ``__init__`` signature (:class:`~latentscope._estimator.Estimator`).
    Subclasses list their fitted array attributes (without the trailing underscore) in
    ``_arrays`` and scalar ones in ``_scalars``; ``_extra_arrays``/``_restore`` handle
    anything else.
    """

    _kind: str = ""
    _arrays: tuple[str, ...] = ()
    _scalars: tuple[str, ...] = ()
    _fitted_marker: str = "n_samples_seen_"

    def _check_fitted(self) -> None:
        check_is_fitted(self, self._fitted_marker)

    def _json_params(self) -> dict[str, Any]:
        """The parameters that go into the JSON file (fitted inputs such as a ``frame`` do not)."""
        out = {}
        for k, v in self.get_params().items():
            if isinstance(v, Estimator):
                continue
            out[k] = v
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
        save_state(path, kind=self._kind, params=self._json_params(), scalars=scalars, arrays=arrays,
                   cls=type(self).__name__)

    @classmethod
    def load(cls, path: str | Path):
        """Load an analysis written by :meth:`save`."""
        state = load_state(path, cls._kind)
        names = cls._param_names()
        self = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in state.params.items() if k in names})
        for a in cls._arrays:
            if a in state.arrays:
                setattr(self, a + "_", state.arrays[a])
        for s in cls._scalars:
            if s in state.scalars:
                setattr(self, s + "_", state.scalars[s])
        self._restore(state.scalars, state.arrays)
        return self
