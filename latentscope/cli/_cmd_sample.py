"""``latentscope sample`` and ``latentscope compare-samplers``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import (
    BatchSize,
    NoProgress,
    Overwrite,
    Progress,
    Scheduler,
    Seed,
    Workers,
    check_out,
    on_cluster,
    parse_pairs,
    prepare_out,
)

__all__ = ["register", "sample_cmd", "compare_cmd", "OPTION_TARGETS"]

#: CLI option -> {region: sampler parameter}: shorthands for the options of a region
#: spec (``--level 0.9`` is ``--region ellipse:level=0.9``; the grammar lives in
#: ``latentscope/samplers/_spec.py``). An option given for a region that is not listed
#: is an error ("does not apply").
OPTION_TARGETS: dict[str, dict[str, str]] = {
    "halfwidth": {"cube": "halfwidth"},
    "center": {r: "center" for r in ("cube", "ball", "shell", "normal")},
    "radius": {"ball": "radius", "shell": "radius"},
    "spread": {"shell": "spread"},
    "scale": {r: "scale" for r in ("normal", "gauss", "mvn", "pca-gauss")},
    "quantile": {r: "quantiles" for r in ("box", "pca-box", "pca-gauss")},
    "shrink": {r: "shrink" for r in ("box", "pca-box", "pca-gauss")},
    "components": {r: "n_components" for r in ("pca-box", "pca-gauss", "ellipse")},
    "level": {"ellipse": "level"},
    "pairs": {"ellipse": "pairs"},
    "k": {"gmm": "n_components"},
    "max_samples": {"gmm": "max_samples"},
    "covariance": {"mvn": "covariance"},
    "mode": {"path": "mode"},
    "plane": {"path": "plane"},
    "axis": {"path": "axis"},
    "endpoints": {"path": "endpoints"},
    "extent": {"path": "extent"},
    "method": {"path": "method"},
}

_OUTPUTS = ("samples.h5", "sampler.json", "sampler.npz", "landing.json", "landing.png", "grid.png", "images")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _size_value(text: str, name: str) -> float | str:
    from ..exceptions import InvalidParameterError

    if text.strip().lower() == "match":
        return "match"
    try:
        return float(text)
    except ValueError:
        raise InvalidParameterError(f"{_flag(name)} must be a number or 'match'; got {text!r}.") from None


def _int_pair(text: str, name: str) -> tuple[int, int]:
    from ..exceptions import InvalidParameterError

    parts = [p.strip() for p in text.split(",")]
    try:
        i, j = (int(p) for p in parts)
    except ValueError:
        raise InvalidParameterError(f"{_flag(name)} must be two integers 'i,j'; got {text!r}.") from None
    return i, j


def _pairs_value(values: Any) -> Any:
    """``--pairs``: ``disjoint``, ``chain`` or pairs ``I,J`` (the option repeated)."""
    return parse_pairs(values, words=("disjoint", "chain"))


def _quantile_value(q: float) -> tuple[float, float] | None:
    from ..exceptions import InvalidParameterError

    if q == 0:
        return None
    if not 0 < q < 0.5:
        raise InvalidParameterError(f"--quantile must lie in [0, 0.5) (trimmed at each end; 0 = min/max); got {q!r}.")
    return (q, 1.0 - q)


def sampler_options(region: str, given: dict[str, Any]) -> dict[str, Any]:
    """Map the CLI options given (not None) to the parameters of ``region``'s sampler."""
    from ..exceptions import SamplerError
    from ..samplers import all_samplers

    if region not in all_samplers():
        raise SamplerError(f"--region must be one of: {', '.join(all_samplers())}; got {region!r}.")
    params: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        targets = OPTION_TARGETS[name]
        if region not in targets:
            raise SamplerError(
                f"{_flag(name)} does not apply to region {region!r} (it applies to: {', '.join(sorted(targets))})."
            )
        if name in ("halfwidth", "radius", "spread", "scale"):
            value = _size_value(value, name)
        elif name in ("plane", "endpoints"):
            value = _int_pair(value, name)
        elif name == "pairs":
            value = _pairs_value(value)
        elif name == "quantile":
            value = _quantile_value(value)
        elif name == "max_samples":
            value = None if value == 0 else value
        params[targets[region]] = value
    return params


