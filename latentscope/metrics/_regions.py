"""Score several samplers ("regions") of one model in one run: the RAE-style generation table.

:func:`evaluate_regions` draws ``n`` z-points from each region, decodes them with the
backend and scores the images against real images with the weight-free metrics of
this package. The real side (images, their features, the kNN radii of the real
set) is computed once and shared by every region, so the regions are scored on
exactly the same footing.
"""

from __future__ import annotations

import inspect
import json
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .._validation import SeedLike, check_positive
from ..exceptions import BackendError, InvalidParameterError, LatentscopeError, NonFiniteError, SamplerError
from ._convfeatures import RandomConvFeatures
from ._features import PixelPCAFeatures
from ._frechet import FeatureStats, frechet_distance
from ._kid import kid
from ._knn import DEFAULT_MAX_BYTES, ball_counts, kth_neighbour_sqdist, resolve_method

__all__ = [
    "RegionScores", "RegionEvaluation", "evaluate_regions", "parse_region_spec", "split_region_list",
    "DEFAULT_REGIONS", "DEFAULT_REGION_OPTIONS", "REFERENCE_REGION", "METRICS", "SPACES", "RULE_SPACE", "plot_regions",
]

#: The feature spaces of the kNN-manifold metrics: name -> (suffix of the score fields, description).
SPACES: dict[str, tuple[str, str]] = {
    "latent": ("latent", "the AE's latent space (real images encoded, generated z-points decoded and re-encoded)"),
    "pixel-pca": ("pixel", "a PCA of the real images' pixels"),
    "conv": ("conv", "pooled features of a fixed, seeded random convolutional network (RandomConvFeatures)"),
}

#: The default space of precision/recall/density/coverage in "best" and "beats": decoded garbage (flat or noisy
#: images) cannot land near real images there, whatever the encoder does with it.
RULE_SPACE = "conv"

#: The regions of the issue's comparison (``mvn`` is RAE's one Gaussian, ``gmm`` its 10-component mixture).
DEFAULT_REGIONS = ("cube", "normal", "box", "gauss", "mvn", "pca-box", "ellipse", "gmm")

#: Options applied to a region unless the caller overrides them: the geometric
#: generators are matched to the data's mean squared radius (as in ``compare-samplers``),
#: the mixture has RAE's 10 components.
DEFAULT_REGION_OPTIONS: dict[str, dict[str, Any]] = {
    "cube": {"halfwidth": "match"},
    "ball": {"radius": "match"},
    "shell": {"radius": "match", "spread": "match"},
    "normal": {"scale": "match"},
    "gmm": {"n_components": 10},
}

#: Label of the reference row: the store's own z-points, decoded (not a generator).
REFERENCE_REGION = "store-z"

#: Metric -> (column title, goal): "min" (lower is better), "max" (higher is better), "zero"
#: (closest to 0: KID is unbiased, so values below 0 are noise) or "one" (closest to 1: a
#: density above 1 means samples crowd into dense real regions).
METRICS: dict[str, tuple[str, str]] = {
    "fd_latent": ("FD latent", "min"),
    "fd_pixel": ("FD pixel-PCA", "min"),
    "fd_conv": ("FD random-conv", "min"),
    "kid_latent": ("KID latent", "zero"),
    "kid_pixel": ("KID pixel-PCA", "zero"),
    "precision": ("precision (rule space)", "max"),
    "recall": ("recall (rule space)", "max"),
    "density": ("density (rule space)", "one"),
    "coverage": ("coverage (rule space)", "max"),
}
for _suffix in ("latent", "pixel", "conv"):
    METRICS.update({f"precision_{_suffix}": (f"precision {_suffix}", "max"), f"recall_{_suffix}": (f"recall {_suffix}", "max"),
                    f"density_{_suffix}": (f"density {_suffix}", "one"), f"coverage_{_suffix}": (f"coverage {_suffix}", "max")})
del _suffix
_MANIFOLD = ("precision", "recall", "density", "coverage")


def _badness(value: float, goal: str) -> float:
    """Sort key: smaller is better."""
    if goal == "max":
        return -value
    if goal == "one":
        return abs(value - 1.0)
    if goal == "zero":
        return abs(value)
    return value

