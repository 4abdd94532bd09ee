"""``latentscope backends``, ``latentscope train`` and ``latentscope encode``.

The commands are generic over backends: ``train`` passes the options the user gave to
``Backend.train`` (after checking that the backend's signature takes them), and
``encode`` runs any backend through :func:`latentscope.backends.encode_to_store`, or
:func:`latentscope.backends.encode_sharded` with ``--shards`` (on a dask cluster with
``--workers``/``--scheduler``).
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import NoProgress, Overwrite, Progress, Scheduler, Workers, deprecated, on_cluster, progress_disabled

__all__ = ["register"]

#: CLI option -> keywords of Backend.train that take it, in help order. ``--seed`` goes to
#: ``rng`` where the backend's signature names it (the ``linear`` backend), else to
#: ``seed`` (an integer seed that a Keras model keeps in its config).
_TRAIN_OPTIONS: dict[str, tuple[str, ...]] = {
    "--epochs": ("epochs",),
    "--batch-size": ("batch_size",),
    "--z-dim": ("z_dim",),
    "--preset": ("preset",),
    "--filters": ("filters",),
    "--image-size": ("image_size",),
    "--resume": ("resume",),
    "--seed": ("rng", "seed"),
    "--overwrite": ("overwrite",),
}


def _keyword(option: str, names: set[str], var_kw: bool) -> str | None:
    """The keyword of ``Backend.train`` that takes ``option`` (None: not supported)."""
    kws = _TRAIN_OPTIONS[option]
    found = next((kw for kw in kws if kw in names), None)
    return found if found is not None or not var_kw else kws[-1]


def _parse_filters(text: str) -> tuple:
    """``"64,64,128,128"`` -> (64, 64, 128, 128); ``"a,b:c,d"`` -> ((a, b), (c, d)) (encoder, decoder)."""
    from ..exceptions import InvalidParameterError

    groups = []
    for group in text.split(":"):
        try:
            values = tuple(int(p) for p in group.replace(" ", ",").split(",") if p)
        except ValueError:
            values = ()
        if not values or min(values) < 1:
            groups = []
            break
        groups.append(values)
    if not groups or len(groups) > 2:
        raise InvalidParameterError(f"--filters must be positive integers separated by commas, optionally "
                                    f"'ENCODER:DECODER' (e.g. 64,64,128,128:128,128,64,64); got {text!r}.")
    return groups[0] if len(groups) == 1 else tuple(groups)


def _accepted_options(train: Any) -> tuple[set[str], bool]:
    """Keyword names ``train`` accepts, and whether it takes ``**options``."""
    params = inspect.signature(train).parameters.values()
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def _load_backend_class(name: str | None, model_dir: Path | None = None) -> Any:
    from ..backends import get_backend
    from ..backends._registry import model_backend_name
    from ..exceptions import BackendNotFoundError

    if name is None and model_dir is not None:
        name = model_backend_name(model_dir)
    if not name:
        raise BackendNotFoundError("name the backend with --backend (see: latentscope backends).")
    return get_backend(name)


def backends_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
) -> None:
    """List the installed model backends with their descriptions."""
    from ..backends import get_backend, list_backends
    from ..exceptions import BackendError

    rows: list[tuple[str, str, str]] = []
    for name, target in list_backends().items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls = get_backend(name)
            rows.append((name, "ok", str(getattr(cls, "description", "")).strip().splitlines()[0] if getattr(cls, "description", "") else ""))
        except BackendError as exc:
            typer.echo(f"warning: {exc}", err=True)
            rows.append((name, "broken", f"failed to load ({target})"))
    if as_json:
        typer.echo(json.dumps({name: {"status": status, "description": desc} for name, status, desc in rows}, indent=2))
        return
    if not rows:
        typer.echo("no backends installed (the core provides 'linear'; is latentscope installed?)")
        return
    width = max(len(r[0]) for r in rows)
    for name, status, desc in rows:
        typer.echo(f"{name:<{width}}  {desc}" if status == "ok" else f"{name:<{width}}  [broken] {desc}")


def train_cmd(
    backend: Annotated[str, typer.Option("--backend", help="Backend name (see: latentscope backends).")],
    data: Annotated[str, typer.Option("--data", help="Training images: celeba:PATH, folder:PATH, synthetic:N or h5:PATH[:DATASET].")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Training epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Images per training batch.")] = None,
    z_dim: Annotated[Optional[int], typer.Option("--z-dim", min=1, help="Latent dimension.")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="A backend preset (architecture/size bundle).")] = None,
    filters: Annotated[Optional[str], typer.Option("--filters", help="Filter counts, e.g. 64,64,128,128 (encoder) or ENC:DEC.")] = None,
    image_size: Annotated[Optional[str], typer.Option("--image-size", help="Image size: N or HxW (default 96x96).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted training in --out.")] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the random generator.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="CelebA partition: train, val or test.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first unreadable image instead of skipping it.")] = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Train a model with a backend and save it to a directory.

    Options you give are passed to the backend's train(); a backend that does not take
    one of them is a one-line error. For the built-in 'linear' backend (a PCA of
    pixels) training fits the PCA; it takes --z-dim, --batch-size, --image-size and
    --seed.
    """
    from ..data import check_image_size, open_source
    from ..exceptions import BackendError

    cls = _load_backend_class(backend)
    given: dict[str, Any] = {}
    if epochs is not None:
        given["--epochs"] = epochs
    if batch_size is not None:
        given["--batch-size"] = batch_size
    if z_dim is not None:
        given["--z-dim"] = z_dim
    if preset is not None:
        given["--preset"] = preset
    if filters is not None:
        given["--filters"] = _parse_filters(filters)
    size = None
    if image_size is not None:
        size = check_image_size(image_size, owner="--image-size")
        given["--image-size"] = size
    if resume:
        given["--resume"] = True
    if seed is not None:
        given["--seed"] = seed
    if overwrite:
        given["--overwrite"] = True
    names, var_kw = _accepted_options(cls.train)
    unsupported = [opt for opt in given if _keyword(opt, names, var_kw) is None]
    if unsupported:
        supported = [opt for opt in _TRAIN_OPTIONS if _keyword(opt, names, False) is not None]
        raise BackendError(f"backend {backend!r} does not support {', '.join(unsupported)} "
                           f"(it takes: {', '.join(supported) or 'no options'}).")
    options = {_keyword(opt, names, var_kw): value for opt, value in given.items()}
    source = open_source(data, image_size=size or (96, 96), strict=strict, split=split)
    if var_kw or "progress" in names:
        # the backend draws its own progress on stderr; the CLI only switches it on or off
        options["progress"] = not progress_disabled(no_progress)
    model = cls.train(source, out, **options)
    h, w = tuple(model.image_shape)[:2]
    typer.echo(f"saved {backend} model to {out} (z_dim {model.z_dim}, images {h}x{w}, fingerprint {model.fingerprint()})")
    if source.skipped:
        typer.echo(f"warning: skipped {len(source.skipped)} unreadable images (first: {next(iter(source.skipped))})", err=True)


