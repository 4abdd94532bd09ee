"""Figures of the analyses: the public entry point.

Every ``plot_*`` function takes a fitted analysis and returns a matplotlib Figure;
:func:`save_figure` writes one as PNG (Agg backend) and closes it. matplotlib is
imported only when a figure is drawn.

Examples
--------
>>> from latentscope.analysis import ComponentStats  # doctest: +SKIP
>>> from latentscope.analysis.figures import plot_component_histograms, save_figure  # doctest: +SKIP
>>> stats = ComponentStats().fit(store)  # doctest: +SKIP
>>> save_figure(plot_component_histograms(stats), "histograms.png")  # doctest: +SKIP
"""

from __future__ import annotations

from ._figures import (
    plot_attribute,
    plot_boxes,
    plot_component_histograms,
    plot_component_summary,
    plot_core,
    plot_correlation_matrix,
    plot_pair_densities,
    plot_radial,
    plot_spectrum,
    save_figure,
)

__all__ = [
    "plot_component_histograms", "plot_component_summary", "plot_correlation_matrix", "plot_pair_densities",
    "plot_radial", "plot_spectrum", "plot_boxes", "plot_core", "plot_attribute", "save_figure",
]
