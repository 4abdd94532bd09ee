"""The dependency-free ``linear`` backend: a linear autoencoder, i.e. PCA of pixels.

A linear autoencoder with squared error is solved exactly by PCA: the encoder projects
the centred, flattened image (pixels scaled to [0, 1]) onto the top ``z_dim``
principal axes and the decoder maps back. It needs only NumPy, trains in seconds, and
serves as the test, demo and baseline backend of latentscope.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from .._validation import SeedLike, check_positive, check_rng
from .._version import __version__
from ..exceptions import BackendError, DataSourceError, InvalidParameterError
from ._protocol import preferred_batch_size

__all__ = ["LinearBackend"]

_FORMAT_VERSION = 1
_CONFIG = "config.json"
_WEIGHTS = "model.npz"
#: Marks a ``seed=`` that was not given (the deprecated name of ``rng``).
_UNSET: Any = object()


def _rng_of(rng: SeedLike, seed: Any, owner: str) -> np.random.Generator:
    """``rng`` as a Generator; the deprecated ``seed=`` still works (DeprecationWarning)."""
    if seed is not _UNSET:
        warnings.warn(f"{owner}: seed= is deprecated; pass rng= instead.", DeprecationWarning, stacklevel=3)
        rng = seed
    return check_rng(rng)


def _check_int(value: Any, name: str, low: int) -> int:
    return int(check_positive(value, name, owner="LinearBackend", integer=True, minimum=low))


class _Pixels:
    """Streams the source's images as centred float32 rows, caching them as uint8 when they fit."""

    def __init__(self, source: Any, batch_size: int, max_cache_bytes: int, workers: int | None) -> None:
        self.source = source
        self.batch_size = batch_size
        self.workers = workers
        self.dim = int(np.prod(source.image_shape))
        self.cache: np.ndarray | None = None
        self._can_cache = len(source) * self.dim <= max_cache_bytes
        self.n = 0

    def batches(self):
        """Yield uint8 arrays of shape (b, dim); the first pass reads the source."""
        if self.cache is not None:
            for lo in range(0, self.n, self.batch_size):
                yield self.cache[lo : lo + self.batch_size]
            return
        cache = np.empty((len(self.source), self.dim), dtype=np.uint8) if self._can_cache else None
        n = 0
        for batch in self.source.iter_batches(self.batch_size, workers=self.workers):
            flat = batch.images.reshape(len(batch), self.dim)
            if cache is not None:
                cache[n : n + len(batch)] = flat
            n += len(batch)
            if len(batch):
                yield flat
        self.n = n
        if cache is not None:
            self.cache = cache[:n]


