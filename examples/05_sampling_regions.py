"""
Title: Sampling z-points from regions of the latent space, and where they land
Series: "Autoencoders and latent space fragmentation", parts IV, V, VII and X (and
        the ex-post Gaussian mixture of the RAE paper)
Description: Draw the same number of z-points from the series' generators: a uniform
cube and a normal around the origin (both radius-matched to the data), independent
per-component Gaussians, the fitted multivariate normal, the PCA box, the PCA frame
with 2-D confidence ellipses (the series' final method) and a Gaussian mixture.
A landing report tells how many land in the data's fragment (near a data point),
inside its PCA box and inside its 0.99 confidence ellipsoid. In the series the
generators that ignore the data's location and correlations miss the fragment
completely even when their vector lengths match the data's. With a backend and a
model the samples are decoded into image grids (for a face AE: faces or no faces).

Usage:
    python examples/05_sampling_regions.py STORE [--out DIR] [-n 256] [--seed 0]
        [--regions cube,normal,gauss,mvn,pca-box,ellipse,gmm] [--backend NAME --model PATH]

Writes landing_radial.png (lengths and Mahalanobis radii of every region over the
data's), landing.md (the table) and, with a backend, grids.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import latentscope as ls
from latentscope.analysis import PCAFrame
from latentscope.samplers import LandingReference
from latentscope.samplers.plots import image_grid, plot_image_grids, plot_radial_comparison

#: Options per region: the geometric generators get the data's mean squared length ("match");
#: the others their defaults.
OPTIONS = {"cube": {"halfwidth": "match"}, "normal": {"scale": "match"}, "ball": {"radius": "match"},
           "shell": {"radius": "match", "spread": "match"}}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Sample from the series' regions and measure where the samples land.")
    p.add_argument("store", type=Path, help="z-point store (HDF5)")
    p.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem, help="output folder")
    p.add_argument("-n", "--n-samples", type=int, default=256, help="z-points per region")
    p.add_argument("--regions", default="cube,normal,gauss,mvn,pca-box,ellipse,gmm", help="comma-separated samplers")
    p.add_argument("--grid", type=int, default=6, help="decoded grid side (with a backend)")
    p.add_argument("--backend", help="backend that decodes the samples, e.g. 'linear' or 'keras-ae'")
    p.add_argument("--model", type=Path, help="saved model of that backend")
    p.add_argument("--seed", type=int, default=0, help="seed of fitting, sampling and the landing reference")
    args = p.parse_args()
    if (args.backend is None) != (args.model is None):
        p.error("--backend and --model go together")
    return args


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    fit_rng, sample_rng, ref_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(3))
    model = ls.get_backend(args.backend).load(args.model) if args.backend else None
    with ls.open_store(args.store) as store:
        if model is not None and model.z_dim != store.z_dim:
            raise SystemExit(f"the model's z_dim ({model.z_dim}) differs from the store's ({store.z_dim})")
        pca = PCAFrame().fit(store)  # one frame of all rows shared by the PCA-based samplers
        # the report fits its own metric on part of the rows and calibrates on the held-out rest
        ref = LandingReference(n_reference=2000).fit(store, rng=ref_rng)
        reports, samples = [], {}
        for name in args.regions.split(","):
            sampler = ls.make_sampler(name, **OPTIONS.get(name, {})).fit(store, rng=fit_rng, pca=pca)
            samples[name] = sampler.sample(args.n_samples, rng=sample_rng)
            reports.append(ref.report(samples[name], name=name))

    first = reports[0]
    lines = [
        f"{args.n_samples} samples per region; data: {ref.n_rows_:,} z-points, z_dim {ref.z_dim_}, "
        f"|z| = {first.data_radius_mean:.3g} +- {first.data_radius_std:.2g}, "
        f"median Mahalanobis radius of held-out rows {first.data_mahalanobis_median:.3g}",
        f"in-fragment: Mahalanobis radius in [{first.typical_band[0]:.3g}, {first.typical_band[1]:.3g}] and whitened "
        f"distance to the nearest fit row below {first.nn_threshold:.3g} (set so that 0.95 of held-out rows pass)",
        "",
        "| region | in-fragment | in PCA box | in 0.99 ellipsoid | mean \\|z\\| | median Mahalanobis r |",
        "|---|---:|---:|---:|---:|---:|",
        f"| held-out data | {first.data_in_fragment_rate:.3f} | {first.data_frac_in_pca_box:.3f} | "
        f"{first.data_frac_in_ellipsoid:.3f} | {first.data_radius_mean:.3g} | {first.data_mahalanobis_median:.3g} |",
    ]
    for r in reports:
        lines.append(f"| {r.name} | {r.in_fragment_rate:.3f} | {r.frac_in_pca_box:.3f} | {r.frac_in_ellipsoid:.3f} | "
                     f"{r.radius_mean:.3g} | {r.mahalanobis_median:.3g} |")
    print("\n".join(lines))
    (args.out / "landing.md").write_text("\n".join(lines) + "\n")
    plot_radial_comparison(reports, ref.data_radii_, ref.data_mahalanobis_, args.out / "landing_radial.png")
    print("\nwrote", args.out / "landing.md")
    print("wrote", args.out / "landing_radial.png")

    if model is not None:
        k = min(args.grid**2, args.n_samples)
        grids = {name: image_grid(model.decode(Z[:k]), args.grid) for name, Z in samples.items()}
        rates = {r.name: f"{r.in_fragment_rate:.0%} in the fragment" for r in reports}
        plot_image_grids(grids, args.out / "grids.png", subtitles=rates)
        print("wrote", args.out / "grids.png", f"({k} decoded samples per region, backend {args.backend})")


if __name__ == "__main__":
    main()