_PREVIEW = 64
_CHUNK = 2048


# -- region specifications ------------------------------------------------------------------
def split_region_list(text: str) -> list[str]:
    """Split ``"cube,ellipse:level=0.9,pca-box:quantiles=[0.02,0.98]"`` at top-level commas."""
    out, depth, cur = [], 0, []
    for ch in str(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return [s for s in out if s]


def _parse_value(text: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    if t.startswith(("[", "(")):
        try:
            return tuple(json.loads("[" + t[1:-1] + "]"))
        except (json.JSONDecodeError, IndexError):
            pass
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            continue
    return t


def parse_region_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"NAME[:KEY=VALUE[:KEY=VALUE...]]"`` -> (name, options).

    Keys are the sampler's parameter names (``-`` may stand for ``_``); values are
    read as int, float, ``none``, ``true``/``false``, a bracketed list (a tuple, e.g.
    ``quantiles=[0.02,0.98]``) or else a string. Example:
    ``"ellipse:level=0.9:n_components=32"``.
    """
    parts = str(spec).strip().split(":")
    name = parts[0].strip()
    if not name:
        raise InvalidParameterError(f"region spec must start with a region name; got {spec!r}.")
    opts: dict[str, Any] = {}
    for p in parts[1:]:
        key, sep, value = p.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InvalidParameterError(f"region spec {spec!r}: options must be KEY=VALUE after ':'; got {p!r}.")
        opts[key] = _parse_value(value)
    return name, opts


# -- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegionScores:
    """The scores of one region (one row of the table).

    Attributes
    ----------
    label : str
        The row label: the region spec as given (``"gmm"``, ``"ellipse:level=0.9"``).
    region : str
        The sampler's registry name (``REFERENCE_REGION`` for the reference row).
    options : dict
        The sampler parameters that differ from its defaults.
    reference : bool
        True for the store's own z-points (a ceiling, not a generator; never "best").
    n : int
        Generated images scored.
    fd_latent, fd_pixel : float
        Fréchet distance in the latent space (real images encoded; generated z-points
        decoded and re-encoded) and in the pixel-PCA space (NaN when not computed).
    kid_latent, kid_pixel : float
        Mean KID over subsets (NaN when not computed); ``kid_*_std`` their spread.
    fd_conv : float
        Fréchet distance in the random-conv feature space (NaN when not computed).
    precision, recall, density, coverage : float
        kNN-manifold metrics (k = 3 and 5) in the rule space (``manifold_space`` of
        the evaluation): the ones "best" and "beats" use. With the fragment gate
        (the default) ``precision`` counts only samples whose z-point is also in the
        fragment (see ``in_fragment``).
    in_fragment : float
        Share of the region's z-points that pass the landing test of
        :class:`~latentscope.samplers.LandingReference` (whitened, calibrated on
        held-out store rows: fresh draws of the data's law score 0.95); NaN when the
        gate is off.
    precision_latent, ..., coverage_conv : float
        The same in each space (suffix ``latent``, ``pixel``, ``conv``; NaN when that
        space was not computed).
    memorisation_excess : float
        Share of the region's z-points (the first ``memorisation_queries``) nearer to a
        stored z-point than the 1 % quantile of the stored z-points' own
        nearest-other-point distances, over 0.01, measured in the latent space with
        exact neighbours over the whole store: about 1 for fresh draws of the data's
        distribution, large for copies of the training codes (the reference row: about
        100), below 1 for samplers that keep away from the training codes.
    frac_saturated : float
        Share of decoded pixels at 0 or 255 (images pushed outside the decoder's range
        saturate).
    seconds : float
        Wall time of fitting, sampling, decoding, encoding and scoring this region.
    """

    label: str
    region: str
    options: dict
    reference: bool
    n: int
    fd_latent: float
    fd_pixel: float
    kid_latent: float
    kid_latent_std: float
    kid_pixel: float
    kid_pixel_std: float
    precision: float
    recall: float
    density: float
    coverage: float
    memorisation_excess: float
    frac_saturated: float
    seconds: float
    fd_conv: float = float("nan")
    spaces: dict = None  # {suffix: {"precision": .., "recall": .., "density": .., "coverage": ..}}
    in_fragment: float = float("nan")

    def __getattr__(self, name: str) -> Any:
        # precision_latent, recall_conv, ...: the per-space manifold scores
        head, _, suffix = name.rpartition("_")
        if head in _MANIFOLD and suffix in ("latent", "pixel", "conv"):
            spaces = self.__dict__.get("spaces") or {}
            return float(spaces.get(suffix, {}).get(head, float("nan")))
        raise AttributeError(name)

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN becomes None)."""
        out = {}
        for k, v in self.__dict__.items():
            if k == "spaces":
                continue
            if isinstance(v, float) and not np.isfinite(v):
                v = None
            out[k] = v
        for suffix in ("latent", "pixel", "conv"):
            for m in _MANIFOLD:
                v = getattr(self, f"{m}_{suffix}")
                out[f"{m}_{suffix}"] = v if np.isfinite(v) else None
        out["options"] = {str(k): _jsonable(v) for k, v in self.options.items()}
        return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


@dataclass(frozen=True, eq=False)
class RegionEvaluation:
    """The result of :func:`evaluate_regions`: one :class:`RegionScores` per region.

    Attributes
    ----------
    rows : tuple of RegionScores
        In the order the regions were given; the reference row (if any) last.
    real_kind : str
        ``"images"`` (real images from a source or an array) or ``"decoded-store"``
        (no real images were available: the store's z-points, decoded, stand in).
    real_spec : str
        Where the real images came from (a source spec, ``"array"`` or ``"store"``).
    n_real : int
    manifold_space : str
        The rule space (a key of :data:`SPACES`): ``precision``, ``recall``,
        ``density`` and ``coverage`` of every row, and so "best" and "beats", are
        measured there. The per-space values are in ``precision_latent`` etc.
    spaces : tuple of str
        The spaces scored.
    latent_dim, pixel_dim : int
        Feature dimensions (``pixel_dim`` 0 when the pixel space was skipped).
    real_self_fd : float
        Latent FD between two halves of the real set (at half the size): the noise
        floor of the FD estimate, for scale.
    seed : int or None
    previews : dict of str to ndarray
        The first decoded images (up to 64) of every row, uint8 (m, h, w, c).
    meta : dict
        Backend name, fingerprint, store path, image shape and the like.
    """

    rows: tuple
    real_kind: str
    real_spec: str
    n_real: int
    manifold_space: str
    latent_dim: int
    pixel_dim: int
    real_self_fd: float
    seed: Any = None
    previews: dict = field(default_factory=dict, repr=False)
    meta: dict = field(default_factory=dict)
    spaces: tuple = ("latent",)

    def __getitem__(self, label: str) -> RegionScores:
        for r in self.rows:
            if r.label == label:
                return r
        raise KeyError(label)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.rows]

    def best(self, metric: str) -> str | None:
        """Label of the best non-reference row on ``metric`` (see :data:`METRICS`); None if none scored."""
        if metric not in METRICS:
            raise InvalidParameterError(f"RegionEvaluation.best: metric must be one of {', '.join(METRICS)}; got {metric!r}.")
        goal = METRICS[metric][1]
        cands = [(_badness(getattr(r, metric), goal), r.label) for r in self.rows
                 if not r.reference and np.isfinite(getattr(r, metric))]
        if not cands:
            return None
        return min(cands, key=lambda t: t[0])[1]

    def ranking(self, metric: str) -> list[str]:
        """Non-reference labels from best to worst on ``metric`` (unscored rows last)."""
        if metric not in METRICS:
            raise InvalidParameterError(f"RegionEvaluation.ranking: metric must be one of {', '.join(METRICS)}; got {metric!r}.")
        goal = METRICS[metric][1]
        rows = [r for r in self.rows if not r.reference]

        def key(r: RegionScores) -> tuple:
            v = getattr(r, metric)
            return (not np.isfinite(v), _badness(v, goal) if np.isfinite(v) else 0.0)

        return [r.label for r in sorted(rows, key=key)]

    def beats(self, candidate: str, baseline: str = "gmm") -> bool:
        """True when ``candidate`` has a lower latent FD *and* a higher precision *and* a
        higher recall than ``baseline`` (the contest's rule); precision and recall in
        the rule space ``manifold_space``."""
        c, b = self[candidate], self[baseline]
        return bool(c.fd_latent < b.fd_latent and c.precision > b.precision and c.recall > b.recall)

    def winners(self, baseline: str = "gmm") -> list[str]:
        """Non-reference rows that :meth:`beats` ``baseline`` (empty when it is not in the table)."""
        if baseline not in self.labels:
            return []
        return [r.label for r in self.rows if not r.reference and r.label != baseline and self.beats(r.label, baseline)]

    def to_dict(self) -> dict:
        """JSON-ready summary (no images)."""
        return {
            "rows": [r.to_dict() for r in self.rows],
            "real_kind": self.real_kind, "real_spec": self.real_spec, "n_real": self.n_real,
            "manifold_space": self.manifold_space, "rule_space": self.manifold_space, "spaces": list(self.spaces),
            "latent_dim": self.latent_dim, "pixel_dim": self.pixel_dim,
            "real_self_fd": self.real_self_fd, "seed": _jsonable(self.seed),
            "best": {m: self.best(m) for m in METRICS},
            "meta": {k: _jsonable(v) for k, v in self.meta.items()},
        }

    # -- tables -------------------------------------------------------------------------
    _COLUMNS = ("fd_latent", "fd_pixel", "fd_conv", "kid_latent", "kid_pixel", "precision", "recall", "density",
                "coverage", "in_fragment", *(f"{m}_{s}" for s in ("latent", "pixel", "conv") for m in _MANIFOLD),
                "memorisation_excess", "frac_saturated", "seconds")

    def to_csv(self) -> str:
        """The table as CSV (one row per region, plain numbers, empty for NaN)."""
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["label", "region", "reference", "options", "n", *self._COLUMNS, "kid_latent_std", "kid_pixel_std"])
        for r in self.rows:
            vals = [getattr(r, c) for c in (*self._COLUMNS, "kid_latent_std", "kid_pixel_std")]
            w.writerow([r.label, r.region, int(r.reference), json.dumps(r.to_dict()["options"], sort_keys=True), r.n,
                        *("" if not np.isfinite(v) else f"{v:.6g}" for v in vals)])
        return buf.getvalue()

    def to_markdown(self) -> str:
        """The table as Markdown, best values in bold, with a short legend."""
        suffixes = [SPACES[sp][0] for sp in self.spaces]
        gated = bool(self.meta.get("fragment_gate"))
        heads = ["region", "FD latent", "FD pixel-PCA", "FD random-conv", "KID latent", "KID pixel-PCA",
                 *(["in-fragment", "precision (rule)"] if gated else []),
                 *(f"P / R {sx}" + (" (rule)" if sp == self.manifold_space else "") for sp, sx in zip(self.spaces, suffixes)),
                 *(f"D / C {sx}" for sx in suffixes), "mem. excess", "saturated", "s"]
        best = {m: self.best(m) for m in METRICS}

        def fmt(r: RegionScores, metric: str, bold_as: str | None = None) -> str:
            v = getattr(r, metric)
            if not np.isfinite(v):
                return "n/a"
            if metric.startswith(_MANIFOLD):
                text = f"{v:.3f}"
            else:
                text = f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"
            return f"**{text}**" if best.get(bold_as or metric) == r.label else text

        rule = SPACES[self.manifold_space][0]
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" + "---:|" * (len(heads) - 1)]
        for r in self.rows:
            name = f"{r.label} (reference)" if r.reference else r.label
            pr = [f"{fmt(r, f'precision_{sx}', 'precision' if sx == rule else None)} / "
                  f"{fmt(r, f'recall_{sx}', 'recall' if sx == rule else None)}" for sx in suffixes]
            dc = [f"{fmt(r, f'density_{sx}')} / {fmt(r, f'coverage_{sx}')}" for sx in suffixes]
            gate = [f"{r.in_fragment:.3f}", fmt(r, "precision")] if gated else []
            if gated:  # the per-space precision is ungated; bold marks the rule's (gated) precision only
                pr = [f"{fmt(r, f'precision_{sx}', '-')} / {fmt(r, f'recall_{sx}', 'recall' if sx == rule else None)}"
                      for sx in suffixes]
            cells = [name, fmt(r, "fd_latent"), fmt(r, "fd_pixel"), fmt(r, "fd_conv"), fmt(r, "kid_latent"),
                     fmt(r, "kid_pixel"), *gate, *pr, *dc,
                     f"{r.memorisation_excess:.2g}" if np.isfinite(r.memorisation_excess) else "n/a",
                     f"{r.frac_saturated:.1%}", f"{r.seconds:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        real = ("real images from " + self.real_spec) if self.real_kind == "images" else \
            "no real images: the store's z-points, decoded, stand in for them"
        legend = [
            "",
            f"n = {self.rows[0].n if self.rows else 0} generated images per region against {self.n_real} real images "
            f"({real}). Latent features: real images encoded; generated z-points decoded and re-encoded "
            f"(dim {self.latent_dim}). Pixel PCA: {self.pixel_dim} principal axes of the real images' pixels. "
            "Random conv: pooled responses of a fixed, seeded, untrained convolutional network. "
            f"Precision/recall (k = 3) and density/coverage (k = 5) in every space. "
            f"**Rule space: {self.manifold_space}** ({SPACES[self.manifold_space][1]}): bold precision/recall and "
            "the \"beats\" rule (lower FD latent, higher precision and recall) use it; it does not depend on how "
            "the AE's encoder treats garbage (the latent space can reward garbage when the encoder maps it near "
            "the training codes). "
            + ("`in-fragment`: share of the region's z-points that pass the whitened, held-out-calibrated landing "
               "test (fresh draws of the data's law: 0.95). `precision (rule)`: share of samples that are in the "
               "fragment *and* whose image lies in the real manifold of the rule space; decoded garbage can look "
               "like blurry real images in weight-free features, so the image test alone does not reject it. "
               if gated else "")
            + 
            f"FD between two halves of the real set (latent, noise floor at n/2): {self.real_self_fd:.3g}. "
            "Best non-reference value in bold. `mem. excess`: share of a region's z-points nearer to a stored z-point "
            "(a training code) than the 1 % quantile of the stored points' own neighbour distances, over 0.01 "
            "(about 1 for fresh draws, about 100 for copies). `saturated`: decoded pixels at 0 or 255.",
        ]
        if REFERENCE_REGION in self.labels:
            legend.append("")
            legend.append(f"`{REFERENCE_REGION}` decodes random z-points of the store itself (the encoded training "
                          "images): what copying the training set scores; a ceiling, not a generator.")
        return "\n".join(lines + legend) + "\n"


# -- the evaluation ---------------------------------------------------------------------------
def _describe(sampler: Any) -> dict[str, Any]:
    defaults = {p.name: p.default for p in inspect.signature(type(sampler).__init__).parameters.values()}
    out = {}
    for k, v in sampler.get_params().items():
        d = defaults.get(k, inspect.Parameter.empty)
        try:
            same = not isinstance(v, np.ndarray) and v == d
        except Exception:  # pragma: no cover - exotic parameters
            same = False
        if not same:
            out[k] = v
    return out


def _build_samplers(regions: Sequence[Any], region_options: dict | None) -> list[tuple[str, str, Any]]:
    """(label, registry name, unfitted-or-fitted sampler) for each region given."""
    from ..samplers import Sampler, all_samplers, make_sampler

    known = all_samplers()
    region_options = dict(region_options or {})
    for key in region_options:
        if key not in known:
            raise SamplerError(f"evaluate_regions: region_options names an unknown region {key!r}; "
                               f"choose from: {', '.join(known)}.")
    if isinstance(regions, str):
        regions = split_region_list(regions)
    items = list(regions)
    if not items:
        raise InvalidParameterError("evaluate_regions: regions is empty; name at least one region.")
    out: list[tuple[str, str, Any]] = []
    for item in items:
        if isinstance(item, Sampler):
            label = item.name + "".join(f":{k}={v}" for k, v in _describe(item).items())
            out.append((label, item.name, item))
            continue
        if not isinstance(item, str):
            raise InvalidParameterError(
                f"evaluate_regions: each region must be a name, a spec 'NAME:KEY=VALUE' or a Sampler; got {type(item).__name__}."
            )
        name, opts = parse_region_spec(item)
        if name == REFERENCE_REGION:
            raise InvalidParameterError(f"evaluate_regions: {REFERENCE_REGION!r} is the reference row; pass reference=True.")
        if name not in known:
            raise SamplerError(f"evaluate_regions: unknown region {name!r}; choose from: {', '.join(known)}.")
        params = {**DEFAULT_REGION_OPTIONS.get(name, {}), **region_options.get(name, {}), **opts}
        allowed = known[name].param_names()
        params = {k: v for k, v in params.items() if k in allowed or k in opts or k in region_options.get(name, {})}
        out.append((item.strip(), name, make_sampler(name, **params)))
    labels = [o[0] for o in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InvalidParameterError(f"evaluate_regions: region {dup[0]!r} is listed twice.")
    return out


def _load_real(real: Any, backend: Any, store: Any, n_real: int, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """The real images (uint8, backend image shape), their kind and where they came from."""
    from ..data import ImageSource, open_source

    shape = tuple(int(d) for d in backend.image_shape)
    if real is None:
        spec = getattr(store, "provenance", {}).get("source")
        if spec and not str(spec).startswith("sampler:"):
            try:
                real = open_source(str(spec), image_size=shape[:2])
            except (LatentscopeError, OSError, ValueError):
                real = None
        if real is None:
            n_rows = int(np.shape(store)[0]) if not hasattr(store, "n_rows") else int(store.n_rows)
            m = min(n_real, n_rows)
            rows = np.sort(rng.choice(n_rows, m, replace=False))
            z = np.asarray(store.read(rows) if hasattr(store, "read") else np.asarray(store)[rows], dtype=np.float32)
            return _decode_all(backend, z), "decoded-store", "store"
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


def _decode_all(backend: Any, z: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.concatenate([backend.decode(z[lo : lo + _CHUNK], batch_size=batch_size)
                           for lo in range(0, z.shape[0], _CHUNK)], axis=0)


def _finite_codes(z: np.ndarray, what: str) -> np.ndarray:
    z = np.asarray(z)
    if z.size and not np.isfinite(z).all():
        raise NonFiniteError(f"evaluate_regions: the backend returned non-finite codes for {what}.")
    return z.astype(np.float64)


def _seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(2**63 - 1)))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InvalidParameterError(f"evaluate_regions: seed must be None, an integer >= 0, a SeedSequence or a Generator; got {seed!r}.")
    return np.random.SeedSequence(None if seed is None else int(seed))


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
    store: Any


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
        fake = fakes[suffix]
        radii = real.sqradii[suffix]
        fake_r2 = kth_neighbour_sqdist(fake, [k_pr], method=real.method, max_bytes=max_bytes)[0]
        counts = ball_counts(fake, real_space, [radii[k_pr], radii[k_dc]], fake_r2, method=real.method,
                             max_bytes=max_bytes)
        if suffix == SPACES[manifold_space][0]:
            rule_mask = counts.query_counts[0] > 0
        spaces[suffix] = {
            "precision": float(np.mean(counts.query_counts[0] > 0)),
            "recall": float(np.mean(counts.centre_in_query_balls)),
            "density": float(counts.query_counts[1].sum() / (k_dc * fake.shape[0])),
            "coverage": float(np.mean(counts.centre_counts[1] > 0)),
        }
    rule = spaces[SPACES[manifold_space][0]]
    precision, recall, density, coverage = (rule[m] for m in _MANIFOLD)
    in_frag = float("nan")
    if real.fragment is not None:
        inside = real.fragment.in_fragment(z)
        in_frag = float(np.mean(inside))
        precision = float(np.mean(inside & rule_mask))
    mem = float("nan")
    if real.mem_queries:
        from ..neighbors import nearest_distances

        d = nearest_distances(z[: real.mem_queries], real.store, max_bytes=2 * max_bytes)[:, 0]
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
    seed: SeedLike = 0,
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
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
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
    region gets its own child of ``seed``, so a region's scores do not depend on
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
    seed : int, SeedSequence or None, default=0
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
        fitted once with a child of ``seed``). Without the gate no weight-free image
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
    max_bytes : int, default=32 MiB
    batch_size : int, default=256
        Batch size of the backend's encode/decode calls.
    progress : callable(done, total), optional
        Called after the real side and after each region (``total`` = regions + 2).

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
    from ..samplers._base import _open_source
    from ..stream import source_shape

    owner = "evaluate_regions"
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
    need = max(k_pr, k_dc) + 1
    if n < need:
        raise InvalidParameterError(f"{owner}: n must be > max(k_pr, k_dc) = {need - 1}; got {n}.")
    samplers = _build_samplers(regions, region_options)
    n_real = int(n if n_real is None else n_real)

    data, opened = _open_source(store)
    try:
        n_rows, z_dim = source_shape(data)
        if int(backend.z_dim) != int(z_dim):
            raise BackendError(f"{owner}: the model's z_dim ({backend.z_dim}) differs from the store's ({z_dim}); "
                               "use the model the store was encoded with.")
        if n_rows < need:
            raise InvalidParameterError(f"{owner}: the store holds {n_rows} z-points; at least {need} are needed.")
        root = _seed_sequence(seed)
        # children keyed by role and label: a region's draws do not depend on the other regions listed
        real_ss, ref_ss = (np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, i)) for i in (0, 1))
        region_ss = [np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, 2, zlib.crc32(lbl.encode())))
                     for lbl, _, _ in samplers]
        real_rng = np.random.default_rng(real_ss)
        total = len(samplers) + 1 + int(reference)
        done = 0

        # -- the real side, once
        images, real_kind, real_spec = _load_real(real, backend, data, n_real, real_rng)
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
        method = resolve_method(knn, max(m, n) ** 2, owner=owner)
        sqradii = {}
        for suffix, feats in real_spaces.items():
            rp, rd = kth_neighbour_sqdist(feats, [k_pr, k_dc], method=method, max_bytes=max_bytes)
            sqradii[suffix] = {k_pr: rp, k_dc: rd}
        half = lat.shape[0] // 2
        self_fd = frechet_distance(lat[:half], lat[half : 2 * half]) if half >= 2 else float("nan")
        mem_q, mem_thr = 0, float("nan")
        if memorisation_queries:
            from ..neighbors import nearest_distances

            mem_q = int(min(memorisation_queries, n_rows))
            rows_q = np.sort(real_rng.choice(n_rows, mem_q, replace=False))
            zq = data.read(rows_q) if hasattr(data, "read") else np.asarray(data)[rows_q]
            d_own = nearest_distances(zq, data, exclude=rows_q, max_bytes=2 * max_bytes)[:, 0]
            mem_thr = float(np.quantile(d_own, 0.01))
        fragment = None
        if fragment_gate:
            from ..samplers import LandingReference

            frag_ss = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, 3))
            try:
                fragment = LandingReference(max_bytes=max_bytes).fit(data, rng=np.random.default_rng(frag_ss))
            except InvalidParameterError:  # too few rows for a held-out calibration: no gate
                fragment = None
        real_side = _RealSide(lat, FeatureStats.from_features(lat), pix, pix_stats, pca, cnv_map, cnv_stats,
                              fragment, real_spaces, sqradii, method, mem_thr, mem_q, data)
        frame = PCAFrame().fit(data)
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
                sampler.fit(data, rng=np.random.default_rng(fit_ss), pca=frame)
            z = sampler.sample(n, rng=np.random.default_rng(sample_ss))
            if z.shape[1] != z_dim:
                raise SamplerError(f"{owner}: region {label!r} samples {z.shape[1]}-D points; the store is {z_dim}-D.")
            if not np.isfinite(z).all():
                raise NonFiniteError(f"{owner}: region {label!r} drew non-finite z-points.")
            row, prev = _score(real_side, z, backend, label=label, region=name, options=_describe(sampler),
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
            z = np.asarray(data.read(take) if hasattr(data, "read") else np.asarray(data)[take], dtype=np.float32)
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
            "store": str(getattr(data, "path", "array")),
            "knn_method": method, "k_pr": int(k_pr), "k_dc": int(k_dc),
            "kid_subsets": int(kid_subsets), "kid_subset_size": int(kid_subset_size),
        }
        fp = getattr(backend, "fingerprint", None)
        if callable(fp):
            try:
                meta["model_fingerprint"] = str(fp())
            except Exception:  # pragma: no cover - a backend without weights
                pass
        seed_out = seed if isinstance(seed, (int, np.integer)) or seed is None else str(seed)
        return RegionEvaluation(tuple(rows), real_kind, real_spec, int(images.shape[0]), manifold_space,
                                int(lat.shape[1]), int(pix.shape[1]) if pix is not None else 0, float(self_fd),
                                seed_out, previews, meta,
                                tuple(sp for sp in SPACES if SPACES[sp][0] in real_spaces))
    finally:
        if opened:
            data.close()


