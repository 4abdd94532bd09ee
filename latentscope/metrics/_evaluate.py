"""One call that scores a generated image set against a real one in every weight-free space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._validation import SeedLike, check_rng
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES
from ._features import PixelPCAFeatures, latent_features
from ._frechet import frechet_distance
from ._kid import KIDResult, kid
from ._manifold import DensityCoverage, PrecisionRecall, manifold_metrics
from ._memorisation import MemorisationResult, memorisation

__all__ = ["SpaceScores", "SetEvaluation", "evaluate_set", "SPACES"]

#: Names of the feature spaces.
SPACES = ("latent", "pixel-pca")


@dataclass(frozen=True)
class SpaceScores:
    """Distribution distances between the real and generated sets in one feature space.

    Attributes
    ----------
    space : str
        ``"latent"`` (the AE's encoder: real images encoded, generated images
        re-encoded) or ``"pixel-pca"`` (PCA of pixels fitted on real images).
    dim : int
        Feature dimension.
    fd : float
        Fréchet distance.
    kid : KIDResult
    """

    space: str
    dim: int
    fd: float
    kid: KIDResult

    def to_dict(self) -> dict:
        return {"dim": self.dim, "fd": self.fd, "kid_mean": self.kid.mean, "kid_std": self.kid.std,
                "kid_subsets": self.kid.n_subsets, "kid_subset_size": self.kid.subset_size}


@dataclass(frozen=True, eq=False)
class SetEvaluation:
    """Everything :func:`evaluate_set` measures.

    Attributes
    ----------
    n_real, n_fake : int
    scores : dict of str to SpaceScores
        FD and KID per feature space (keys from ``("latent", "pixel-pca")``).
    manifold_space : str
        The space of the kNN metrics and of the memorisation check.
    precision_recall : PrecisionRecall
    density_coverage : DensityCoverage
    memorisation : MemorisationResult or None
    """

    n_real: int
    n_fake: int
    scores: dict
    manifold_space: str
    precision_recall: PrecisionRecall
    density_coverage: DensityCoverage
    memorisation: MemorisationResult | None

    def to_dict(self) -> dict:
        """JSON-ready nested dict of plain floats, ints and strings."""
        pr, dc = self.precision_recall, self.density_coverage
        return {
            "n_real": self.n_real,
            "n_fake": self.n_fake,
            "spaces": {name: s.to_dict() for name, s in self.scores.items()},
            "manifold_space": self.manifold_space,
            "precision": pr.precision, "recall": pr.recall, "k_pr": pr.k,
            "density": dc.density, "coverage": dc.coverage, "k_dc": dc.k,
            "knn_method": pr.method,
            "memorisation": self.memorisation.to_dict() if self.memorisation is not None else None,
        }


def _check_images(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 4 or arr.dtype != np.uint8:
        raise InvalidParameterError(
            f"evaluate_set: {name} must be a uint8 array of shape (n, h, w, c); got dtype {arr.dtype} and shape {arr.shape}."
        )
    if arr.shape[0] < 2:
        raise InvalidParameterError(f"evaluate_set: {name} must hold at least 2 images; got {arr.shape[0]}.")
    return arr


def evaluate_set(
    real_images: Any,
    fake_images: Any,
    *,
    backend: Any = None,
    pixel_pca: PixelPCAFeatures | bool | None = None,
    train: Any = None,
    manifold_space: str | None = None,
    k_pr: int = 3,
    k_dc: int = 5,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    memorisation_quantiles: Sequence[float] | None = (0.01, 0.05),
    knn: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
    batch_size: int | None = None,
    rng: SeedLike = None,
) -> SetEvaluation:
    """Score generated images against real images with weight-free metrics.

    * FD and KID in each feature space: the AE's latent space (real images encoded,
      generated images encoded, which for decoded z-points is decode -> re-encode)
      when a ``backend`` is given, and a pixel-PCA space fitted on the real images.
    * Improved precision/recall (k = ``k_pr``) and density/coverage (k = ``k_dc``) in
      ``manifold_space``: the latent space when a backend is given, else pixel PCA.
    * A memorisation check in the same space, against ``train`` (default: the real set).

    Parameters
    ----------
    real_images, fake_images : uint8 ndarray of shape (n, h, w, c)
    backend : Backend, optional
        Encodes both sets; without one only the pixel-PCA space is used.
    pixel_pca : PixelPCAFeatures, bool or None, default=None
        A fitted feature map to reuse; an unfitted one (or None) is fitted on
        ``real_images`` (None: ``n_components=min(64, n_real - 1, n_pixels)``);
        False skips the pixel space (a backend is then required).
    train : ZStore or array-like of shape (n_train, dim), optional
        Training features in ``manifold_space`` for the memorisation check (e.g. the
        store of encoded training images). Default: the real set's features, which
        is right when the real images are (a sample of) the training images.
    manifold_space : {"latent", "pixel-pca"}, optional
    k_pr, k_dc : int, default=3 and 5
    kid_subsets, kid_subset_size : int, default=100 and 1000
    memorisation_quantiles : sequence of float or None, default=(0.01, 0.05)
        None skips the memorisation check.
    knn : {"auto", "exact", "faiss"}, default="auto"
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Memory budget of one block of distances.
    batch_size : int, optional
        Encoder batch size; None takes the backend's preference.
    rng : None, int, SeedSequence or Generator
        Drives the KID subsets, the randomized pixel PCA and the memorisation sample.

    Returns
    -------
    SetEvaluation
    """
    real = _check_images(real_images, "real_images")
    fake = _check_images(fake_images, "fake_images")
    if real.shape[1:] != fake.shape[1:]:
        raise InvalidParameterError(
            f"evaluate_set: real and fake images must have the same shape; got {real.shape[1:]} and {fake.shape[1:]}."
        )
    if pixel_pca is False and backend is None:
        raise InvalidParameterError("evaluate_set: with pixel_pca=False a backend is required; there is no feature space left.")
    space = manifold_space if manifold_space is not None else ("latent" if backend is not None else "pixel-pca")
    if space not in SPACES:
        raise InvalidParameterError(f"evaluate_set: manifold_space must be one of {SPACES}; got {space!r}.")
    if (space == "latent" and backend is None) or (space == "pixel-pca" and pixel_pca is False):
        raise InvalidParameterError(f"evaluate_set: manifold_space={space!r} is not computed with these arguments.")
    # independent streams of the pixel PCA, the KID subsets and the memorisation sample
    pca_rng, kid_rng, mem_rng = check_rng(rng).spawn(3)

    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if backend is not None:
        features["latent"] = (latent_features(backend, real, batch_size=batch_size).astype(np.float64),
                              latent_features(backend, fake, batch_size=batch_size).astype(np.float64))
    if pixel_pca is not False:
        if pixel_pca is None or pixel_pca is True:
            n_pix = int(np.prod(real.shape[1:]))
            pixel_pca = PixelPCAFeatures(n_components=min(64, real.shape[0] - 1, n_pix), rng=pca_rng)
        if getattr(pixel_pca, "components_", None) is None:
            pixel_pca.fit(real)
        features["pixel-pca"] = (pixel_pca.transform(real), pixel_pca.transform(fake))

    scores = {}
    for (name, (fr, ff)), space_rng in zip(features.items(), kid_rng.spawn(len(features))):
        k = kid(fr, ff, n_subsets=kid_subsets, subset_size=kid_subset_size, rng=space_rng)
        scores[name] = SpaceScores(name, int(fr.shape[1]), frechet_distance(fr, ff), k)

    fr, ff = features[space]
    pr, dc = manifold_metrics(fr, ff, k_pr=k_pr, k_dc=k_dc, knn=knn, max_bytes=max_bytes)
    mem = None
    if memorisation_quantiles is not None:
        mem = memorisation(fr if train is None else train, ff, quantiles=memorisation_quantiles,
                           knn=knn, max_bytes=max_bytes, rng=mem_rng)
    return SetEvaluation(real.shape[0], fake.shape[0], scores, space, pr, dc, mem)
