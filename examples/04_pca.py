"""
Title: The PCA frame: spectrum, Gaussian principal coordinates and the PCA box
Series: "Autoencoders and latent space fragmentation", part IX (PCA transformation of
        the z-point distribution) and part X (the PCA fragment)
Description: Diagonalise the covariance matrix of the z-points: the principal axes
rotate the cloud into uncorrelated coordinates, each close to a Gaussian, and the
eigenvalue spectrum shows how few axes dominate (the effective dimension). The
PCA-aligned bounding box of the points, the "PCA fragment" the series samples from,
is far smaller than the axis-aligned box around the same points.

Usage:
    python examples/04_pca.py STORE [--out DIR] [--correlation]

Writes spectrum.png, pc_histograms.png (principal coordinates with fitted Gaussians),
pc_pairs.png (PC-pair densities with axis-aligned ellipses) and boxes.png (widths of
the PCA-aligned and axis-aligned boxes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import latentscope as ls
from latentscope.analysis import BoundingBoxes, ComponentStats, PCAFrame
from latentscope.analysis.figures import (plot_boxes, plot_component_histograms, plot_pair_densities, plot_spectrum,
                                          save_figure)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="PCA frame, spectrum and PCA box (series parts IX and X).")
    p.add_argument("store", type=Path, help="z-point store (HDF5)")
    p.add_argument("--out", type=Path, default=Path("examples-out") / Path(__file__).stem, help="output folder")
    p.add_argument("--correlation", action="store_true", help="also report the spectrum of the correlation matrix")
    p.add_argument("--quantile", type=float, default=0.005, help="trim of the quantile boxes at each end")
    p.add_argument("--seed", type=int, default=0,
                   help="accepted for a uniform command line; the analysis is deterministic")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with ls.open_store(args.store) as store:
        pca = PCAFrame().fit(store)  # one pass: mean and covariance, then eigh
        dim = pca.z_dim
        pairs = [p for p in [(0, 1), (1, 2)] if max(p) < dim]
        pcs = ComponentStats(frame=pca, pairs=pairs).fit(store)  # the PCA coordinates, one pass
        box = BoundingBoxes(pca=pca).fit(store)  # min/max boxes
        qbox = BoundingBoxes(pca=pca, quantiles=(args.quantile, 1 - args.quantile)).fit(store)
        corr_pca = PCAFrame(correlation=True).fit(store) if args.correlation else None

    ev, ratio = pca.explained_variance_, pca.explained_variance_ratio_
    cum = np.cumsum(ratio)
    print(f"{pca.n_samples_seen_:,} z-points, z_dim {dim}")
    print(f"effective dimension (participation ratio) {pca.effective_dimension_:.2f}; axes for 90 % of the variance: "
          f"{int(np.searchsorted(cum, 0.9) + 1)}, for 99 %: {int(np.searchsorted(cum, 0.99) + 1)}")
    print(f"\n{'PC':>4} {'eigenvalue':>11} {'share':>7} {'cumul.':>7} {'std':>7} {'skew':>7} {'ex.kurt':>8} {'KS':>7}")
    for k in range(min(dim, 10)):
        print(f"{k:>4} {ev[k]:>11.4g} {ratio[k]:>7.3f} {cum[k]:>7.3f} {pcs.std_[k]:>7.3g} {pcs.skewness_[k]:>7.3f} "
              f"{pcs.excess_kurtosis_[k]:>8.3f} {pcs.ks_distance_[k]:>7.4f}")
    if corr_pca is not None:
        print(f"correlation-matrix spectrum: effective dimension {corr_pca.effective_dimension_:.2f}, "
              f"top eigenvalues {np.round(corr_pca.explained_variance_[:5], 3).tolist()}")
    s = pcs.summary()
    print(f"principal coordinates vs their fitted Gaussians: KS median {s['ks_distance_median']:.4f}, "
          f"max {s['ks_distance_max']:.4f}; |skewness| median {s['abs_skewness_median']:.3f}")

    # The PCA fragment: the bounding box in the principal frame against the axis-aligned one.
    vol_ratio = np.exp(box.log_volume_axis_ - box.log_volume_pca_)
    print(f"\nlog volume of the min/max boxes: axis-aligned {box.log_volume_axis_:.2f}, "
          f"PCA-aligned {box.log_volume_pca_:.2f} (volume ratio axis / PCA = {vol_ratio:.3g})")
    print(f"{args.quantile:g}..{1 - args.quantile:g} quantile boxes: log volumes axis {qbox.log_volume_axis_:.2f}, "
          f"PCA {qbox.log_volume_pca_:.2f}; points inside: axis box {qbox.fraction_inside_axis_:.1%}, "
          f"PCA box {qbox.fraction_inside_pca_:.1%}")
    widths = box.pca_box_.frame_box.widths
    print(f"PCA box widths / std along the first axes: {np.round(widths[:5] / np.sqrt(ev[:5]), 2).tolist()}")

    figures = {
        "spectrum": plot_spectrum(pca),
        "pc_histograms": plot_component_histograms(pcs, max_panels=min(dim, 8)),
        "pc_pairs": plot_pair_densities(pcs),
        "boxes": plot_boxes(box, qbox),
    }
    for name, fig in figures.items():
        print("wrote", save_figure(fig, args.out / f"{name}.png"))


if __name__ == "__main__":
    main()