# -- figures ----------------------------------------------------------------------------------
_CHART_METRICS = ("fd_latent", "fd_pixel", "precision", "recall")
_BAR_COLOR, _BEST_COLOR, _REF_COLOR = "#9db4cc", "#1f5f99", "0.75"


def plot_regions(evaluation: RegionEvaluation, path: Any = None, *, metrics: Sequence[str] = _CHART_METRICS) -> Any:
    """Bar chart of the scores per region, one panel per metric, the best bar highlighted.

    FD panels use a logarithmic axis when the values span more than two decades (a
    cube is often 100 times worse than a fitted Gaussian). The reference row is drawn
    in grey and never highlighted.

    Parameters
    ----------
    evaluation : RegionEvaluation
    path : str or Path, optional
        PNG file to write.
    metrics : sequence of str, default=("fd_latent", "fd_pixel", "precision", "recall")

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure
    from pathlib import Path

    for m in metrics:
        if m not in METRICS:
            raise InvalidParameterError(f"plot_regions: metrics must be among {', '.join(METRICS)}; got {m!r}.")
    rows = list(evaluation.rows)
    labels = [f"{r.label}*" if r.reference else r.label for r in rows]
    fig = Figure(figsize=(3.2 * len(metrics), 0.9 + 0.32 * len(rows)), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))
    for ax, m in zip(axes, metrics):
        title, goal = METRICS[m]
        vals = np.array([getattr(r, m) for r in rows], dtype=np.float64)
        best = evaluation.best(m)
        colors = [_REF_COLOR if r.reference else (_BEST_COLOR if r.label == best else _BAR_COLOR) for r in rows]
        shown = np.where(np.isfinite(vals), vals, 0.0)
        ax.barh(y, shown, color=colors, edgecolor="none", height=0.7)
        pos = vals[np.isfinite(vals) & (vals > 0)]
        if m.startswith("fd") and pos.size and pos.max() / pos.min() > 100:
            ax.set_xscale("log")
        for yi, v in zip(y, vals):
            if np.isfinite(v):
                text = (f" {v:.0f}" if abs(v) >= 1000 else f" {v:.3g}") if m.startswith(("fd", "kid")) else f" {v:.2f}"
                ax.text(v if v > 0 else 0, yi, text, va="center", ha="left", fontsize=7)
        if m in ("precision", "recall", "coverage"):
            ax.set_xlim(0, 1.15)
        arrow = {"min": "lower is better", "max": "higher is better", "one": "1 is best", "zero": "0 is best"}[goal]
        ax.set_title(f"{title}\n({arrow})", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    where = evaluation.real_spec if evaluation.real_kind == "images" else "decoded store z-points"
    fig.suptitle(f"n = {rows[0].n if rows else 0} per region vs {evaluation.n_real} real ({where}); "
                 f"best in dark blue" + ("; * reference" if any(r.reference for r in rows) else ""), fontsize=9)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig
