"""``latentscope import``, ``export``, ``explore``, ``info`` and ``check``: move z-points in and out of stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import NoProgress, Overwrite, Progress, Seed

__all__ = ["register"]

#: Outputs of ``export`` that are stores: the store is copied (ids, columns, provenance).
_STORE_SUFFIXES = (".zarr", ".h5", ".hdf5")


def import_cmd(
    array: Annotated[str, typer.Argument(
        metavar="ARRAY",
        help="z-points: FILE.npy, FILE.npz[:KEY], FILE.h5[:DATASET] (default key 'z' or the only 2-D array), "
             "or a latentscope store to copy.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The store to write: NAME.h5, or NAME.zarr (a Zarr directory).")],
    ids: Annotated[Optional[str], typer.Option(
        "--ids", help="Ids: KEY of an array in the same file, or FILE.npy, FILE.npz[:KEY], FILE.h5:DATASET, "
                      "FILE.txt (one per line). From .npz an array named 'ids' is used by default.")] = None,
    column: Annotated[Optional[list[str]], typer.Option(
        "--column", help="KEY of a per-point array in the same file to store as a column (repeatable). "
                         "From .npz every other array with one row per z-point is a column by default.")] = None,
    no_columns: Annotated[bool, typer.Option("--no-columns", help="Import no columns.")] = False,
    backend: Annotated[str, typer.Option("--backend", help="Provenance: the model backend that encoded the z-points.")] = "",
    model_fingerprint: Annotated[str, typer.Option("--model-fingerprint", help="Provenance: fingerprint of the model.")] = "",
    append: Annotated[bool, typer.Option("--append", help="Append to an existing store (same z_dim).")] = False,
    skip_nonfinite: Annotated[bool, typer.Option(
        "--skip-nonfinite", help="Skip rows with NaN or inf (counted in the store) instead of failing.")] = False,
    batch_rows: Annotated[Optional[int], typer.Option("--batch-rows", min=1, help="Rows per append.")] = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Import z-points encoded elsewhere (your own model) into a store."""
    from ..store import import_array

    columns = [] if no_columns else (column or None)
    with Progress("import", no_progress=no_progress) as progress:
        stats = import_array(
            array, out, ids=ids, columns=columns, overwrite=overwrite, append=append, backend=backend,
            model_fingerprint=model_fingerprint, on_nonfinite="skip" if skip_nonfinite else "raise",
            batch_rows=batch_rows, progress=progress,
        )
    skipped = f", skipped {stats['skipped']} non-finite rows" if stats["skipped"] else ""
    typer.echo(f"{'appended' if append else 'wrote'} {stats['rows']} rows (z_dim {stats['z_dim']}) to {out}{skipped}")


_Neighbours = Annotated[int, typer.Option(
    "--neighbors", "-k", min=0, help="Parquet: nearest neighbours per row, in Embedding Atlas's form (0: none).")]
_WithZ = Annotated[bool, typer.Option("--with-z", help="Parquet: add the z-point as a list column 'z'.")]
_Thumbnails = Annotated[Optional[int], typer.Option(
    "--thumbnails", min=1, metavar="PIXELS",
    help="Parquet: a square PNG per row of this side: the source image named by the store's provenance, "
         "else the decoded z-point (--backend/--model).")]
_Backend = Annotated[Optional[str], typer.Option("--backend", help="Parquet thumbnails: the backend that decodes z-points.")]
_Model = Annotated[Optional[Path], typer.Option("--model", help="Parquet thumbnails: the model to decode with.")]
_Samples = Annotated[Optional[list[Path]], typer.Option(
    "--samples", metavar="STORE",
    help="Parquet: a sample store of 'latentscope sample' to add, with a 'kind' column (repeatable).")]
_Knn = Annotated[str, typer.Option("--knn", help="Parquet: neighbour engine: auto, exact or faiss.")]
_Layout = Annotated[str, typer.Option(
    "--layout", help="Parquet: the 2-D layout x, y: pca (PCA 1 and 2) or umap (umap-learn, Euclidean, seeded).")]


