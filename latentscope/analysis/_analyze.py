"""Every analysis of the blog series in two streaming passes: :func:`analyze`."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._persist import _jsonable
from .._validation import check_fraction, check_positive
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, cluster, reading, run_pass, single_blas_thread
from ._attributes import AttributeGroups, AttributeSplit, attribute_groups
from ._base import ProgressFn, pass_progress
from ._boxes import BoundingBoxes
from ._components import ComponentStats, check_pairs
from ._core import CoreCovariance
from ._correlations import Correlations
from ._passes import FirstPass, SecondPass, numerical_rank
from ._pca import PCAFrame
from ._radial import RadialDistribution, chi2_ppf

__all__ = ["analyze", "AnalysisResult"]


@dataclass
class AnalysisResult:
    """Everything :func:`analyze` computed, with where it was written.

    Attributes
    ----------
    components : ComponentStats
        Raw components.
    pca : PCAFrame
    pca_components : ComponentStats
        PCA coordinates (with PC-pair densities).
    correlations : Correlations
    radial : RadialDistribution
    boxes : BoundingBoxes
        Min/max boxes (fractions inside are 1).
    quantile_boxes : BoundingBoxes or None
    core : CoreCovariance or None
    attribute : AttributeSplit or None
    n_passes : int
        Streaming passes over the data (2 for the main analysis, plus the core
        iterations, plus one membership pass when quantile boxes are asked for
        without the core).
    timings : dict of str -> float
        Seconds per stage.
    out_dir : Path or None
    files : list of Path
        Result files written (JSON, HDF5, PNG, HTML).
    notes : list of str
        Parts that were skipped and why (e.g. a core covariance that could not be fitted).
    """

    components: ComponentStats
    pca: PCAFrame
    pca_components: ComponentStats
    correlations: Correlations
    radial: RadialDistribution
    boxes: BoundingBoxes
    quantile_boxes: BoundingBoxes | None = None
    core: CoreCovariance | None = None
    attribute: AttributeSplit | None = None
    n_passes: int = 2
    timings: dict = field(default_factory=dict)
    out_dir: Path | None = None
    files: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Headline numbers of every analysis (what ``summary.json`` holds)."""
        pca = self.pca
        out: dict[str, Any] = {
            "n_samples": self.components.n_samples_seen_, "z_dim": int(pca.mean_.shape[0]),
            "n_passes": self.n_passes, "timings_s": self.timings,
            "components": self.components.summary(), "pca_components": self.pca_components.summary(),
            "pca": {
                "effective_dimension": pca.effective_dimension_,
                "explained_variance_ratio_top10": [float(v) for v in pca.explained_variance_ratio_[:10]],
                "n_components_90pct": int(np.searchsorted(np.cumsum(np.nan_to_num(pca.explained_variance_ratio_)), 0.9) + 1),
                "rank": numerical_rank(pca.explained_variance_),
            },
            "correlations": self.correlations.summary(), "radial": self.radial.summary(),
            "boxes": self.boxes.summary(), "notes": list(self.notes),
        }
        if self.quantile_boxes is not None:
            out["quantile_boxes"] = self.quantile_boxes.summary()
        if self.core is not None:
            out["core"] = self.core.summary()
        if self.attribute is not None:
            out["attribute"] = self.attribute.summary()
        return out


    def _repr_html_(self) -> str:
        from .._html import kv_table

        s = self.summary()
        r = s["radial"]
        rows = [("points x z_dim", f"{s['n_samples']:,} x {s['z_dim']}"),
                ("effective dimension (PCA)", s["pca"]["effective_dimension"]),
                ("axes for 90 % of the variance", s["pca"]["n_components_90pct"]),
                ("Mahalanobis radius of the origin", r["origin_mahalanobis"]),
                ("fraction closer to the mean than the origin", r["fraction_closer_than_origin"]),
                ("median |r|", s["correlations"]["abs_r_median"])]
        if self.out_dir is not None:
            rows.append(("report", str(Path(self.out_dir) / "index.html")))
        return "<strong>AnalysisResult</strong>" + kv_table(rows)


