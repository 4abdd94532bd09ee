"""Streamed Parquet export of a store (and its sample stores) for Embedding Atlas and kin.

Two passes over the data store, one over each sample store:

1. :class:`latentscope.analysis.PCAFrame` is fitted on the data rows (one streamed
   covariance pass).
2. Row blocks are read in order; for each block the exporter computes ``norm``,
   ``mahalanobis`` and the layout ``x``, ``y`` (PCA 1 and 2 of the data frame), the
   ``k`` nearest other rows of the whole file with :func:`latentscope.neighbors.nearest_distances`
   (each reference store streamed block by block), optional thumbnails, and writes the
   block as one Parquet row group.

Memory holds one block of rows and its neighbour candidates, never the cloud: it does not
grow with the number of rows. Time is dominated by the neighbour search,
``2 * N^2 * z_dim`` flops with the exact engine.
"""

from __future__ import annotations

import os
import shlex  # noqa: F401 - used in the examples
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._validation import check_positive
from ..exceptions import InvalidParameterError, StoreError
from ..stream import DEFAULT_MAX_BYTES, check_max_bytes, reading

__all__ = ["export_parquet", "atlas_command"]

#: Names of the columns the exporter writes itself; a store column with one of them is
#: written as ``store_<name>``.
RESERVED = ("id", "kind", "norm", "mahalanobis", "x", "y", "neighbors", "z", "thumbnail")
LAYOUTS = ("pca", "umap")
#: Data rows UMAP is fitted on (a seeded uniform subsample; every row is then transformed block by block).
UMAP_FIT_ROWS = 20_000


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InvalidParameterError(
            "export: writing Parquet needs pyarrow; install it with pip install 'latentscope-ae[parquet]'."
        ) from exc
    return pa, pq


def _kind_of(store: Any) -> str:
    """The region name of a store written by ``latentscope sample``, else the file's stem (``sample`` for arrays)."""
    if store is None:
        return "sample"
    spec = str(store.provenance.get("source", "") or "")
    if spec.startswith("sampler:"):
        return spec.split(":", 1)[1] or "sample"
    return Path(store.path).stem


