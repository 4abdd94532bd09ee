"""``latentscope analyze``: every analysis of the blog series on a z-point store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import NoProgress, Overwrite, Progress, Scheduler, Workers, check_out, on_cluster, parse_pairs

__all__ = ["register", "analyze_cmd", "parse_pairs", "parse_quantiles"]


def parse_quantiles(text: str) -> tuple[float, float] | None:
    """``"0.005,0.995"`` -> (0.005, 0.995); ``"none"`` -> None."""
    from ..exceptions import InvalidParameterError

    if text.strip().lower() in ("none", "off", ""):
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidParameterError(f"--quantiles: expected 'lo,hi' (e.g. 0.005,0.995) or 'none'; got {text!r}.") from None
    return lo, hi


def analyze_cmd(
    store: Annotated[Path, typer.Argument(help="The z-point store (HDF5 or Zarr) to analyse.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for results, figures and index.html.")],
    bins: Annotated[int, typer.Option("--bins", min=1, help="Bins of the component histograms.")] = 100,
    pairs: Annotated[Optional[list[str]], typer.Option(
        "--pairs", help="A component pair I,J for the 2-D densities; repeat it, e.g. --pairs 0,1 --pairs 5,9 "
                        "(default: the most correlated pairs).")] = None,
    by: Annotated[Optional[str], typer.Option("--by", help="Store column to split the statistics by, e.g. Smiling.")] = None,
    by_threshold: Annotated[Optional[float], typer.Option(
        "--by-threshold", help="Split a numeric --by column at this value.")] = None,
    quantiles: Annotated[str, typer.Option(
        "--quantiles", help="Quantile bounds 'lo,hi' of the second pair of bounding boxes, or 'none'.")] = "0.005,0.995",
    no_core: Annotated[bool, typer.Option("--no-core", help="Skip the core covariance (its extra passes).")] = False,
    core_trim: Annotated[float, typer.Option("--core-trim", help="Kept share of the core (MCD concentration steps).")] = 0.9,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="Write results only, no PNGs or index.html.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Worker threads per pass.")] = None,
    scheduler: Scheduler = None,
    workers: Workers = None,
    no_progress: NoProgress = False,
    overwrite: Overwrite = False,
) -> None:
    """Run every analysis of the blog series on STORE (two streaming passes plus the core).

    With --scheduler or --workers every pass runs as tasks on a dask.distributed cluster;
    the results equal the single-process analysis.
    """
    from ..analysis import analyze
    from ..store import open_store

    # analyze() replaces the stale results of an earlier run itself
    check_out(out, ("summary.json",), overwrite=overwrite)
    pair_list = parse_pairs(pairs)
    q = parse_quantiles(quantiles)
    with on_cluster(scheduler, workers), open_store(store) as zs, Progress(no_progress=no_progress) as progress:
        res = analyze(zs, out, bins=bins, pairs=pair_list, by=by, by_threshold=by_threshold, quantiles=q,
                      core=not no_core, core_trim=core_trim, figures=not no_figures, progress=progress,
                      n_threads=threads)
    _print_summary(res, out, figures=not no_figures)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to the ``latentscope`` app."""
    app.command("analyze")(analyze_cmd)


def _print_summary(res: Any, out: Path, figures: bool) -> None:
    s = res.summary()
    r = s["radial"]
    lines = [
        f"analysed {s['n_samples']:,} z-points of dimension {s['z_dim']} in {s['n_passes']} passes "
        f"({sum(v for k, v in s['timings_s'].items() if k != 'figures'):.1f} s)",
        f"  components: median KS distance to a Gaussian {s['components']['ks_distance_median']:.4f}; "
        f"PCA coordinates: {s['pca_components']['ks_distance_median']:.4f}",
        f"  correlations: median |r| {s['correlations']['abs_r_median']:.3f}, max |r| {s['correlations']['abs_r_max']:.3f}",
        f"  PCA: effective dimension {s['pca']['effective_dimension']:.1f}, "
        f"{s['pca']['n_components_90pct']} axes hold 90 % of the variance",
        f"  radii: mean |z| {r['radii']['origin']['mean']:.3f}, best cube half-width b = {r['cube_halfwidth']:.3f}; "
        f"origin at Mahalanobis radius {r['origin_mahalanobis']:.2f} "
        f"({r['fraction_closer_than_origin']:.1%} of points are closer to the mean)",
    ]
    if "quantile_boxes" in s:
        q = s["quantile_boxes"]
        lines.append(f"  quantile boxes {q['quantiles']}: {q['fraction_inside_pca']:.1%} of points inside the PCA box, "
                     f"{q['fraction_inside_axis']:.1%} inside the axis box")
    if "core" in s:
        c = s["core"]
        lines.append(f"  core (MCD C-steps, kept share {c['trim']:g}): {c['core_fraction']:.1%} of points after "
                     f"{c['n_iter']} iterations ({'converged' if c['converged'] else 'NOT converged'}); core trace "
                     f"{c['trace_ratio']:.2f} x the full covariance's")
    if "attribute" in s:
        a = s["attribute"]
        lines.append(f"  {a['attribute']}: mean difference {a['direction_length']:.3f} "
                     f"({a['direction_mahalanobis']:.2f} Mahalanobis), separation d' {a['separation']:.2f}")
    lines += [f"  note: {n}" for n in s.get("notes", [])]
    lines.append(f"results in {out}" + (f"; open {out / 'index.html'}" if figures else ""))
    typer.echo("\n".join(lines))
