"""A detected filament, the filament table and the per-point columns of a detection."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["Filament", "COLUMNS", "TABLE_FIELDS", "assemble_filaments", "write_filament_table"]

#: Per-point columns written by :meth:`FilamentDetector.write_columns`, with dtypes.
COLUMNS = {
    "local_dim": np.float32,
    "linearity": np.float32,
    "density": np.float32,
    "density_pvalue": np.float32,
    "filament_id": np.int32,
}

#: Scalar fields of the filament table (CSV columns, JSON keys).
TABLE_FIELDS = ("id", "n_members", "length", "thickness", "aspect", "linearity", "snr", "density",
                "p_value", "significance", "start_index", "end_index")


@dataclass(frozen=True, eq=False)
class Filament:
    """One detected filament.

    Attributes
    ----------
    id : int
        Number of the filament (0, 1, ...; by decreasing number of members).
    members : ndarray of int64
        Row indices of its points in the fitted data, ordered from ``start`` to ``end``.
    length : float
        Length along its spine (a polyline through denoised group centres).
    thickness : float
        Root-mean-square distance of the members from the spine, across it.
    direction : ndarray of shape (z_dim,)
        Unit leading principal direction of the members (the chord of a curved
        filament), oriented from start to end.
    start, end : ndarray of shape (z_dim,)
        The two extreme members.
    start_index, end_index : int
        Their row indices.
    spine : ndarray of shape (n_nodes, z_dim)
        The spine's nodes from start to end.
    linearity : float
        Median structure-scale linearity of the members.
    snr : float
        Median ratio of the leading local eigenvalue to the noise edge.
    density : float
        Median density contrast (null median k-th neighbour distance over the member's).
    p_value : float
        Selection-aware p-value from the null's own order statistics
        (:func:`~latentscope.filaments._local.filament_pvalue`): how likely a null
        cloud is to hold as many points as extreme as the members, whichever points
        were selected.
    """

    id: int
    members: np.ndarray
    length: float
    thickness: float
    direction: np.ndarray
    start: np.ndarray
    end: np.ndarray
    start_index: int
    end_index: int
    spine: np.ndarray
    linearity: float
    snr: float
    density: float
    p_value: float

    @property
    def n_members(self) -> int:
        """Number of member rows."""
        return int(self.members.size)

    @property
    def aspect(self) -> float:
        """Length over thickness."""
        return float(self.length / self.thickness) if self.thickness > 0 else float("inf")

    @property
    def significance(self) -> float:
        """``-log10(p_value)``."""
        return float(-np.log10(max(self.p_value, 1e-300)))

    def summary(self) -> dict[str, Any]:
        """Scalar fields (:data:`TABLE_FIELDS`) as a JSON-friendly dict."""
        return {name: getattr(self, name) for name in TABLE_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-friendly dict (vectors as lists)."""
        out = self.summary()
        out.update(direction=self.direction.tolist(), start=self.start.tolist(), end=self.end.tolist(),
                   spine=self.spine.tolist(), members=self.members.tolist())
        return out


def assemble_filaments(found: list[dict], U: np.ndarray, rows: np.ndarray, first: np.ndarray,
                       inverse: np.ndarray, n_total: int) -> tuple[list[Filament], np.ndarray]:
    """Number the filaments found among distinct points and map them back to the input rows.

    Parameters
    ----------
    found : list of dict
        As returned by :func:`~latentscope.filaments._structures.find_filaments`
        (sorted here by decreasing size).
    U : ndarray of shape (n, dim)
        The distinct points.
    rows : ndarray of int
        Input row of each finite row.
    first, inverse : ndarray of int
        First finite row of each distinct point, and each finite row's distinct point.
    n_total : int
        Number of input rows.

    Returns
    -------
    filaments : list of Filament
        By decreasing number of distinct members; duplicates of a member are members.
    labels : ndarray of shape (n_total,), int64
        Filament id per input row, -1 for none.
    """
    n = U.shape[0]
    found.sort(key=lambda f: -f["members"].size)
    filaments: list[Filament] = []
    labels = np.full(n_total, -1, np.int64)
    group_rows = np.argsort(inverse, kind="stable")  # finite rows grouped by their unique point
    group_start = np.searchsorted(inverse[group_rows], np.arange(n + 1))
    for fid, f in enumerate(found):
        uniq = f["members"]  # unique-point indices, ordered along the spine
        pieces = [rows[group_rows[group_start[u]:group_start[u + 1]]] for u in uniq]
        members = np.concatenate(pieces).astype(np.int64)
        labels[members] = fid
        filaments.append(Filament(
            id=fid, members=members, length=f["length"], thickness=f["thickness"],
            direction=f["direction"], start=U[f["start"]].copy(), end=U[f["end"]].copy(),
            start_index=int(rows[first[f["start"]]]), end_index=int(rows[first[f["end"]]]),
            spine=f["spine"], linearity=f["linearity"], snr=f["snr"], density=f["density"],
            p_value=f["p_value"],
        ))
    return filaments, labels


def write_filament_table(filaments: Sequence[Filament], path: str | Path, *, vectors: bool = False) -> Path:
    """Write a filament table as CSV (``.csv``) or JSON (any other suffix); return the path.

    Parameters
    ----------
    filaments : sequence of Filament
    path : str or Path
    vectors : bool, default=False
        JSON only: add each filament's direction, end points, spine and members.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        import csv  # noqa: PLC0415

        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(TABLE_FIELDS))
            w.writeheader()
            for f in filaments:
                w.writerow(f.summary())
    else:
        rows = [f.to_dict() if vectors else f.summary() for f in filaments]
        path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return path
