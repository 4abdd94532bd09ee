"""
Title: Radial distributions: the data's |z| against uniform cubes, N(0, I) and balls
Series: "Autoencoders and latent space fragmentation", parts II and IV, and the
        companion posts "Latent spaces - pitfalls of distributing points in multi
        dimensions" I and II
Description: In N dimensions random vectors concentrate in thin shells. A vector with
components uniform in [-b, b] has length about b sqrt(N / 3) +- b / sqrt(15); N(0, I)
about sqrt(N - 1/2) +- 0.71; a point uniform in a ball sits at its rim. This example
histograms the data's lengths |z| against those references at several half-widths b,
finds the b whose lengths match the data best (the series found 1 < b < 2, best 1.5,
for its CelebA autoencoder), and shows where the origin lies relative to the cloud
(its Mahalanobis radius: the series found it near the border of the bulk).

Usage:
    python examples/03_radial_distributions.py STORE [--out DIR] [--halfwidths 1,1.5,2]

Writes radii_vs_generators.png (|z| with every reference) and radial.png (|z|,
|z - mean| and the Mahalanobis radius with their references).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import latentscope as ls
from latentscope.analysis import BallRadius, CubeRadius, GaussianRadius, RadialDistribution, match_cube_halfwidth
from latentscope.analysis.figures import plot_radial, save_figure


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Radial distributions against the series' generators.")
    p.add_argument("store", type=Path, help="z-point store (HDF5)")
    p.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem, help="output folder")
    p.add_argument("--halfwidths", default="1,1.5,2", help="cube half-widths b to compare, comma-separated")
    p.add_argument("--seed", type=int, default=0, help="seed of the Monte-Carlo check of the cube formula")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with ls.open_store(args.store) as store:
        rad = RadialDistribution().fit(store)  # pass 1: mean, covariance; pass 2: the radii
    N, s = rad.z_dim_, rad.stats_["origin"]
    b_best = rad.cube_halfwidth_  # = match_cube_halfwidth(rad): 1-Wasserstein match of the lengths
    b_mean = match_cube_halfwidth(rad, method="mean")
    print(f"{rad.n_samples_seen_:,} z-points, N = z_dim = {N}")
    print(f"data |z|: mean {s['mean']:.3f}, std {s['std']:.3f}, 1 % .. 99 % "
          f"{s['quantiles']['0.01']:.3f} .. {s['quantiles']['0.99']:.3f}")
    print(f"best-matching cube half-width b = {b_best:.3f} (Wasserstein), {b_mean:.3f} (same mean length)")

    refs = {f"cube b = {b:g}": CubeRadius(b, N) for b in [float(v) for v in args.halfwidths.split(",")]}
    refs[f"cube b = {b_best:.3g} (match)"] = CubeRadius(b_best, N)
    refs["N(0, I)"] = GaussianRadius(1.0, N)
    refs["ball, same mean"] = BallRadius(s["mean"] * (N + 1) / N, N)
    print(f"\n{'generator':<24} {'mean |z|':>9} {'std':>7} {'formula':>16}  P(|z| in data's 1-99 %)")
    lo, hi = s["quantiles"]["0.01"], s["quantiles"]["0.99"]
    for name, ref in refs.items():
        if isinstance(ref, CubeRadius):
            formula = f"{ref.approx_mean:.3f} +- {ref.approx_std:.3f}"  # b sqrt(N/3) +- b/sqrt(15)
        elif isinstance(ref, GaussianRadius):
            formula = f"{np.sqrt(N - 0.5):.3f} +- {np.sqrt(0.5):.3f}"
        else:
            formula = f"R0 N/(N+1) = {ref.mean():.3f}"
        inside = float(ref.cdf(hi) - ref.cdf(lo))
        print(f"{name:<24} {ref.mean():>9.3f} {ref.std():>7.3f} {formula:>16}  {inside:.3f}")
    mc = CubeRadius(1.0, N).sample(20_000, rng=args.seed)
    print(f"Monte Carlo, cube b = 1: {mc.mean():.3f} +- {mc.std():.3f} (20,000 vectors)")

    # Where the origin lies: its Mahalanobis radius under the data's mean and covariance,
    # against the data's own radii (a true normal: chi with rank degrees of freedom).
    m = rad.stats_["mahalanobis"]
    print(f"\norigin: |mean| = {rad.origin_distance_:.3f}, Mahalanobis radius {rad.origin_mahalanobis_:.3f} "
          f"(data: median {m['quantiles']['0.5']:.3f}, 99 % {m['quantiles']['0.99']:.3f}; rank {rad.rank_})")
    print(f"points closer to the mean than the origin: {rad.fraction_closer_than_origin_:.1%} "
          f"(a true normal: {rad.chi_fraction_below_origin_:.1%}); "
          f"in Euclidean distance: {rad.fraction_closer_than_origin_euclidean_:.1%}")

    # One axis: the data's |z| and the pdf of every reference.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.subplots()
    e, c = rad.hist_edges_["origin"], rad.hist_counts_["origin"]
    dens = c / c.sum() / np.diff(e)
    ax.stairs(dens, e, fill=True, color="0.6", alpha=0.7, label=f"data |z| ({rad.n_samples_seen_:,} points)")
    x_lo = max(0.0, min(e[0], min(r.mean() - 5 * r.std() for r in refs.values())))
    x = np.linspace(x_lo, max(e[-1], max(r.mean() + 5 * r.std() for r in refs.values())), 2000)
    for k, (name, ref) in enumerate(refs.items()):
        ax.plot(x, ref.pdf(x), color=f"C{k}", lw=1.3, ls="--" if "match" in name else "-", label=name)
    ax.set_ylim(0, 1.3 * max(dens.max(), max(r.pdf(x).max() for r in refs.values() if not isinstance(r, BallRadius))))
    ax.set_xlabel("length |z|")
    ax.set_ylabel("density")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"Vector lengths in N = {N} dimensions: the data and the series' generators")
    fig.savefig(args.out / "radii_vs_generators.png", dpi=130)
    print("\nwrote", args.out / "radii_vs_generators.png")
    print("wrote", save_figure(plot_radial(rad), args.out / "radial.png"))


if __name__ == "__main__":
    main()
