"""``latentscope filaments``: detect filaments in a z-point store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import NoProgress, Overwrite, Progress, Scheduler, Seed, Workers, check_out, on_cluster, prepare_out

__all__ = ["register", "filaments_cmd"]

_OUTPUTS = ("filaments.json", "filaments.csv", "filaments.npz", "filaments_pcs.png", "statistics.png", "decoded")


def filaments_cmd(
    store: Annotated[Path, typer.Argument(help="The z-point store (HDF5 or Zarr) to analyse.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the summary, tables and figures.")],
    k: Annotated[int, typer.Option("--k", min=2, help="Neighbours of the kNN graph.")] = 16,
    fdr: Annotated[float, typer.Option("--fdr", min=0.0, max=1.0, help="False discovery rate of the density test.")] = 0.05,
    outer_k: Annotated[Optional[int], typer.Option("--outer-k", min=3, help="Larger scale K of the local contrast (default 4 k).")] = None,
    bandwidth: Annotated[str, typer.Option("--bandwidth", help="Jitter h of the null cloud in (0, 1], or 'auto' (the data's K-th neighbour distance).")] = "auto",
    min_members: Annotated[int, typer.Option("--min-members", min=1, help="Smallest filament reported.")] = 30,
    knn: Annotated[str, typer.Option("--knn", help="kNN engine: auto, exact, faiss, forest or faiss-ivf (see latentscope.neighbors).")] = "auto",
    backend: Annotated[Optional[str], typer.Option("--backend", help="Backend that decodes images along each filament (default: from the model's config.json).")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="Model directory of the backend.")] = None,
    n_images: Annotated[int, typer.Option("--images", min=1, help="Decoded images per filament.")] = 10,
    no_columns: Annotated[bool, typer.Option("--no-columns", help="Do not write the per-point columns into the store.")] = False,
    seed: Seed = 0,
    scheduler: Scheduler = None,
    workers: Workers = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Detect filaments: thin, elongated, dense structures among the z-points.

    Writes OUT/filaments.json (summary and table), filaments.csv, filaments.npz
    (members, spines, directions), filaments_pcs.png (filaments over the bulk on the
    leading PC planes), statistics.png and, with --backend/--model, one strip of
    decoded images along each filament in OUT/decoded/. The per-point columns
    local_dim, linearity, density, density_pvalue and filament_id are written into
    the store unless --no-columns. See docs/filaments.md for the method. With
    --scheduler or --workers the streamed statistics (the covariance of the cloud) run
    on a dask.distributed cluster; the kNN graphs stay in this process.
    """
    import json

    import numpy as np

    from ..exceptions import InvalidParameterError, StoreError
    from ..filaments import FilamentDetector
    from ..filaments._plots import decoded_strips, plot_filaments, plot_statistics
    from ..store import open_store

    if backend is not None and model is None:
        raise InvalidParameterError("--backend and --model go together: --backend needs --model (--model alone is enough: its config names the backend).")
    check_out(out, _OUTPUTS, overwrite=overwrite)
    bk = None
    if model is not None:
        from ..backends import load_model

        bk = load_model(model, backend)
    with open_store(store, "r") as zs:
        Z = zs.read()
        n_rows = zs.n_rows
    if bk is not None and getattr(bk, "z_dim", Z.shape[1]) != Z.shape[1]:
        raise InvalidParameterError(f"--model: the backend's z_dim ({bk.z_dim}) differs from the store's ({Z.shape[1]}).")
    h: float | str = bandwidth
    if bandwidth != "auto":
        try:
            h = float(bandwidth)
        except ValueError:
            raise InvalidParameterError(f"--bandwidth: expected 'auto' or a number in (0, 1]; got {bandwidth!r}.") from None
    det = FilamentDetector(k=k, fdr=fdr, outer_k=outer_k, bandwidth=h, min_members=min_members, knn=knn,
                           on_nonfinite="skip", rng=seed)
    with on_cluster(scheduler, workers), Progress(unit="pts", no_progress=no_progress) as progress:
        det.fit(Z, progress=progress)  # stages: graph, statistics, structures

    prepare_out(out, _OUTPUTS, overwrite=overwrite)
    summary = det.summary()
    summary["store"] = str(store)
    summary["columns_written"] = []
    if not no_columns:
        with open_store(store, "a") as zs:
            if zs.n_rows != n_rows:
                raise StoreError(f"{store}: the store changed during the analysis ({n_rows} -> {zs.n_rows} rows).")
            summary["columns_written"] = det.write_columns(zs)
    det.write_table(out / "filaments.csv")
    fils = det.filaments_
    np.savez(
        out / "filaments.npz",
        ids=np.array([f.id for f in fils], np.int64),
        members=np.concatenate([f.members for f in fils]) if fils else np.zeros(0, np.int64),
        offsets=np.cumsum([0] + [f.n_members for f in fils]).astype(np.int64),
        directions=np.array([f.direction for f in fils], np.float32).reshape(len(fils), Z.shape[1]),
        starts=np.array([f.start for f in fils], np.float32).reshape(len(fils), Z.shape[1]),
        ends=np.array([f.end for f in fils], np.float32).reshape(len(fils), Z.shape[1]),
        spine_nodes=np.concatenate([f.spine for f in fils]) if fils else np.zeros((0, Z.shape[1]), np.float32),
        spine_offsets=np.cumsum([0] + [f.spine.shape[0] for f in fils]).astype(np.int64),
    )
    plot_filaments(det, Z, out / "filaments_pcs.png")
    plot_statistics(det, out / "statistics.png")
    figures = [out / "filaments_pcs.png", out / "statistics.png"]
    if bk is not None and fils:
        figures += decoded_strips(bk, Z, fils, out / "decoded", n_images=n_images)
    summary["figures"] = [str(p.relative_to(out)) for p in figures]
    (out / "filaments.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    n_pts = summary["n_filament_points"]
    cq = summary["contrast_quantiles"]
    below = " / ".join(f"{100 * v:.2f} %" for v in cq["share_below_null"][:3])
    levels = " / ".join(f"{100 * v:g} %" for v in cq["q"][:3])
    typer.echo(f"local contrast (k={det.k}, K={det.outer_k_}, null jitter h={det.bandwidth_:.2f}): "
               f"data below the null's {levels} quantiles: {below}")
    typer.echo(f"{len(fils)} filaments ({n_pts} points) among {det.n_points_} points; "
               f"{summary['n_candidates']} dense candidates ({100 * summary['n_candidates'] / max(1, det.n_points_):.2f} %); "
               f"{det.timings_['total']:.1f} s. Wrote {out}/filaments.json")
    for f in fils:
        typer.echo(f"  filament {f.id}: {f.n_members} points, length {f.length:.3g}, thickness {f.thickness:.3g}, "
                   f"p = {f.p_value:.2g}")


def register(app: typer.Typer) -> None:
    """Add ``filaments`` to the ``latentscope`` app."""
    app.command("filaments")(filaments_cmd)
