"""The analyses of the blog series as estimator-like classes (``fit`` returns self)."""

from ._pca import PCAFrame

__all__ = ["PCAFrame"]
