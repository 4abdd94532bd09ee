"""The chart of :func:`~latentscope.metrics.evaluate_regions`: one bar panel per metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..exceptions import InvalidParameterError
from ._region_tables import METRICS, RegionEvaluation

__all__ = ["plot_regions"]

_CHART_METRICS = ("fd_latent", "fd_pixel", "precision", "recall")
_BAR_COLOR, _BEST_COLOR, _REF_COLOR = "#9db4cc", "#1f5f99", "0.75"


def plot_regions(evaluation: RegionEvaluation, path: Any = None, *, metrics: Sequence[str] = _CHART_METRICS) -> Any:
    """Bar chart of the scores per region, one panel per metric, the best bar highlighted.

    FD panels use a logarithmic axis when the values span more than two decades (a
    cube is often 100 times worse than a fitted Gaussian). The reference row is drawn
    in grey and never highlighted.

    Parameters
    ----------
    evaluation : RegionEvaluation
    path : str or Path, optional
        PNG file to write.
    metrics : sequence of str, default=("fd_latent", "fd_pixel", "precision", "recall")

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure  # noqa: PLC0415 - matplotlib loads only to plot

    for m in metrics:
        if m not in METRICS:
            raise InvalidParameterError(f"plot_regions: metrics must be among {', '.join(METRICS)}; got {m!r}.")
    rows = list(evaluation.rows)
    labels = [f"{r.label}*" if r.reference else r.label for r in rows]
    fig = Figure(figsize=(3.2 * len(metrics), 0.9 + 0.32 * len(rows)), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))
    for ax, m in zip(axes, metrics):
        title, goal = METRICS[m]
        vals = np.array([getattr(r, m) for r in rows], dtype=np.float64)
        best = evaluation.best(m)
        colors = [_REF_COLOR if r.reference else (_BEST_COLOR if r.label == best else _BAR_COLOR) for r in rows]
        shown = np.where(np.isfinite(vals), vals, 0.0)
        ax.barh(y, shown, color=colors, edgecolor="none", height=0.7)
        pos = vals[np.isfinite(vals) & (vals > 0)]
        if m.startswith("fd") and pos.size and pos.max() / pos.min() > 100:
            ax.set_xscale("log")
        for yi, v in zip(y, vals):
            if np.isfinite(v):
                text = (f" {v:.0f}" if abs(v) >= 1000 else f" {v:.3g}") if m.startswith(("fd", "kid")) else f" {v:.2f}"
                ax.text(v if v > 0 else 0, yi, text, va="center", ha="left", fontsize=7)
        if m in ("precision", "recall", "coverage"):
            ax.set_xlim(0, 1.15)
        arrow = {"min": "lower is better", "max": "higher is better", "one": "1 is best", "zero": "0 is best"}[goal]
        ax.set_title(f"{title}\n({arrow})", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    where = evaluation.real_spec if evaluation.real_kind == "images" else "decoded store z-points"
    fig.suptitle(f"n = {rows[0].n if rows else 0} per region vs {evaluation.n_real} real ({where}); "
                 f"best in dark blue" + ("; * reference" if any(r.reference for r in rows) else ""), fontsize=9)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig
