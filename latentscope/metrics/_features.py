"""Weight-free feature spaces for generation metrics: pixel PCA and the AE's own latent space."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .._estimator import Estimator
from .._persist import load_state, save_state
from .._validation import SeedLike, check_is_fitted, check_positive, check_rng
from ..exceptions import InvalidParameterError, NonFiniteError

__all__ = ["PixelPCAFeatures", "latent_features", "reencode", "iter_image_batches"]

_ROWS_PER_BLOCK = 1024


def iter_image_batches(images: Any, *, owner: str, batch_size: int = _ROWS_PER_BLOCK) -> Iterator[np.ndarray]:
    """Yield uint8 image arrays (n, h, w, c) from an array, an image source or an iterable.

    Accepted: a uint8 array of shape (n, h, w, c); an
    :class:`~latentscope.data.ImageSource` (anything with ``iter_batches``); an iterable
    of uint8 arrays or :class:`~latentscope.data.ImageBatch` objects.
    """
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            batches: Any = (images[lo : lo + batch_size] for lo in range(0, images.shape[0], batch_size))
        else:
            batches = [images]
    elif hasattr(images, "iter_batches"):
        batches = (b.images for b in images.iter_batches(batch_size))
    else:
        try:
            batches = iter(images)
        except TypeError:
            raise InvalidParameterError(
                f"{owner}: images must be a uint8 array (n, h, w, c), an image source or an iterable of batches; "
                f"got {type(images).__name__}."
            ) from None
    for b in batches:
        arr = np.asarray(getattr(b, "images", b))
        if arr.ndim != 4 or arr.dtype != np.uint8:
            raise InvalidParameterError(
                f"{owner}: images must be uint8 arrays of shape (n, h, w, c); got dtype {arr.dtype} and shape {arr.shape}."
            )
        yield arr


class PixelPCAFeatures(Estimator):
    """Principal components of flattened pixels, fitted on real images: a weight-free feature map.

    Images are flattened and scaled to [0, 1]; ``transform`` returns their coordinates
    on the leading principal axes of the fitted (real) images. No whitening, so
    Fréchet distances in this space are in units of pixel intensity squared.

    Parameters
    ----------
    n_components : int, default=64
    max_images : int, default=5000
        Images used for fitting: the first ``max_images`` of the input. The fit holds
        them as float32 (5000 CelebA images at 96x96x3: 0.55 GB).
    svd_solver : {"auto", "full", "randomized"}, default="auto"
        "full": exact SVD of the (centred) fitting images; "randomized": Halko et al.'s
        randomized SVD (scikit-learn), much faster for many large images; "auto" is
        "full" when ``min(n_images, n_pixels) <= 2000``, else "randomized".
    rng : None, int, SeedSequence or Generator
        Seeds the randomized SVD.

    Attributes
    ----------
    mean_ : ndarray of shape (n_pixels,)
    components_ : ndarray of shape (n_components, n_pixels)
        Orthonormal axes as rows, by decreasing variance.
    explained_variance_ : ndarray of shape (n_components,)
    image_shape_ : tuple of int
    n_images_seen_ : int
    exact_ : bool
        True when the full SVD was used.

    Examples
    --------
    >>> import numpy as np
    >>> from latentscope.metrics import PixelPCAFeatures
    >>> imgs = np.random.default_rng(0).integers(0, 256, size=(50, 8, 8, 3), dtype=np.uint8)
    >>> PixelPCAFeatures(n_components=4).fit(imgs).transform(imgs).shape
    (50, 4)
    """

    _EXACT_MAX = 2000

    def __init__(self, n_components: int = 64, *, max_images: int = 5000, svd_solver: str = "auto",
                 rng: SeedLike = None) -> None:
        self.n_components = n_components
        self.max_images = max_images
        self.svd_solver = svd_solver
        self.rng = rng

    def fit(self, images: Any) -> "PixelPCAFeatures":
        """Fit the axes on real images (array, image source or iterable of batches); returns self."""
        owner = "PixelPCAFeatures"
        check_positive(self.n_components, "n_components", owner=owner, integer=True)
        check_positive(self.max_images, "max_images", owner=owner, integer=True)
        if self.svd_solver not in ("auto", "full", "randomized"):
            raise InvalidParameterError(f"{owner}: svd_solver must be 'auto', 'full' or 'randomized'; got {self.svd_solver!r}.")
        rows, shape, n = [], None, 0
        for batch in iter_image_batches(images, owner=owner):
            if shape is None:
                shape = batch.shape[1:]
            elif batch.shape[1:] != shape:
                raise InvalidParameterError(f"{owner}: all images must have shape {shape}; got {batch.shape[1:]}.")
            take = min(batch.shape[0], self.max_images - n)
            rows.append(batch[:take].reshape(take, -1))
            n += take
            if n >= self.max_images:
                break
        if shape is None or n < 2:
            raise InvalidParameterError(f"{owner}: at least 2 images are needed to fit; got {n}.")
        n_pix = int(np.prod(shape))
        k = int(self.n_components)
        if k > min(n - 1, n_pix):
            raise InvalidParameterError(
                f"{owner}: n_components must be <= min(n_images - 1, n_pixels) = {min(n - 1, n_pix)}; got {k}."
            )
        X = np.empty((n, n_pix), dtype=np.float32)
        lo = 0
        for r in rows:
            np.multiply(r, np.float32(1 / 255), out=X[lo : lo + r.shape[0]], casting="unsafe")
            lo += r.shape[0]
        del rows
        mean = X.mean(axis=0, dtype=np.float64)
        X -= mean.astype(np.float32)
        exact = self.svd_solver == "full" or (self.svd_solver == "auto" and min(n, n_pix) <= self._EXACT_MAX)
        if exact:
            _, s, vt = np.linalg.svd(X.astype(np.float64), full_matrices=False)
            s, vt = s[:k], vt[:k]
        else:
            from sklearn.utils.extmath import randomized_svd

            seed = int(check_rng(self.rng).integers(2**31 - 1))
            _, s, vt = randomized_svd(X, k, n_oversamples=max(10, k // 2), random_state=seed)
            vt = vt.astype(np.float64)
        signs = np.sign(vt[np.arange(k), np.argmax(np.abs(vt), axis=1)])
        vt *= np.where(signs == 0, 1.0, signs)[:, None]
        self.mean_ = mean
        self.components_ = vt
        self.explained_variance_ = (s.astype(np.float64) ** 2) / (n - 1)
        self.image_shape_ = tuple(int(d) for d in shape)
        self.n_images_seen_ = int(n)
        self.exact_ = bool(exact)
        return self

    @property
    def n_features_out(self) -> int:
        """Number of features ``transform`` returns."""
        check_is_fitted(self, "components_")
        return self.components_.shape[0]

    def transform(self, images: Any) -> np.ndarray:
        """Coordinates of images on the fitted axes: ndarray of shape (n, n_components), float64."""
        check_is_fitted(self, "components_")
        out = []
        comps = self.components_.astype(np.float32)
        mean = self.mean_.astype(np.float32)
        for batch in iter_image_batches(images, owner="PixelPCAFeatures.transform"):
            if batch.shape[1:] != self.image_shape_:
                raise InvalidParameterError(
                    f"PixelPCAFeatures.transform: images must have shape {self.image_shape_} (as fitted); got {batch.shape[1:]}."
                )
            x = batch.reshape(batch.shape[0], -1).astype(np.float32) * np.float32(1 / 255)
            x -= mean
            out.append((x @ comps.T).astype(np.float64))
        if not out:
            return np.empty((0, self.components_.shape[0]))
        return np.concatenate(out, axis=0)

    def fit_transform(self, images: np.ndarray) -> np.ndarray:
        """``fit(images).transform(images)`` for an in-memory array."""
        return self.fit(images).transform(images)

    def save(self, path: str | Path) -> None:
        """Save to ``path.json`` and ``path.h5``."""
        check_is_fitted(self, "components_")
        save_state(
            path, kind="PixelPCAFeatures",
            params={k: v for k, v in self.get_params().items() if k != "rng"},  # a Generator is no JSON value
            scalars={"image_shape": list(self.image_shape_), "n_images_seen": self.n_images_seen_, "exact": self.exact_},
            arrays={"mean": self.mean_, "components": self.components_, "explained_variance": self.explained_variance_},
        )

    @classmethod
    def load(cls, path: str | Path) -> "PixelPCAFeatures":
        """Load a feature map written by :meth:`save`."""
        state = load_state(path, "PixelPCAFeatures")
        scalars, arrays = state.scalars, state.arrays
        self = cls(**{k: v for k, v in state.params.items() if k in cls._param_names()})
        self.mean_, self.components_ = arrays["mean"], arrays["components"]
        self.explained_variance_ = arrays["explained_variance"]
        self.image_shape_ = tuple(int(d) for d in scalars["image_shape"])
        self.n_images_seen_ = int(scalars["n_images_seen"])
        self.exact_ = bool(scalars["exact"])
        return self


def _check_codes(z: Any, owner: str) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 2:
        raise InvalidParameterError(f"{owner}: the backend must return 2-D codes (n, z_dim); got shape {z.shape}.")
    if z.size and not np.isfinite(z).all():
        raise NonFiniteError(f"{owner}: the backend returned non-finite codes.")
    return z


def latent_features(backend: Any, images: Any, *, batch_size: int | None = None) -> np.ndarray:
    """Encode images with a backend: the AE's own latent space as a feature space.

    Parameters
    ----------
    backend : Backend
        Anything with ``encode(uint8 images, batch_size=) -> z``.
    images : uint8 array (n, h, w, c), image source or iterable of batches
    batch_size : int, optional
        Passed to ``backend.encode``; None takes the backend's preference
        (:func:`latentscope.backends.preferred_batch_size`).

    Returns
    -------
    ndarray of shape (n, z_dim)
    """
    from ..backends import preferred_batch_size  # noqa: PLC0415 - the backends layer sits beside

    batch_size = preferred_batch_size(backend, "encode", batch_size, owner="latent_features")
    out = [backend.encode(b, batch_size=batch_size) for b in iter_image_batches(images, owner="latent_features", batch_size=4096)]
    if not out:
        raise InvalidParameterError("latent_features: images is empty.")
    return _check_codes(np.concatenate(out, axis=0), "latent_features")


def reencode(backend: Any, z: Any, *, batch_size: int | None = None) -> np.ndarray:
    """``backend.encode(backend.decode(z))``: where decoded z-points land back in the latent space.

    Comparing these re-encoded codes with the encoded real images measures whether
    the decoded images look like data *to the encoder*; comparing the sampled z
    directly would only measure the sampler's fit to the training codes.

    Parameters
    ----------
    backend : Backend
    z : array-like of shape (n, z_dim)
    batch_size : int, optional
        For ``decode`` and ``encode``; None takes the backend's preference for each.

    Returns
    -------
    ndarray of shape (n, z_dim)
    """
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2:
        raise InvalidParameterError(f"reencode: z must be 2-D (n, z_dim); got shape {z.shape}.")
    if z.shape[0] == 0:
        raise InvalidParameterError("reencode: z is empty.")
    from ..backends import preferred_batch_size  # noqa: PLC0415

    dec = preferred_batch_size(backend, "decode", batch_size, owner="reencode")
    enc = preferred_batch_size(backend, "encode", batch_size, owner="reencode")
    chunk = max(dec, enc, 4096)
    out = [backend.encode(backend.decode(z[lo : lo + chunk], batch_size=dec), batch_size=enc)
           for lo in range(0, z.shape[0], chunk)]
    return _check_codes(np.concatenate(out, axis=0), "reencode")
