"""Export a store for viewers: one Parquet file per cloud, with what only latentscope knows per point.

:func:`export_parquet` streams a store (and optionally the sample stores of ``latentscope
sample``) into one Parquet file that Embedding Atlas, latent-scope or deepscatter open:
one row per z-point with its id, the store's columns, ``norm`` (``|z|``), ``mahalanobis``
(the radius in the data's PCA frame), a 2-D layout ``x``, ``y`` (PCA 1 and 2), the ``k``
nearest neighbours in Embedding Atlas's form and, on request, thumbnails and the vector.
:func:`atlas_command` is the command line that opens such a file in Embedding Atlas.
pyarrow is the optional ``parquet`` extra. See ``docs/explore.md``.
"""

from ._parquet import atlas_command, export_parquet

__all__ = ["export_parquet", "atlas_command"]