def _export_parquet(store, out, k, with_z, thumbnails, backend, model, samples, knn, layout, seed, overwrite, no_progress):
    from ..export import export_parquet

    with Progress("export", no_progress=no_progress) as progress:
        return export_parquet(store, out, samples=samples or (), k=k, with_z=with_z, thumbnails=thumbnails,
                              backend=backend, model=model, knn=knn, layout=layout, rng=seed, overwrite=overwrite,
                              progress=progress)


def export_cmd(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="The store to export.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="FILE.parquet (one row per z-point, for Embedding Atlas), FILE.npz (z, ids and every "
                            "column), FILE.npy (z only), or a store to copy into: NAME.zarr (a Zarr directory) or "
                            "NAME.h5.")],
    compress: Annotated[bool, typer.Option("--compress", help="Deflate the .npz members.")] = False,
    k: _Neighbours = 10,
    with_z: _WithZ = False,
    thumbnails: _Thumbnails = None,
    backend: _Backend = None,
    model: _Model = None,
    samples: _Samples = None,
    knn: _Knn = "auto",
    layout: _Layout = "pca",
    seed: Seed = 0,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Export a store's z-points to a Parquet file (with layout, neighbours, statistics), a .npz file, or another store (.zarr, .h5)."""
    from ..exceptions import InvalidParameterError
    from ..store import export_npz

    suffix = out.suffix.lower()
    if suffix in _STORE_SUFFIXES:
        if compress:
            raise InvalidParameterError(f"export: --compress only works with a .npz output; got --out {out.name}.")
        from ..store._transfer import export_store

        with Progress("export", no_progress=no_progress) as progress:
            stats = export_store(store, out, overwrite=overwrite, progress=progress)
        typer.echo(f"wrote {stats['rows']} rows (z_dim {stats['z_dim']}) to {out}")
        return
    if suffix == ".parquet":
        stats = _export_parquet(store, out, k, with_z, thumbnails, backend, model, samples, knn, layout, seed, overwrite,
                                no_progress)
        typer.echo(f"wrote {stats['rows']} rows ({len(stats['columns'])} columns, {stats['k']} neighbours) to {out}")
        return
    given = [flag for flag, value, default in (("-k", k, 10), ("--with-z", with_z, False), ("--thumbnails", thumbnails, None),
                                               ("--backend", backend, None), ("--model", model, None),
                                               ("--samples", samples, None), ("--knn", knn, "auto"),
                                               ("--layout", layout, "pca"), ("--seed", seed, 0)) if value != default]
    if given:
        raise InvalidParameterError(f"export: {', '.join(given)} only work with a .parquet output; got --out {out.name}.")
    with Progress("export", no_progress=no_progress) as progress:
        stats = export_npz(store, out, compress=compress, overwrite=overwrite, progress=progress)
    typer.echo(f"wrote {stats['rows']} rows ({stats['arrays']} arrays) to {out}")


