"""Regions of the latent space: boxes, PCA-aligned (oriented) boxes, balls, ellipsoids.

Regions are frozen dataclasses with ``contains``, ``sample``, ``log_volume`` and a
JSON form (``to_dict`` / :func:`region_from_dict`). Data-driven regions (the
bounding boxes of a store) are built by :mod:`latentscope.analysis`.
"""

from ._base import Region, region_from_dict
from ._extra import PairedEllipses
from ._shapes import Ball, Box, Ellipsoid, OrientedBox

__all__ = ["Region", "Box", "OrientedBox", "Ball", "Ellipsoid", "PairedEllipses", "region_from_dict"]