def _decoder_threads(workers: int | None, decode_threads: int | None, shards: int | None,
                     scheduler: str | None) -> tuple[int | None, int | None]:
    """(decoder threads, dask workers) from the options; ``--workers`` without ``--shards`` keeps its old meaning."""
    from ..exceptions import InvalidParameterError

    if shards is None:
        if scheduler is not None:
            raise InvalidParameterError("--scheduler needs --shards K: a cluster encodes a source split into shards "
                                        "(and --out NAME.zarr).")
        if workers is not None:
            if decode_threads is not None:
                raise InvalidParameterError("give the decoding threads once, as --decode-threads (--workers without "
                                            "--shards is its deprecated spelling).")
            deprecated("encode --workers N without --shards is deprecated as the number of decoding threads; "
                       "use --decode-threads N (--workers N with --shards K starts N dask workers).")
            return workers, None
    return decode_threads, workers


def encode_cmd(
    model: Annotated[Path, typer.Option("--model", help="Model directory written by 'latentscope train'.")],
    data: Annotated[str, typer.Option("--data", help="Images: celeba:PATH, folder:PATH, synthetic:N or h5:PATH[:DATASET].")],
    out: Annotated[Path, typer.Option("--out", help="Store to write: NAME.h5 or NAME.zarr (an existing one is resumed).")],
    backend: Annotated[Optional[str], typer.Option("--backend", help="Backend name (default: from the model's config.json).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, help="Images per batch (default: the backend's choice for this hardware; keras-ae: "
                                    "1024 on a GPU, 256 on CPUs).")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first unreadable image instead of skipping it.")] = False,
    split: Annotated[Optional[str], typer.Option("--split", help="CelebA partition: train, val or test.")] = None,
    shards: Annotated[Optional[int], typer.Option(
        "--shards", min=1, help="Split the images into this many shards, each encoded into its own part of a Zarr "
                                "store (--out NAME.zarr) and resumed on its own; with --workers or --scheduler the "
                                "shards run on a dask cluster, one model per worker.")] = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
    decode_threads: Annotated[Optional[int], typer.Option(
        "--decode-threads", min=0, help="Image decoding threads (of each shard task; default: LATENTSCOPE_WORKERS, "
                                        "else the cores the process may use).")] = None,
    from_cache: Annotated[bool, typer.Option(
        "--from-cache", help="Read the images the model's training cache holds (keras-ae: MODEL/image_cache.h5) "
                             "instead of decoding them again; decode the rest.")] = False,
    commit_rows: Annotated[Optional[int], typer.Option(
        "--commit-rows", min=1, help="Rows per store commit (default: the batch size, at least 4096); a killed run "
                                     "loses at most the rows since the last commit.")] = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Encode images into a z-point store with a trained model.

    Runs in batches, decoding images in threads ahead of the model; the store gets the
    image ids, the source's per-image attributes as columns and the model's
    fingerprint in its provenance. A run that was interrupted (even killed) resumes
    when run again with the same arguments. Unreadable images are skipped and listed
    in STORE.skipped.txt unless --strict. With --from-cache the images the training
    run decoded into its cache are read from it (the store is the same).

    With --shards K the images are cut into K contiguous shards written to their own
    parts of a Zarr store: rerunning resumes each shard and never encodes a complete
    one again. --workers N (a local cluster) or --scheduler ADDRESS runs one task per
    shard on dask workers, each loading the model once; workers started with
    --resources GPU=1 get one shard at a time.
    """
    from ..backends import encode_sharded, encode_to_store
    from ..data import open_source
    from ..exceptions import InvalidParameterError

    threads, cluster_workers = _decoder_threads(workers, decode_threads, shards, scheduler)
    on_dask = on_cluster(scheduler, cluster_workers)  # checks the options now; connects in the with block
    if shards is not None and out.suffix != ".zarr":
        raise InvalidParameterError(f"--shards writes a sharded Zarr store, so --out must end in .zarr; got {out}.")
    cls = _load_backend_class(backend, model)
    loaded = cls.load(model)
    source = open_source(data, image_size=tuple(loaded.image_shape)[:2], strict=strict, split=split)
    if shards is not None and shards > len(source):
        raise InvalidParameterError(f"--shards must be at most the number of images ({len(source)} in {source.spec}); "
                                    f"got {shards}.")
    with Progress("encode", unit="img", no_progress=no_progress) as progress:
        if shards is None:
            result = encode_to_store(loaded, source, out, batch_size=batch_size, progress=progress,
                                     overwrite=overwrite, strict=strict, workers=threads, from_cache=from_cache,
                                     commit_rows=commit_rows)
        else:
            with on_dask:  # cluster(workers=N) starts its workers without MALLOC_TRIM_THRESHOLD_
                result = encode_sharded(loaded, source, out, shards=shards, model_dir=model,
                                        batch_size=batch_size, progress=progress, overwrite=overwrite,
                                        strict=strict, workers=threads, from_cache=from_cache,
                                        commit_rows=commit_rows)
    verb = "resumed" if result.resumed else "wrote"
    cached = f"; {result.n_from_cache} read from the training cache" if from_cache else ""
    sharded = f" in {result.n_shards} shards ({len(result.shards_encoded)} encoded now)" if shards is not None else ""
    typer.echo(f"{verb} {out}: {result.n_rows} rows (z_dim {loaded.z_dim}){sharded}, {result.n_written} new in "
               f"{result.seconds:.1f} s ({result.items_per_second:.0f} images/s){cached}")
    if result.n_skipped:
        typer.echo(f"skipped {result.n_skipped} unreadable images; see {result.skipped_file}", err=True)


def register(app: typer.Typer) -> None:
    """Add the model commands to the ``latentscope`` app."""
    app.command("backends")(backends_cmd)
    app.command("train")(train_cmd)
    app.command("encode")(encode_cmd)
