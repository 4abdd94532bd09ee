"""The figures and ``index.html`` written by :func:`analyze`."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

__all__ = ["write_report"]


def write_report(result: Any, out: Path) -> list[Path]:
    """Draw every figure of ``result`` into ``out/figures`` and write ``out/index.html``."""
    from . import _figures as F

    figdir = out / "figures"
    items: list[tuple[str, str, str]] = []

    def add(name: str, fig: Any, title: str, caption: str) -> None:
        F.save_figure(fig, figdir / f"{name}.png")
        items.append((f"figures/{name}.png", title, caption))

    c, p = result.components, result.pca_components
    add("component_histograms", F.plot_component_histograms(c), "Component histograms",
        "Histograms of raw components (evenly spaced selection) with the Gaussian of the same mean and std; "
        "KS = Kolmogorov-Smirnov distance between the data and that Gaussian.")
    add("component_summary", F.plot_component_summary(c), "Per-component statistics",
        "Mean, std, min/max, skewness, excess kurtosis and the Gaussian-fit distance of every component.")
    add("correlations", F.plot_correlation_matrix(result.correlations), "Correlations",
        "Pearson correlation matrix and the distribution of |r| over all pairs.")
    if result.correlations.pair_density_:
        add("pair_densities", F.plot_pair_densities(result.correlations), "Component pairs",
            "2-D densities of the most correlated (or chosen) pairs with the confidence ellipses of the fitted "
            "bivariate normal and the inclination of their major axes.")
    add("radial", F.plot_radial(result.radial), "Radial distributions",
        "Distance from the origin, from the centre, and the Mahalanobis radius, with the references: uniform cube "
        "of the best-matching half-width, N(0, s²I), uniform ball, and chi for a true multivariate normal.")
    add("pca_spectrum", F.plot_spectrum(result.pca), "PCA spectrum", "Eigenvalues of the covariance, linear and log.")
    add("pca_histograms", F.plot_component_histograms(p), "PCA coordinates",
        "Histograms of the leading principal coordinates with fitted Gaussians.")
    add("pca_summary", F.plot_component_summary(p), "Per-axis statistics in the PCA frame",
        "The same statistics for every principal coordinate.")
    if p.pair_density_:
        add("pca_pairs", F.plot_pair_densities(p), "PCA-axis pairs",
            "2-D densities of pairs of principal coordinates with axis-aligned confidence ellipses.")
    add("boxes", F.plot_boxes(result.boxes, result.quantile_boxes), "Bounding boxes",
        "Widths of the axis-aligned and PCA-aligned bounding boxes (min/max and quantiles).")
    if result.core is not None:
        add("core", F.plot_core(result.core), "Core and outer layers",
            "Eigenvalues of the trimmed core covariance relative to the full covariance, and the asymmetry of the "
            "outer layers along each principal axis of the core.")
    if result.attribute is not None:
        add("attribute", F.plot_attribute(result.attribute), f"Split by {result.attribute.attribute_}",
            "Distributions along the direction between the group means, and the components that differ most.")

    summary = result.summary()
    rows = [("points", summary["n_samples"]), ("z_dim", summary["z_dim"]), ("streaming passes", summary["n_passes"]),
            ("effective dimension (PCA)", summary["pca"]["effective_dimension"]),
            ("axes for 90 % of the variance", summary["pca"]["n_components_90pct"]),
            ("median KS distance, raw components", summary["components"]["ks_distance_median"]),
            ("median KS distance, PCA coordinates", summary["pca_components"]["ks_distance_median"]),
            ("median |r|", summary["correlations"]["abs_r_median"]),
            ("mean |z|", summary["radial"]["radii"]["origin"]["mean"]),
            ("best cube half-width b", summary["radial"]["cube_halfwidth"]),
            ("Mahalanobis radius of the origin", summary["radial"]["origin_mahalanobis"]),
            ("fraction of points closer to the mean than the origin", summary["radial"]["fraction_closer_than_origin"]),
            ("log-volume, PCA box / axis box (min/max)",
             f"{summary['boxes']['log_volume_pca']:.4g} / {summary['boxes']['log_volume_axis']:.4g}")]
    if "quantile_boxes" in summary:
        q = summary["quantile_boxes"]
        rows.append(("fraction inside the quantile PCA box / axis box",
                     f"{q['fraction_inside_pca']:.4g} / {q['fraction_inside_axis']:.4g}"))
    if "core" in summary:
        c = summary["core"]
        rows.append(("core fraction / iterations / converged",
                     f"{c['core_fraction']:.4g} / {c['n_iter']} / {'yes' if c['converged'] else 'NO'}"))
    rows += [("note", n) for n in summary.get("notes", [])]
    from .. import _html as H

    r = summary["radial"]
    key = [("effective dimension (PCA)", summary["pca"]["effective_dimension"]),
           ("axes for 90 % of the variance", summary["pca"]["n_components_90pct"]),
           ("Mahalanobis radius of the origin", r["origin_mahalanobis"]),
           ("fraction of points closer to the mean than the origin", r["fraction_closer_than_origin"]),
           ("median KS distance, PCA coordinates", summary["pca_components"]["ks_distance_median"])]
    figs = "\n".join(
        f"<section><h2>{html.escape(t)}</h2><p>{html.escape(cap)}</p>{H.figure(src, caption=t)}</section>"
        for src, t, cap in items)
    body = (H.key_numbers(key) + "<p>Results as JSON and HDF5 beside this page; headline numbers in "
            "<code>summary.json</code>. Click a figure for its full-size PNG.</p>\n"
            + H.kv_table(rows) + "\n" + figs)
    page = H.page("Latent-space analysis", body)
    (out / "index.html").write_text(page)
    return [out / src for src, _, _ in items] + [out / "index.html"]