def explore_cmd(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="The store to look at.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="The Parquet file to write (default: STORE with the suffix .parquet).")] = None,
    k: _Neighbours = 10,
    thumbnails: _Thumbnails = None,
    backend: _Backend = None,
    model: _Model = None,
    samples: _Samples = None,
    knn: _Knn = "auto",
    layout: _Layout = "pca",
    seed: Seed = 0,
    no_start: Annotated[bool, typer.Option("--no-start", help="Write the file and print the command only.")] = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Export a store to Parquet and open it in Embedding Atlas (or print the command when it is not installed)."""
    import shlex
    import shutil
    import subprocess

    from ..export import atlas_command

    out = store.with_suffix(".parquet") if out is None else out
    stats = _export_parquet(store, out, k, False, thumbnails, backend, model, samples, knn, layout, seed, overwrite,
                            no_progress)
    cmd = atlas_command(out, neighbors=stats["k"] > 0, thumbnails=thumbnails is not None)
    typer.echo(f"wrote {stats['rows']} rows to {out}")
    exe = shutil.which(cmd[0])
    if no_start or exe is None:
        if exe is None:
            typer.echo("embedding-atlas is not installed (pip install embedding-atlas); open the file with:")
        typer.echo(shlex.join(cmd))
        return
    typer.echo(f"starting: {shlex.join(cmd)}")
    raise typer.Exit(code=subprocess.call([exe, *cmd[1:]]))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return str(n)  # pragma: no cover


def info_cmd(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="The store to describe.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe a store: rows, z_dim, provenance, columns, size on disk."""
    import json

    from ..store import open_store

    with open_store(store) as st:
        info = st.summary()
    if as_json:
        typer.echo(json.dumps(info, indent=2, sort_keys=True, default=str))
        return
    prov = dict(info["provenance"])
    cols = ", ".join(
        f"{name} ({c['dtype']}{'' if not c['shape'] else ' x ' + 'x'.join(map(str, c['shape']))})"
        for name, c in info["columns"].items()
    ) or "none"
    lines = [
        ("store", info["path"]),
        ("rows", f"{info['rows']:,}"),
        ("z_dim", str(info["z_dim"])),
        ("ids", info["ids"]),
        ("columns", cols),
        ("size", f"{_size(info['size_bytes'])} on disk"),
        ("chunks", f"{info['chunk_rows']} rows"),
        ("format", f"{prov.pop('format', '?')} version {prov.pop('format_version', '?')}"
                   + (f" ({prov.pop('storage')})" if "storage" in prov else "")),
    ]
    if "shards" in info:
        done = sum(1 for s in info["shards"] if s["complete"])
        lines.append(("shards", f"{done} of {len(info['shards'])} complete"))
        prov.pop("shards", None)
    if info["uncommitted_rows"]:
        lines.append(("uncommitted", f"{info['uncommitted_rows']} rows of an interrupted append (overwritten by the next)"))
    for key in ("backend", "model_fingerprint", "source", "created", "updated", "library_version", "n_skipped_nonfinite"):
        if key in prov:
            lines.append((key.replace("_", " "), str(prov.pop(key)) or "-"))
    prov.pop("z_dim", None)
    for key in sorted(prov):
        lines.append((key, json.dumps(prov[key], default=str) if not isinstance(prov[key], str) else prov[key]))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key:<{width}}  {value}")


def check_cmd(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="The store to verify.")],
    salvage: Annotated[Optional[Path], typer.Option(
        "--salvage", metavar="OUT", help="Copy the rows that verify (with ids and columns) into a new store OUT.")] = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Verify a store: read every chunk, check checksums, commit record and extents (exit 1 if damaged)."""
    from ..store import check_store, salvage_store

    with Progress("check", unit="B", no_progress=no_progress) as progress:
        report = check_store(store, progress=progress)
    for note in report.notes:
        typer.echo(f"note: {note}")
    if report.ok:
        how = "checksums verified" if report.verified else "structure checked (no checksums)"
        typer.echo(f"OK: {store}: {report.n_rows:,} rows x z_dim {report.z_dim}, format {report.format_version}, {how}")
    else:
        shown = report.problems[:20]
        for line in shown:
            typer.echo(f"damaged: {line}")
        if len(report.problems) > len(shown):
            typer.echo(f"damaged: ... and {len(report.problems) - len(shown)} more problems")
        if report.good is not None:
            typer.echo(f"damaged: {store}: {report.n_good:,} of {report.n_rows:,} committed rows verify")
    if salvage is not None:
        stats = salvage_store(store, salvage, overwrite=overwrite, report=report)
        typer.echo(f"salvaged {stats['rows']:,} rows to {salvage} (left out {stats['dropped']:,})")
    if not report.ok:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the store commands to the ``latentscope`` app."""
    app.command("import", help=import_cmd.__doc__)(import_cmd)
    app.command("export", help=export_cmd.__doc__)(export_cmd)
    app.command("explore", help=explore_cmd.__doc__)(explore_cmd)
    app.command("info", help=info_cmd.__doc__)(info_cmd)
    app.command("check", help=check_cmd.__doc__)(check_cmd)