def _default_pc_pairs(dim: int) -> list[tuple[int, int]]:
    return [p for p in [(0, 1), (0, 2), (1, 2), (2, 3)] if max(p) < dim]


def analyze(
    source: Any,
    out_dir: str | os.PathLike | None = None,
    *,
    bins: int = 100,
    fine_bins: int = 4096,
    pairs: Any = None,
    n_pairs: int = 4,
    pc_pairs: Any = None,
    by: str | None = None,
    by_threshold: float | None = None,
    labels: Any = None,
    quantiles: Any = (0.005, 0.995),
    core: bool = True,
    core_trim: float = 0.9,
    core_max_iter: int = 10,
    core_tol: float = 1e-3,
    figures: bool = True,
    progress: ProgressFn | None = None,
    n_threads: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    client: Any = None,
) -> AnalysisResult:
    """Run every analysis of the blog series on a z-point store.

    Pass 1 streams the mean, covariance and min/max; the covariance is
    diagonalised; pass 2 streams everything else (histograms of raw components and
    of PCA coordinates, radial distributions, pair densities, the attribute split,
    the first core iteration). Further passes: the remaining core iterations (the
    first of which also counts the rows inside the quantile boxes), or one
    membership pass for the quantile boxes when ``core=False``. Memory does not
    depend on the number of rows.

    Parameters
    ----------
    source : ZStore, ZarrStore, path of a store, dask array or array of shape (n, z_dim)
    out_dir : path, optional
        Where to write the results (JSON + HDF5 per analysis, ``summary.json``,
        ``figures/*.png`` and ``index.html``). None: nothing is written.
    bins : int, default=100
        Bins of the component histograms.
    fine_bins : int, default=4096
        Bins of the fine histograms behind quantiles and boxes.
    pairs : sequence of (i, j), optional
        Component pairs for 2-D densities with confidence ellipses (default: the
        ``n_pairs`` most correlated pairs).
    n_pairs : int, default=4
    pc_pairs : sequence of (i, j), optional
        PCA-axis pairs (default (0, 1), (0, 2), (1, 2), (2, 3)).
    by : str, optional
        Store column to split the statistics by (e.g. ``"Smiling"``).
    by_threshold : float, optional
        Split a numeric column at this value.
    labels : array-like, optional
        Per-row labels for an array source (instead of ``by``).
    quantiles : None or (lo, hi), default=(0.005, 0.995)
        Quantile bounds of the second pair of bounding boxes (None: only min/max).
    core : bool, default=True
        Fit the core covariance (extra passes, at most ``core_max_iter``).
    core_trim, core_max_iter, core_tol
        Parameters of :class:`CoreCovariance`.
    figures : bool, default=True
        Draw the figures and ``index.html`` (needs ``out_dir``; matplotlib, Agg).
    progress : callable(pass_name, rows_done, rows_total), optional
    n_threads : int, optional
        Worker threads per pass (default: min(2, CPU count)).
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Block budget; peak memory grows with it and with the thread count.
    client : distributed.Client, optional
        Run every pass as tasks on this dask.distributed cluster (the same as calling
        ``analyze`` inside ``with latentscope.stream.cluster(client=client)``; an
        active cluster is used without it). The figures equal the single-process
        analysis up to float64 rounding, and a pass gives the same bits on every run.

    Returns
    -------
    AnalysisResult
    """
    check_positive(bins, "bins", owner="analyze", integer=True, minimum=1)
    check_positive(fine_bins, "fine_bins", owner="analyze", integer=True, minimum=16)
    check_positive(n_pairs, "n_pairs", owner="analyze", integer=True, minimum=0)
    check_fraction(core_trim, "core_trim", owner="analyze")
    if n_threads is None:
        n_threads = max(1, min(2, os.cpu_count() or 1))
    check_positive(n_threads, "n_threads", owner="analyze", integer=True, minimum=1)
    if quantiles is not None:
        from ._boxes import _check_quantiles

        quantiles = _check_quantiles(quantiles, "analyze")
    if figures and out_dir is None:
        figures = False
    # with several workers, BLAS runs single-threaded everywhere (also for eigh between the
    # passes): oversubscribed OpenBLAS threads spin and can be many times slower
    limits = single_blas_thread() if n_threads > 1 else contextlib.nullcontext()
    with cluster(client=client), reading(source, owner="analyze") as src, limits:  # closes only a store opened here
        return _analyze(src, out_dir, bins=bins, fine_bins=fine_bins, pairs=pairs, n_pairs=n_pairs,
                        pc_pairs=pc_pairs, by=by, by_threshold=by_threshold, labels=labels, quantiles=quantiles,
                        core=core, core_trim=core_trim, core_max_iter=core_max_iter, core_tol=core_tol,
                        figures=figures, progress=progress, n_threads=n_threads, max_bytes=max_bytes)


