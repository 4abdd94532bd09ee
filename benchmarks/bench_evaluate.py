"""The sampler contest: every region of one model scored against the RAE paper's 10-component GMM.

Trains (or loads) a model, encodes its training images into a store, and runs
:func:`latentscope.metrics.evaluate_regions` region by region, writing the table after
each one (so a run stopped by a time limit keeps what it measured). It prints each
region's wall time next to the gmm baseline's (fit + sample + decode + score) and says
which regions beat gmm on latent FD, precision and recall together.

    python benchmarks/bench_evaluate.py --backend linear --train synthetic:10000 --image-size 64 \
        --z-dim 64 --n 10000 --out bench-out/contest-linear
    python benchmarks/bench_evaluate.py --backend keras-ae --train synthetic:10000 --epochs 12 --n 10000 \
        --out bench-out/contest-keras          # preset small (64x64, z_dim 256)

Not run by pytest. Results depend on the model, the seed and n (FD is biased upwards at
small n; compare only at equal n); see docs/evaluate.md for the measured tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REGIONS = "cube,normal,box,gauss,mvn,pca-box,pca-gauss,ellipse,gmm,kde"


def _backend_class(name: str):
    from latentscope.backends import get_backend
    from latentscope.exceptions import BackendNotFoundError

    try:
        return get_backend(name)
    except BackendNotFoundError:
        if name == "linear":  # a source tree that is not installed (no entry points)
            from latentscope.backends.linear import LinearBackend

            return LinearBackend
        if name == "keras-ae":  # the plugin on the path but not installed (no entry point)
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends" / "keras_ae"))
            from latentscope_keras_ae import KerasAEBackend

            return KerasAEBackend
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="linear")
    p.add_argument("--model", type=Path, help="an existing model directory (skips training)")
    p.add_argument("--train", default="synthetic:10000", help="training images (also the real images)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--z-dim", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--preset", default="small")
    p.add_argument("--regions", default=REGIONS)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--n-real", type=int, default=None)
    p.add_argument("--data", default=None, help="real images (default: the training source)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kid-subsets", type=int, default=50)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    import numpy as np

    from latentscope import open_store
    from latentscope.backends import encode_to_store
    from latentscope.metrics import RegionEvaluation, evaluate_regions
    from latentscope.metrics._region_plots import plot_regions
    from latentscope.samplers._spec import split_region_list
    from latentscope.samplers._plots import image_grid, save_png

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.txt", "a")

    def say(msg: str) -> None:
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    cls = _backend_class(args.backend)
    t0 = time.perf_counter()
    if args.model is not None:
        model = cls.load(args.model)
    else:
        opts = {}
        if args.image_size:
            opts["image_size"] = args.image_size
        if args.z_dim:
            opts["z_dim"] = args.z_dim
        if args.backend != "linear":
            opts["preset"] = args.preset
            opts["progress"] = False
            if args.epochs:
                opts["epochs"] = args.epochs
            opts["on_epoch"] = lambda r: say(f"epoch {r['epoch']}/{r['epochs']}: loss {r['loss']:.4f} "
                                             f"val {r.get('val_loss', float('nan')):.4f} "
                                             f"{r['images_per_s']:.0f} img/s")
        model = cls.train(args.train, out / "model", **opts)
    say(f"model: {args.backend} z_dim {model.z_dim} image {tuple(model.image_shape)} ({time.perf_counter() - t0:.0f} s)")
    t0 = time.perf_counter()
    store = out / "z.h5"
    if not store.exists():
        from latentscope.data import open_source

        encode_to_store(model, open_source(args.train, image_size=tuple(model.image_shape)[:2]), store)
    with open_store(store) as s:
        say(f"store: {s.n_rows} rows ({time.perf_counter() - t0:.0f} s)")

    # the real images, read once (default: the training images, as `latentscope evaluate` does)
    from latentscope.data import open_source

    t0 = time.perf_counter()
    src = open_source(args.data or args.train, image_size=tuple(model.image_shape)[:2])
    real = src.read(0, min(len(src), args.n_real or args.n)).images
    say(f"real: {real.shape[0]} images from {src.spec} ({time.perf_counter() - t0:.0f} s)")
    common = dict(n=args.n, real=real, rng=args.seed, kid_subsets=args.kid_subsets)
    rows, previews, ev = [], {}, None
    labels = split_region_list(args.regions)
    for i, label in enumerate(labels + ["<reference>"]):
        t0 = time.perf_counter()
        last = label == "<reference>"
        # one region per call: seeds are keyed by label, so the rows equal those of one call
        ev = evaluate_regions(model, store, [labels[0]] if last else [label], reference=last, **common)
        new = ev.rows[-1:] if last else ev.rows
        rows.extend(new)
        previews.update({r.label: ev.previews[r.label] for r in new})
        say(f"{new[0].label}: {time.perf_counter() - t0:.0f} s in all, {new[0].seconds:.1f} s for the region")
        table = RegionEvaluation(tuple(rows), ev.real_kind, ev.real_spec, ev.n_real, ev.manifold_space, ev.latent_dim,
                                 ev.pixel_dim, ev.real_self_fd, ev.seed, previews, ev.meta, ev.spaces)
        (out / "metrics.md").write_text(table.to_markdown())
        (out / "metrics.csv").write_text(table.to_csv())
        (out / "metrics.json").write_text(json.dumps(table.to_dict(), indent=2))
    plot_regions(table, out / "chart.png")
    grids = [image_grid(previews[r.label][:16], 8) for r in rows]
    save_png(np.concatenate(grids, axis=0), out / "grids.png")
    print(table.to_markdown())
    if "gmm" in table.labels:
        g = table["gmm"]
        for r in table.rows:
            if r.label != "gmm" and not r.reference:
                say(f"{r.label:>12}: FD latent {r.fd_latent:.3g} vs gmm {g.fd_latent:.3g} "
                    f"({r.fd_latent / g.fd_latent:.2f}x), precision {r.precision:.3f} vs {g.precision:.3f}, "
                    f"recall {r.recall:.3f} vs {g.recall:.3f}; time {r.seconds:.1f} s vs {g.seconds:.1f} s "
                    f"({r.seconds / g.seconds:.2f}x)" + ("  BEATS gmm" if table.beats(r.label) else ""))
        say(f"beat gmm on FD latent, precision and recall: {', '.join(table.winners()) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
