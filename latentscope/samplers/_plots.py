"""Figures of the samplers: landing histograms, radial comparisons, image grids.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state) and
written with the Agg canvas; image grids are plain uint8 arrays saved with Pillow.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..data._imageio import save_png  # the one PNG writer (re-exported here)
from ..exceptions import InvalidParameterError

__all__ = ["image_grid", "save_png", "plot_landing", "plot_radial_comparison", "plot_image_grids"]

_DATA_COLOR = "0.55"


def image_grid(images: Any, ncols: int | None = None, *, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile uint8 images (n, h, w, 3) into one uint8 image, row by row.

    Parameters
    ----------
    images : ndarray of shape (n, h, w, 3), uint8
    ncols : int, optional
        Columns (default: ``ceil(sqrt(n))``).
    pad : int, default=2
        Pixels between and around tiles.
    pad_value : int, default=255
        Grey level of the padding (white).
    """
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[-1] != 3 or imgs.shape[0] < 1:
        raise InvalidParameterError(f"image_grid: images must have shape (n, h, w, 3) with n >= 1; got {imgs.shape}.")
    n, h, w, _ = imgs.shape
    cols = int(ncols) if ncols else int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    out = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, 3), pad_value, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y : y + h, x : x + w] = imgs[k]
    return out


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Any, path: str | Path | None) -> None:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)


def _maybe_log(ax: Any, edges: np.ndarray) -> None:
    """Logarithmic x axis with plain tick labels when the edges span more than a decade."""
    if edges[-1] / edges[0] > 10:
        from matplotlib.ticker import LogFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _density(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the points per bin (the bins are shared, so shares compare across sets)."""
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def plot_landing(report: Any, path: str | Path | None = None) -> Any:
    """Two panels: lengths ``|z|`` and Mahalanobis radii of the samples over the data's.

    Returns the :class:`matplotlib.figure.Figure` (saved to ``path`` when given).
    """
    fig = _new_figure(10, 3.8)
    ax1, ax2 = fig.subplots(1, 2)
    label = report.name or "samples"
    for ax, edges, data, samp, xlabel in (
        (ax1, report.radius_edges, report.data_radius_counts, report.radius_counts, "length |z|"),
        (ax2, report.mahalanobis_edges, report.data_mahalanobis_counts, report.mahalanobis_counts,
         "Mahalanobis radius (data mean and covariance)"),
    ):
        ax.stairs(_density(data, edges), edges, fill=True, color=_DATA_COLOR, alpha=0.6, label="data")
        ax.stairs(_density(samp, edges), edges, color="C0", linewidth=1.6, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share per bin")
    _maybe_log(ax2, report.mahalanobis_edges)
    ax2.axvline(math.sqrt(report.z_dim), color="k", linestyle=":", linewidth=1, label=f"sqrt(N) = {math.sqrt(report.z_dim):.1f}")
    ax1.legend(frameon=False, fontsize=8)
    ax2.legend(frameon=False, fontsize=8)
    fig.suptitle(
        f"{label}: n = {report.n_samples}, in-fragment {report.in_fragment_rate:.1%}, "
        f"in PCA box {report.frac_in_pca_box:.1%}, in {report.level:g} ellipsoid {report.frac_in_ellipsoid:.1%}",
        fontsize=10,
    )
    _save(fig, path)
    return fig


def plot_radial_comparison(reports: Sequence[Any], data_radii: np.ndarray, data_mahalanobis: np.ndarray,
                           path: str | Path | None = None, *, bins: int | None = None) -> Any:
    """Radial distributions of several samplers over the data's (lengths and Mahalanobis radii).

    ``bins`` defaults to ``2 sqrt(n_samples)`` clipped to [15, 80].
    """
    if not reports:
        raise InvalidParameterError("plot_radial_comparison: reports must not be empty.")
    if bins is None:
        bins = int(np.clip(2 * np.sqrt(min(r.n_samples for r in reports)), 15, 80))
    fig = _new_figure(11, 4.2)
    ax1, ax2 = fig.subplots(1, 2)
    dr = np.asarray(data_radii, dtype=np.float64)
    dm = np.asarray(data_mahalanobis, dtype=np.float64)
    allr = np.concatenate([dr] + [r.radii for r in reports])
    allm = np.concatenate([dm] + [r.mahalanobis for r in reports])
    allm = allm[allm > 0]
    r_edges = np.linspace(allr.min(), allr.max() if allr.max() > allr.min() else allr.min() + 1, bins + 1)
    m_edges = np.geomspace(allm.min(), allm.max() if allm.max() > allm.min() else allm.min() * 2, bins + 1)
    for ax, edges, data, attr in ((ax1, r_edges, dr, "radii"), (ax2, m_edges, dm, "mahalanobis")):
        ax.stairs(_density(np.histogram(data, edges)[0], edges), edges, fill=True, color=_DATA_COLOR, alpha=0.6, label="data")
        for k, rep in enumerate(reports):
            vals = getattr(rep, attr)
            ax.stairs(_density(np.histogram(vals, edges)[0], edges), edges, color=f"C{k % 10}", linewidth=1.4,
                      label=f"{rep.name} ({rep.in_fragment_rate:.0%} in)")
        ax.set_ylabel("share per bin")
    ax1.set_xlabel("length |z|")
    ax2.set_xlabel("Mahalanobis radius (data mean and covariance)")
    _maybe_log(ax2, m_edges)
    ax2.legend(frameon=False, fontsize=7, loc="upper right")
    fig.suptitle(f"Radial distributions of {reports[0].n_samples} samples per region over the data "
                 f"({dr.size} z-points, z_dim {reports[0].z_dim})", fontsize=10)
    _save(fig, path)
    return fig


def plot_image_grids(grids: Mapping[str, np.ndarray], path: str | Path | None = None, *,
                     subtitles: Mapping[str, str] | None = None) -> Any:
    """Image grids side by side, one panel per region."""
    if not grids:
        raise InvalidParameterError("plot_image_grids: grids must not be empty.")
    n = len(grids)
    cols = min(n, 4)
    rows = int(math.ceil(n / cols))
    fig = _new_figure(3.2 * cols, 3.5 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (name, grid) in zip(axes, grids.items()):
        ax.imshow(grid, interpolation="nearest")
        sub = (subtitles or {}).get(name, "")
        ax.set_title(f"{name}\n{sub}" if sub else name, fontsize=9)
        ax.set_axis_off()
    for ax in axes[n:]:
        ax.set_axis_off()
    _save(fig, path)
    return fig
