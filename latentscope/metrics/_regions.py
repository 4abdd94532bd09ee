"""Score several samplers ("regions") of one model in one run: the RAE-style generation table.

:func:`evaluate_regions` draws ``n`` z-points from each region, decodes them with the
backend and scores the images against real images with the weight-free metrics of
this package. The real side (images, their features, the kNN radii of the real
set) is computed once and shared by every region, so the regions are scored on
exactly the same footing.
"""

from __future__ import annotations

import time
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .._validation import SeedLike, check_positive
from ..exceptions import BackendError, InvalidParameterError, LatentscopeError, NonFiniteError, SamplerError
from ..neighbors import kth_neighbour_sqdist, nearest_distances, reference_distances, resolve_engine
from ..samplers._spec import DEFAULT_REGION_OPTIONS, build_samplers, non_default_params, parse_region_spec, split_region_list
from ..stream import DEFAULT_MAX_BYTES, ZSource, as_zsource
from ._convfeatures import RandomConvFeatures
from ._features import PixelPCAFeatures
from ._frechet import FeatureStats, frechet_distance
from ._kid import kid
from ._manifold import manifold_metrics
from ._region_plots import plot_regions
from ._region_tables import _MANIFOLD, METRICS, REFERENCE_REGION, RULE_SPACE, SPACES, RegionEvaluation, RegionScores

__all__ = [
    "RegionScores", "RegionEvaluation", "evaluate_regions", "parse_region_spec", "split_region_list",
    "DEFAULT_REGIONS", "DEFAULT_REGION_OPTIONS", "REFERENCE_REGION", "METRICS", "SPACES", "RULE_SPACE", "plot_regions",
]

#: The regions of the issue's comparison (``mvn`` is RAE's one Gaussian, ``gmm`` its 10-component mixture).
DEFAULT_REGIONS = ("cube", "normal", "box", "gauss", "mvn", "pca-box", "ellipse", "gmm")

_PREVIEW = 64
_CHUNK = 2048
_UNSET = object()


def _build_samplers(regions: Sequence[Any] | str, region_options: dict | None) -> list[tuple[str, str, Any]]:
    """(label, registry name, unfitted-or-fitted sampler) for each region given (the one region grammar)."""
    return build_samplers(regions, region_options, reserved={REFERENCE_REGION: "is the reference row; pass reference=True"},
                          owner="evaluate_regions")


def _load_real(real: Any, backend: Any, store: ZSource, n_real: int, rng: np.random.Generator,
               batch_size: int) -> tuple[np.ndarray, str, str]:
    """The real images (uint8, backend image shape), their kind and where they came from."""
    from ..data import ImageSource, open_source

    shape = tuple(int(d) for d in backend.image_shape)
    if real is None:
        spec = store.store.provenance.get("source") if store.store is not None else None
        if spec and not str(spec).startswith("sampler:"):
            try:
                real = open_source(str(spec), image_size=shape[:2])
            except (LatentscopeError, OSError, ValueError):
                real = None
        if real is None:
            m = min(n_real, store.n_rows)
            rows = np.sort(rng.choice(store.n_rows, m, replace=False))
            z = np.asarray(store.take(rows), dtype=np.float32)
            return _decode_all(backend, z, batch_size), "decoded-store", "store"
    if isinstance(real, (str,)) or hasattr(real, "__fspath__"):
        spec_text = str(real)
        real = open_source(real, image_size=shape[:2])
    if isinstance(real, ImageSource):
        if tuple(real.image_shape) != shape:
            real = real.with_image_size(shape[:2])
        m = min(n_real, len(real))
        if m < 2:
            raise InvalidParameterError(f"evaluate_regions: the real image source holds {len(real)} images; at least 2 are needed.")
        images = real.read(0, m).images
        spec_text = getattr(real, "spec", None) or type(real).__name__
        return np.ascontiguousarray(images), "images", str(spec_text)
    arr = np.asarray(real)
    if arr.ndim != 4 or arr.dtype != np.uint8:
        raise InvalidParameterError(
            "evaluate_regions: real must be an image source, a source spec ('synthetic:N', 'celeba:PATH', "
            f"'folder:PATH'), a uint8 array (n, h, w, c) or None; got {type(real).__name__} "
            f"with shape {getattr(arr, 'shape', None)} and dtype {getattr(arr, 'dtype', None)}."
        )
    if tuple(arr.shape[1:]) != shape:
        raise InvalidParameterError(f"evaluate_regions: real images have shape {tuple(arr.shape[1:])}; the model takes {shape}.")
    return arr[:n_real], "images", "array"


