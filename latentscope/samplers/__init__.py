"""Generators of z-points from regions and fitted distributions, and where they land.

Every sampler has ``sample(n, rng) -> float32 array (n, z_dim)``; samplers that need
data are fitted first with ``fit(store)``. Build them by name (the CLI's ``--region``
values) with :func:`make_sampler`; :func:`all_samplers` lists them:

=============  =================================================================
``cube``       components iid uniform in [-b, b] about the origin (or a centre)
``ball``       uniform in a ball
``shell``      uniform direction, radius from a normal or uniform law
``normal``     N(0, s^2 I)
``box``        iid uniform in the data's per-component ranges
``gauss``      independent N(mean_k, sd_k^2) per component
``mvn``        the fitted multivariate normal (full or robust core covariance)
``pca-box``    uniform in the PCA-aligned bounding box (the "PCA fragment")
``pca-gauss``  Gaussian in PCA coordinates, truncated to the PCA box
``ellipse``    PCA coordinates restricted by 2-D confidence ellipses (series X)
``gmm``        ex-post Gaussian mixture (RAE paper)
``kde``        smoothed bootstrap of the z-points (bandwidth chosen not to memorise)
``path``       segments in coordinate planes or along PCs, interpolations, grids
=============  =================================================================

Other distributions add samplers through the ``latentscope.samplers`` entry-point
group (:func:`sampler_plugins`; the keras-ae plugin ships ``flow`` and ``diffusion``).
:func:`landing_report` measures where samples land relative to the data.
"""

from ._base import Sampler, all_samplers, load_sampler, make_sampler, rejection_sample, sampler_from_dict
from ._fitted import BoxSampler, GaussSampler, MVNSampler
from ._gmm import GMMSampler
from ._kde import KDESampler
from ._landing import LandingReference, LandingReport, landing_report
from ._path import PathSampler
from ._pca import EllipseSampler, PCABoxSampler, PCAGaussSampler, truncated_normal
from ._plugins import refresh_sampler_plugins, sampler_plugins
from ._simple import BallSampler, CubeSampler, NormalSampler, ShellSampler

__all__ = [
    "Sampler", "make_sampler", "all_samplers", "load_sampler", "sampler_from_dict", "rejection_sample",
    "CubeSampler", "BallSampler", "ShellSampler", "NormalSampler",
    "BoxSampler", "GaussSampler", "MVNSampler",
    "PCABoxSampler", "PCAGaussSampler", "EllipseSampler", "truncated_normal",
    "GMMSampler", "KDESampler", "PathSampler",
    "LandingReport", "LandingReference", "landing_report",
    "sampler_plugins", "refresh_sampler_plugins",
]
