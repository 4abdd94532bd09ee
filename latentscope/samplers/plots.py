"""Figures of the samplers: the public entry point.

Landing histograms (:func:`plot_landing`), radial comparisons of several samplers
(:func:`plot_radial_comparison`), decoded image grids (:func:`image_grid`,
:func:`plot_image_grids`) and :func:`save_png` for uint8 images. matplotlib is
imported only when a figure is drawn; the figure functions return a
``matplotlib.figure.Figure`` and save it when given a path.
"""

from __future__ import annotations

from ._plots import image_grid, plot_image_grids, plot_landing, plot_radial_comparison, save_png

__all__ = ["image_grid", "save_png", "plot_landing", "plot_radial_comparison", "plot_image_grids"]
