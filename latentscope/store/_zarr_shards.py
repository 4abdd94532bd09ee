"""Sharded Zarr stores: K parts of one store, each written by its own writer (e.g. one per dask worker).

:func:`create_sharded_store` plans the parts (shard ``i`` for ``shard_sizes[i]`` input items);
:func:`open_shard` opens part ``i`` for appending, with its own lock and commit record (a
killed writer's part resumes after its last commit, as ``open_store(path, "a")`` does);
:meth:`ZarrStore.mark_complete` finishes it; :func:`shard_status` reports every part. Readers
(``open_store(path)``) see the parts concatenated in order as a growing prefix: every leading
complete part, then the committed rows of the first incomplete one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._validation import check_positive
from ..exceptions import InvalidParameterError, StoreError
from . import _zarr_layout as L
from ._zarr import ZarrStore

__all__ = ["create_sharded_store", "open_shard", "shard_status"]


def create_sharded_store(
    path: str | os.PathLike,
    z_dim: int,
    *,
    shard_sizes: list[int],
    backend: str = "",
    model_fingerprint: str = "",
    source: str = "",
    overwrite: bool = False,
    chunk_rows: int | None = None,
    **provenance: Any,
) -> None:
    """Create an empty sharded Zarr store ``NAME.zarr`` of ``len(shard_sizes)`` parts.

    Parameters
    ----------
    path : str or Path
        The store directory; its name must end in ``.zarr``.
    z_dim : int
    shard_sizes : list of int
        Input items planned for each shard (recorded; a shard may hold fewer rows, e.g.
        after skipped items).
    backend, model_fingerprint, source : str
        Provenance, as for :func:`~latentscope.store.create_store`.
    overwrite : bool, default=False
    chunk_rows : int, optional
    **provenance
        Further provenance values (JSON).

    Examples
    --------
    >>> create_sharded_store("big.zarr", 64, shard_sizes=[1000, 1000])  # doctest: +SKIP
    >>> with open_shard("big.zarr", 1) as w:  # doctest: +SKIP
    ...     w.append(z); w.mark_complete()
    """
    path = Path(path)
    if path.suffix.lower() != ".zarr":
        raise InvalidParameterError(f"create_sharded_store: the path must end in .zarr; got {path.name!r}.")
    if isinstance(shard_sizes, (str, bytes)) or not hasattr(shard_sizes, "__len__") or len(shard_sizes) == 0:
        raise InvalidParameterError(f"create_sharded_store: shard_sizes must be a non-empty list of ints; got {shard_sizes!r}.")
    sizes = [int(check_positive(s, "shard_sizes", owner="create_sharded_store", integer=True, minimum=0))
             for s in shard_sizes]
    L.create_zarr_dir(path, z_dim, backend=backend, model_fingerprint=model_fingerprint, source=source,
                      overwrite=overwrite, chunk_rows=chunk_rows, provenance=provenance, shard_sizes=sizes,
                      owner="create_sharded_store")


def open_shard(path: str | os.PathLike, i: int) -> ZarrStore:
    """Open part ``i`` of a sharded store for appending.

    It has its own writer lock and commit record, so writers of different parts never
    touch the same file; reopening a part resumes after its last committed append (its
    ``n_rows``), writing over what a killed writer left. A part marked complete refuses.

    Returns
    -------
    ZarrStore
        A writer of the part (``append``, ``write_column``, ``set_provenance``,
        ``mark_complete``); ``n_rows`` counts the part's rows.
    """
    if isinstance(i, bool) or not isinstance(i, int) and not hasattr(i, "__index__"):
        raise InvalidParameterError(f"open_shard: the shard index must be an int; got {i!r}.")
    path = Path(path)
    if not L.is_zarr_store(path):
        raise StoreError(f"{path}: not a Zarr store" + ("" if path.exists() else " (no such directory)") + ".")
    return ZarrStore(path, "a", _shard=int(i))


def shard_status(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every part of a sharded store: ``index``, ``planned`` (items), ``rows`` (committed), ``complete``.

    Raises
    ------
    StoreError
        ``path`` is missing, not a Zarr store, or a store that is not sharded.
    """
    path = Path(path)
    if not L.is_zarr_store(path):
        raise StoreError(f"{path}: not a sharded Zarr store" + ("" if path.exists() else " (no such directory)") + ".")
    attrs = L.read_root_attrs(path)
    if "shard_sizes" not in attrs:
        raise StoreError(f"{path}: the store is not sharded.")
    out = []
    for index, planned in enumerate(attrs["shard_sizes"]):
        commit = L.read_commit(L.part_dir(path, index))
        out.append({"index": index, "planned": int(planned), "rows": int(commit["n_committed"]),
                    "complete": bool(commit.get("complete"))})
    return out
