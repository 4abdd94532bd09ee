"""
Title: Correlations between latent components and their confidence ellipses
Series: "Autoencoders and latent space fragmentation", parts III (correlations of
        latent vector components) and VIII (Pearson matrix, multivariate normal and
        ellipses)
Description: Compute the Pearson correlation matrix of the components, list the most
correlated pairs, and draw the 2-D densities of z_i vs z_j with the confidence
ellipses of the fitted bivariate normal and the inclination of their major axes. In
the series the components of the CelebA autoencoder are strongly correlated: the
projections onto coordinate planes are nested, inclined ellipses, so the cloud is
roughly a multivariate normal, not a product of independent components.

Usage:
    python examples/02_correlations.py STORE [--out DIR] [--n-pairs 4] [--pair 0,1 ...]

Writes correlation_matrix.png (heat map and |r| distribution) and pair_densities.png
(z_i vs z_j densities with the 68 / 95 / 99 % ellipses).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import latentscope as ls
from latentscope.analysis import Correlations
from latentscope.analysis.figures import plot_correlation_matrix, plot_pair_densities, save_figure


def pair(text: str) -> tuple[int, int]:
    i, j = (int(v) for v in text.split(","))
    return i, j


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Correlations and confidence ellipses (series parts III and VIII).")
    p.add_argument("store", type=Path, help="z-point store (HDF5)")
    p.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem, help="output folder")
    p.add_argument("--n-pairs", type=int, default=4, help="most correlated pairs to draw (without --pair)")
    p.add_argument("--pair", type=pair, action="append", help="a pair 'i,j' to draw (repeatable)")
    p.add_argument("--seed", type=int, default=0,
                   help="accepted for a uniform command line; the analysis is deterministic")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with ls.open_store(args.store) as store:
        # pass 1: mean and covariance; pass 2: the 2-D densities of the chosen pairs
        corr = Correlations(pairs=args.pair, n_pairs=args.n_pairs, n_top=10, levels=(0.68, 0.95, 0.99)).fit(store)
    dim = corr.mean_.shape[0]
    print(f"{corr.n_samples_seen_:,} z-points, z_dim {dim}, {dim * (dim - 1) // 2:,} pairs i < j")
    print(f"|r| over pairs: mean {corr.abs_r_mean_:.3f}, median {corr.abs_r_median_:.3f}, max {corr.abs_r_max_:.3f}")
    r = np.abs(corr.correlation_[np.triu_indices(dim, 1)])
    print(f"pairs with |r| >= 0.3: {int(np.sum(r >= 0.3)):,}; with |r| >= 0.5: {int(np.sum(r >= 0.5)):,}")

    print("\nmost correlated pairs")
    print(f"{'i':>4} {'j':>4} {'r':>7}")
    for (i, j), r in zip(corr.top_pairs_, corr.top_r_):
        print(f"{i:>4} {j:>4} {r:>+7.3f}")

    # The fitted bivariate normal of each drawn pair: the major axis of its ellipses
    # is inclined by angle_deg against the z_i axis (0 or +-90 degrees: uncorrelated).
    print("\nconfidence ellipses of the drawn pairs (semi-axes of the 95 % ellipse)")
    print(f"{'pair':>9} {'r':>7} {'angle':>8} {'major':>8} {'minor':>8} {'axis ratio':>10}")
    for (i, j), e in zip(corr.pairs_, corr.ellipses_):
        a, b = e["semi_axes"][list(e["levels"]).index(0.95)]
        ratio = a / b if b > 0 else np.inf
        print(f"{f'({i},{j})':>9} {e['correlation']:>+7.3f} {e['angle_deg']:>7.1f}° {a:>8.3g} {b:>8.3g} "
              f"{ratio:>10.2f}")

    for name, fig in [("correlation_matrix", plot_correlation_matrix(corr)),
                      ("pair_densities", plot_pair_densities(corr))]:
        print("wrote", save_figure(fig, args.out / f"{name}.png"))


if __name__ == "__main__":
    main()