def _orthonormal(Y: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of ``Y`` (QR in one BLAS thread).

    LAPACK's blocked QR of a tall, thin matrix makes many small BLAS calls; with
    threads on a busy machine they spin and wait for one another (measured: 0.5 s
    threaded against 1 ms single-threaded for 768 x 22), so the QR runs in one thread.
    """
    from ..stream import single_blas_thread  # noqa: PLC0415 - the one BLAS-thread policy

    with single_blas_thread():
        return np.linalg.qr(Y)[0]


def _fit_pca(pixels: _Pixels, k: int, n_iter: int, rng: np.random.Generator,
             progress: Callable[[int, int], None] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    """Top-``k`` principal axes of the pixel rows by streamed subspace iteration.

    Each pass computes ``Y = C Q`` for the covariance ``C`` of the rows (scaled to
    [0, 1]) without forming ``C``: it accumulates ``X^T (X Q)`` and the column sums of
    the rows shifted by a provisional mean, then corrects for the true mean. The final
    Rayleigh-Ritz step diagonalises ``Q^T C Q``.

    Returns (mean, components (k, dim), explained variance (k,), total variance, n_samples).
    """
    dim = pixels.dim
    Q = _orthonormal(rng.standard_normal((dim, k))).astype(np.float32)
    shift: np.ndarray | None = None
    scale = np.float32(1.0 / 255.0)
    for it in range(n_iter):
        acc = np.zeros((dim, Q.shape[1]), dtype=np.float64)
        total = np.zeros(dim, dtype=np.float64)
        count = 0
        sq = 0.0
        for raw in pixels.batches():
            x = raw.astype(np.float32)
            x *= scale
            if shift is None:
                shift = x.mean(axis=0)
            x -= shift
            acc += x.T @ (x @ Q)
            total += x.sum(axis=0, dtype=np.float64)
            if it == 0:
                sq += float(np.einsum("ij,ij->", x, x, dtype=np.float64))
            count += x.shape[0]
        if it == 0 and count < 2:
            raise DataSourceError(f"LinearBackend: PCA needs at least 2 readable images; the source gave {count}.")
        m = total / count  # mean of the shifted rows
        if it == 0:
            total_var = (sq - count * float(m @ m)) / (count - 1)
        Y = (acc - count * np.outer(m, m @ Q.astype(np.float64))) / (count - 1)
        if progress is not None:
            progress(it + 1, n_iter)
        if it < n_iter - 1:
            Q = _orthonormal(Y).astype(np.float32)
    T = Q.astype(np.float64).T @ Y
    evals, evecs = np.linalg.eigh((T + T.T) / 2)
    order = np.argsort(evals)[::-1]
    comps = (Q.astype(np.float64) @ evecs[:, order]).T
    comps /= np.linalg.norm(comps, axis=1, keepdims=True)
    # a deterministic sign: the largest-magnitude entry of each axis is positive
    signs = np.sign(comps[np.arange(comps.shape[0]), np.argmax(np.abs(comps), axis=1)])
    comps *= np.where(signs == 0, 1.0, signs)[:, None]
    mean = shift.astype(np.float64) + m
    return mean, comps, np.maximum(evals[order], 0.0), total_var, count


class LinearBackend:
    """A linear autoencoder: PCA of the pixels (no dependency beyond NumPy).

    ``encode`` projects the centred, flattened image (pixels scaled to [0, 1]) onto
    ``z_dim`` principal axes; ``decode`` maps z-points back, rescales to [0, 255] and
    clips to uint8. Create one with :meth:`fit` (in memory) or :meth:`train` (fit and
    save), or :meth:`load` a saved one.

    Parameters
    ----------
    mean : ndarray of shape (h * w * 3,)
        Mean image, flattened, in [0, 1].
    components : ndarray of shape (z_dim, h * w * 3)
        Orthonormal principal axes, by decreasing variance.
    image_shape : (int, int, int)
        ``(height, width, 3)``.
    explained_variance : ndarray of shape (z_dim,), optional
        Variance of the training images along each axis.
    n_samples : int, default=0
        Number of training images.
    source : str, default=""
        Spec of the training source (provenance).

    Attributes
    ----------
    z_dim : int
    image_shape : tuple of int
    explained_variance_ratio : ndarray or None
        Share of the total pixel variance along each axis (when known).

    Examples
    --------
    >>> from latentscope.data import SyntheticFaces
    >>> model = LinearBackend.fit(SyntheticFaces(200, image_size=16), z_dim=8)
    >>> z = model.encode(SyntheticFaces(3, image_size=16).read().images)
    >>> z.shape, model.decode(z).shape
    ((3, 8), (3, 16, 16, 3))
    """

    name: ClassVar[str] = "linear"
    description: ClassVar[str] = "Linear autoencoder (PCA of pixels), NumPy only: tests, demos, baselines."

    def __init__(self, mean: Any, components: Any, *, image_shape: Any, explained_variance: Any = None,
                 n_samples: int = 0, source: str = "", total_variance: float | None = None) -> None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or shape[2] != 3 or min(shape) < 1:
            raise InvalidParameterError(f"LinearBackend: image_shape must be (height, width, 3); got {image_shape!r}.")
        dim = shape[0] * shape[1] * 3
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        components = np.asarray(components, dtype=np.float32)
        if mean.shape != (dim,):
            raise InvalidParameterError(f"LinearBackend: mean must have {dim} entries for image_shape {shape}; got {mean.shape}.")
        if components.ndim != 2 or components.shape[1] != dim or components.shape[0] < 1:
            raise InvalidParameterError(f"LinearBackend: components must have shape (z_dim, {dim}); got {components.shape}.")
        self.image_shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        self.mean = mean
        self.components = np.ascontiguousarray(components)
        self.explained_variance = None if explained_variance is None else np.asarray(explained_variance, dtype=np.float64)
        self.total_variance = total_variance
        self.n_samples = int(n_samples)
        self.source = str(source)

    # -- the Backend protocol ------------------------------------------------------------
    @property
    def z_dim(self) -> int:
        return int(self.components.shape[0])

    @property
    def explained_variance_ratio(self) -> np.ndarray | None:
        if self.explained_variance is None or not self.total_variance:
            return None
        return self.explained_variance / self.total_variance

    @classmethod
    def fit(cls, source: Any, *, z_dim: int = 64, image_size: Any = None, batch_size: int = 256, n_iter: int = 6,
            oversample: int = 16, rng: SeedLike = 0, max_cache_bytes: int = 2 << 30, workers: int | None = None,
            progress: bool | Callable[[int, int], None] | None = None, seed: Any = _UNSET) -> "LinearBackend":
        """Fit the PCA on an image source and return the model (nothing is saved).

        Parameters
        ----------
        source : ImageSource or str
            The training images (a spec such as ``"synthetic:2000"`` is opened with
            :func:`latentscope.data.open_source`).
        z_dim : int, default=64
            Latent dimension; limited to ``n_images - 1`` and to the pixel count.
        image_size : int or (height, width), optional
            Resize the source's images to this size (default: the source's size).
        batch_size : int, default=256
            Images read from the source at a time.
        n_iter : int, default=6
            Passes of subspace iteration over the images (each pass reads them once;
            images are kept in memory as uint8 when they fit ``max_cache_bytes``).
        oversample : int, default=16
            Extra axes iterated along with the ``z_dim`` kept, for accuracy.
        rng : int, SeedSequence, Generator or None, default=0
            Random start of the iteration (normalised with
            :func:`latentscope._validation.check_rng`).
        max_cache_bytes : int, default=2 GiB
        workers : int, optional
            Decoder threads of the source.
        progress : bool or callable(done, total), default=None
            True shows a progress bar on stderr; a callable is called after each pass.
        seed : int, Generator or None
            Deprecated name of ``rng`` (DeprecationWarning).
        """
        from ..data import open_source

        z_dim = _check_int(z_dim, "z_dim", 1)
        batch_size = _check_int(batch_size, "batch_size", 1)
        n_iter = _check_int(n_iter, "n_iter", 1)
        oversample = _check_int(oversample, "oversample", 0)
        rng = _rng_of(rng, seed, "LinearBackend.fit")
        if isinstance(source, str) or image_size is not None:
            src = open_source(source, image_size=image_size if image_size is not None else getattr(source, "image_size", (96, 96)))
        else:
            src = source
        shape = tuple(src.image_shape)
        dim = int(np.prod(shape))
        n_items = len(src)
        z_eff = max(1, min(z_dim, n_items - 1, dim))
        k = min(z_eff + oversample, max(n_items - 1, 1), dim)
        pixels = _Pixels(src, batch_size, int(max_cache_bytes), workers)
        if progress is True:
            from tqdm.auto import tqdm

            with tqdm(total=n_iter, desc="linear: PCA passes", unit="pass", file=sys.stderr, leave=False) as bar:
                mean, comps, evar, total, n = _fit_pca(pixels, k, n_iter, rng, lambda done, _: bar.update(done - bar.n))
        else:
            mean, comps, evar, total, n = _fit_pca(pixels, k, n_iter, rng, progress or None)
        z_eff = max(1, min(z_eff, n - 1))
        return cls(mean, comps[:z_eff], image_shape=shape, explained_variance=evar[:z_eff], n_samples=n,
                   source=getattr(src, "spec", str(source)), total_variance=total)

    @classmethod
    def train(cls, source: Any, out_dir: str | Path, *, z_dim: int = 64, image_size: Any = None, batch_size: int = 256,
              n_iter: int = 6, rng: SeedLike = 0, overwrite: bool = False, workers: int | None = None,
              progress: bool | Callable[[int, int], None] | None = None, seed: Any = _UNSET) -> "LinearBackend":
        """Fit the PCA (see :meth:`fit`) and save the model to ``out_dir``.

        ``rng`` seeds the random start of the iteration (``seed=`` is its deprecated
        name); the other parameters are those of :meth:`fit`.

        Raises
        ------
        BackendError
            ``out_dir`` already holds a model and ``overwrite`` is False.
        """
        out = Path(out_dir)
        if (out / _CONFIG).exists() and not overwrite:
            raise BackendError(f"{out}: already holds a model; pass overwrite=True (CLI: --overwrite) to replace it.")
        rng = _rng_of(rng, seed, "LinearBackend.train")
        model = cls.fit(source, z_dim=z_dim, image_size=image_size, batch_size=batch_size, n_iter=n_iter, rng=rng,
                        workers=workers, progress=progress)
        model.save(out)
        return model

    def encode(self, images: Any, *, batch_size: int | None = None) -> np.ndarray:
        """Project uint8 images of shape (n, h, w, 3) to float32 z-points (n, z_dim).

        ``batch_size`` rows at a time (default: :func:`~latentscope.backends.preferred_batch_size`, 256)."""
        images = np.asarray(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise InvalidParameterError(
                f"LinearBackend.encode: images must have shape (n, {', '.join(map(str, self.image_shape))}); got {images.shape}."
            )
        batch_size = preferred_batch_size(self, "encode", batch_size, owner="LinearBackend")
        n = images.shape[0]
        flat = images.reshape(n, -1)
        out = np.empty((n, self.z_dim), dtype=np.float32)
        comps_t = self.components.T
        for lo in range(0, n, batch_size):
            x = flat[lo : lo + batch_size].astype(np.float32)
            x *= np.float32(1 / 255)
            x -= self.mean
            np.matmul(x, comps_t, out=out[lo : lo + batch_size])
        return out

    def decode(self, z: Any, *, batch_size: int | None = None) -> np.ndarray:
        """Map z-points (n, z_dim) back to uint8 images (n, h, w, 3), clipped to [0, 255].

        ``batch_size`` rows at a time (default: :func:`~latentscope.backends.preferred_batch_size`, 256)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise InvalidParameterError(f"LinearBackend.decode: z must have shape (n, {self.z_dim}); got {z.shape}.")
        batch_size = preferred_batch_size(self, "decode", batch_size, owner="LinearBackend")
        out = np.empty((z.shape[0], self.mean.shape[0]), dtype=np.uint8)
        for lo in range(0, z.shape[0], batch_size):
            x = z[lo : lo + batch_size] @ self.components
            x += self.mean
            x *= 255.0
            x += 0.5
            np.clip(x, 0, 255, out=x)
            out[lo : lo + batch_size] = x
        return out.reshape(z.shape[0], *self.image_shape)

    def fingerprint(self) -> str:
        """First 16 hex digits of the SHA-256 of the image shape and the weights."""
        h = hashlib.sha256()
        h.update(json.dumps(list(self.image_shape)).encode())
        h.update(np.ascontiguousarray(self.mean, dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(self.components, dtype="<f4").tobytes())
        return h.hexdigest()[:16]

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Save to a directory: ``model.npz`` (weights) and ``config.json`` (no pickle)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "components": self.components}
        if self.explained_variance is not None:
            arrays["explained_variance"] = self.explained_variance
        tmp = out / (_WEIGHTS + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(out / _WEIGHTS)
        config = {
            "backend": self.name,
            "format_version": _FORMAT_VERSION,
            "z_dim": self.z_dim,
            "image_shape": list(self.image_shape),
            "n_samples": self.n_samples,
            "total_variance": self.total_variance,
            "source": self.source,
            "fingerprint": self.fingerprint(),
            "library_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        (out / _CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "LinearBackend":
        """Load a model saved by :meth:`save`.

        Raises
        ------
        BackendError
            Not a linear model directory, an unsupported format version, or weights
            that do not match the recorded fingerprint.
        """
        root = Path(path)
        cfg_path = root / _CONFIG
        if not cfg_path.is_file() or not (root / _WEIGHTS).is_file():
            raise BackendError(f"{root}: not a linear model directory (expected {_CONFIG} and {_WEIGHTS}).")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BackendError(f"{cfg_path}: unreadable model config ({exc}).") from exc
        if config.get("backend") != cls.name:
            raise BackendError(f"{root}: a model of backend {config.get('backend')!r}, not {cls.name!r}.")
        if config.get("format_version") != _FORMAT_VERSION:
            raise BackendError(f"{root}: linear model format {config.get('format_version')!r} is not supported "
                               f"(supported: {_FORMAT_VERSION}).")
        try:
            with np.load(root / _WEIGHTS, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise BackendError(f"{root / _WEIGHTS}: unreadable weights ({exc}).") from exc
        try:
            model = cls(arrays["mean"], arrays["components"], image_shape=config["image_shape"],
                        explained_variance=arrays.get("explained_variance"), n_samples=config.get("n_samples", 0),
                        source=config.get("source", ""), total_variance=config.get("total_variance"))
        except (KeyError, InvalidParameterError) as exc:
            raise BackendError(f"{root}: inconsistent model files ({exc}).") from exc
        if config.get("fingerprint") and config["fingerprint"] != model.fingerprint():
            raise BackendError(f"{root}: the weights do not match the recorded fingerprint "
                               f"({model.fingerprint()} != {config['fingerprint']}); the model files are damaged.")
        return model

    def __repr__(self) -> str:
        h, w, _ = self.image_shape
        return f"<LinearBackend z_dim={self.z_dim} image={h}x{w} fingerprint={self.fingerprint()}>"