def _analyze(source: Any, out_dir: Any, *, bins: int, fine_bins: int, pairs: Any, n_pairs: int, pc_pairs: Any,
             by: str | None, by_threshold: float | None, labels: Any, quantiles: Any, core: bool, core_trim: float,
             core_max_iter: int, core_tol: float, figures: bool, progress: ProgressFn | None, n_threads: int,
             max_bytes: int) -> AnalysisResult:
    timings: dict[str, float] = {}
    n, dim = source.shape
    if n == 0:
        raise InvalidParameterError("analyze: the store has no rows; nothing to analyse.")
    if n < 2:
        raise InvalidParameterError(f"analyze: at least 2 rows are needed (mean, covariance, PCA); the store has {n}.")
    groups: AttributeGroups | None = None
    column = None
    if by is not None or labels is not None:
        groups = attribute_groups(source, by, labels=labels, threshold=by_threshold)
        column = by if labels is None else None
    G = groups.n_groups if groups is not None else 1
    group_of = groups.group_of if groups is not None else None

    # -- pass 1 -------------------------------------------------------------------------
    t0 = time.perf_counter()
    first = run_pass(source, lambda: FirstPass(groups=G), max_bytes=max_bytes, group_of=group_of, labels=labels,
                     column=column, progress=pass_progress(progress, "pass 1"), n_threads=n_threads).result()
    timings["pass 1"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = PCAFrame().fit_covariance(first.cov)
    rank = numerical_rank(frame.explained_variance_)
    corr = Correlations(pairs=pairs, n_pairs=n_pairs)._from_first(first)
    raw_spec = corr.pair_spec(first)
    comp = ComponentStats(bins=bins, fine_bins=fine_bins)
    pcp = check_pairs(pc_pairs, dim, "analyze") if pc_pairs is not None else _default_pc_pairs(dim)
    pc_stats = ComponentStats(bins=bins, fine_bins=fine_bins, frame=frame, pairs=pcp or None)
    pc_spec = pc_stats._pair_spec(None, None, dim)
    split = AttributeSplit(by, threshold=by_threshold, bins=bins, fine_bins=fine_bins) if groups is not None else None
    direction = AttributeSplit.direction_from(first, groups) if groups is not None else None
    core_est = CoreCovariance(trim=core_trim, max_iter=core_max_iter, tol=core_tol, max_bytes=max_bytes,
                              n_threads=n_threads) if core and rank > 0 else None
    threshold = chi2_ppf(core_trim, rank) if core_est is not None else None
    timings["between passes"] = time.perf_counter() - t0

    # -- pass 2 -------------------------------------------------------------------------
    t0 = time.perf_counter()
    sp = SecondPass(first, frame, raw_bins=comp.raw_fine_bins(), pc_bins=pc_stats.pc_fine_bins(), radial=True,
                    raw_pairs=raw_spec, pc_pairs=pc_spec, direction=direction, core_threshold=threshold, groups=G,
                    radial_bins=pc_stats.pc_fine_bins())
    second = run_pass(source, sp.fork, max_bytes=max_bytes, group_of=group_of, labels=labels, column=column,
                      progress=pass_progress(progress, "pass 2"), n_threads=n_threads).result()
    timings["pass 2"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    comp._from_passes(first, second)
    pc_stats._from_passes(first, second, pc_spec)
    if raw_spec is not None:
        corr._from_second(second, raw_spec)
    radial = RadialDistribution(bins=bins, fine_bins=fine_bins)._from_passes(first, frame, second)
    boxes = BoundingBoxes(bins=pc_stats.pc_fine_bins())._from_passes(first, frame, second)
    qboxes = None
    if quantiles is not None:
        qboxes = BoundingBoxes(quantiles=quantiles, bins=pc_stats.pc_fine_bins())._from_passes(first, frame, second)
    if split is not None:
        split._from_passes(first, frame, second, groups)
    timings["results"] = time.perf_counter() - t0

    # -- extra passes: core iterations (+ quantile-box membership) ------------------------
    n_passes = 2
    notes: list[str] = []
    membership = None
    if core_est is not None:
        t0 = time.perf_counter()
        extra = qboxes._membership if qboxes is not None else None
        try:
            core_est._from_second(frame, first.n, second.core_n, second.core, np.dtype(second.precision))
            membership = core_est._iterate(source, progress=progress, extra_factory=extra, first_pass_index=3)
            n_passes += core_est.n_passes_ - 1
            if not core_est.converged_:
                notes.append(f"core covariance not converged after {core_est.n_iter_} iterations (raise core_max_iter)")
        except InvalidParameterError as exc:  # e.g. too few rows inside the trimming radius
            notes.append(f"core covariance skipped: {exc}")
            n_passes += getattr(core_est, "n_passes_", 1) - 1
            core_est = None
        timings["core passes"] = time.perf_counter() - t0
    if qboxes is not None:
        if membership is not None:
            qboxes._set_membership(membership)
        else:
            t0 = time.perf_counter()
            qboxes._count_inside(source, progress=pass_progress(progress, f"pass {n_passes + 1}"))
            n_passes += 1
            timings["membership pass"] = time.perf_counter() - t0
        qboxes.n_passes_ = 3

    result = AnalysisResult(comp, frame, pc_stats, corr, radial, boxes, qboxes, core_est, split, n_passes, timings,
                            notes=notes)
    if out_dir is not None:
        t0 = time.perf_counter()
        _write(result, Path(out_dir))
        timings["write"] = time.perf_counter() - t0
        if figures:
            t0 = time.perf_counter()
            from ._report import write_report

            result.files += write_report(result, Path(out_dir))
            timings["figures"] = time.perf_counter() - t0
        (Path(out_dir) / "summary.json").write_text(json.dumps(_jsonable(result.summary()), indent=2, default=str))
    return result


#: Result stems analyze() may write; stale ones from an earlier run are removed.
RESULT_STEMS = ("components", "pca_components", "correlations", "radial", "pca", "boxes_minmax", "boxes_minmax_pca",
                "boxes_quantile", "boxes_quantile_pca", "core", "attribute")


def _write(result: AnalysisResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stem in RESULT_STEMS:
        for ext in (".json", ".h5"):
            (out / (stem + ext)).unlink(missing_ok=True)
    figdir = out / "figures"
    if figdir.is_dir():
        for png in figdir.glob("*.png"):
            png.unlink()
    (out / "index.html").unlink(missing_ok=True)
    items = [("components", result.components), ("pca_components", result.pca_components),
             ("correlations", result.correlations), ("radial", result.radial), ("pca", result.pca),
             ("boxes_minmax", result.boxes)]
    if result.quantile_boxes is not None:
        items.append(("boxes_quantile", result.quantile_boxes))
    if result.core is not None:
        items.append(("core", result.core))
    if result.attribute is not None:
        items.append(("attribute", result.attribute))
    for stem, obj in items:
        obj.save(out / stem)
        result.files += [out / f"{stem}.json", out / f"{stem}.h5"]
    result.files.append(out / "summary.json")

