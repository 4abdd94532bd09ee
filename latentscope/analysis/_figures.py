"""Figures of the analyses (matplotlib, imported lazily; every function returns a Figure).

Import this module only when drawing: it imports matplotlib. For files, call
:func:`save_figure` (Agg backend, PNG).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "plot_component_histograms", "plot_component_summary", "plot_correlation_matrix", "plot_pair_densities",
    "plot_radial", "plot_spectrum", "plot_boxes", "plot_core", "plot_attribute", "save_figure",
]

_STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100,
    "savefig.dpi": 150, "axes.grid": False,
}
DATA_COLOR = "#4C72B0"
FIT_COLOR = "#C44E52"
REF_COLORS = {"cube": "#DD8452", "gaussian": "#55A868", "ball": "#8172B3", "chi": "#C44E52"}
LEVEL_STYLES = ("-", "--", ":", "-.")


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            matplotlib.use("Agg", force=False)
        except Exception:  # pragma: no cover - a GUI backend already in use
            pass
    import matplotlib.pyplot as plt

    return plt


def _figure(*args: Any, **kw: Any):
    plt = _plt()
    with plt.rc_context(_STYLE):
        fig = plt.figure(*args, layout="constrained", **kw)
    return fig


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG (150 dpi) and close it."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(_STYLE):
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def _centers(edges: np.ndarray) -> np.ndarray:
    return (edges[:-1] + edges[1:]) / 2


def _axis_name(stats: Any) -> str:
    return "PC" if getattr(stats, "coordinates_", "raw") == "pca" else "z"


def _pick_components(stats: Any, components: Sequence[int] | None, max_panels: int) -> list[int]:
    dim = stats.mean_.shape[0]
    if components is not None:
        return [int(c) for c in components][:max_panels]
    if dim <= max_panels:
        return list(range(dim))
    if getattr(stats, "coordinates_", "raw") == "pca":
        return list(range(max_panels))
    return [int(round(v)) for v in np.linspace(0, dim - 1, max_panels)]


def plot_component_histograms(stats: Any, components: Sequence[int] | None = None, *, ncols: int = 4,
                              max_panels: int = 16, title: str | None = None):
    """Grid of component histograms (density) with the fitted Gaussians and their KS distances."""
    plt = _plt()
    comps = _pick_components(stats, components, max_panels)
    nrows = max(1, -(-len(comps) // ncols))
    with plt.rc_context(_STYLE):
        fig = _figure(figsize=(2.3 * ncols, 1.9 * nrows + 0.4))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        name = _axis_name(stats)
        for ax, k in zip(axes, comps):
            e, c = stats.hist_edges_[k], stats.hist_counts_[k]
            w = np.diff(e)
            dens = c / max(c.sum(), 1) / np.where(w > 0, w, 1)
            ax.stairs(dens, e, fill=True, color=DATA_COLOR, alpha=0.55, label="data")
            if stats.std_[k] > 0:
                x = np.linspace(e[0], e[-1], 300)
                ax.plot(x, stats.gaussian_pdf(k, x), color=FIT_COLOR, lw=1.2, label="Gaussian fit")
            ax.set_title(f"{name} {k}   KS = {stats.ks_distance_[k]:.3f}", fontsize=8.5)
            ax.tick_params(labelsize=7)
            ax.set_yticks([])
        for ax in axes[len(comps):]:
            ax.set_visible(False)
        if len(comps):
            axes[0].legend(loc="upper left", fontsize=7, frameon=False)
        fig.supxlabel("component value" if name == "z" else "coordinate along the principal axis")
        fig.supylabel("density")
        fig.suptitle(title or f"Histograms of {'raw components' if name == 'z' else 'PCA coordinates'} "
                              f"({stats.n_samples_seen_:,} points) with fitted Gaussians")
    return fig


def plot_component_summary(stats: Any, *, title: str | None = None):
    """Mean +- std, skewness and excess kurtosis, and the Gaussian KS distance per component."""
    plt = _plt()
    name = _axis_name(stats)
    k = np.arange(stats.mean_.shape[0])
    with plt.rc_context(_STYLE):
        fig = _figure(figsize=(8.5, 7.0))
        a1, a2, a3 = fig.subplots(3, 1, sharex=True)
        a1.fill_between(k, stats.min_, stats.max_, color=DATA_COLOR, alpha=0.12, lw=0, label="min to max")
        a1.fill_between(k, stats.mean_ - stats.std_, stats.mean_ + stats.std_, color=DATA_COLOR, alpha=0.35, lw=0,
                        label="mean ± std")
        a1.plot(k, stats.mean_, color=DATA_COLOR, lw=1.0, label="mean")
        a1.axhline(0, color="k", lw=0.6, alpha=0.5)
        a1.set_ylabel("value")
        a1.legend(loc="upper right", ncols=3, frameon=False)
        a1.set_title("Location and spread")
        a2.plot(k, stats.skewness_, ".", ms=3, color="#DD8452", label="skewness")
        a2.plot(k, stats.excess_kurtosis_, ".", ms=3, color="#55A868", label="excess kurtosis")
        a2.axhline(0, color="k", lw=0.6, alpha=0.5)
        a2.set_ylabel("moment")
        a2.legend(loc="upper right", ncols=2, frameon=False)
        a2.set_title("Shape (0 for a Gaussian)")
        a3.plot(k, stats.ks_distance_, ".", ms=3, color=FIT_COLOR)
        a3.set_ylabel("KS distance")
        a3.set_ylim(bottom=0)
        a3.set_title("Distance to the fitted Gaussian (Kolmogorov-Smirnov)")
        a3.set_xlabel("principal axis index" if name == "PC" else "component index")
        fig.suptitle(title or f"Per-{'axis' if name == 'PC' else 'component'} statistics "
                              f"({'PCA coordinates' if name == 'PC' else 'raw components'})")
    return fig


def plot_correlation_matrix(corr: Any, *, title: str | None = None):
    """Heat map of the Pearson matrix and the distribution of |r| over pairs."""
    plt = _plt()
    with plt.rc_context(_STYLE):
        fig = _figure(figsize=(10.0, 4.6))
        a1, a2 = fig.subplots(1, 2, width_ratios=[1.15, 1])
        r = np.ma.masked_invalid(corr.correlation_)
        im = a1.imshow(r, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        cb = fig.colorbar(im, ax=a1, shrink=0.85)
        cb.set_label("Pearson r")
        a1.set_xlabel("component j")
        a1.set_ylabel("component i")
        a1.set_title("Correlation matrix")
        e, c = corr.abs_r_edges_, corr.abs_r_counts_
        a2.stairs(c, e, fill=True, color=DATA_COLOR, alpha=0.6)
        a2.axvline(corr.abs_r_median_, color=FIT_COLOR, lw=1.2, ls="--", label=f"median {corr.abs_r_median_:.3f}")
        a2.set_xlabel("|r| over pairs i < j")
        a2.set_ylabel("number of pairs")
        a2.set_xlim(0, 1)
        a2.legend(frameon=False)
        top = ", ".join(f"({i},{j}) {v:+.2f}" for (i, j), v in zip(corr.top_pairs_[:3], corr.top_r_[:3]))
        a2.set_title(f"Distribution of |r| (top: {top})", fontsize=8.5)
        fig.suptitle(title or f"Linear correlations between components ({corr.n_samples_seen_:,} points)")
    return fig


def _ellipse_patches(ax: Any, center: Sequence[float], semi: np.ndarray, angle: float, levels: Sequence[float]) -> None:
    from matplotlib.patches import Ellipse

    for s, (a, b), lv in zip(LEVEL_STYLES, semi, levels):
        ax.add_patch(Ellipse(center, 2 * a, 2 * b, angle=angle, fill=False, color=FIT_COLOR, lw=1.1, ls=s,
                             label=f"p = {lv:g}"))


def plot_pair_densities(source: Any, *, pca: bool | None = None, levels: Sequence[float] = (0.68, 0.95, 0.99),
                        ncols: int = 2, title: str | None = None):
    """2-D densities of coordinate pairs with the fitted bivariate-normal confidence ellipses.

    ``source`` is a fitted :class:`Correlations` (raw pairs: inclined ellipses with
    their angles) or a :class:`ComponentStats` in PCA coordinates (axis-aligned
    ellipses with semi-axes ``k sqrt(lambda)``).
    """
    from ._correlations import chi2_2_radius, confidence_ellipse

    plt = _plt()
    dens = source.pair_density_
    if pca is None:
        pca = getattr(source, "coordinates_", "raw") == "pca"
    pairs = list(dens)
    nrows = max(1, -(-len(pairs) // ncols))
    with plt.rc_context(_STYLE):
        fig = _figure(figsize=(4.0 * ncols, 3.5 * nrows + 0.3))
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        name = "PC" if pca else "z"
        for ax, (i, j) in zip(axes, pairs):
            xe, ye, c = dens[(i, j)]
            masked = np.ma.masked_equal(c.T.astype(float), 0)
            im = ax.imshow(masked, origin="lower", extent=(xe[0], xe[-1], ye[0], ye[-1]), aspect="auto",
                           interpolation="nearest", cmap="Blues", norm=_lognorm(masked))
            if pca:
                var = source.var_
                k = chi2_2_radius(levels)
                semi = k[:, None] * np.sqrt([var[i], var[j]])[None, :]
                _ellipse_patches(ax, (source.mean_[i], source.mean_[j]), semi, 0.0, levels)
                ax.set_title(f"PC {i} vs PC {j} (axis-aligned ellipses)", fontsize=9)
            else:
                e = confidence_ellipse(source.mean_[[i, j]], source.covariance_[np.ix_([i, j], [i, j])], levels)
                _ellipse_patches(ax, e["mean"], e["semi_axes"], e["angle_deg"], levels)
                ax.set_title(f"z{i} vs z{j}: r = {e['correlation']:+.2f}, major axis at {e['angle_deg']:.1f}°",
                             fontsize=9)
            ax.set_xlabel(f"{name} {i}")
            ax.set_ylabel(f"{name} {j}")
            ax.set_xlim(xe[0], xe[-1])
            ax.set_ylim(ye[0], ye[-1])
            cb = fig.colorbar(im, ax=ax, shrink=0.85)
            cb.set_label("points per bin")
        for ax in axes[len(pairs):]:
            ax.set_visible(False)
        if pairs:
            handles, labels = axes[0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False,
                       title="confidence ellipses of the fitted normal")
        fig.suptitle(title or ("2-D densities in the PCA frame with the fitted normal's ellipses" if pca else
                               "2-D densities of component pairs with bivariate-normal confidence ellipses"))
    return fig


def _lognorm(masked: Any):
    from matplotlib.colors import LogNorm

    vmax = float(masked.max()) if masked.count() else 1.0
    return LogNorm(vmin=1, vmax=max(vmax, 1.0 + 1e-9))


def plot_radial(radial: Any, *, title: str | None = None):
    """|z|, |z - mean| and Mahalanobis-radius histograms with their theoretical references."""
    from ._radial import CubeRadius, GaussianRadius

    plt = _plt()
    refs = radial.references_
    dim = radial.z_dim_
    with plt.rc_context(_STYLE):
        fig = _figure(figsize=(12.0, 4.0))
        axes = fig.subplots(1, 3)
        panels = [
            ("origin", "|z| (distance from the origin)", ["cube", "gaussian", "ball"]),
            ("centered", "|z - mean| (distance from the centre)", []),
            ("mahalanobis", "Mahalanobis radius", ["chi"]),
        ]
        for ax, (kind, xlabel, names) in zip(axes, panels):
            e, c = radial.hist_edges_[kind], radial.hist_counts_[kind]
            w = np.diff(e)
            dens = c / max(c.sum(), 1) / np.where(w > 0, w, 1)
            ax.stairs(dens, e, fill=True, color=DATA_COLOR, alpha=0.5, label="data")
            s = radial.stats_[kind]
            lo = max(0.0, min(e[0], s["mean"] - 6 * s["std"]))
            hi = max(e[-1], s["mean"] + 6 * s["std"])
            curves = [(n, refs[n]) for n in names if n in refs]
            if kind == "centered" and s["mean"] > 0:
                ms = s["std"] ** 2 + s["mean"] ** 2
                curves.append(("gaussian", GaussianRadius(float(np.sqrt(ms / dim)), dim)))
            for n, ref in curves:
                lo = min(lo, ref.mean() - 5 * ref.std()) if n != "ball" else lo
                hi = max(hi, ref.mean() + 5 * ref.std()) if n != "ball" else max(hi, ref.radius * 1.02)
            r0 = radial.origin_mahalanobis_
            show_origin = kind == "mahalanobis" and np.isfinite(r0) and r0 <= hi * 1.5
            if show_origin:
                lo, hi = min(lo, 0.95 * r0), max(hi, 1.05 * r0)
            x = np.linspace(max(lo, 0.0), hi, 600)
            ymax = float(dens.max()) if dens.size else 1.0
            for n, ref in curves:
                if n != "ball":  # the ball's radius density is a spike at its rim: let it leave the axes
                    ymax = max(ymax, float(np.nanmax(ref.pdf(x))))
            for n, ref in curves:
                if isinstance(ref, CubeRadius):
                    lab = f"uniform cube, b = {ref.halfwidth:.3g}"
                elif n == "chi":
                    lab = f"chi, {ref.dim} d.o.f. (true MVN)"
                elif n == "gaussian":
                    lab = f"N(0, s²I), s = {ref.sigma:.3g}"
                else:
                    lab = f"uniform ball, R0 = {ref.radius:.3g}"
                ax.plot(x, ref.pdf(x), color=REF_COLORS.get(n, "k"), lw=1.3, label=lab)
            if kind == "origin":
                for b, ls in ((1.0, ":"), (2.0, "--")):
                    cube = CubeRadius(b, dim)
                    ax.axvline(cube.mean(), color=REF_COLORS["cube"], lw=0.8, ls=ls, alpha=0.8,
                               label=f"cube b = {b:g}: mean {cube.mean():.2f}")
            if show_origin:
                ax.axvline(r0, color="k", lw=1.0, ls="--",
                           label=f"origin at {r0:.2f}: {radial.fraction_closer_than_origin_:.1%} of points closer")
            ax.set_xlim(x[0], x[-1])
            ax.set_ylim(0, 1.15 * ymax)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("density")
            ax.legend(frameon=False, fontsize=7, loc="upper right")
            ax.set_title(f"mean {s['mean']:.3g}, std {s['std']:.3g}", fontsize=9)
        fig.suptitle(title or f"Radial distributions in {dim} dimensions ({radial.n_samples_seen_:,} points)")
    return fig


def plot_spectrum(pca: Any, *, title: str | None = None):
    """Eigenvalue spectrum (linear and log) with the cumulative explained variance."""
    plt = _plt()
    ev = pca.explained_variance_
    k = np.arange(ev.size)
    with plt.rc_context(_STYLE):
        fig = _figure(figsize=(10.0, 3.8))
        a1, a2 = fig.subplots(1, 2)
        a1.plot(k, ev, "o-", ms=2.5, lw=1.0, color=DATA_COLOR)
        a1.set_xlabel("principal axis index")
        a1.set_ylabel("eigenvalue (variance)")
        a1.set_title("Linear scale")
        ax2 = a1.twinx()
        ax2.plot(k, np.cumsum(np.nan_to_num(pca.explained_variance_ratio_)), color=FIT_COLOR, lw=1.0)
        ax2.set_ylabel("cumulative explained variance", color=FIT_COLOR)
        ax2.set_ylim(0, 1.02)
        ax2.spines["right"].set_visible(True)
        pos = ev > 0
        a2.semilogy(k[pos], ev[pos], "o-", ms=2.5, lw=1.0, color=DATA_COLOR)
        a2.set_xlabel("principal axis index")
        a2.set_ylabel("eigenvalue (log)")
        a2.set_title(f"Log scale; effective dimension {pca.effective_dimension_:.1f}")
        fig.suptitle(title or "PCA: eigenvalue spectrum of the covariance")
    return fig


def plot_boxes(boxes: Any, quantile_boxes: Any = None, *, title: str | None = None):
    """Widths of the PCA-aligned and axis-aligned bounding boxes along each axis."""
    plt = _plt()
    with plt.rc_context(_STYLE):
        fig = _figure(figsize=(9.0, 3.8))
        ax = fig.subplots()
        k = np.arange(boxes.axis_box_.dim)
        ax.semilogy(k, np.maximum(boxes.pca_box_.frame_box.widths, 1e-300),
                    "-", color=DATA_COLOR, lw=1.2, label=f"PCA box, min/max (log vol {boxes.log_volume_pca_:.1f})")
        ax.semilogy(k, np.maximum(boxes.axis_box_.widths, 1e-300), "-", color="#DD8452", lw=1.0,
                    label=f"axis box, min/max (log vol {boxes.log_volume_axis_:.1f})")
        if quantile_boxes is not None:
            q = quantile_boxes
            lo, hi = q.quantiles_
            ax.semilogy(k, np.maximum(q.pca_box_.hi - q.pca_box_.lo, 1e-300), "--", color=DATA_COLOR, lw=1.0,
                        label=f"PCA box, {lo:.1%}-{hi:.1%} ({q.fraction_inside_pca_:.1%} of points inside)")
            ax.semilogy(k, np.maximum(q.axis_box_.widths, 1e-300), "--", color="#DD8452", lw=0.9,
                        label=f"axis box, {lo:.1%}-{hi:.1%} ({q.fraction_inside_axis_:.1%} inside)")
        ax.set_xlabel("axis index (principal axis for the PCA boxes, component for the axis boxes)")
        ax.set_ylabel("box width")
        ax.legend(frameon=False, fontsize=7.5)
        fig.suptitle(title or "Bounding boxes: the PCA fragment is much thinner than the axis-aligned box")
    return fig


def plot_core(core: Any, *, title: str | None = None):
    """Core vs full covariance (eigenvalue ratios) and the asymmetry of the outer layers."""
    plt = _plt()
    k = np.arange(core.eigenvalue_ratio_.size)
    with plt.rc_context(_STYLE):
        fig = _figure(figsize=(10.0, 3.8))
        a1, a2 = fig.subplots(1, 2)
        a1.plot(k, core.eigenvalue_ratio_, ".", ms=3, color=DATA_COLOR)
        a1.axhline(1.0, color="k", lw=0.7, ls="--")
        a1.set_xlabel("principal axis (by eigenvalue rank)")
        a1.set_ylabel("core / full eigenvalue")
        a1.set_title(f"Core covariance (C-steps): {core.n_iter_} iterations, "
                      f"{'converged' if core.converged_ else 'NOT converged'}, core fraction {core.core_fraction_:.1%}",
                      fontsize=9)
        a2.stairs(np.nan_to_num(core.outer_asymmetry_), np.arange(k.size + 1) - 0.5, fill=True, color=FIT_COLOR,
                  alpha=0.7)
        a2.axhline(0, color="k", lw=0.6)
        a2.set_xlabel("principal axis of the core")
        a2.set_ylabel("sign imbalance (n+ - n-) / n outer", color=FIT_COLOR)
        a3 = a2.twinx()
        a3.plot(k, core.outer_skewness_, ".", ms=2.5, color="k", alpha=0.6)
        a3.set_ylabel("skewness of the outer layer")
        a3.spines["right"].set_visible(True)
        a2.set_title(f"Asymmetry of the outer layers ({core.outer_fraction_:.1%} of points)", fontsize=9)
        fig.suptitle(title or f"Core (trim {core.trim:g}) and outer layers")
    return fig


def plot_attribute(split: Any, *, n_components: int = 8, title: str | None = None):
    """Projections on the direction between the group means, and the most affected components."""
    plt = _plt()
    colors = ["#4C72B0", "#C44E52", "#55A868", "#8172B3", "#DD8452", "#937860"]
    with plt.rc_context(_STYLE):
        fig = _figure(figsize=(11.0, 3.9))
        a1, a2 = fig.subplots(1, 2, width_ratios=[1, 1.2])
        e = split.projection_edges_
        for g, name in enumerate(split.group_names_):
            c = split.projection_counts_[g]
            w = np.diff(e)
            a1.stairs(c / max(c.sum(), 1) / np.where(w > 0, w, 1), e, color=colors[g % len(colors)], lw=1.3,
                      label=f"{name} ({split.group_n_[g]:,})")
        a1.set_xlabel("(z - mean) · direction")
        a1.set_ylabel("density")
        a1.set_title(f"Along the mean difference: separation d' = {split.separation_:.2f}", fontsize=9)
        a1.legend(frameon=False)
        top = np.argsort(-np.nan_to_num(np.abs(split.effect_size_)))[:n_components]
        a2.bar(np.arange(top.size), split.effect_size_[top], color=DATA_COLOR, alpha=0.8)
        a2.set_xticks(np.arange(top.size), [f"z{k}" for k in top])
        a2.axhline(0, color="k", lw=0.6)
        a2.set_ylabel("effect size (Cohen's d)")
        a2.set_title(f"Components most affected by {split.attribute_}", fontsize=9)
        fig.suptitle(title or f"Split by {split.attribute_}: |mean difference| = {split.direction_length_:.3g} "
                              f"({split.direction_mahalanobis_:.2f} in Mahalanobis units)")
    return fig