def _load_model(backend: Optional[str], model: Optional[Path], z_dim: int) -> Any:
    from ..backends import load_model
    from ..exceptions import BackendError, InvalidParameterError

    if backend is None and model is None:
        return None
    if model is None:
        raise InvalidParameterError("--backend and --model go together: --backend needs --model (--model alone is enough: its config names the backend).")
    bk = load_model(model, backend)
    if int(bk.z_dim) != int(z_dim):
        raise BackendError(f"the model's z_dim ({bk.z_dim}) differs from the store's ({z_dim}); use a model trained for this store.")
    return bk


def _write_samples(path: Path, Z: Any, store: Any, sampler: Any, *, seed: int, region: str) -> None:
    from ..store import create_store

    prov = store.provenance
    with create_store(
        path, Z.shape[1], backend=str(prov.get("backend", "")), model_fingerprint=str(prov.get("model_fingerprint", "")),
        source=f"sampler:{region}", overwrite=True,
    ) as out:
        out.append(Z, ids=[f"{region}-{i}" for i in range(Z.shape[0])])
        out.set_provenance(sampler=sampler.to_dict(), seed=int(seed), data_store=str(store.path),
                           seed_scheme="numpy SeedSequence(seed).spawn: fit, sample, landing")


def _decode(bk: Any, Z: Any, batch_size: Optional[int]) -> Any:
    from ..backends import preferred_batch_size

    return bk.decode(Z, batch_size=preferred_batch_size(bk, "decode", batch_size, owner="--batch-size"))


def _write_images(images: Any, out: Path, ncols: Optional[int] = None) -> Any:
    from ..samplers._plots import image_grid, save_png

    (out / "images").mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        save_png(img, out / "images" / f"sample_{i:05d}.png")
    grid = image_grid(images, ncols)
    save_png(grid, out / "grid.png")
    return grid


def _describe(sampler: Any) -> str:
    """Short text of a sampler's non-default parameters and fitted sizes."""
    import numpy as np

    parts = [f"{k}={v}" for k, v in sampler._non_default_params().items() if not isinstance(v, np.ndarray)]
    for a in sampler._scalar_attrs:
        v = getattr(sampler, a, None)
        if isinstance(v, float) and a != "lower_bound_":
            parts.append(f"{a}={v:.4g}")
    return ", ".join(parts)


