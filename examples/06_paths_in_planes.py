"""
Title: Straight paths through the fragment: a coordinate plane and a principal axis
Series: "Autoencoders and latent space fragmentation", part VI (image creation from
        z-points along paths in selected coordinate planes of the latent space)
Description: Walk along a straight segment in the coordinate plane (i, j), with every
other component held at the data mean, through the centre along the major axis of
the pair's confidence ellipse; and along a principal axis of the whole cloud. The
series found that this little knowledge of the fragment's location and shape already
gives images with clear face features. The paths are drawn over the 2-D density of
(z_i, z_j); their Mahalanobis radius and distance to the nearest data point show how
far they stay inside the fragment. With a backend and a model each path is decoded
into a strip of images.

Usage:
    python examples/06_paths_in_planes.py STORE [--out DIR] [--plane i,j] [--axis 0]
        [--steps 9] [--extent 3] [--backend NAME --model PATH]

Writes paths.png (the paths over the pair density), path_profiles.png (Mahalanobis
radius and nearest-data distance along each path) and, with a backend, strips.png
(one row of decoded images per path).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import latentscope as ls
from latentscope.analysis import Correlations, PCAFrame
from latentscope.analysis.figures import plot_pair_densities, save_figure
from latentscope.samplers import PathSampler
from latentscope.samplers.plots import image_grid


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Straight paths in a coordinate plane and along a PC (series part VI).")
    p.add_argument("store", type=Path, help="z-point store (HDF5)")
    p.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem, help="output folder")
    p.add_argument("--plane", help="coordinate plane 'i,j' (default: the most correlated pair)")
    p.add_argument("--axis", type=int, default=0, help="principal axis of the second path")
    p.add_argument("--steps", type=int, default=9, help="points per path")
    p.add_argument("--extent", type=float, default=3.0, help="half-length of the paths in standard deviations")
    p.add_argument("--backend", help="backend that decodes the paths, e.g. 'linear' or 'keras-ae'")
    p.add_argument("--model", type=Path, help="saved model of that backend")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data rows that set the nearest-neighbour scale (the paths are deterministic)")
    args = p.parse_args()
    if (args.backend is None) != (args.model is None):
        p.error("--backend and --model go together")
    return args


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = ls.get_backend(args.backend).load(args.model) if args.backend else None
    plane = [tuple(int(v) for v in args.plane.split(","))] if args.plane else None
    with ls.open_store(args.store) as store:
        if model is not None and model.z_dim != store.z_dim:
            raise SystemExit(f"the model's z_dim ({model.z_dim}) differs from the store's ({store.z_dim})")
        corr = Correlations(pairs=plane, n_pairs=1).fit(store)  # the pair, its density and ellipses
        i, j = (int(v) for v in corr.pairs_[0])
        pca = PCAFrame().fit(store)
        paths = {
            f"plane ({i}, {j})": PathSampler(mode="plane", plane=(i, j), extent=args.extent).fit(store, pca=pca),
            f"PC {args.axis}": PathSampler(mode="pc", axis=args.axis, extent=args.extent).fit(store, pca=pca),
        }
        Z = {name: s.sample(args.steps).astype(np.float64) for name, s in paths.items()}
        nn = {name: ls.nearest_distances(z, store)[:, 0] for name, z in Z.items()}
        rows = np.sort(np.random.default_rng(args.seed).choice(store.n_rows, min(500, store.n_rows), replace=False))
        sample = store.read(rows)
        data_nn = np.median(ls.nearest_distances(sample, store, exclude=rows))  # the data's own scale
        data_r = np.median(pca.mahalanobis(sample))
    e = corr.ellipses_[0]
    print(f"{corr.n_samples_seen_:,} z-points, z_dim {pca.z_dim}; plane ({i}, {j}): r = {e['correlation']:+.3f}, "
          f"major axis at {e['angle_deg']:.1f}° to z{i}")
    print(f"data ({len(rows)} random rows): median Mahalanobis radius {data_r:.3g} "
          f"(sqrt(z_dim) = {np.sqrt(pca.z_dim):.3g}), median nearest-neighbour distance {data_nn:.3g}")
    for name, z in Z.items():
        r = pca.mahalanobis(z)
        print(f"\n{name}: from z{i},z{j} = ({z[0, i]:.3g}, {z[0, j]:.3g}) to ({z[-1, i]:.3g}, {z[-1, j]:.3g}), "
              f"|z| {np.linalg.norm(z[0]):.3g} -> {np.linalg.norm(z[-1]):.3g}")
        print(f"  {'step':>4} {'Mahalanobis r':>14} {'nearest data':>13}")
        for k in range(len(z)):
            print(f"  {k:>4} {r[k]:>14.3f} {nn[name][k]:>13.3g}")

    # The paths over the density of (z_i, z_j) with the fitted ellipses.
    fig = plot_pair_densities(corr, ncols=1, title=f"Straight paths in the plane (z{i}, z{j})")
    ax = fig.axes[0]
    lines = [ax.plot(z[:, i], z[:, j], "o-", color=f"C{k + 1}", ms=3.5, lw=1.4, label=name)[0]
             for k, (name, z) in enumerate(Z.items())]
    ax.legend(handles=lines, loc="upper right", fontsize=7, frameon=False)
    print("\nwrote", save_figure(fig, args.out / "paths.png"))

    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    t = np.linspace(-args.extent, args.extent, args.steps)
    for k, (name, z) in enumerate(Z.items()):
        a1.plot(t, pca.mahalanobis(z), "o-", color=f"C{k + 1}", ms=3, label=name)
        a2.plot(t, nn[name], "o-", color=f"C{k + 1}", ms=3, label=name)
    a1.axhline(data_r, color="k", ls=":", lw=1, label="data's median Mahalanobis radius")
    a2.axhline(data_nn, color="k", ls=":", lw=1, label="data's median nearest-neighbour distance")
    a1.set(xlabel="position along the path (standard deviations)", ylabel="Mahalanobis radius")
    a2.set(xlabel="position along the path (standard deviations)", ylabel="distance to the nearest data point")
    a1.legend(frameon=False, fontsize=7)
    a2.legend(frameon=False, fontsize=7)
    fig.savefig(args.out / "path_profiles.png", dpi=130)
    print("wrote", args.out / "path_profiles.png")

    if model is not None:  # one strip of decoded images per path
        fig = Figure(figsize=(9, 1.3 * len(Z) + 0.2), layout="constrained")
        for ax, (name, z) in zip(np.atleast_1d(fig.subplots(len(Z), 1)), Z.items()):
            ax.imshow(image_grid(model.decode(z.astype(np.float32)), args.steps), interpolation="nearest")
            ax.set_title(f"{name}: {-args.extent:g} to {args.extent:g} standard deviations", fontsize=9)
            ax.set_axis_off()
        fig.savefig(args.out / "strips.png", dpi=130)
        print("wrote", args.out / "strips.png", f"(decoded with backend {args.backend})")


if __name__ == "__main__":
    main()
