"""``latentscope evaluate``: sample every region, decode, score, and write the table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import BatchSize, NoProgress, Overwrite, Progress, Seed, StoreOptionCommand, check_out, prepare_out

__all__ = ["register", "evaluate_cmd", "OUTPUTS", "grid_filename"]

#: Files written into --out (plus one grid per region under grids/).
OUTPUTS = ("metrics.md", "metrics.csv", "metrics.json", "metrics.html", "index.html", "chart.png", "grids")


def grid_filename(label: str) -> str:
    """A file name for a region label: ``"ellipse:level=0.9"`` -> ``"ellipse_level-0.9.png"``."""
    from ..samplers._spec import region_slug

    return region_slug(label) + ".png"


def evaluate_cmd(
    store: Annotated[Path, typer.Argument(help="The z-point store of the data (encoded with this model).")],
    model: Annotated[Path, typer.Option("--model", help="Saved model directory of that backend.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    backend: Annotated[Optional[str], typer.Option(
        "--backend", help="Backend of the model (default: from the model's config.json).")] = None,
    regions: Annotated[str, typer.Option(
        "--regions",
        help="Comma-separated regions, each NAME or NAME:KEY=VALUE[:KEY=VALUE] with sampler parameters "
             "(e.g. ellipse:level=0.9).",
    )] = "cube,normal,box,gauss,mvn,pca-box,ellipse,gmm",
    n: Annotated[int, typer.Option("-n", "--n-samples", min=2, help="Generated images per region (RAE: 10000).")] = 10_000,
    data: Annotated[Optional[str], typer.Option(
        "--data", help="Real images: synthetic:N, celeba:PATH or folder:PATH (default: the store's recorded source, "
                       "else the store's z-points decoded).")] = None,
    n_real: Annotated[Optional[int], typer.Option("--n-real", min=2, help="Use at most this many real images (default: -n).")] = None,
    seed: Seed = 0,
    gmm_components: Annotated[int, typer.Option("--gmm-components", min=1, help="Components of the gmm region (RAE: 10).")] = 10,
    reference: Annotated[bool, typer.Option("--reference/--no-reference",
                                            help="Add the store-z row: the store's own z-points, decoded (a ceiling).")] = True,
    kid_subsets: Annotated[int, typer.Option("--kid-subsets", min=0, help="KID subsets per space (0 skips KID).")] = 50,
    grid: Annotated[int, typer.Option("--grid", min=1, max=8, help="Side of the image grid per region (grid x grid images).")] = 8,
    batch_size: BatchSize = None,
    no_progress: NoProgress = False,
    overwrite: Overwrite = False,
) -> None:
    """Compare samplers by the images they generate: FD, KID, precision/recall, density/coverage.

    For every region: fit the sampler on STORE, draw -n z-points, decode them with
    the model and score the images against real images. Latent-space scores compare the
    real images' codes with the generated z-points decoded and re-encoded; pixel-space
    scores use a PCA of the real images' pixels and a fixed random conv-net. The rule's precision
    (bold, and "beat gmm") counts a sample only when its z-point is in the fragment and its image
    lies in the real random-conv manifold. Writes metrics.md, metrics.csv,
    metrics.json, chart.png and grids/REGION.png into --out. This reproduces the RAE
    paper's comparison of one fitted Gaussian (mvn) with a 10-component mixture (gmm).
    The older spelling --store STORE still works (with a deprecation notice).
    """
    import json

    from ..backends import load_model, preferred_batch_size
    from ..data import open_source
    from ..metrics import evaluate_regions
    from ..metrics._region_plots import plot_regions
    from ..metrics._region_tables import REFERENCE_REGION
    from ..metrics._regions import _build_samplers
    from ..samplers._plots import image_grid, save_png
    from ..store import open_store

    region_options = {"gmm": {"n_components": int(gmm_components)}}
    specs = _build_samplers(regions, region_options)  # one-line errors before anything heavy
    check_out(out, OUTPUTS, overwrite=overwrite)
    with open_store(store) as zs:
        bk = load_model(model, backend)
        if int(bk.z_dim) != int(zs.z_dim):
            from ..exceptions import BackendError

            raise BackendError(f"the model's z_dim ({bk.z_dim}) differs from the store's ({zs.z_dim}); "
                               "use the model the store was encoded with.")
        recorded = zs.provenance.get("source")
        real = open_source(data, image_size=tuple(bk.image_shape)[:2]) if data is not None else None
        # one batch size for the decode and re-encode calls: --batch-size, else the backend's decode choice
        batch = preferred_batch_size(bk, "decode", batch_size, owner="--batch-size")
        prepare_out(out, OUTPUTS, overwrite=overwrite)
        with Progress("evaluate", total=len(specs) + 1 + int(reference), unit="steps", no_progress=no_progress) as bar:
            ev = evaluate_regions(
                bk, zs, [label for label, _, _ in specs],
                n=n, real=real, n_real=n_real, rng=seed, region_options=region_options, reference=reference,
                kid_subsets=kid_subsets, batch_size=batch, progress=bar,
            )
    (out / "metrics.md").write_text(ev.to_markdown())
    (out / "metrics.csv").write_text(ev.to_csv())
    payload = ev.to_dict()
    payload["command"] = {"backend": backend, "model": str(model), "store": str(store), "data": data,
                          "regions": regions, "n": n, "n_real": n_real, "seed": seed, "gmm_components": gmm_components}
    (out / "metrics.json").write_text(json.dumps(payload, indent=2))
    plot_regions(ev, out / "chart.png")
    k = grid * grid
    for label, images in ev.previews.items():
        save_png(image_grid(images[:k], grid), out / "grids" / grid_filename(label))
    if ev.real_kind == "images":
        typer.echo(f"real images: {ev.n_real} from {ev.real_spec}")
    else:
        typer.echo(f"real images: none could be opened (the store records {recorded!r}); "
                   f"{ev.n_real} store z-points, decoded, stand in for them")
    best = ", ".join(f"{m} {ev.best(m)}" for m in ("fd_latent", "fd_pixel", "fd_conv", "precision", "recall"))
    gate = "in-fragment z-points whose images lie" if ev.meta.get("fragment_gate") else "images"
    typer.echo(f"rule space: {ev.manifold_space} (precision = share of {gate} in the real {ev.manifold_space} manifold)")
    typer.echo(f"best: {best}")
    typer.echo("in-fragment / precision (rule): " + ", ".join(
        f"{r.label} {r.in_fragment:.2f} / {r.precision:.2f}" for r in ev.rows if not r.reference))
    labels = [lbl for lbl in ev.labels if lbl != REFERENCE_REGION]
    base, wins = None, []
    if "gmm" in labels or any(lbl.startswith("gmm") for lbl in labels):
        base = "gmm" if "gmm" in labels else next(lbl for lbl in labels if lbl.startswith("gmm"))
        wins = ev.winners(base)
        typer.echo(f"beat {base} (lower FD latent, higher precision and recall): {', '.join(wins) if wins else 'none'}")
    (out / "metrics.html").write_text(ev.to_html() + "\n")
    (out / "index.html").write_text(evaluation_page(ev, out, wins=(base, wins) if base else None))
    typer.echo(f"table -> {out / 'metrics.md'}, page -> {out / 'index.html'}, chart -> {out / 'chart.png'}, "
               f"grids -> {out / 'grids'}")


def evaluation_page(ev: Any, out: Path, *, wins: Any = None) -> str:
    """``evaluate``'s ``index.html``: the deciding numbers, the table, the chart and the grids (linked PNGs)."""
    from .. import _html as H

    key = [(f"best on {m}", ev.best(m) or "n/a") for m in ("fd_latent", "precision", "recall")]
    if wins is not None:
        key.append((f"beat {wins[0]} (lower FD latent, higher precision and recall)", ", ".join(wins[1]) or "none"))
    key += [(f"in-fragment rate, {r.label}", f"{r.in_fragment:.2f}") for r in ev.rows if not r.reference]
    grids = "".join(H.figure(out / "grids" / grid_filename(label), out, label, width=240) for label in ev.previews)
    body = (H.key_numbers(key) + "<h2>Metrics per region</h2>" + ev.to_html()
            + H.figure(out / "chart.png", out, "Metrics per region (click for full size)", width=720)
            + "<h2>Decoded samples</h2>" + grids)
    return H.page("latentscope evaluate", body)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the ``latentscope`` app."""
    app.command("evaluate", cls=StoreOptionCommand)(evaluate_cmd)
