"""Figures of detected filaments: PC-plane projections, statistics, decoded strips.

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state) and
written with the Agg canvas; image strips are uint8 arrays saved with Pillow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._validation import check_is_fitted
from ..data._imageio import save_png
from ..exceptions import InvalidParameterError

__all__ = ["plot_filaments", "plot_statistics", "images_along", "filament_strip", "decoded_strips"]

_BULK_CMAP = "Greys"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colors(n: int) -> list:
    from matplotlib import colormaps  # noqa: PLC0415

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_filaments(detector: Any, Z: np.ndarray, path: str | Path | None = None, *, max_filaments: int = 20,
                   bins: int = 200) -> Any:
    """Filaments projected on the leading principal-component planes over the bulk.

    Panels PC1-PC2, PC3-PC4, PC5-PC6 (as many as ``z_dim`` allows): the bulk as a
    log-scaled 2-D histogram of all points, each filament's members as coloured dots
    and its spine as a line, numbered at its start.

    Parameters
    ----------
    detector : FilamentDetector
        Fitted.
    Z : ndarray of shape (n_points, z_dim)
        The fitted points (non-finite rows are ignored).
    path : str or Path, optional
        PNG file to write.
    max_filaments : int, default=20
        Largest number of filaments drawn (the biggest ones).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import LogNorm  # noqa: PLC0415

    check_is_fitted(detector, "filaments_")
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[1] != detector.z_dim_:
        raise InvalidParameterError(f"plot_filaments: Z must have shape (n, {detector.z_dim_}); got {Z.shape}.")
    W = detector.pca_components_
    pairs = [(i, i + 1) for i in range(0, W.shape[0] - 1, 2)] or [(0, 0)]
    finite = np.isfinite(Z).all(axis=1)
    proj = (Z[finite] - detector.pca_mean_) @ W.T
    fils = detector.filaments_[:max_filaments]
    colors = _colors(len(fils))
    fig = _figure(4.2 * len(pairs) + 0.6, 4.4)
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    for ax, (a, b) in zip(axes, pairs):
        x, y = proj[:, a], proj[:, b]
        ax.hist2d(x, y, bins=bins, cmap=_BULK_CMAP, norm=LogNorm(), rasterized=True)
        for f, c in zip(fils, colors):
            p = (Z[f.members] - detector.pca_mean_) @ W.T
            ax.scatter(p[:, a], p[:, b], s=2, color=c, alpha=0.6, linewidths=0, rasterized=True)
            sp = (f.spine - detector.pca_mean_) @ W.T
            ax.plot(sp[:, a], sp[:, b], color=c, lw=1.2)
            ax.annotate(str(f.id), (sp[0, a], sp[0, b]), fontsize=8, color=c, fontweight="bold")
        ax.set_xlabel(f"PC{a + 1}")
        ax.set_ylabel(f"PC{b + 1}")
        ax.set_aspect("equal", adjustable="datalim")
    title = f"{len(detector.filaments_)} filaments among {detector.n_points_:,} points"
    if len(detector.filaments_) > len(fils):
        title += f" (the {len(fils)} largest drawn)"
    fig.suptitle(title)
    return _save(fig, path)


def plot_statistics(detector: Any, path: str | Path | None = None) -> Any:
    """Data against null for the candidate test, and the shape test of the candidates.

    Left: histograms of the local contrast (``contrast_``) of the data and of the
    matched null cloud (``null_contrast_``), the candidates shaded; the data's lower
    tail reaching beyond the null's is what the test flags. Right: structure-scale
    linearity of the candidates whose leading direction is resolved
    (``snr >= min_snr``), with the threshold used. Written to ``path`` when one is
    given; returns the :class:`matplotlib.figure.Figure`.
    """
    check_is_fitted(detector, "filaments_")
    fig = _figure(9.0, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    c = detector.contrast_
    data = c[np.isfinite(c)]
    null = detector.null_contrast_[np.isfinite(detector.null_contrast_)]
    both = np.concatenate([data, null]) if data.size + null.size else np.zeros(1)
    lo, hi = float(both.min()), float(both.max())
    edges = np.linspace(lo, hi + 1e-9 + 1e-9 * abs(hi), 80)
    q = float(np.quantile(null, 0.01)) if null.size else float("nan")
    share = float(np.mean(data <= q)) if data.size else float("nan")
    ax1.hist(null, bins=edges, histtype="step", color="0.4", label="null cloud (matched)")
    ax1.hist(data, bins=edges, histtype="step", color="C0", label=f"data: {100 * share:.2f} % below null 1 %")
    cand = detector.candidates_ & np.isfinite(c)
    if cand.any():
        ax1.hist(c[cand], bins=edges, color="C1", alpha=0.5, label=f"candidates: {int(cand.sum()):,}")
    ax1.axvline(q, color="0.4", ls=":", lw=1)
    ax1.set_yscale("log")
    ax1.set_xlabel("local contrast log((d_k^2 - d_j^2) / (d_K^2 - d_j^2))")
    ax1.set_ylabel("points")
    ax1.set_title(f"k={detector.k}, K={detector.outer_k_}, null jitter h={detector.bandwidth_:.2f}", fontsize=9)
    ax1.legend(fontsize=8)
    snr = detector.structure_snr_
    analysed = np.isfinite(snr)
    resolved = analysed & (snr >= detector.min_snr)
    ax2.hist(detector.structure_linearity_[resolved], bins=np.linspace(0, 1, 41), color="C0", alpha=0.7,
             label=f"resolved (snr >= {detector.min_snr}): {int(resolved.sum()):,}")
    ax2.axvline(detector.min_linearity, color="C3", ls="--", lw=1, label=f"min_linearity {detector.min_linearity}")
    ax2.plot([], [], " ", label=f"unresolved (isotropic): {int((analysed & ~resolved).sum()):,}")
    ax2.set_xlabel("structure-scale linearity of analysed candidates")
    ax2.set_ylabel("points")
    ax2.legend(fontsize=8)
    return _save(fig, path)


def images_along(filament: Any, n_images: int = 10) -> np.ndarray:
    """Row indices of ``n_images`` members evenly spaced from start to end."""
    m = filament.members
    if m.size == 0:
        return m
    pos = np.round(np.linspace(0, m.size - 1, min(int(n_images), m.size))).astype(np.int64)
    return m[pos]


def filament_strip(images: np.ndarray, *, pad: int = 2) -> np.ndarray:
    """Tile uint8 images (n, h, w, 3) into one row with white padding."""
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[-1] != 3 or imgs.shape[0] < 1:
        raise InvalidParameterError(
            f"filament_strip: images must have shape (n, h, w, 3) with n >= 1; got {imgs.shape}."
        )
    n, h, w, _ = imgs.shape
    out = np.full((h + 2 * pad, n * w + (n + 1) * pad, 3), 255, np.uint8)
    for i in range(n):
        x = pad + i * (w + pad)
        out[pad:pad + h, x:x + w] = imgs[i]
    return out


def _save(fig: Any, path: str | Path | None) -> Any:
    """Write ``fig`` to ``path`` when one is given; return the Figure either way."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def decoded_strips(backend: Any, Z: np.ndarray, filaments: Sequence[Any], out_dir: str | Path, *,
                   n_images: int = 10) -> list[Path]:
    """Decode members along each filament with ``backend`` and save one strip per filament."""
    out = []
    for f in filaments:
        rows = images_along(f, n_images)
        if rows.size == 0:
            continue
        imgs = backend.decode(np.asarray(Z[rows], dtype=np.float32))
        out.append(save_png(filament_strip(imgs), Path(out_dir) / f"filament_{f.id:03d}.png"))
    return out
