"""Reproduce every claim of the blog series on a trained autoencoder, with verdicts.

Trains (or reuses) a keras-ae model, encodes the images into a z-point store, runs
every analysis, generator and score of the series (Mönchmeyer, 2023: "Autoencoders
and latent space fragmentation"), and writes

* ``OUT/claims.json``: one row per claim of the series, each with the measured
  figures, the series' statement and a verdict (``holds``, ``differs`` or ``not
  testable here``) decided by the rule in :func:`verdict`, never by hand;
* ``OUT/report.html``: the claims table, the figures (statistics plots and samples
  decoded from the generators; no reconstructions of real images) and the timings.

Every verdict uses figures that hold on non-Gaussian latents: where samples land is
judged by the in-fragment test of :class:`latentscope.samplers.LandingReference`
(whitened, calibrated on held-out rows), "faces" by the fragment-gated precision of
:func:`latentscope.metrics.evaluate_regions` against the model's own decoded codes,
MVN-likeness of the core against an MVN run through the same estimator, outer-layer
asymmetry by a sign test that is exact for any centrally symmetric law, filaments by
the smoothed-bootstrap null of :class:`latentscope.filaments.FilamentDetector` with a
power check (a segment planted among the z-points).

Run::

    python examples/reproduce_series.py --quick --out repro-quick          # synthetic faces, < 3 min on 2 cores
    python examples/reproduce_series.py --celeba /data/celeba --out repro  # CelebA, `small` preset, 10 epochs
    python examples/reproduce_series.py --celeba A --celeba-extra B --out repro2   # two image sets, one model
    python examples/reproduce_series.py --celeba /data/celeba --preset celeba96 --epochs 24 --out repro-gpu
    python examples/reproduce_series.py --celeba /data/celeba --model trained-model --out repro  # reuse a model

See docs/reproduction.md for the study as run on the CelebA sample.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Claim ids in the order of the series (the test checks that every one is present).
CLAIM_IDS = (
    "fragment", "component_gaussian", "correlations", "thin_shells", "cube_radius_match", "pca",
    "random_no_faces", "box_gauss_fail", "fitted_faces", "core_outer_layers", "filaments", "gmm_beats_mvn",
)
VERDICTS = ("holds", "differs", "not testable here")

#: Generators scored (labels as given to ``evaluate_regions``); ``kde`` is a smoothed
#: bootstrap of the training codes, so its decodings are never shown.
SERIES_CUBE = "cube:halfwidth=1.5"  # the series' b = 1.5, literally
MATCHED_CUBE = "cube:halfwidth=match"
MATCHED_BALL = "ball:radius=match"
REGIONS = (SERIES_CUBE, MATCHED_CUBE, MATCHED_BALL, "normal", "box", "gauss",
           "mvn", "pca-box", "pca-gauss", "ellipse", "gmm", "kde")
NOT_SHOWN = ("kde",)

#: The series' radius table for N = 256 (research notes, section 3.3).
SERIES_SHELLS = {"cube b=1": (9.24, 0.26), "cube b=1.5": (13.86, 0.39), "cube b=2": (18.48, 0.52),
                 "normal N(0, I)": (15.98, 0.707)}

PRESET_SIZE = {"small": 64, "celeba96": 96}
PRESET_EPOCHS = {"small": 10, "celeba96": 24}


# -- decision rule -------------------------------------------------------------------------

_OPS = {
    "<=": lambda v, t: v <= t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    ">": lambda v, t: v > t,
    "in": lambda v, t: t[0] < v <= t[1],  # half-open interval (lo, hi]
}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check(figure: str, value: Any, op: str, threshold: Any, *, role: str = "claim", note: str = "") -> dict:
    """One test of a measured figure against a threshold.

    ``role="claim"`` checks decide between *holds* and *differs*; ``role="requires"``
    checks say whether the claim can be judged here at all (e.g. the detector has
    power, the scores recognise the model's own decodings). ``passed`` is None when
    the value is missing or not finite.
    """
    if op not in _OPS:
        raise ValueError(f"check: op must be one of {sorted(_OPS)}; got {op!r}")
    if role not in ("claim", "requires"):
        raise ValueError(f"check: role must be 'claim' or 'requires'; got {role!r}")
    value = float(value) if _finite(value) else None
    passed = bool(_OPS[op](value, threshold)) if value is not None else None
    out = {"figure": figure, "value": value, "op": op, "threshold": threshold, "role": role, "passed": passed}
    if note:
        out["note"] = note
    return out


def verdict(checks: list[dict]) -> str:
    """The verdict of a claim from its checks (the only place verdicts are decided).

    * ``not testable here``: a ``requires`` check failed or could not be measured,
      or a ``claim`` check could not be measured (or there is no claim check);
    * ``holds``: every ``claim`` check passed;
    * ``differs``: otherwise.
    """
    req = [c for c in checks if c["role"] == "requires"]
    claim = [c for c in checks if c["role"] == "claim"]
    if any(c["passed"] is not True for c in req) or not claim or any(c["passed"] is None for c in claim):
        return "not testable here"
    return "holds" if all(c["passed"] for c in claim) else "differs"


# -- figures computed from the z-points (pure functions: the test calls them on non-Gaussian clouds)


def correlation_figures(z: np.ndarray, n_top: int = 20, strong: float = 0.5) -> dict:
    """Pearson |r| over all component pairs and the inclination of the strongest pairs.

    Returns ``abs_r_max``, ``share_pairs_strong`` (pairs with |r| >= ``strong``) and
    ``share_top_inclined``: of the ``n_top`` most correlated pairs, the share whose
    fitted confidence ellipse (:func:`latentscope.analysis.confidence_ellipse`) has
    its major axis inclined by 10 to 80 degrees (neither along z_i nor along z_j).
    """
    from latentscope.analysis import confidence_ellipse

    z = np.asarray(z, dtype=np.float64)
    cov = np.cov(z, rowvar=False)
    sd = np.sqrt(np.diag(cov))
    r = cov / np.outer(sd, sd)
    iu = np.triu_indices(z.shape[1], 1)
    ar = np.abs(r[iu])
    order = np.argsort(ar)[::-1][:n_top]
    angles = []
    for k in order:
        i, j = iu[0][k], iu[1][k]
        e = confidence_ellipse(z[:, [i, j]].mean(0), cov[np.ix_([i, j], [i, j])])
        angles.append(float(e["angle_deg"]))
    inclined = [10.0 <= abs(a) <= 80.0 for a in angles]
    return {"abs_r_max": float(ar.max()), "abs_r_median": float(np.median(ar)),
            "share_pairs_strong": float(np.mean(ar >= strong)), "share_top_inclined": float(np.mean(inclined)),
            "top_pair": [int(iu[0][order[0]]), int(iu[1][order[0]])], "top_pair_angle_deg": angles[0]}


def heldout_pca_figures(z: np.ndarray, rng: np.random.Generator, n_axes: int = 20) -> dict:
    """Correlations of PCA coordinates on rows the PCA did not see.

    The PCA (:class:`latentscope.analysis.PCAFrame`) is fitted on a random half; the
    other half is projected on its leading ``n_axes`` axes. ``heldout_abs_r_median``
    is the median |r| over those axis pairs (the in-sample value is 0 by
    construction), ``heldout_abs_r_noise`` its value for independent Gaussian
    coordinates, ``0.6745 / sqrt(n_heldout)`` (heavy tails raise both the figure and
    its noise, so it informs and decides nothing); ``heldout_sq_r_median`` the median correlation of the squared
    coordinates, 0 for a multivariate normal and positive for elliptical heavy tails
    (uncorrelated but not independent).
    """
    from latentscope.analysis import PCAFrame

    z = np.asarray(z, dtype=np.float64)
    idx = rng.permutation(len(z))
    a, b = z[idx[: len(z) // 2]], z[idx[len(z) // 2:]]
    pca = PCAFrame().fit(a)
    k = min(n_axes, z.shape[1])
    t = (b - pca.mean_) @ pca.components_[:k].T
    iu = np.triu_indices(k, 1)
    r = np.corrcoef(t, rowvar=False)[iu]
    r2 = np.corrcoef(t ** 2, rowvar=False)[iu]
    noise = 0.6745 / math.sqrt(len(b))  # median |r| of independent coordinates (|N(0, 1/n)|)
    med = float(np.median(np.abs(r)))
    return {"heldout_abs_r_median": med, "heldout_abs_r_noise": noise,
            "heldout_sq_r_median": float(np.median(r2)), "n_axes": int(k), "n_heldout": int(len(b))}


def _core_radii_cv(z: np.ndarray, core: Any) -> float:
    """Coefficient of variation of the kept rows' Mahalanobis radii under the core estimate."""
    d = np.asarray(z, dtype=np.float64) - core.mean_
    w, v = np.linalg.eigh(core.covariance_)
    keep = w > w.max() * 1e-10
    t = (d @ v[:, keep]) / np.sqrt(w[keep])
    r = np.sqrt(np.einsum("ij,ij->i", t, t))
    kept = np.sort(r)[: int(round(core.core_fraction_ * len(r)))]
    return float(kept.std() / kept.mean())


def core_radial_figures(z: np.ndarray, core: Any, rng: np.random.Generator, trim: float = 0.9) -> dict:
    """How MVN-like the core is radially, against an MVN run through the same estimator.

    The spread (coefficient of variation) of the core rows' Mahalanobis radii is
    compared with the same figure for a standard normal cloud of the same size and
    dimension fitted by the same :class:`~latentscope.analysis.CoreCovariance` (the
    figure is affine invariant, so one null serves every covariance). A ratio near 1
    means an MVN-like core; a scale mixture (t-like) has a much wider radial profile
    even when its marginals and 2-D projections look Gaussian.
    """
    from latentscope.analysis import CoreCovariance

    n, dim = z.shape
    null = rng.standard_normal((n, dim))
    null_core = CoreCovariance(trim=trim).fit(null)
    cv, cv0 = _core_radii_cv(z, core), _core_radii_cv(null, null_core)
    return {"core_radius_cv": cv, "mvn_core_radius_cv": cv0, "core_radius_cv_ratio": cv / cv0}


def outer_asymmetry_figures(core: Any) -> dict:
    """Sign test of the outer layers' asymmetry along the core's principal axes.

    Under central symmetry about the core centre (any symmetric law, Gaussian or not)
    each outer row falls on either side of every axis with probability 1/2, so
    ``outer_asymmetry_ * sqrt(n_outer)`` is about standard normal per axis. Returns
    the largest |z|, the Bonferroni p-value over the axes and the share of axes beyond
    the two-sided 1 % level.
    """
    from scipy.stats import norm

    a = np.asarray(core.outer_asymmetry_, dtype=np.float64)
    n_outer = core.outer_fraction_ * core.n_samples_seen_
    zs = np.abs(a) * np.sqrt(n_outer)
    p = 2.0 * norm.sf(zs)
    return {"outer_z_max": float(zs.max()), "outer_p_bonferroni": float(min(1.0, p.min() * len(p))),
            "outer_share_axes_1pct": float(np.mean(p < 0.01)), "n_outer": int(round(n_outer)),
            "outer_skewness_abs_median": float(np.median(np.abs(core.outer_skewness_)))}


def shell_figures(z_dim: int, rng: np.random.Generator, n: int = 20000) -> dict:
    """Radii of the series' random vectors (cube b = 1, 1.5, 2; N(0, I); unit ball), drawn with the samplers."""
    from latentscope.samplers import make_sampler

    out = {}
    specs = {"cube b=1": ("cube", {"halfwidth": 1.0}), "cube b=1.5": ("cube", {"halfwidth": 1.5}),
             "cube b=2": ("cube", {"halfwidth": 2.0}), "normal N(0, I)": ("normal", {}),
             "ball R0=1": ("ball", {"radius": 1.0})}
    for label, (name, opts) in specs.items():
        s = make_sampler(name, z_dim=z_dim, **opts)
        r = np.linalg.norm(s.sample(n, rng).astype(np.float64), axis=1)
        out[label] = {"mean": float(r.mean()), "std": float(r.std())}
    return out


def series_shell(label: str, z_dim: int) -> tuple[float, float]:
    """The series' (mean, spread) of |z| for ``label`` at N = ``z_dim`` (its table at N = 256)."""
    if z_dim == 256:
        return SERIES_SHELLS[label]
    if label == "normal N(0, I)":
        return math.sqrt(z_dim - 0.5), 1 / math.sqrt(2)
    b = float(label.split("=")[1])
    return b * math.sqrt(z_dim / 3), b / math.sqrt(15)


def planted_segment_recall(z: np.ndarray, rng: np.random.Generator, *, n_points: int = 100,
                           noise: float = 0.04, **detector_options: Any) -> dict:
    """Power check: plant a straight segment between two z-points and look for it.

    ``n_points`` points evenly along the segment between two random rows, with
    isotropic noise of RMS ``noise`` times its length, are added to the cloud; the
    recall is the share of them that :class:`~latentscope.filaments.FilamentDetector`
    reports in a filament.
    """
    from latentscope.filaments import FilamentDetector

    z = np.asarray(z, dtype=np.float32)
    i, j = rng.choice(len(z), size=2, replace=False)
    a, b = z[i].astype(np.float64), z[j].astype(np.float64)
    length = float(np.linalg.norm(b - a))
    t = np.linspace(0.0, 1.0, n_points)[:, None]
    seg = a + t * (b - a) + rng.normal(scale=noise * length / math.sqrt(z.shape[1]), size=(n_points, z.shape[1]))
    cloud = np.concatenate([z, seg.astype(np.float32)])
    det = FilamentDetector(rng=rng, **detector_options).fit(cloud)
    planted = det.labels_[len(z):]
    return {"planted_recall": float(np.mean(planted >= 0)), "planted_points": n_points,
            "planted_filaments_found": len(det.filaments_)}


# -- the run ---------------------------------------------------------------------------------


class Steps:
    """Timings and a log of the steps."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def run(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        print(f"\n== {name}", flush=True)
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        self.timings[name] = time.perf_counter() - t
        print(f"   ({self.timings[name]:.1f} s)", flush=True)
        return out

    def total(self) -> float:
        return time.perf_counter() - self._t0


def cli(args: list[str]) -> None:
    """Run one ``latentscope`` command in this process; stop if it fails."""
    from latentscope.cli import main as ls_main

    print(f"$ latentscope {shlex.join(args)}", flush=True)
    code = ls_main(args)
    if code != 0:
        sys.exit(f"reproduce_series: 'latentscope {args[0]}' failed with exit status {code}")


def combine_image_sets(specs: list[str], out: Path, image_size: int) -> int:
    """Decode several sources into one HDF5 image file (an ``h5:`` source), without repeated ids.

    The first occurrence of an id wins (CelebA's half-size sample repeats 277 images
    of the full-size one). Each attribute of every source becomes a dataset; the
    column ``image_set`` says which source an image came from. Returns the number of
    images.
    """
    import h5py

    from latentscope.data import open_source

    seen: set[str] = set()
    tmp = out.with_suffix(".partial.h5")
    with h5py.File(tmp, "w") as f:
        shape = (image_size, image_size, 3)
        imgs = f.create_dataset("images", shape=(0, *shape), maxshape=(None, *shape), dtype="uint8",
                                chunks=(64, *shape))
        cols: dict[str, list] = {"ids": [], "image_set": []}
        for k, spec in enumerate(specs):
            src = open_source(spec, image_size=(image_size, image_size))
            for batch in src.iter_batches(512):
                keep = np.array([i not in seen for i in batch.ids], dtype=bool)
                ids = [i for i, m in zip(batch.ids, keep) if m]
                seen.update(ids)
                n0 = imgs.shape[0]
                imgs.resize(n0 + len(ids), axis=0)
                imgs[n0:] = batch.images[keep]
                cols["ids"] += ids
                cols["image_set"].append(np.full(len(ids), k, dtype=np.int8))
                for name, v in batch.attributes.items():
                    cols.setdefault(name, []).append(np.asarray(v)[keep])
        f["ids"] = np.array(cols.pop("ids"), dtype=h5py.string_dtype())
        for name, parts in cols.items():
            if sum(len(p) for p in parts) == imgs.shape[0]:
                f[name] = np.concatenate(parts)
        n = int(imgs.shape[0])
    os.replace(tmp, out)
    return n


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--celeba", default="", help="a CelebA folder (celeba: layout; see docs/data-sources.md)")
    p.add_argument("--celeba-extra", default="", help="a second CelebA folder (e.g. the half-size sample); "
                   "both sets are decoded into one image file and the model is trained on both")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--preset", choices=sorted(PRESET_SIZE), default="small",
                   help="keras-ae preset: small (64x64, CPUs) or celeba96 (the brief's 96x96 AE, GPU)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: small 10, celeba96 24)")
    p.add_argument("--model", type=Path, default=None, help="reuse this trained keras-ae model instead of training")
    p.add_argument("-n", "--samples", type=int, default=None, help="generated images per generator (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="the whole study on synthetic faces, small sizes (< 3 min)")
    a = p.parse_args(argv)
    if a.quick and (a.celeba or a.celeba_extra):
        p.error("--quick runs on synthetic faces; it takes no --celeba/--celeba-extra")
    if not a.quick and not a.celeba:
        p.error("give --celeba PATH (or --quick for synthetic faces)")
    if a.celeba_extra and not a.celeba:
        p.error("--celeba-extra needs --celeba")
    if a.epochs is not None and a.epochs < 1:
        p.error(f"--epochs must be >= 1; got {a.epochs}")
    if a.samples is not None and a.samples < 10:
        p.error(f"-n must be >= 10; got {a.samples}")
    return a


def machine() -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"platform": platform.platform(), "python": platform.python_version(), "cores": cores,
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    try:
        import keras

        info["keras"] = keras.__version__
        info["keras_backend"] = keras.backend.backend()
    except Exception:  # pragma: no cover - keras is needed for the run anyway
        pass
    return info


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    steps = Steps()
    info = machine()
    rng_root = np.random.SeedSequence(a.seed)
    rngs = {name: np.random.default_rng(s) for name, s in
            zip(("pca", "core", "shells", "planted", "filaments"), rng_root.spawn(5))}

    # 1. data and model
    if a.quick:
        data, preset, epochs, n_eval = "synthetic:800", "small", a.epochs or 2, a.samples or 150
    else:
        preset = a.preset
        epochs, n_eval = a.epochs or PRESET_EPOCHS[preset], a.samples or 1000
        data = f"celeba:{a.celeba}"
    model = a.model if a.model is not None else out / "model"
    if a.model is not None:
        from latentscope.backends import get_backend

        size = int(get_backend("keras-ae").load(a.model).image_shape[0])
    else:
        size = PRESET_SIZE[preset]
    image_sets = [data]
    if a.celeba_extra:
        image_sets.append(f"celeba:{a.celeba_extra}")
        combined = out / f"images-{size}.h5"
        n_images = steps.run("combine image sets", combine_image_sets, image_sets, combined, size)
        print(f"   {n_images} images from {len(image_sets)} sets in {combined}")
        data = f"h5:{combined}"
    seed = ["--seed", str(a.seed)]
    if a.model is None:
        steps.run("train", cli, ["train", "--backend", "keras-ae", "--preset", preset, "--data", data,
                                 "--image-size", str(size), "--epochs", str(epochs), "--out", str(model),
                                 *seed, "--no-progress", *(["--overwrite"] if model.exists() else [])])
    store_path = out / "z.h5"
    steps.run("encode", cli, ["encode", "--backend", "keras-ae", "--model", str(model), "--data", data,
                              "--out", str(store_path), "--overwrite", "--no-progress"])

    from latentscope.analysis import analyze
    from latentscope.backends import get_backend
    from latentscope.store import open_store

    backend = get_backend("keras-ae").load(model)
    model_cfg = _model_config(model)

    # 2. analyses of the series
    with open_store(store_path) as store:
        res = steps.run("analyze", analyze, store, out / "analysis")
        z = store.read().astype(np.float64)
    summary = res.summary()
    n, dim = z.shape
    fig: dict[str, Any] = {"n_points": n, "z_dim": dim}
    fig["components"] = {k: summary["components"][k] for k in ("ks_distance_median", "ks_distance_max",
                                                              "abs_skewness_median", "excess_kurtosis_median")}
    fig["pca_components"] = {k: summary["pca_components"][k] for k in ("ks_distance_median", "ks_distance_max")}
    fig["pca"] = {"effective_dimension": float(res.pca.effective_dimension_),
                  "n_components_90pct": int(summary["pca"]["n_components_90pct"]),
                  "explained_variance_ratio_top5": [float(x) for x in res.pca.explained_variance_ratio_[:5]]}
    fig["correlations"] = steps.run("correlations", correlation_figures, z)
    fig["pca"].update(steps.run("held-out PCA", heldout_pca_figures, z, rngs["pca"]))
    t = (z - res.pca.mean_) @ res.pca.components_.T
    r_pca = np.corrcoef(t, rowvar=False)
    fig["pca"]["insample_abs_r_max"] = float(np.abs(r_pca[np.triu_indices(dim, 1)]).max())
    rad = res.radial
    r = np.linalg.norm(z, axis=1)
    q05, q95 = (float(x) for x in np.quantile(r, [0.05, 0.95]))
    fig["radial"] = {"radius_mean": float(r.mean()), "radius_std": float(r.std()),
                     "radius_relative_width": float(r.std() / r.mean()), "radius_q05": q05, "radius_q95": q95,
                     "cube_halfwidth_match": float(rad.cube_halfwidth_),
                     "b_range": [q05 / math.sqrt(dim / 3), q95 / math.sqrt(dim / 3)],
                     "b_range_ratio": q95 / q05, "mean_component_sd": float(np.sqrt(np.diag(res.pca.covariance_)).mean()),
                     "origin_distance": float(rad.origin_distance_),
                     "origin_mahalanobis": float(rad.origin_mahalanobis_),
                     "fraction_closer_than_origin": float(rad.fraction_closer_than_origin_),
                     "data_mahalanobis_median": _quantile(rad.stats_["mahalanobis"]["quantiles"], 0.5),
                     "mvn_fraction_closer_than_origin": float(rad.chi_fraction_below_origin_)}
    fig["shells"] = steps.run("random-vector shells", shell_figures, dim, rngs["shells"])
    core = res.core
    if core is not None:
        fig["core"] = {"converged": bool(core.converged_), "n_iter": int(core.n_iter_),
                       "core_fraction": float(core.core_fraction_)}
        fig["core"].update(steps.run("core radial profile", core_radial_figures, z, core, rngs["core"]))
        fig["core"].update(outer_asymmetry_figures(core))
    else:
        fig["core"] = {"note": "; ".join(res.notes) or "no core"}

    # 3. generators and scores
    from latentscope.metrics import evaluate_regions

    ev = steps.run("evaluate generators", evaluate_regions, backend, store_path, REGIONS, n=n_eval,
                   rng=a.seed, kid_subsets=0 if a.quick else 20,
                   kid_subset_size=min(n_eval, 1000),
                   memorisation_queries=min(n_eval, 500))
    rows = {row.label: row for row in ev.rows}
    ref = next(row for row in ev.rows if row.reference)
    fig["generators"] = {lab: _row_dict(row) for lab, row in rows.items()}
    fig["reference_label"] = ref.label
    (out / "evaluate.md").write_text(ev.to_markdown())

    # 4. filaments, with a power check
    from latentscope.filaments import FilamentDetector

    det = steps.run("filaments", FilamentDetector(rng=rngs["filaments"]).fit, z.astype(np.float32))
    fig["filaments"] = {"n_filaments": len(det.filaments_), "n_flagged": int(det.flagged_.sum()),
                        "n_candidates": int(det.candidates_.sum()), "bandwidth": float(det.bandwidth_)}
    fig["filaments"].update(steps.run("filament power check", planted_segment_recall, z, rngs["planted"]))

    # 5. claims, verdicts, report
    claims = build_claims(fig)
    figures = write_figures(out, res, ev, fig)
    result = {"data": image_sets, "preset": model_cfg.get("preset", preset), "image_size": size,
              "epochs": model_cfg.get("epochs_done", epochs), "model": str(model), "reused_model": a.model is not None,
              "n_train": model_cfg.get("n_train"), "n_generated_per_generator": n_eval, "seed": a.seed,
              "quick": a.quick, "machine": info, "figures": fig, "claims": claims,
              "verdict_counts": {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}}
    steps.timings["total"] = steps.total()
    result["timings_s"] = steps.timings
    (out / "claims.json").write_text(json.dumps(_jsonable(result), indent=2))
    write_report(out, result, figures)
    print("\n" + claims_markdown(claims))
    print(f"\nDone in {steps.timings['total'] / 60:.1f} min. Open {out / 'report.html'}")
    return result


def _quantile(quantiles: dict, level: float) -> float:
    for k, v in quantiles.items():
        if abs(float(k) - level) < 1e-9:
            return float(v)
    return float("nan")


def _model_config(model: Path) -> dict:
    try:
        return json.loads((Path(model) / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def _row_dict(row: Any) -> dict:
    keys = ("precision", "recall", "density", "coverage", "in_fragment", "fd_latent", "fd_pixel", "fd_conv",
            "precision_latent", "precision_pixel", "precision_conv", "recall_conv", "memorisation_excess",
            "frac_saturated", "seconds")
    return {k: float(getattr(row, k)) for k in keys if hasattr(row, k)}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# -- the claims -------------------------------------------------------------------------------


def build_claims(fig: dict) -> list[dict]:
    """Every claim of the series with its checks and verdict (thresholds are fixed here)."""
    g, ref = fig["generators"], fig["generators"][fig["reference_label"]]
    p_ref = ref.get("precision")
    dim = fig["z_dim"]
    rad, core, fil = fig["radial"], fig["core"], fig["filaments"]

    def rel_precision(label: str) -> float | None:
        p = g.get(label, {}).get("precision")
        return p / p_ref if _finite(p) and _finite(p_ref) and p_ref > 0 else None

    scores_valid = check("reference (decoded store codes) precision", p_ref, ">=", 0.5, role="requires",
                         note="the score must recognise the model's own decodings of training codes")
    claims = []

    def add(cid: str, part: str, statement: str, checks: list[dict], measured: str) -> None:
        claims.append({"id": cid, "series_part": part, "statement": statement, "measured": measured,
                       "checks": checks, "verdict": verdict(checks)})

    q0 = rad["fraction_closer_than_origin"]
    edge = min(q0, 1 - q0) if _finite(q0) else None
    box_in = g.get("box", {}).get("in_fragment")
    add("fragment", "II, IV, V, VIII",
        "The z-points fill one confined region; it is off-centre and the origin lies near its border.",
        [check("in-fragment rate of uniform samples from the data's per-component box", box_in, "<=", 0.05),
         check("origin's Mahalanobis radius", rad["origin_mahalanobis"], ">=", 3.0,
               note="a centred cloud puts the origin at about sqrt(z_dim / n) from the mean"),
         check("share of points on the nearer side of the origin's radius, min(q, 1 - q)", edge, "in", [0.0, 0.1],
               note="the origin lies among the 10 % innermost or outermost Mahalanobis radii, inside the data's range")],
        f"box samples in-fragment {_f(box_in)}; origin at Mahalanobis radius {_f(rad['origin_mahalanobis'], 2)} "
        f"(data median {_f(rad['data_mahalanobis_median'], 2)}); {_f(100 * q0, 1)} % of points are more central "
        f"than the origin (an MVN with this covariance: {_f(100 * rad['mvn_fraction_closer_than_origin'], 1)} %); "
        f"|mean| = {_f(rad['origin_distance'], 2)}")
    comp = fig["components"]
    add("component_gaussian", "II, VIII",
        "Each component, histogrammed over all z-points, is close to a Gaussian (own centre and width).",
        [check("median KS distance of the components to their fitted Gaussian", comp["ks_distance_median"], "<=", 0.05)],
        f"median KS {_f(comp['ks_distance_median'], 4)} (max {_f(comp['ks_distance_max'], 3)}); median |skewness| "
        f"{_f(comp['abs_skewness_median'], 2)}, median excess kurtosis {_f(comp['excess_kurtosis_median'], 2)}")
    c = fig["correlations"]
    add("correlations", "III, VIII",
        "Components are strongly linearly correlated; coordinate-plane projections show nested, inclined ellipses.",
        [check("max |r| over component pairs", c["abs_r_max"], ">=", 0.7),
         check("share of pairs with |r| >= 0.5", c["share_pairs_strong"], ">=", 0.001,
               note="at least one pair in a thousand"),
         check("share of the 20 most correlated pairs with ellipses inclined 10-80 degrees", c["share_top_inclined"],
               ">=", 0.5)],
        f"max |r| {_f(c['abs_r_max'], 3)}, median |r| {_f(c['abs_r_median'], 3)}, "
        f"{_f(100 * c['share_pairs_strong'], 2)} % of pairs with |r| >= 0.5; "
        f"{_f(100 * c['share_top_inclined'], 0)} % of the top 20 pairs inclined (top pair z{c['top_pair'][0]} vs "
        f"z{c['top_pair'][1]}: {_f(c['top_pair_angle_deg'], 1)} deg)")
    sh = fig["shells"]
    shell_checks = []
    for label in SERIES_SHELLS:
        m0, s0 = series_shell(label, dim)
        shell_checks.append(check(f"{label}: mean |z| / series' {m0:g}", sh[label]["mean"] / m0, "in", [0.99, 1.01]))
        shell_checks.append(check(f"{label}: spread / series' {s0:g}", sh[label]["std"] / s0, "in", [0.9, 1.1]))
    shell_checks.append(check("ball R0 = 1: mean radius / R0", sh["ball R0=1"]["mean"], ">=", 0.99))
    add("thin_shells", "Pitfalls I-II, II, IV",
        f"Random vectors in {dim} dimensions lie in thin shells: cube b = 1, 1.5, 2 at 9.24 +- 0.26, 13.86 +- 0.39, "
        "18.48 +- 0.52; N(0, I) at 15.98 +- 0.707; uniform-in-ball points at the rim (N = 256 values).",
        shell_checks,
        "; ".join(f"{k}: {_f(v['mean'], 2)} +- {_f(v['std'], 3)}" for k, v in sh.items())
        + f"; the z-points themselves: {_f(rad['radius_mean'], 2)} +- {_f(rad['radius_std'], 2)} "
          f"(relative width {_f(rad['radius_relative_width'], 3)}, cube {_f(1 / math.sqrt(5 * dim), 3)})")
    cube_in = g.get(MATCHED_CUBE, {}).get("in_fragment")
    add("cube_radius_match", "II, IV",
        "Uniform-cube vectors match the data's lengths only for b in a narrow range (1 < b < 2, best 1.5: "
        "a factor 2) and still miss the fragment.",
        [check("b range matching the data's 5-95 % radii, b_max / b_min", rad["b_range_ratio"], "<=", 2.5,
               note="the series' range spans a factor 2; up to 2.5 counts as narrow"),
         check("in-fragment rate of radius-matched cube samples", cube_in, "<=", 0.05)],
        f"best b = {_f(rad['cube_halfwidth_match'], 3)} (mean component sd {_f(rad['mean_component_sd'], 2)}); "
        f"b from {_f(rad['b_range'][0], 2)} to {_f(rad['b_range'][1], 2)} (factor {_f(rad['b_range_ratio'], 2)}); "
        f"matched cube in-fragment {_f(cube_in)}")
    pca = fig["pca"]
    add("pca", "IX, X",
        "PCA shows few dominant axes; the PCA coordinates are uncorrelated and each is close to Gaussian.",
        [check("effective dimension (participation ratio) / z_dim", pca["effective_dimension"] / dim, "<=", 0.1),
         check("max |r| between PCA coordinates (in-sample)", pca["insample_abs_r_max"], "<=", 0.01,
               note="0 by construction: the series' check of the rotation"),
         check("median KS distance of the PCA coordinates to Gaussians", fig["pca_components"]["ks_distance_median"],
               "<=", 0.05)],
        f"effective dimension {_f(pca['effective_dimension'], 1)} of {dim}, {pca['n_components_90pct']} axes hold 90 % "
        f"(top axis {_f(100 * pca['explained_variance_ratio_top5'][0], 1)} %); in-sample max |r| "
        f"{_f(pca['insample_abs_r_max'], 6)}; on held-out rows median |r| {_f(pca['heldout_abs_r_median'], 3)} "
        f"(independent coordinates: {_f(pca['heldout_abs_r_noise'], 3)}) and median r of the squared coordinates "
        f"{_f(pca['heldout_sq_r_median'], 3)} (0 for an MVN: uncorrelated is not independent); PCA KS median "
        + _f(fig["pca_components"]["ks_distance_median"], 4))
    randoms = (SERIES_CUBE, MATCHED_CUBE, MATCHED_BALL, "normal")
    add("random_no_faces", "II, IV, V",
        "Uniform-cube, uniform-ball and N(0, I) samples decode to no faces.",
        [scores_valid] + [check(f"{lab}: precision / reference precision", rel_precision(lab), "<=", 0.1)
                          for lab in randoms],
        "; ".join(f"{lab}: precision {_f(g.get(lab, {}).get('precision'))}, in-fragment "
                  f"{_f(g.get(lab, {}).get('in_fragment'))}" for lab in randoms)
        + f" (reference {_f(p_ref)})")
    add("box_gauss_fail", "V, VII",
        "The per-component box and independent per-component Gaussians fail to give faces.",
        [scores_valid] + [check(f"{lab}: precision / reference precision", rel_precision(lab), "<=", 0.1)
                          for lab in ("box", "gauss")],
        "; ".join(f"{lab}: precision {_f(g.get(lab, {}).get('precision'))}, in-fragment "
                  f"{_f(g.get(lab, {}).get('in_fragment'))}, FD conv {_g(g.get(lab, {}).get('fd_conv'))}"
                  for lab in ("box", "gauss")))
    fitted = ("mvn", "pca-box", "ellipse")
    add("fitted_faces", "VIII, X",
        "The full multivariate normal, the PCA box and the confidence-ellipse generator give faces.",
        [scores_valid] + [check(f"{lab}: precision / reference precision", rel_precision(lab), ">=", 0.5)
                          for lab in fitted],
        "; ".join(f"{lab}: precision {_f(g.get(lab, {}).get('precision'))}, in-fragment "
                  f"{_f(g.get(lab, {}).get('in_fragment'))}, FD conv {_g(g.get(lab, {}).get('fd_conv'))}"
                  for lab in fitted) + f" (reference: precision {_f(p_ref)}, FD conv {_g(ref.get('fd_conv'))})")
    core_conv = core.get("converged")
    add("core_outer_layers", "VI, VIII (brief section 7)",
        "The core of the distribution is MVN-like; the outer layers are asymmetric.",
        [check("core estimate converged (1 = yes)", 1.0 if core_conv else (0.0 if core_conv is False else None),
               ">=", 1.0, role="requires"),
         check("core radial spread / an MVN's through the same estimator", core.get("core_radius_cv_ratio"),
               "<=", 1.5),
         check("outer-layer sign test, Bonferroni p over the core axes", core.get("outer_p_bonferroni"), "<=", 0.01)],
        f"core: {_f(100 * core.get('core_fraction', float('nan')), 1)} % of points, {core.get('n_iter')} iterations; "
        f"radial CV {_f(core.get('core_radius_cv'), 3)} vs MVN {_f(core.get('mvn_core_radius_cv'), 3)} "
        f"(ratio {_f(core.get('core_radius_cv_ratio'), 2)}); outer layers ({core.get('n_outer')} points): max sign z "
        f"{_f(core.get('outer_z_max'), 2)}, p = {_f(core.get('outer_p_bonferroni'), 4)}, "
        f"{_f(100 * core.get('outer_share_axes_1pct', float('nan')), 1)} % of axes asymmetric at 1 %")
    add("filaments", "pre-2 (2022)",
        "Small-scale, thin, elongated structures (filaments) of z-points exist in or around the region.",
        [check("planted segment recall (the detector has power here)", fil["planted_recall"], ">=", 0.9,
               role="requires"),
         check("significant filaments among the z-points", fil["n_filaments"], ">=", 1)],
        f"{fil['n_filaments']} filaments, {fil['n_flagged']} flagged and {fil['n_candidates']} candidate points of "
        f"{fig['n_points']} (null bandwidth {_f(fil['bandwidth'], 2)}); a planted {fil['planted_points']}-point segment "
        f"is found with recall {_f(fil['planted_recall'], 2)}")
    fd_g, fd_m = g.get("gmm", {}).get("fd_conv"), g.get("mvn", {}).get("fd_conv")
    ratio = fd_g / fd_m if _finite(fd_g) and _finite(fd_m) and fd_m > 0 else None
    add("gmm_beats_mvn", "peers (RAE paper)",
        "An ex-post 10-component Gaussian mixture generates better than one fitted Gaussian (CelebA FID 45 vs 128).",
        [scores_valid, check("FD (random-conv features): gmm / mvn", ratio, "<=", 0.9)],
        f"FD conv gmm {_g(fd_g)}, mvn {_g(fd_m)} (ratio {_f(ratio, 2)}); FD latent gmm "
        f"{_g(g.get('gmm', {}).get('fd_latent'))}, mvn {_g(g.get('mvn', {}).get('fd_latent'))}; FD pixel-PCA gmm "
        f"{_g(g.get('gmm', {}).get('fd_pixel'))}, mvn {_g(g.get('mvn', {}).get('fd_pixel'))}")
    assert tuple(c["id"] for c in claims) == CLAIM_IDS
    return claims


def _f(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "n/a"


def _g(v: Any) -> str:
    """Three significant digits (Fréchet distances span orders of magnitude)."""
    return f"{v:.3g}" if _finite(v) else "n/a"


def _threshold_text(c: dict) -> str:
    t = c["threshold"]
    return f"in ({t[0]:g}, {t[1]:g}]" if c["op"] == "in" else f"{c['op']} {t:g}"


def claims_markdown(claims: list[dict]) -> str:
    """The claims table as Markdown (one row per claim)."""
    lines = ["| # | claim (series) | measured | rule | verdict |", "|---|---|---|---|---|"]
    for k, c in enumerate(claims, 1):
        rule = "; ".join(f"{'requires ' if x['role'] == 'requires' else ''}{x['figure']} {_threshold_text(x)}"
                         for x in c["checks"])
        lines.append(f"| {k} | {c['statement']} ({c['series_part']}) | {c['measured']} | {rule} | **{c['verdict']}** |")
    return "\n".join(lines)


# -- figures and the page ------------------------------------------------------------------


def write_figures(out: Path, res: Any, ev: Any, fig: dict) -> list[tuple[str, str]]:
    """Decoded generator samples and the landing chart; returns (path, caption) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = out / "img"
    img.mkdir(exist_ok=True)
    shown = [r for r in ev.rows if not r.reference and r.label not in NOT_SHOWN and r.label in ev.previews]
    figs = []
    if shown:
        cols = 8
        sample = ev.previews[shown[0].label]
        h, w = sample.shape[1:3]
        f, axes = plt.subplots(len(shown), 1, figsize=(cols * 0.8 + 1.6, len(shown) * 0.85), squeeze=False)
        for ax, row in zip(axes[:, 0], shown):
            ims = ev.previews[row.label][:cols]
            strip = np.concatenate([np.pad(im, ((1, 1), (1, 1), (0, 0)), constant_values=255) for im in ims], axis=1)
            ax.imshow(strip, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(f"{row.label}\nP={row.precision:.2f}", rotation=0, ha="right", va="center", fontsize=7)
            for s in ax.spines.values():
                s.set_visible(False)
        f.suptitle(f"Decoded samples per generator ({h}x{w}; P = fragment-gated precision)", fontsize=8)
        f.tight_layout()
        f.savefig(img / "generators.png", dpi=110)
        plt.close(f)
        figs.append(("img/generators.png", "Decoded samples from each generator (first 8), with the rule's precision"))
    labels = [r.label for r in ev.rows]
    vals = [r.in_fragment for r in ev.rows]
    prec = [r.precision for r in ev.rows]
    f, ax = plt.subplots(figsize=(7.5, 3.2))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, vals, 0.4, label="z-points in the fragment")
    ax.bar(x + 0.2, prec, 0.4, label="rule precision (images)")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share")
    ax.legend(fontsize=7)
    ax.set_title("Where generated z-points land and whether they decode to faces", fontsize=9)
    f.tight_layout()
    f.savefig(img / "landing.png", dpi=110)
    plt.close(f)
    figs.append(("img/landing.png", "In-fragment rate of the z-points and the rule's precision of the images per generator"))
    for name, cap in (("component_histograms", "Component histograms with fitted Gaussians"),
                      ("pair_densities", "Coordinate-plane densities with confidence ellipses"),
                      ("radial", "Radii of the z-points against cube, normal and ball references"),
                      ("pca_spectrum", "PCA eigenvalue spectrum"), ("core", "Core and outer layers")):
        p = out / "analysis" / "figures" / f"{name}.png"
        if p.exists():
            figs.append((os.path.relpath(p, out), cap))
    return figs


_VERDICT_COLOUR = {"holds": "#d9f2d9", "differs": "#f9dcdc", "not testable here": "#eeeeee"}


def write_report(out: Path, result: dict, figures: list[tuple[str, str]]) -> None:
    """OUT/report.html: conditions, the claims table with every check, the figures, timings."""
    e = html.escape
    rows = []
    for k, c in enumerate(result["claims"], 1):
        checks = "<br>".join(
            f"{'<i>requires</i> ' if x['role'] == 'requires' else ''}{e(x['figure'])}: {_f(x['value'], 4)} "
            f"{e(_threshold_text(x))} &rarr; {'pass' if x['passed'] else ('n/a' if x['passed'] is None else 'fail')}"
            for x in c["checks"])
        rows.append(f"<tr style='background:{_VERDICT_COLOUR[c['verdict']]}'><td>{k}</td><td><b>{e(c['id'])}</b><br>"
                    f"{e(c['statement'])}<br><small>series {e(c['series_part'])}</small></td><td>{e(c['measured'])}"
                    f"</td><td><small>{checks}</small></td><td><b>{e(c['verdict'])}</b></td></tr>")
    cond = (f"Data {e(', '.join(result['data']))}; keras-ae preset <code>{e(str(result['preset']))}</code> at "
            f"{result['image_size']}x{result['image_size']}, {result['epochs']} epochs "
            f"({'reused model' if result['reused_model'] else 'trained here'}: {e(result['model'])}); "
            f"{result['figures']['n_points']} z-points of dimension {result['figures']['z_dim']}; "
            f"{result['n_generated_per_generator']} generated images per generator; seed {result['seed']}. "
            f"Machine: {e(str(result['machine'].get('cores')))} cores, {e(result['machine']['platform'])}.")
    counts = ", ".join(f"{v}: {n}" for v, n in result["verdict_counts"].items())
    figs = "".join(f'<figure><a href="{e(p)}"><img src="{e(p)}" width="520"></a><figcaption>{e(cap)}</figcaption>'
                   "</figure>" for p, cap in figures)
    times = "".join(f"<tr><td>{e(k)}</td><td>{v:.1f} s</td></tr>" for k, v in result["timings_s"].items())
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>latentscope: the series reproduced</title><style>"
            "body{font-family:sans-serif;max-width:1250px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:13px}figure{display:inline-block;"
            "margin:6px;vertical-align:top}figcaption{font-size:12px;max-width:520px}</style></head><body>"
            "<h1>The blog series, claim by claim</h1>"
            f"<p>{cond}</p><p>Verdicts ({e(counts)}) come from the rule in <code>examples/reproduce_series.py</code> "
            "(<code>verdict</code>): a claim holds when every claim check passes, differs when one fails, and is "
            "not testable here when a requirement fails or a figure could not be measured.</p>"
            "<table><tr><th>#</th><th>claim</th><th>measured</th><th>checks</th><th>verdict</th></tr>"
            + "".join(rows) + "</table><h2>Figures</h2>" + figs
            + f"<h2>Generator scores</h2><pre>{e((out / 'evaluate.md').read_text())}</pre>"
            f"<h2>Timings</h2><table>{times}</table></body></html>")
    (out / "report.html").write_text(page)


if __name__ == "__main__":
    main()
