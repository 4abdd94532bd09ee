"""Shared behaviour of regions: membership over stores, JSON round trips."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, iter_array_blocks

__all__ = ["Region", "region_from_dict"]

_REGISTRY: dict[str, type] = {}


class Region:
    """Mixin of the frozen region dataclasses.

    Subclasses implement ``dim``, ``contains(Z)``, ``sample(n, rng)`` and
    ``log_volume``; this class adds ``fraction_inside`` over stores or arrays and
    JSON serialisation.
    """

    kind: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    def _check_points(self, Z: Any) -> np.ndarray:
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim == 1:
            Z = Z[None, :]
        if Z.ndim != 2 or Z.shape[1] != self.dim:
            raise InvalidParameterError(
                f"{type(self).__name__}.contains: points must have shape (n, {self.dim}); got {np.shape(Z)}."
            )
        return Z

    def fraction_inside(self, source: Any, *, max_bytes: int = DEFAULT_MAX_BYTES) -> float:
        """Fraction of the rows of a store or array that lie in the region."""
        inside = total = 0
        for block in iter_array_blocks(source, max_bytes=max_bytes):
            inside += int(self.contains(block).sum())
            total += block.shape[0]
        return inside / total if total else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``{"kind": ..., field: value, ...}``."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def region_from_dict(data: dict[str, Any]) -> Region:
    """Rebuild a region saved with :meth:`Region.to_dict`."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _REGISTRY:
        raise InvalidParameterError(f"region kind must be one of {sorted(_REGISTRY)}; got {kind!r}.")
    return _REGISTRY[kind](**data)