def _decode_all(backend: Any, z: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([backend.decode(z[lo : lo + _CHUNK], batch_size=batch_size)
                           for lo in range(0, z.shape[0], _CHUNK)], axis=0)


def _finite_codes(z: np.ndarray, what: str) -> np.ndarray:
    z = np.asarray(z)
    if z.size and not np.isfinite(z).all():
        raise NonFiniteError(f"evaluate_regions: the backend returned non-finite codes for {what}.")
    return z.astype(np.float64)


def _seed_sequence(rng: SeedLike) -> np.random.SeedSequence:
    """The root of the evaluation's streams (children keyed by role and region label)."""
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if isinstance(rng, np.random.Generator):
        return np.random.SeedSequence(int(rng.integers(2**63 - 1)))
    if rng is not None and (isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or rng < 0):
        raise InvalidParameterError(
            f"evaluate_regions: rng must be None, an integer >= 0, a SeedSequence or a Generator; got {rng!r}."
        )
    return np.random.SeedSequence(None if rng is None else int(rng))


@dataclass
class _RealSide:
    """Everything about the real set that every region reuses."""

    latent: np.ndarray
    latent_stats: FeatureStats
    pixel: np.ndarray | None
    pixel_stats: FeatureStats | None
    pca: PixelPCAFeatures | None
    conv: RandomConvFeatures | None
    conv_stats: FeatureStats | None
    fragment: Any  # LandingReference of the store, or None
    spaces: dict  # suffix -> real features of the space
    sqradii: dict  # suffix -> {k: real k-th neighbour squared radii}
    method: str
    mem_threshold: float
    mem_queries: int
    store: ZSource


def _score(real: _RealSide, z: np.ndarray, backend: Any, *, label: str, region: str, options: dict, reference: bool,
           k_pr: int, k_dc: int, kid_subsets: int, kid_subset_size: int, kid_rng: np.random.Generator,
           manifold_space: str, max_bytes: int, batch_size: int, t0: float) -> tuple[RegionScores, np.ndarray]:
    lat, pix, cnv, preview = [], [], [], None
    sat = 0
    n_pix = 0
    for lo in range(0, z.shape[0], _CHUNK):
        imgs = backend.decode(z[lo : lo + _CHUNK], batch_size=batch_size)
        if preview is None:
            preview = np.array(imgs[:_PREVIEW])
        sat += int(np.count_nonzero((imgs == 0) | (imgs == 255)))
        n_pix += imgs.size
        lat.append(_finite_codes(backend.encode(imgs, batch_size=batch_size), label))
        if real.pca is not None:
            pix.append(real.pca.transform(imgs))
        if real.conv is not None:
            cnv.append(real.conv.transform(imgs))
    f_lat = np.concatenate(lat)
    f_pix = np.concatenate(pix) if pix else None
    f_cnv = np.concatenate(cnv) if cnv else None
    fd_lat = frechet_distance(real.latent_stats, f_lat)
    fd_pix = frechet_distance(real.pixel_stats, f_pix) if f_pix is not None else float("nan")
    fd_cnv = frechet_distance(real.conv_stats, f_cnv) if f_cnv is not None else float("nan")
    nan = float("nan")
    kl = kp = (nan, nan)
    if kid_subsets:
        r = kid(real.latent, f_lat, n_subsets=kid_subsets, subset_size=kid_subset_size, rng=kid_rng)
        kl = (r.mean, r.std)
        if f_pix is not None:
            r = kid(real.pixel, f_pix, n_subsets=kid_subsets, subset_size=kid_subset_size, rng=kid_rng)
            kp = (r.mean, r.std)
    fakes = {"latent": f_lat, "pixel": f_pix, "conv": f_cnv}
    spaces = {}
    for suffix, real_space in real.spaces.items():
        pr, dc = manifold_metrics(real_space, fakes[suffix], k_pr=k_pr, k_dc=k_dc, knn=real.method, max_bytes=max_bytes,
                                  real_sqradii=real.sqradii[suffix])
        if suffix == SPACES[manifold_space][0]:
            rule_mask = pr.fake_inside
        spaces[suffix] = {"precision": pr.precision, "recall": pr.recall, "density": dc.density, "coverage": dc.coverage}
    rule = spaces[SPACES[manifold_space][0]]
    precision, recall, density, coverage = (rule[m] for m in _MANIFOLD)
    in_frag = float("nan")
    if real.fragment is not None:
        inside = real.fragment.in_fragment(z)
        in_frag = float(np.mean(inside))
        precision = float(np.mean(inside & rule_mask))
    mem = float("nan")
    if real.mem_queries:
        d = nearest_distances(z[: real.mem_queries], real.store, max_bytes=max_bytes)[:, 0]
        mem = float(np.mean(d <= real.mem_threshold)) / 0.01
    row = RegionScores(label, region, options, reference, int(z.shape[0]), float(fd_lat), float(fd_pix),
                       float(kl[0]), float(kl[1]), float(kp[0]), float(kp[1]), precision, recall, density, coverage,
                       mem, sat / max(n_pix, 1), time.perf_counter() - t0, float(fd_cnv), spaces, in_frag)
    return row, preview


def evaluate_regions(
    backend: Any,
    store: Any,
    regions: Sequence[Any] | str = DEFAULT_REGIONS,
    *,
    n: int = 10_000,
    real: Any = None,
    n_real: int | None = None,
    rng: SeedLike = 0,
    region_options: dict[str, dict[str, Any]] | None = None,
    reference: bool = True,
    pixel_pca: bool = True,
    pixel_components: int = 64,
    conv: bool = True,
    manifold_space: str = RULE_SPACE,
    fragment_gate: bool = True,
    k_pr: int = 3,
    k_dc: int = 5,
    kid_subsets: int = 50,
    kid_subset_size: int = 1000,
    memorisation_queries: int = 2000,
    knn: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    seed: Any = _UNSET,
) -> RegionEvaluation:
    """Sample every region, decode, and score the images against real images.

    For each region: fit the sampler on the store (all PCA-based samplers share one
    :class:`~latentscope.analysis.PCAFrame` of the store), draw ``n`` z-points, decode
    them, and measure

    * the Fréchet distance and KID in the AE's latent space: **real images encoded**
      against **generated z-points decoded and re-encoded** (``encode(decode(z))``),
      the image-level comparison of the RAE paper carried out with the AE's own
      encoder as the feature map;
    * the Fréchet distance and KID in a pixel-PCA space fitted on the real images;
    * the Fréchet distance in the features of a fixed random convolutional network
      (:class:`RandomConvFeatures`);
    * improved precision/recall (k = ``k_pr``) and density/coverage (k = ``k_dc``) in
      every space; those of ``manifold_space`` (the rule space, default ``"conv"``)
      are the row's ``precision`` etc. and decide "best" and "beats";
    * a memorisation excess in the latent space: the share of the region's z-points
      nearer to a stored z-point (a training code) than the 1 % quantile of the stored
      z-points' own nearest-neighbour distances, over 0.01 (about 1 for fresh draws).

    The real side (images, features, statistics, kNN radii) is computed once; every
    region gets its own child of ``rng`` (keyed by its label), so a region's scores do not depend on
    which other regions are listed.

    Parameters
    ----------
    backend : Backend
        A loaded model: ``encode(uint8 images) -> z`` and ``decode(z) -> uint8 images``.
    store : ZStore or path
        The z-points of the data (the encoded training images); ``z_dim`` must match
        the backend's.
    regions : sequence of str or Sampler, or a comma-separated str, default=DEFAULT_REGIONS
        Registry names (``"gmm"``), specs with options (``"ellipse:level=0.9"``, see
        :func:`parse_region_spec`) or sampler objects (fitted ones are used as they are).
    n : int, default=10000
        Generated images per region (RAE and pythae use 10 000; FD is biased upwards
        at small n, so compare only at equal n).
    real : image source, source spec, uint8 array (m, h, w, c) or None
        The real images. None: the store's provenance ``source`` (what ``latentscope
        encode`` recorded) when it can be opened, else the store's z-points decoded
        (``real_kind="decoded-store"``: the comparison is then against the AE's
        reconstructions).
    n_real : int, optional
        Cap on the real images (default: ``n``); the first ``n_real`` images of a
        source are used, random store rows for the decoded-store fallback.
    rng : int, SeedSequence, Generator or None, default=0
        Root of every random stream: children keyed by role (real images, reference
        rows, fragment gate) and by region label, each split with
        :meth:`numpy.random.SeedSequence.spawn` into fit, sample and KID streams.
    region_options : dict, optional
        ``{region name: {parameter: value}}`` applied to every spec of that region
        (options in a spec win), e.g. ``{"gmm": {"n_components": 10}}``.
    reference : bool, default=True
        Add the row :data:`REFERENCE_REGION`: ``n`` random z-points of the store,
        decoded (what copying the training codes scores).
    pixel_pca : bool, default=True
        Also score in the pixel-PCA space (``pixel_components`` axes).
    pixel_components : int, default=64
    conv : bool, default=True
        Also score in the random-conv feature space.
    manifold_space : {"conv", "latent", "pixel-pca"}, default="conv"
        The rule space. The latent space is a poor default: an encoder may map
        decoded garbage close to the training codes (precision 0.76 for cube
        samples on one model), so garbage could rank above real generators there.
    fragment_gate : bool, default=True
        Count a sample as precise only if its z-point also passes the landing
        in-fragment test against the store (:class:`~latentscope.samplers.LandingReference`,
        fitted once with a child of ``rng``). Without the gate no weight-free image
        space ranks decoded garbage last on every model: blurry, low-contrast
        decodings of off-fragment codes sit inside the support of the real images'
        pixel-PCA and random-conv features (precision 0.8-1.0 there on the demo
        model, see docs/metrics.md).
    k_pr, k_dc : int, default=3 and 5
    kid_subsets, kid_subset_size : int, default=50 and 1000
        KID subsets per space (0 skips KID).
    memorisation_queries : int, default=2000
        z-points per region checked against the whole store for the memorisation
        excess (0 skips it); the store's own 1 % neighbour-distance quantile is
        estimated from as many stored rows.
    knn : {"auto", "exact", "faiss"}, default="auto"
        Neighbour engine (see :mod:`latentscope.neighbors`).
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
    batch_size : int, optional
        Batch size of the backend's encode/decode calls; None takes the backend's
        decoding preference (:func:`latentscope.backends.preferred_batch_size`).
    progress : callable(done, total), optional
        Called after the real side and after each region (``total`` = regions + 2).
    seed : int, SeedSequence or None
        Deprecated name of ``rng`` (DeprecationWarning).

    Returns
    -------
    RegionEvaluation

    Raises
    ------
    SamplerError
        An unknown region or an option the region does not take.
    BackendError
        The model's z_dim differs from the store's.
    InvalidParameterError
        Bad sizes or real images of the wrong shape.
    """
    from ..analysis import PCAFrame
    owner = "evaluate_regions"
    if seed is not _UNSET:
        warnings.warn("evaluate_regions: seed= is deprecated; pass rng= instead.", DeprecationWarning, stacklevel=2)
        rng = seed
    check_positive(n, "n", owner=owner, integer=True)
    if n_real is not None:
        check_positive(n_real, "n_real", owner=owner, integer=True)
    check_positive(k_pr, "k_pr", owner=owner, integer=True)
    check_positive(k_dc, "k_dc", owner=owner, integer=True)
    check_positive(kid_subsets, "kid_subsets", owner=owner, integer=True, strict=False)
    check_positive(memorisation_queries, "memorisation_queries", owner=owner, integer=True, strict=False)
    if manifold_space not in SPACES:
        raise InvalidParameterError(f"{owner}: manifold_space must be one of {', '.join(map(repr, SPACES))}; "
                                    f"got {manifold_space!r}.")
    if manifold_space == "pixel-pca" and not pixel_pca:
        raise InvalidParameterError(f"{owner}: manifold_space='pixel-pca' needs pixel_pca=True.")
    if manifold_space == "conv" and not conv:
        raise InvalidParameterError(f"{owner}: manifold_space='conv' needs conv=True.")
    from ..backends import preferred_batch_size  # noqa: PLC0415 - the backends layer sits beside

    batch_size = preferred_batch_size(backend, "decode", batch_size, owner=owner)
    need = max(k_pr, k_dc) + 1
    if n < need:
        raise InvalidParameterError(f"{owner}: n must be > max(k_pr, k_dc) = {need - 1}; got {n}.")
    samplers = _build_samplers(regions, region_options)
    n_real = int(n if n_real is None else n_real)

    data = as_zsource(store, owner="store")
    raw = data.store if data.store is not None else store  # what the samplers and analyses are fitted on
    try:
        n_rows, z_dim = data.shape
        if int(backend.z_dim) != int(z_dim):
            raise BackendError(f"{owner}: the model's z_dim ({backend.z_dim}) differs from the store's ({z_dim}); "
                               "use the model the store was encoded with.")
        if n_rows < need:
            raise InvalidParameterError(f"{owner}: the store holds {n_rows} z-points; at least {need} are needed.")
        root = _seed_sequence(rng)
        # children keyed by role and label: a region's draws do not depend on the other regions listed
        real_ss, ref_ss = (np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, i)) for i in (0, 1))
        region_ss = [np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, 2, zlib.crc32(lbl.encode())))
                     for lbl, _, _ in samplers]
        real_rng = np.random.default_rng(real_ss)
        total = len(samplers) + 1 + int(reference)
        done = 0

        # -- the real side, once
        images, real_kind, real_spec = _load_real(real, backend, data, n_real, real_rng, batch_size)
        if images.shape[0] < need:
            raise InvalidParameterError(f"{owner}: {images.shape[0]} real images; at least {need} are needed.")
        lat = _finite_codes(np.concatenate([backend.encode(images[lo : lo + _CHUNK], batch_size=batch_size)
                                            for lo in range(0, images.shape[0], _CHUNK)]), "the real images")
        pca = pix = pix_stats = None
        if pixel_pca:
            n_pix = int(np.prod(images.shape[1:]))
            k = int(min(pixel_components, images.shape[0] - 1, n_pix))
            # randomized SVD beyond small sets: the exact SVD of 2000 images of 64x64x3 takes minutes on 2 cores
            solver = "full" if min(images.shape[0], n_pix) <= 500 else "randomized"
            pca = PixelPCAFeatures(n_components=k, svd_solver=solver,
                                   rng=np.random.default_rng(real_ss.spawn(1)[0])).fit(images)
            pix = pca.transform(images)
            pix_stats = FeatureStats.from_features(pix)
        cnv_map = cnv = cnv_stats = None
        if conv:
            cnv_map = RandomConvFeatures()
            cnv = cnv_map.transform(images)
            cnv_stats = FeatureStats.from_features(cnv)
        real_spaces = {"latent": lat, "pixel": pix, "conv": cnv}
        real_spaces = {k: v for k, v in real_spaces.items() if v is not None}
        m = lat.shape[0]
        method = resolve_engine(knn, max(m, n) ** 2, owner=owner)
        sqradii = {}
        for suffix, feats in real_spaces.items():
            rp, rd = kth_neighbour_sqdist(feats, [k_pr, k_dc], method=method, max_bytes=max_bytes)
            sqradii[suffix] = {k_pr: rp, k_dc: rd}
        half = lat.shape[0] // 2
        self_fd = frechet_distance(lat[:half], lat[half : 2 * half]) if half >= 2 else float("nan")
        mem_q, mem_thr = 0, float("nan")
        if memorisation_queries:
            mem_q = int(min(memorisation_queries, n_rows))
            _, d_own = reference_distances(data, mem_q, 1, rng=real_rng, max_bytes=max_bytes)
            d_own = d_own[:, 0]
            mem_thr = float(np.quantile(d_own, 0.01))
        fragment = None
        if fragment_gate:
            from ..samplers import LandingReference

            frag_ss = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, 3))
            try:
                fragment = LandingReference(max_bytes=max_bytes).fit(raw, rng=np.random.default_rng(frag_ss))
            except InvalidParameterError:  # too few rows for a held-out calibration: no gate
                fragment = None
        real_side = _RealSide(lat, FeatureStats.from_features(lat), pix, pix_stats, pca, cnv_map, cnv_stats,
                              fragment, real_spaces, sqradii, method, mem_thr, mem_q, data)
        frame = PCAFrame().fit(raw)
        done += 1
        if progress is not None:
            progress(done, total)

        common = dict(k_pr=k_pr, k_dc=k_dc, kid_subsets=int(kid_subsets), kid_subset_size=kid_subset_size,
                      manifold_space=manifold_space, max_bytes=max_bytes, batch_size=batch_size)
        rows, previews = [], {}
        for (label, name, sampler), ss in zip(samplers, region_ss):
            t0 = time.perf_counter()
            fit_ss, sample_ss, kid_ss = ss.spawn(3)
            if not sampler.is_fitted:
                sampler.fit(raw, rng=np.random.default_rng(fit_ss), pca=frame)
            z = sampler.sample(n, rng=np.random.default_rng(sample_ss))
            if z.shape[1] != z_dim:
                raise SamplerError(f"{owner}: region {label!r} samples {z.shape[1]}-D points; the store is {z_dim}-D.")
            if not np.isfinite(z).all():
                raise NonFiniteError(f"{owner}: region {label!r} drew non-finite z-points.")
            row, prev = _score(real_side, z, backend, label=label, region=name, options=non_default_params(sampler),
                               reference=False, kid_rng=np.random.default_rng(kid_ss), t0=t0, **common)
            rows.append(row)
            previews[label] = prev
            done += 1
            if progress is not None:
                progress(done, total)
        if reference:
            t0 = time.perf_counter()
            ref_rng = np.random.default_rng(ref_ss)
            take = np.sort(ref_rng.choice(n_rows, min(n, n_rows), replace=False)) if n <= n_rows else \
                ref_rng.integers(0, n_rows, size=n)
            z = np.asarray(data.take(take), dtype=np.float32)
            row, prev = _score(real_side, z, backend, label=REFERENCE_REGION, region=REFERENCE_REGION, options={},
                               reference=True, kid_rng=np.random.default_rng(ref_ss.spawn(1)[0]), t0=t0, **common)
            rows.append(row)
            previews[REFERENCE_REGION] = prev
            done += 1
            if progress is not None:
                progress(done, total)
        meta = {
            "fragment_gate": fragment is not None,
            "backend": getattr(backend, "name", type(backend).__name__),
            "image_shape": [int(d) for d in backend.image_shape],
            "z_dim": int(z_dim), "store_rows": int(n_rows),
            "store": str(data.path) if data.path is not None else "array",
            "knn_method": method, "k_pr": int(k_pr), "k_dc": int(k_dc),
            "kid_subsets": int(kid_subsets), "kid_subset_size": int(kid_subset_size),
        }
        fp = getattr(backend, "fingerprint", None)
        if callable(fp):
            try:
                meta["model_fingerprint"] = str(fp())
            except Exception:  # pragma: no cover - a backend without weights
                pass
        seed_out = rng if isinstance(rng, (int, np.integer)) or rng is None else str(rng)
        return RegionEvaluation(tuple(rows), real_kind, real_spec, int(images.shape[0]), manifold_space,
                                int(lat.shape[1]), int(pix.shape[1]) if pix is not None else 0, float(self_fd),
                                seed_out, previews, meta,
                                tuple(sp for sp in SPACES if SPACES[sp][0] in real_spaces))
    finally:
        if data is not store:
            data.close()
