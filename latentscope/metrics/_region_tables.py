"""The result tables of :func:`~latentscope.metrics.evaluate_regions`: one row per region, with rendering.

:class:`RegionScores` is one row, :class:`RegionEvaluation` the table (best rows,
rankings, the "beats" rule, JSON, CSV and Markdown). :data:`METRICS` names every
column with its goal, :data:`SPACES` the feature spaces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._persist import _jsonable
from ..exceptions import InvalidParameterError

__all__ = ["RegionScores", "RegionEvaluation", "METRICS", "SPACES", "RULE_SPACE", "REFERENCE_REGION"]

#: The feature spaces of the kNN-manifold metrics: name -> (suffix of the score fields, description).
SPACES: dict[str, tuple[str, str]] = {
    "latent": ("latent", "the AE's latent space (real images encoded, generated z-points decoded and re-encoded)"),
    "pixel-pca": ("pixel", "a PCA of the real images' pixels"),
    "conv": ("conv", "pooled features of a fixed, seeded random convolutional network (RandomConvFeatures)"),
}

#: The default space of precision/recall/density/coverage in "best" and "beats": decoded garbage (flat or noisy
#: images) cannot land near real images there, whatever the encoder does with it.
RULE_SPACE = "conv"

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
        The ``rng`` the table was made with (an int or None; other seeds as text).
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
        heads, rows, legend = self._grid(lambda t: f"**{t}**", lambda t: t)
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" + "---:|" * (len(heads) - 1)]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        return "\n".join(lines + legend) + "\n"

    def to_html(self, *, legend: bool = True) -> str:
        """The table as an HTML ``<table class="regions">`` (one ``<tr>`` per region in ``<tbody>``).

        Best values are in ``<strong>``; the legend of :meth:`to_markdown` follows as
        paragraphs unless ``legend=False``.
        """
        import html
        import re

        heads, rows, notes = self._grid(lambda t: f"<strong>{t}</strong>", html.escape)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
        body = "\n".join("<tr>" + f"<th scope='row'>{cells[0]}</th>" + "".join(f"<td>{c}</td>" for c in cells[1:]) + "</tr>"
                         for cells in rows)
        out = f'<table class="regions">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'
        if legend:
            for para in (n for n in notes if n):
                text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(para))
                out += "\n<p>" + re.sub(r"`(.+?)`", r"<code>\1</code>", text) + "</p>"
        return out

    def _repr_html_(self) -> str:
        return self.to_html(legend=False)

    def _grid(self, bold: Any, esc: Any) -> tuple[list, list, list]:
        """Column titles, rows of rendered cells (``bold`` marks best values, ``esc`` quotes names) and the legend."""
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
            return bold(text) if best.get(bold_as or metric) == r.label else text

        rule = SPACES[self.manifold_space][0]
        lines = []
        for r in self.rows:
            name = esc(f"{r.label} (reference)" if r.reference else r.label)
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
            lines.append(cells)
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
        return heads, lines, legend
