"""
Title: Component histograms with fitted Gaussians
Series: "Autoencoders and latent space fragmentation", part II (number distributions
        of latent vector components)
Description: Histogram every latent component over all z-points of a store, overlay
the normal with the same mean and standard deviation, and tabulate skewness, excess
kurtosis and the Kolmogorov-Smirnov (KS) distance to that normal. The series found
each of the 256 components of its CelebA autoencoder close to a Gaussian, with its
own centre and width.

Usage:
    python examples/01_component_histograms.py STORE [--out DIR] [--bins 100]

Writes component_histograms.png (a grid of histograms), component_summary.png
(mean +- std, skewness, kurtosis and KS distance per component) and
components.csv (the full table).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import latentscope as ls
from latentscope.analysis import ComponentStats
from latentscope.analysis.figures import plot_component_histograms, plot_component_summary, save_figure


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Component histograms with fitted Gaussians (series part II).")
    p.add_argument("store", type=Path, help="z-point store (HDF5)")
    p.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem, help="output folder")
    p.add_argument("--bins", type=int, default=100, help="histogram bins per component")
    p.add_argument("--panels", type=int, default=16, help="components shown in the histogram grid")
    p.add_argument("--seed", type=int, default=0,
                   help="accepted for a uniform command line; the analysis is deterministic")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with ls.open_store(args.store) as store:
        stats = ComponentStats(bins=args.bins).fit(store)  # two streaming passes
    n, dim = stats.n_samples_seen_, stats.dim

    # The full table: one row per component.
    table = args.out / "components.csv"
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["component", "mean", "std", "min", "max", "skewness", "excess_kurtosis", "ks_distance"])
        cols = (stats.mean_, stats.std_, stats.min_, stats.max_, stats.skewness_, stats.excess_kurtosis_,
                stats.ks_distance_)
        for k in range(dim):
            w.writerow([k] + [f"{c[k]:.6g}" for c in cols])

    # A short readable table: evenly spaced components plus the least Gaussian one.
    ks = np.nan_to_num(stats.ks_distance_, nan=-1.0)
    worst = int(np.argmax(ks))
    shown = sorted(set(np.linspace(0, dim - 1, min(dim, 8)).round().astype(int).tolist()) | {worst})
    print(f"{n:,} z-points, z_dim {dim}")
    print(f"{'comp':>5} {'mean':>9} {'std':>8} {'skew':>7} {'ex.kurt':>8} {'KS':>7}")
    for k in shown:
        flag = "  <- least Gaussian" if k == worst else ""
        print(f"{k:>5} {stats.mean_[k]:>9.4f} {stats.std_[k]:>8.4f} {stats.skewness_[k]:>7.3f} "
              f"{stats.excess_kurtosis_[k]:>8.3f} {stats.ks_distance_[k]:>7.4f}{flag}")

    # How close to Gaussian, in numbers. The Lilliefors 5 % critical value of the KS
    # distance (normal with estimated mean and std) is about 0.886 / sqrt(n).
    s = stats.summary()
    crit = 0.886 / np.sqrt(n)
    ok = np.isfinite(stats.ks_distance_)
    below = int(np.sum(stats.ks_distance_[ok] < crit))
    print(f"KS distance to the fitted normal: median {s['ks_distance_median']:.4f}, max {s['ks_distance_max']:.4f}; "
          f"{below} of {int(ok.sum())} components below the 5 % Lilliefors value {crit:.4f}")
    print(f"|skewness| median {s['abs_skewness_median']:.3f}, excess kurtosis median {s['excess_kurtosis_median']:.3f} "
          f"(0 and 0 for a Gaussian)")
    print(f"centres range {stats.mean_.min():.3g} .. {stats.mean_.max():.3g}, "
          f"widths (std) {s['std_min']:.3g} .. {s['std_max']:.3g}")

    # The grid: every component when they fit, else evenly spaced ones plus the least Gaussian.
    comps = list(range(dim)) if dim <= args.panels else \
        sorted(set(np.linspace(0, dim - 1, args.panels - 1).round().astype(int).tolist()) | {worst})
    for name, fig in [("component_histograms", plot_component_histograms(stats, comps, max_panels=len(comps))),
                      ("component_summary", plot_component_summary(stats))]:
        print("wrote", save_figure(fig, args.out / f"{name}.png"))
    print("wrote", table)


if __name__ == "__main__":
    main()