def sample_cmd(
    store: Annotated[Path, typer.Argument(help="The z-point store (HDF5 or Zarr) of the data.")],
    region: Annotated[str, typer.Option("--region", help="Sampler: cube, ball, shell, normal, box, gauss, mvn, pca-box, pca-gauss, ellipse, gmm, kde, path; optionally with parameters, NAME:KEY=VALUE[:KEY=VALUE] (e.g. ellipse:level=0.9).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    n: Annotated[int, typer.Option("-n", "--n-samples", min=1, help="Number of z-points.")] = 64,
    seed: Seed = 0,
    halfwidth: Annotated[Optional[str], typer.Option(help="cube: half side b (> 0) or 'match' (the data's mean squared radius).")] = None,
    center: Annotated[Optional[str], typer.Option(help="cube/ball/shell/normal: 'origin' or 'mean'.")] = None,
    radius: Annotated[Optional[str], typer.Option(help="ball, shell: radius or 'match'.")] = None,
    spread: Annotated[Optional[str], typer.Option(help="shell: radius spread or 'match'.")] = None,
    scale: Annotated[Optional[str], typer.Option(help="normal: sd (or 'match'); gauss/mvn/pca-gauss: factor on the sds.")] = None,
    quantile: Annotated[Optional[float], typer.Option(help="box/pca-box/pca-gauss: trim this quantile at each end (0 = min/max).")] = None,
    shrink: Annotated[Optional[float], typer.Option(help="box/pca-box/pca-gauss: scale the box about its centre.")] = None,
    components: Annotated[Optional[int], typer.Option(help="pca-box/pca-gauss/ellipse: vary only the first k principal axes.")] = None,
    level: Annotated[Optional[float], typer.Option(help="ellipse: confidence level p of the 2-D ellipses.")] = None,
    pairs: Annotated[Optional[list[str]], typer.Option(
        help="ellipse: 'disjoint', 'chain', or a pair I,J of components (repeat it: --pairs 0,1 --pairs 2,3).")] = None,
    k: Annotated[Optional[int], typer.Option("--k", help="gmm: number of mixture components.")] = None,
    max_samples: Annotated[Optional[int], typer.Option(help="gmm: fit on this many random rows (0 = all).")] = None,
    covariance: Annotated[Optional[str], typer.Option(help="mvn: 'full' or 'core'.")] = None,
    mode: Annotated[Optional[str], typer.Option(help="path: plane, pc, interp or pc-grid.")] = None,
    plane: Annotated[Optional[str], typer.Option(help="path: 'i,j' coordinate plane (plane) or PC plane (pc-grid).")] = None,
    axis: Annotated[Optional[int], typer.Option(help="path: principal axis (pc).")] = None,
    endpoints: Annotated[Optional[str], typer.Option(help="path: store rows 'a,b' to interpolate (interp).")] = None,
    extent: Annotated[Optional[float], typer.Option(help="path: half-length in standard deviations.")] = None,
    method: Annotated[Optional[str], typer.Option(help="path: linear, slerp or slerp-mean (interp).")] = None,
    backend: Annotated[Optional[str], typer.Option(help="Backend that decodes the samples (default: from the model's config.json).")] = None,
    model: Annotated[Optional[Path], typer.Option(help="Saved model of that backend.")] = None,
    batch_size: BatchSize = None,
    n_reference: Annotated[int, typer.Option(min=2, help="Held-out data rows that calibrate the landing figures (at most a third of the data).")] = 2000,
    scheduler: Scheduler = None,
    workers: Workers = None,
    no_progress: NoProgress = False,
    overwrite: Overwrite = False,
) -> None:
    """Draw z-points from a region, measure where they land, and decode them.

    With --scheduler or --workers the sampler's streamed fit and the landing scans run
    on a dask.distributed cluster (same results).
    """
    import json

    import numpy as np

    from ..samplers import LandingReference, make_sampler
    from ..samplers._plots import plot_landing
    from ..store import open_store

    given = dict(halfwidth=halfwidth, center=center, radius=radius, spread=spread, scale=scale, quantile=quantile,
                 shrink=shrink, components=components, level=level, pairs=pairs or None, k=k, max_samples=max_samples,
                 covariance=covariance, mode=mode, plane=plane, axis=axis, endpoints=endpoints, extent=extent,
                 method=method)
    from ..exceptions import SamplerError
    from ..samplers._spec import parse_region_spec

    label = region.strip()
    region, spec_opts = parse_region_spec(label)  # the one region grammar; the flags are shorthands
    params = sampler_options(region, given)
    twice = sorted(set(spec_opts) & set(params))
    if twice:
        raise SamplerError(f"--region {label!r} and a flag both set {twice[0]!r}; give it once.")
    params = {**spec_opts, **params}
    with on_cluster(scheduler, workers), open_store(store) as data:
        bk = _load_model(backend, model, data.z_dim)
        check_out(out, _OUTPUTS, overwrite=overwrite)
        sampler = make_sampler(region, **params)
        fit_rng, sample_rng, ref_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
        sampler.fit(data, rng=fit_rng)
        Z = sampler.sample(n, rng=sample_rng)
        prepare_out(out, _OUTPUTS, overwrite=overwrite)
        stages = 3 if bk is not None else 2
        with Progress(f"sample {region}", total=stages, unit="steps", no_progress=no_progress) as bar:
            _write_samples(out / "samples.h5", Z, data, sampler, seed=seed, region=region)
            sampler.save(out / "sampler")
            bar.step()
            ref = LandingReference(n_reference=n_reference).fit(data, rng=ref_rng)
            report = ref.report(Z, name=label)
            (out / "landing.json").write_text(json.dumps(report.to_dict(), indent=2))
            plot_landing(report, out / "landing.png")
            bar.step()
            if bk is not None:
                _write_images(_decode(bk, Z, batch_size), out)
                bar.step()
    typer.echo(
        f"{label}: {n} z-points -> {out / 'samples.h5'}; {report.line()}"
        + (f"; images -> {out / 'grid.png'}" if bk is not None else "")
    )


def compare_cmd(
    store: Annotated[Path, typer.Argument(help="The z-point store (HDF5 or Zarr) of the data.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    regions: Annotated[str, typer.Option(help="Comma-separated regions, each NAME or NAME:KEY=VALUE[:KEY=VALUE] (e.g. ellipse:level=0.9).")] = "cube,normal,gauss,mvn,pca-box,ellipse,gmm",
    n: Annotated[int, typer.Option("-n", "--n-samples", min=1, help="Z-points per region.")] = 256,
    seed: Seed = 0,
    backend: Annotated[Optional[str], typer.Option(help="Backend that decodes the samples (default: from the model's config.json).")] = None,
    model: Annotated[Optional[Path], typer.Option(help="Saved model of that backend.")] = None,
    grid_size: Annotated[int, typer.Option(min=1, help="Images per region in the grids.")] = 16,
    batch_size: BatchSize = None,
    n_reference: Annotated[int, typer.Option(min=2, help="Held-out data rows that calibrate the landing figures (at most a third of the data).")] = 2000,
    scheduler: Scheduler = None,
    workers: Workers = None,
    no_progress: NoProgress = False,
    overwrite: Overwrite = False,
) -> None:
    """Draw the same number of z-points from several regions and compare where they land.

    With --scheduler or --workers the streamed fits and the landing scans run on a
    dask.distributed cluster (same results).
    """
    import numpy as np

    from ..analysis import PCAFrame
    from ..exceptions import SamplerError
    from ..samplers import LandingReference, all_samplers
    from ..samplers._plots import plot_image_grids, plot_radial_comparison
    from ..samplers._tables import write_landing_tables
    from ..store import open_store

    from ..samplers._spec import MATCHED_OPTIONS, build_samplers, parse_region_spec, region_slug, split_region_list

    labels = split_region_list(regions)
    unknown = [r for r in labels if parse_region_spec(r)[0] not in all_samplers()]
    if not labels or unknown:
        raise SamplerError(f"--regions must list regions from: {', '.join(all_samplers())}; got {regions!r}.")
    if len(set(labels)) != len(labels):
        raise SamplerError(f"--regions lists a region twice: {regions!r}.")
    specs = build_samplers(labels, defaults=MATCHED_OPTIONS, owner="compare-samplers")
    names = [region_slug(label) for label in labels]  # output sub-directories
    with on_cluster(scheduler, workers), open_store(store) as data:
        bk = _load_model(backend, model, data.z_dim)
        prepare_out(out, ("radial.png", "landing.md", "landing.csv", "landing.json", "grids.png", *names),
                    overwrite=overwrite)
        seeds = np.random.SeedSequence(seed).spawn(len(names) + 1)
        reports, grids, subtitles, described = [], {}, {}, {}
        with Progress("compare-samplers", total=len(names) + 1, unit="regions", no_progress=no_progress) as bar:
            ref = LandingReference(n_reference=n_reference).fit(data, rng=np.random.default_rng(seeds[0]))
            pca = PCAFrame().fit(data)
            bar.step()
            for (name, (label, region, sampler)), ss in zip(zip(names, specs), seeds[1:]):
                fit_rng, sample_rng = (np.random.default_rng(s) for s in ss.spawn(2))
                # one PCA frame of all rows for every sampler
                sampler.fit(data, rng=fit_rng, pca=pca)
                Z = sampler.sample(n, rng=sample_rng)
                sub = out / name
                sub.mkdir(parents=True, exist_ok=True)
                _write_samples(sub / "samples.h5", Z, data, sampler, seed=seed, region=region)
                sampler.save(sub / "sampler")
                rep = ref.report(Z, name=label)
                reports.append(rep)
                described[label] = _describe(sampler)
                if bk is not None:
                    m = min(grid_size, n)
                    grids[label] = _write_images(_decode(bk, Z[:m], batch_size), sub)
                    subtitles[label] = f"in-fragment {rep.in_fragment_rate:.0%}"
                bar.step()
        write_landing_tables(reports, out / "landing", described=described, reference=ref, store_path=str(store))
        plot_radial_comparison(reports, ref.data_radii_, ref.data_mahalanobis_, out / "radial.png")
        if grids:
            plot_image_grids(grids, out / "grids.png", subtitles=subtitles)
    rows = ", ".join(f"{r.name} {r.in_fragment_rate:.0%}" for r in reports)
    typer.echo(f"in-fragment rates (held-out data {reports[0].data_in_fragment_rate:.0%}): {rows}; table -> {out / 'landing.md'}, figure -> {out / 'radial.png'}"
               + (f", grids -> {out / 'grids.png'}" if grids else ""))


def register(app: typer.Typer) -> None:
    """Add ``sample`` and ``compare-samplers`` to the ``latentscope`` app."""
    app.command("sample")(sample_cmd)
    app.command("compare-samplers")(compare_cmd)
