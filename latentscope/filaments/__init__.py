"""Filament detection in high-dimensional point clouds."""