def _column_array(pa: Any, values: np.ndarray) -> Any:
    values = np.asarray(values)
    if values.dtype.kind in "UO":
        return pa.array(values.astype(str).tolist(), type=pa.string())
    if values.ndim > 1:
        width = int(np.prod(values.shape[1:]))
        flat = pa.array(np.ascontiguousarray(values).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(flat, width)
    return pa.array(values)


def _neighbors_array(pa: Any, idx: np.ndarray, dist: np.ndarray) -> Any:
    """Embedding Atlas's form: ``{"ids": [row, ...], "distances": [d, ...]}`` per row."""
    n, k = idx.shape
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    ids = pa.ListArray.from_arrays(offsets, pa.array(idx.reshape(-1).astype(np.int64)))
    dists = pa.ListArray.from_arrays(offsets, pa.array(dist.reshape(-1).astype(np.float32)))
    return pa.StructArray.from_arrays([ids, dists], names=["ids", "distances"])


def _knn(Z: np.ndarray, rows: np.ndarray, refs: list, k: int, engine: str, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of the file for each query: merged over the reference sources."""
    from ..neighbors import nearest_distances

    n = Z.shape[0]
    best_d = np.full((n, k), np.inf)
    best_i = np.full((n, k), -1, dtype=np.int64)
    for offset, src in refs:
        m = src.shape[0]
        local = rows - offset
        inside = (local >= 0) & (local < m)
        kk = min(k, m - 1 if inside.any() else m)
        if kk <= 0:
            continue
        d, i = nearest_distances(Z, src, kk, exclude=np.where(inside, local, -1), return_indices=True,
                                 method=engine, max_bytes=max_bytes)
        all_d = np.concatenate([best_d, d], axis=1)
        all_i = np.concatenate([best_i, i + offset], axis=1)
        order = np.argsort(all_d, axis=1, kind="stable")[:, :k]
        best_d = np.take_along_axis(all_d, order, axis=1)
        best_i = np.take_along_axis(all_i, order, axis=1)
    return best_d, best_i


def export_parquet(
    store: Any,
    out: str | os.PathLike,
    *,
    samples: Sequence[Any] = (),
    k: int = 10,
    with_z: bool = False,
    thumbnails: int | None = None,
    backend: str | None = None,
    model: str | os.PathLike | None = None,
    layout: str = "pca",
    knn: str = "auto",
    umap_fit_rows: int = UMAP_FIT_ROWS,
    rng: Any = None,
    overwrite: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a store's z-points, one row each, to a Parquet file for Embedding Atlas.

    Columns, in this order: ``id``; ``kind`` (only with ``samples``: ``"data"`` or the
    region name of each sample store); the store's columns (CelebA attributes,
    ``filament_id``, ...; a name in :data:`RESERVED` becomes ``store_<name>``; sample
    rows hold nulls); ``norm`` (``|z|``); ``mahalanobis`` (the radius in the data's PCA
    frame); ``x``, ``y`` (PCA 1 and 2 of the data); ``neighbors`` (``k > 0``: a struct
    ``{"ids": [...], "distances": [...]}`` of the ``k`` nearest *other* rows of the file,
    zero-based row numbers, ascending Euclidean distances in the latent space, the form
    of ``embedding-atlas --neighbors``); ``thumbnail`` (with ``thumbnails``: ``{"bytes": PNG, "path": null}``, the image
    form of Hugging Face datasets that ``embedding-atlas --image`` reads);
    ``z`` (the vector as a fixed-size list of float32, with ``with_z``). Rows are the data
    rows in store order, then each sample store's rows in order.

    Parameters
    ----------
    store : ZStore, store path or z-source
        The data cloud; the PCA frame is fitted on it.
    out : str or Path
        The ``.parquet`` file, written under a temporary name and renamed into place.
    samples : sequence of ZStore or path, default=()
        Sample stores (``latentscope sample`` writes one per region) to add to the map.
    k : int, default=10
        Number of neighbours (0: no ``neighbors`` column); at most the rows of the file
        minus one.
    with_z : bool, default=False
        Add the z-point as a list column ``z``.
    thumbnails : int, optional
        Side in pixels of a square PNG per row: the source image when the store's
        provenance names a readable image source, else the decoded z-point (needs
        ``backend`` and ``model``); sample rows are always decoded.
    backend, model : str, optional
        The model that decodes z-points into thumbnails.
    layout : {"pca", "umap"}, default="pca"
        The 2-D layout ``x``, ``y``: PCA 1 and 2, or UMAP (umap-learn, the ``umap`` extra;
        Euclidean metric, seeded by ``rng``) fitted on ``umap_fit_rows`` data rows drawn
        uniformly: those rows keep their fitted coordinates, the others (and sample rows) are
        placed by ``umap.UMAP.transform``, block by block.
    knn : {"auto", "exact", "faiss"}, default="auto"
        Neighbour engine (see :mod:`latentscope.neighbors`); distances are exact float64
        either way, stored as float32.
    umap_fit_rows : int, default=UMAP_FIT_ROWS (20,000)
        With ``layout="umap"``: rows the map is fitted on (all when fewer).
    rng : None, int or numpy.random.Generator
        With ``layout="umap"``: the subsample and UMAP's seed.
    overwrite : bool, default=False
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Memory budget of a block of data rows in the neighbour search; row blocks of the
        output take at most a quarter of it, and hold few enough rows that the search's
        float64 recomputation of their ``k`` neighbours (``2 * rows * k * z_dim * 8`` bytes)
        fits in it.
    progress : callable(done, total), optional
        Rows written so far.

    Returns
    -------
    dict
        ``{"rows", "data_rows", "columns": [names], "k", "path", "engine"}``.
    """
    from ..analysis import PCAFrame
    from ..neighbors import resolve_engine
    from ..store import open_store

    owner = "export"
    pa, pq = _pyarrow()
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise InvalidParameterError(f"{owner}: the output must end in .parquet; got {out.name!r}.")
    if out.exists() and not overwrite:
        raise StoreError(f"{out}: file exists; pass --overwrite to replace it.")
    if layout not in LAYOUTS:
        raise InvalidParameterError(f"{owner}: layout must be one of {', '.join(LAYOUTS)}; got {layout!r}.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InvalidParameterError(f"{owner}: k must be an integer >= 0; got {k!r}.")
    if thumbnails is not None:
        check_positive(thumbnails, "thumbnails", owner=owner, integer=True, minimum=1)
    max_bytes = check_max_bytes(max_bytes, owner=owner)
    with ExitStack() as stack:
        data = stack.enter_context(reading(store, owner="store"))
        parts = [data] + [stack.enter_context(reading(open_store(s) if isinstance(s, (str, os.PathLike)) else s,
                                                      owner="samples")) for s in samples]
        dim = data.shape[1]
        for p in parts[1:]:
            if p.shape[1] != dim:
                raise InvalidParameterError(f"{owner}: sample stores must have z_dim {dim}; got {p.shape[1]} in {p.path}.")
        if data.shape[0] < 2:
            raise InvalidParameterError(f"{owner}: the store must hold at least 2 rows; got {data.shape[0]}.")
        offsets = np.cumsum([0] + [p.shape[0] for p in parts])
        n_total = int(offsets[-1])
        k = int(min(k, max(n_total - 1, 0)))
        engine = resolve_engine(knn, n_total * n_total, owner=owner) if k else "exact"
        refs = [(int(offsets[j]), p) for j, p in enumerate(parts)]
        pca = PCAFrame(max_bytes=max_bytes).fit(data)
        umap = _fit_umap(data, umap_fit_rows, rng) if layout == "umap" else None
        st = data.store
        col_names = list(st.column_names) if st is not None else []
        renamed = {c: (f"store_{c}" if c in RESERVED else c) for c in col_names}
        thumbs = None
        if thumbnails is not None:
            from ._thumbnails import Thumbnailer

            thumbs = stack.enter_context(Thumbnailer(int(thumbnails), backend=backend, model=model, dim=dim))
        # row blocks: a quarter of the budget, and few enough queries that the neighbour search's exact
        # recomputation (two float64 arrays of queries x k x z_dim) stays within the budget too
        block_bytes = max(min(max_bytes // 4, (max_bytes // (16 * max(k, 1) * dim)) * dim * 4), dim * 4)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        writer = None
        schema = None
        done = 0
        try:
            for j, part in enumerate(parts):
                kind = "data" if j == 0 else _kind_of(part.store)
                for lo, Z, ids, cols in _row_blocks(part, col_names if j == 0 else [], block_bytes):
                    Z64 = np.asarray(Z, dtype=np.float64)
                    rows = np.arange(lo, lo + Z.shape[0]) + int(offsets[j])
                    arrays: dict[str, Any] = {"id": pa.array(np.asarray(ids).astype(str).tolist(), type=pa.string())}
                    if samples:
                        arrays["kind"] = pa.array([kind] * Z.shape[0], type=pa.string())
                    for c in col_names:
                        arrays[renamed[c]] = (_column_array(pa, cols[c]) if j == 0
                                              else pa.nulls(Z.shape[0], type=schema.field(renamed[c]).type))
                    T = pca.transform(Z64, n_components=min(2, dim))
                    arrays["norm"] = pa.array(np.linalg.norm(Z64, axis=1))
                    arrays["mahalanobis"] = pa.array(pca.mahalanobis(Z64))
                    if umap is not None:
                        T = _umap_layout(umap, Z, rows if j == 0 else None)
                    arrays["x"] = pa.array(T[:, 0].astype(np.float32))
                    arrays["y"] = pa.array((T[:, 1] if T.shape[1] > 1 else np.zeros(Z.shape[0])).astype(np.float32))
                    if k:
                        d, i = _knn(Z64, rows, refs, k, engine, max_bytes)
                        arrays["neighbors"] = _neighbors_array(pa, i, d)
                    if thumbs is not None:
                        pngs = pa.array(thumbs.png(part, j == 0, np.asarray(ids), Z), type=pa.binary())
                        arrays["thumbnail"] = pa.StructArray.from_arrays([pngs, pa.nulls(len(pngs), pa.string())],
                                                                         names=["bytes", "path"])
                    if with_z:
                        arrays["z"] = _column_array(pa, np.asarray(Z, dtype=np.float32))
                    table = pa.table(arrays)
                    if writer is None:
                        schema = table.schema
                        writer = pq.ParquetWriter(tmp, schema)
                    writer.write_table(table.cast(schema))
                    done += Z.shape[0]
                    if progress is not None:
                        progress(done, n_total)
            writer.close()
            writer = None
            os.replace(tmp, out)
        except BaseException:
            if writer is not None:
                writer.close()
            tmp.unlink(missing_ok=True)
            raise
        return {"rows": n_total, "data_rows": int(offsets[1]), "columns": list(schema.names), "k": k,
                "path": str(out), "engine": engine}


def _fit_umap(data: Any, fit_rows: int, rng: Any) -> Any:
    """A 2-D Euclidean UMAP fitted on a seeded uniform subsample of the data rows."""
    from .._validation import check_rng

    try:
        import umap
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InvalidParameterError(
            "export: layout 'umap' needs umap-learn; install it with pip install 'latentscope-ae[umap]'.") from exc
    check_positive(fit_rows, "umap_fit_rows", owner="export", integer=True, minimum=2)
    gen = check_rng(rng)
    n = data.shape[0]
    rows = np.sort(gen.choice(n, size=min(int(fit_rows), n), replace=False))
    model = umap.UMAP(n_components=2, metric="euclidean", random_state=int(gen.integers(2**31 - 1)),
                      n_neighbors=min(15, max(2, rows.size - 1)))
    model.fit(np.asarray(data.take(rows), dtype=np.float32))
    return model, rows


def _umap_layout(fitted: Any, Z: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """UMAP coordinates of a block: the fitted embedding for the rows it was fitted on, ``transform`` for the rest."""
    model, fit_rows = fitted
    T = np.empty((Z.shape[0], 2), dtype=np.float64)
    pos = np.searchsorted(fit_rows, rows) if rows is not None else np.zeros(Z.shape[0], dtype=np.int64)
    pos = np.minimum(pos, fit_rows.size - 1)
    known = (fit_rows[pos] == rows) if rows is not None else np.zeros(Z.shape[0], dtype=bool)
    T[known] = model.embedding_[pos[known]]
    if (~known).any():
        T[~known] = model.transform(np.asarray(Z[~known], dtype=np.float32))
    return T


def _row_blocks(src: Any, columns: list[str], max_bytes: int):
    """``(start, z, ids, columns)`` per block of a source, in order."""
    st = src.store
    if st is not None:
        for b in st.iter_blocks(max_bytes=max_bytes, columns=columns, ids=True):
            yield b.start, b.z, b.ids, b.columns
    else:
        for b in src.iter_blocks(max_bytes=max_bytes):
            yield b.start, b.z, np.arange(b.start, b.stop), {}


def atlas_command(path: str | os.PathLike, *, neighbors: bool = True, thumbnails: bool = False) -> list[str]:
    """The ``embedding-atlas`` command line that opens an exported file with its layout.

    Parameters
    ----------
    path : str or Path
        The Parquet file of :func:`export_parquet`.
    neighbors : bool, default=True
        Name the ``neighbors`` column.
    thumbnails : bool, default=False
        Name the ``thumbnail`` column as the image column.

    Returns
    -------
    list of str
        The argument vector; ``shlex.join`` prints it.

    Examples
    --------
    >>> shlex.join(atlas_command("cloud.parquet"))
    'embedding-atlas cloud.parquet --x x --y y --neighbors neighbors'
    """
    cmd = ["embedding-atlas", os.fspath(path), "--x", "x", "--y", "y"]
    if neighbors:
        cmd += ["--neighbors", "neighbors"]
    if thumbnails:
        cmd += ["--image", "thumbnail"]
    return cmd

