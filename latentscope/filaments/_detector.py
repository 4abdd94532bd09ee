"""FilamentDetector: thin elongated structures in a high-dimensional point cloud.

See ``docs/filaments.md`` for the method and its justification. The detector's
stages live beside it: the cloud and its null (:mod:`._cloud`), per-point
statistics (:mod:`._local`), structures and filaments (:mod:`._structures`), the
filament record and its table (:mod:`._filament`), saving and loading (:mod:`._saved`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._estimator import Estimator
from .._validation import SeedLike, check_fraction, check_is_fitted, check_positive, check_rng
from ..exceptions import InvalidParameterError
from ..neighbors import GRAPH_ENGINES as KNN_METHODS
from ..neighbors import knn_graph
from ..stream import single_blas_thread
from ._cloud import _unique_rows, load_points, moments, null_cloud
from ._filament import COLUMNS, Filament, assemble_filaments, write_filament_table
from ._local import (
    benjamini_hochberg,
    empirical_pvalues,
    grow_dense,
    knn_linearity,
    local_contrast,
    match_null,
    mle_dimension,
)
from ._structures import ShapeRule, StageProgress, StructureStats, find_filaments

__all__ = ["Filament", "FilamentDetector", "COLUMNS"]

#: Rounds of matching the null to the points not flagged as candidates.
_MATCH_ROUNDS = 5

#: Candidates grow from the flagged points into neighbours whose k-th neighbour distance is
#: at most this times the flagged point's (see grow_dense).
_GROW_FACTOR = 1.25
#: ... and denser than this quantile of the null cloud's k-th neighbour distances.
_GROW_QUANTILE = 0.001


class FilamentDetector(Estimator):
    """Detect thin, elongated, dense structures (filaments) among z-points.

    The method (details and measurements in ``docs/filaments.md``):

    1. **Graph and null.** A K-nearest-neighbour graph of the points (exact up to
       10,000 points, a random-projection forest above; ``K = outer_k``) and the same
       graph of a *null cloud*: every point shrunk towards the mean and jittered,
       ``mu + sqrt(1 - h^2) (z_i - mu) + h eps``, ``eps ~ N(0, Sigma)`` (the
       variance-preserving smoothed bootstrap of the ``kde`` sampler, one draw per
       point): the data's mean, covariance and large-scale shape, without structure
       below the jitter's scale ``h`` (``bandwidth``).
    2. **Candidates.** Each point's scale-free local contrast
       ``log((d_k^2 - d_j^2) / (d_K^2 - d_j^2))`` (``j = k // 4``; unchanged by
       rescaling or by isotropic noise) is ranked against the null cloud's, whose
       median and upper quartile are first matched to those of the data's
       points not flagged (an empirical null, refitted until the flagged set is
       stable); Benjamini-Hochberg at level ``fdr`` keeps the points whose
       neighbourhood is significantly more concentrated than the null allows.
    3. **Shape at the scale of the structure.** Candidates closer than twice both
       their k-th neighbour distances are linked into structures; inside each, exact
       neighbourhoods of ``scale_fraction`` of the structure (``n_sub`` points spread
       over them) give local PCA spectra whose isotropic-noise part is removed
       (Marchenko-Pastur edge). A point is line-like
       when its leading eigenvalue stands clear of the noise (``min_snr``) and
       dominates the other resolved ones (``min_linearity``); a majority vote over
       the neighbourhood cleans the labels.
    4. **Filaments.** Line-like points joined by neighbour edges whose local
       directions agree (``|cos| >= direction_cos``) form filaments; those with at
       least ``min_members`` points and a length of at least ``min_aspect`` times
       their thickness are reported, each with its spine, length, direction, end
       points and a selection-aware p-value.

    Parameters
    ----------
    k : int, default=16
        Neighbours of the graph (density, local dimension, linearity, links).
    fdr : float, default=0.05
        False discovery rate of the candidate test.
    outer_k : int or None, default=None
        The larger scale K of the local contrast (neighbours); None is ``4 * k``.
    bandwidth : float in (0, 1] or "auto", default="auto"
        Jitter ``h`` of the null cloud, relative to the data's spread: structure
        smaller than about ``h * sqrt(trace(Sigma))`` counts as signal. ``"auto"``
        makes the jitter's RMS displacement equal to the data's median distance to
        its K-th neighbour (at least 0.05, at most 1).
    knn : {"auto", "exact", "forest", "faiss-ivf"}, default="auto"
        Engine of the all-points graph; ``"auto"`` is exact up to 10,000 points.
    n_trees, leaf_size : int, default=2, 256
        Forest parameters: trees whose neighbour lists are merged, and the largest
        leaf (leaves hold between half of it and all of it).
    scale_fraction : float, default=0.25
        Neighbourhood size of the shape analysis, as a fraction of the structure.
    max_scale : int, default=1024
        Largest such neighbourhood.
    n_sub : int, default=32
        Points of each such neighbourhood used for its spectrum (evenly spread by
        distance rank, the point itself included).
    min_snr : float, default=1.5
        Leading eigenvalue over the noise edge needed for a resolved direction.
    min_linearity : float, default=0.8
        Structure-scale linearity needed to call a point line-like.
    direction_cos : float, default=0.5
        Smallest ``|cos|`` between the directions of two linked points.
    min_members : int, default=30
        Smallest filament.
    min_aspect : float, default=4.0
        Smallest length / thickness of a filament.
    max_structure : int, default=20000
        Structures larger than this are analysed on a random subsample of this many
        points; the other points take the labels of their nearest analysed neighbour.
    on_nonfinite : {"raise", "skip"}, default="raise"
        Rows with NaN or inf raise :class:`~latentscope.exceptions.NonFiniteError`, or
        are left out (their statistics are NaN, their filament id -1).
    rng : None, int, SeedSequence or Generator
        Randomness of the null cloud, the forest and the spine fits.

    Attributes
    ----------
    filaments_ : list of Filament
    labels_ : ndarray of shape (n,), int64
        Filament id per point, -1 for none.
    density_ : ndarray of shape (n,)
        Density contrast: the null's median k-th neighbour distance over the point's.
    density_pvalue_ : ndarray of shape (n,)
        Lower-tail p-value of the local contrast against the (matched) null.
    contrast_ : ndarray of shape (n,)
        Local contrast ``log((d_k^2 - d_j^2) / (d_K^2 - d_j^2))``; lower is denser.
    null_contrast_ : ndarray
        The null cloud's contrasts after matching to the data's median and upper
        quartile, sorted.
    bandwidth_ : float
        The null's jitter ``h`` used.
    outer_k_ : int
        The K used.
    local_dim_ : ndarray of shape (n,)
        Maximum-likelihood intrinsic dimension over the k neighbours.
    linearity_ : ndarray of shape (n,)
        Single-scale linearity ``lambda_1 / sum(lambda)`` over the point and its k
        neighbours.
    flagged_ : ndarray of shape (n,), bool
        Points whose local contrast is significant (Benjamini-Hochberg at ``fdr``).
    candidates_ : ndarray of shape (n,), bool
        The flagged points and the points reachable from them through neighbours
        at least as dense (k-th neighbour distance at most 1.25 times the flagged
        point's): the members of dense structures, tested for shape.
    structure_linearity_, structure_snr_, structure_dim_ : ndarray of shape (n,)
        Structure-scale statistics of candidates in analysed structures (NaN elsewhere).
    null_kth_distance_ : ndarray
        Sorted k-th neighbour distances of the null cloud.
    knn_method_ : str
    n_points_, n_unique_, z_dim_ : int
    timings_ : dict of str to float
        Wall-clock seconds per stage (``load``, ``graph``, ``statistics``,
        ``structures``) and in ``total``.
    cpu_times_ : dict of str to float
        Process CPU seconds (all threads) per stage and in total.
    """

    def __init__(
        self,
        *,
        k: int = 16,
        fdr: float = 0.05,
        outer_k: int | None = None,
        bandwidth: float | str = "auto",
        knn: str = "auto",
        n_trees: int = 2,
        leaf_size: int = 256,
        scale_fraction: float = 0.25,
        max_scale: int = 1024,
        n_sub: int = 32,
        min_snr: float = 1.5,
        min_linearity: float = 0.8,
        direction_cos: float = 0.5,
        min_members: int = 30,
        min_aspect: float = 4.0,
        max_structure: int = 20000,
        on_nonfinite: str = "raise",
        rng: SeedLike = None,
    ) -> None:
        self.k = k
        self.fdr = fdr
        self.outer_k = outer_k
        self.bandwidth = bandwidth
        self.knn = knn
        self.n_trees = n_trees
        self.leaf_size = leaf_size
        self.scale_fraction = scale_fraction
        self.max_scale = max_scale
        self.n_sub = n_sub
        self.min_snr = min_snr
        self.min_linearity = min_linearity
        self.direction_cos = direction_cos
        self.min_members = min_members
        self.min_aspect = min_aspect
        self.max_structure = max_structure
        self.on_nonfinite = on_nonfinite
        self.rng = rng

    # -- validation -----------------------------------------------------------------------
    def _check_params(self) -> None:
        own = "FilamentDetector"
        for name in ("k", "n_trees", "leaf_size", "max_scale", "n_sub", "min_members", "max_structure"):
            check_positive(getattr(self, name), name, owner=own, integer=True)
        if self.k < 2:
            raise InvalidParameterError(f"{own}: k must be >= 2; got {self.k}.")
        if self.n_sub < 4:
            raise InvalidParameterError(f"{own}: n_sub must be >= 4; got {self.n_sub}.")
        check_fraction(self.fdr, "fdr", owner=own)
        if self.outer_k is not None:
            check_positive(self.outer_k, "outer_k", owner=own, integer=True)
            if self.outer_k <= self.k:
                raise InvalidParameterError(f"{own}: outer_k must be > k = {self.k}; got {self.outer_k}.")
        h = self.bandwidth
        if not (isinstance(h, str) and h == "auto"):
            if isinstance(h, bool) or not isinstance(h, (int, float, np.integer, np.floating)) or not 0 < float(h) <= 1:
                raise InvalidParameterError(f"{own}: bandwidth must be 'auto' or a number in (0, 1]; got {h!r}.")
        check_fraction(self.scale_fraction, "scale_fraction", owner=own, closed=True)
        check_fraction(self.min_linearity, "min_linearity", owner=own, closed=True)
        check_fraction(self.direction_cos, "direction_cos", owner=own, closed=True)
        check_positive(self.min_snr, "min_snr", owner=own)
        check_positive(self.min_aspect, "min_aspect", owner=own, strict=False)
        if self.knn not in KNN_METHODS:
            names = ", ".join(map(repr, KNN_METHODS))
            raise InvalidParameterError(f"{own}: knn must be one of {names}; got {self.knn!r}.")
        if self.on_nonfinite not in ("raise", "skip"):
            raise InvalidParameterError(f"{own}: on_nonfinite must be 'raise' or 'skip'; got {self.on_nonfinite!r}.")

    # -- fitting --------------------------------------------------------------------------
    def fit(self, X: Any, *, progress: StageProgress | None = None) -> "FilamentDetector":
        """Detect the filaments of ``X``.

        Parameters
        ----------
        X : ZStore, store path, ZSource or array-like of shape (n_points, z_dim)
            The z-points, taken through :func:`latentscope.stream.as_zsource` (an
            ndarray, an h5py dataset, a memmap...) and read fully into memory as
            float32 (4 bytes per value). A store opened from a path is closed again.
        progress : callable(stage, done, total), optional
            Called as the stages ``"graph"``, ``"statistics"`` and ``"structures"``
            advance.

        Returns
        -------
        self
        """
        self._check_params()
        with single_blas_thread():  # parallel blocks of one-thread BLAS calls instead
            return self._fit(X, progress)

    def _fit(self, X: Any, progress: StageProgress | None) -> "FilamentDetector":
        gen = check_rng(self.rng)
        report = progress or (lambda stage, done, total: None)
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        c0 = cpu = time.process_time()
        cpu_times: dict[str, float] = {}

        def lap(stage: str, since: float) -> None:
            nonlocal cpu
            times[stage] = time.perf_counter() - since
            now = time.process_time()
            cpu_times[stage], cpu = now - cpu, now
        Z, rows, n_total = load_points(X, self.on_nonfinite)
        first, inverse = _unique_rows(Z)
        U = Z[first] if first.size < Z.shape[0] else Z
        n, dim = U.shape
        k = int(self.k)
        if n <= k:
            raise InvalidParameterError(
                f"FilamentDetector: needs more than k = {k} distinct finite points; got {n}"
                + (f" (of {n_total} rows)." if n != n_total else ".")
            )
        big_k = int(min(self.outer_k or 4 * k, n - 1))
        inner = max(1, k // 4)
        lap("load", t0)

        # 1. graphs of the data and of its smoothed-bootstrap null cloud
        t1 = time.perf_counter()

        def graph_cb(offset: int) -> Callable[[int, int], None]:
            # engines count rows or trees; report points of the two clouds
            return lambda done, total: report("graph", offset * n + (n * done) // max(1, total), 2 * n)

        d_all, i_all, method = knn_graph(U, big_k, method=self.knn, rng=gen, n_trees=self.n_trees,
                                         leaf_size=self.leaf_size, progress=graph_cb(0))
        contrast = local_contrast(d_all, k, inner) if big_k > k else np.zeros(n)
        d_big = d_all[:, -1].astype(np.float64)
        d_data, i_data = np.ascontiguousarray(d_all[:, :k]), np.ascontiguousarray(i_all[:, :k])
        del d_all, i_all
        mean, var, axes = moments(U)
        if isinstance(self.bandwidth, str):
            h = float(np.clip(np.median(d_big) / np.sqrt(max(var.sum(), 1e-300)), 0.05, 1.0))
        else:
            h = float(self.bandwidth)
        null = null_cloud(U, mean, var, axes, h, gen)
        d_null, _, _ = knn_graph(null, big_k, method=self.knn, rng=gen, n_trees=self.n_trees,
                                 leaf_size=self.leaf_size, progress=graph_cb(1))
        del null
        null_contrast = local_contrast(d_null, k, inner) if big_k > k else np.zeros(n)
        null_dk = np.sort(d_null[:, k - 1].astype(np.float64))
        del d_null
        lap("graph", t1)

        # 2. per-point statistics and density candidates
        t2 = time.perf_counter()
        dk = d_data[:, -1].astype(np.float64)
        # empirical null: matched to the points not flagged, until the flagged set is stable
        cand = np.zeros(n, bool)
        for _ in range(_MATCH_ROUNDS):
            null_sorted = match_null(contrast[~cand], null_contrast)
            pval = empirical_pvalues(contrast, null_sorted)
            new = benjamini_hochberg(pval, float(self.fdr))
            if np.array_equal(new, cand):
                break
            cand = new
        flagged = cand
        # membership, not a test: dense structures thicker than the K-neighbourhood are
        # flagged only where the contrast sees them (ends, edges); fill them from there
        # (only into points denser than all but 0.1 % of the null cloud, matched like the contrast)
        log_null_dk = match_null(np.log(np.maximum(dk[~flagged], 1e-300)), np.log(np.maximum(null_dk, 1e-300)))
        dense_enough = np.log(np.maximum(dk, 1e-300)) <= np.quantile(log_null_dk, _GROW_QUANTILE)
        cand = flagged | grow_dense(flagged, np.where(dense_enough, dk, np.inf), i_data, _GROW_FACTOR)
        null_median = float(np.median(null_dk))
        density = null_median / np.maximum(dk, 1e-12 * null_median)  # finite even for coincident points
        local_dim = mle_dimension(d_data)
        linearity = knn_linearity(U, i_data, progress=lambda d, t: report("statistics", d, t))
        lap("statistics", t2)

        # 3-4. structures, shape at their scale, filaments
        t3 = time.perf_counter()
        shape = StructureStats.empty(n)
        found = find_filaments(U, d_data, i_data, cand, (contrast, null_sorted), density, shape, ShapeRule.of(self),
                               gen, report)
        lap("structures", t3)

        # back to the input rows (duplicates share their representative's values)
        def expand(a: np.ndarray, fill: float) -> np.ndarray:
            out = np.full(n_total, fill, dtype=np.result_type(a.dtype, type(fill)))
            out[rows] = a[inverse]
            return out

        n_pc = min(6, dim)
        self.pca_mean_ = mean
        self.pca_components_ = axes[:n_pc]
        self.pca_variance_ = var[:n_pc]
        self.n_points_ = n_total
        self.n_unique_ = n
        self.z_dim_ = dim
        self.knn_method_ = method
        self.null_kth_distance_ = null_dk
        self.contrast_ = expand(contrast, np.nan)
        self.null_contrast_ = null_sorted
        self.bandwidth_ = h
        self.outer_k_ = big_k
        self.density_ = expand(density, np.nan)
        self.density_pvalue_ = expand(pval, np.nan)
        self.local_dim_ = expand(local_dim, np.nan)
        self.linearity_ = expand(linearity.astype(np.float64), np.nan)
        self.candidates_ = expand(cand, False).astype(bool)
        self.flagged_ = expand(flagged, False).astype(bool)
        self.structure_linearity_ = expand(shape.linearity, np.nan)
        self.structure_snr_ = expand(shape.snr, np.nan)
        self.structure_dim_ = expand(shape.dimension, np.nan)
        # filaments, numbered by decreasing size
        filaments, labels = assemble_filaments(found, U, rows, first, inverse, n_total)
        self.labels_ = labels
        self.filaments_ = filaments
        times["total"] = time.perf_counter() - t0
        cpu_times["total"] = time.process_time() - c0
        self.timings_ = times
        self.cpu_times_ = cpu_times
        return self

    # -- results --------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """A JSON-friendly summary: sizes, parameters, timings and the filament table."""
        from ._saved import detector_params  # noqa: PLC0415

        check_is_fitted(self, "filaments_")
        params = detector_params(self)
        return {
            "n_points": int(self.n_points_),
            "n_unique": int(self.n_unique_),
            "n_skipped_nonfinite": int(np.isnan(self.density_).sum()),
            "z_dim": int(self.z_dim_),
            "knn_method": self.knn_method_,
            "n_flagged": int(self.flagged_.sum()),
            "n_candidates": int(self.candidates_.sum()),
            "bandwidth": float(self.bandwidth_),
            "outer_k": int(self.outer_k_),
            "contrast_quantiles": self.contrast_quantiles(),
            "n_filaments": len(self.filaments_),
            "n_filament_points": int((self.labels_ >= 0).sum()),
            "params": params,
            "timings_s": {k: round(float(v), 3) for k, v in self.timings_.items()},
            "filaments": [f.summary() for f in self.filaments_],
        }

    def contrast_quantiles(self, qs: tuple[float, ...] = (0.001, 0.01, 0.05, 0.25, 0.5)) -> dict[str, Any]:
        """Quantiles of the local contrast, data against the matched null.

        Parameters
        ----------
        qs : tuple of float
            Lower-tail probabilities.

        Returns
        -------
        dict
            ``q`` (the probabilities), ``data`` and ``null`` (the quantiles), and
            ``share_below_null`` (for each null quantile, the share of data points at
            or below it: about ``q`` without structure, more where points are
            concentrated).
        """
        check_is_fitted(self, "filaments_")
        floor = -745.0  # log of the smallest double: coincident neighbours (-inf) stay finite in JSON
        c = np.maximum(self.contrast_[~np.isnan(self.contrast_)], floor)
        nq = np.quantile(np.maximum(self.null_contrast_, floor), qs)
        return {
            "q": list(qs),
            "data": [float(v) for v in np.quantile(c, qs)] if c.size else [],
            "null": [float(v) for v in nq],
            "share_below_null": [float(np.mean(c <= v)) if c.size else float("nan") for v in nq],
        }

    def write_table(self, path: str | Path, *, vectors: bool = False) -> Path:
        """Write the filament table as CSV (``.csv``) or JSON (any other suffix).

        Parameters
        ----------
        path : str or Path
        vectors : bool, default=False
            JSON only: add each filament's direction, end points, spine and members.
        """
        check_is_fitted(self, "filaments_")
        return write_filament_table(self.filaments_, path, vectors=vectors)

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Save the fitted detector as ``<path>.json`` and ``<path>.h5`` (see :meth:`load`).

        Parameters
        ----------
        path : str or Path
            The stem (a ``.json`` or ``.h5`` suffix is dropped).

        Returns
        -------
        (Path, Path)
            The JSON file (parameters, fitted scalars) and the HDF5 file (per-point
            results, the null's statistics, the filaments).
        """
        from ._saved import save_detector  # noqa: PLC0415

        check_is_fitted(self, "filaments_")
        return save_detector(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "FilamentDetector":
        """Load a detector written by :meth:`save`, fitted as it was saved.

        A ``Generator`` or ``SeedSequence`` given as ``rng`` is saved as its repr
        and comes back as ``rng=None``.

        Raises
        ------
        StoreFormatError
            Missing files, or files that do not hold a saved detector.
        """
        from ._saved import load_detector  # noqa: PLC0415

        return load_detector(cls, path)

    def write_columns(self, store: Any, *, overwrite: bool = True) -> list[str]:
        """Write the per-point results into a store as columns; return their names.

        Columns: ``local_dim``, ``linearity``, ``density``, ``density_pvalue`` (float32,
        NaN for skipped non-finite rows) and ``filament_id`` (int32, -1 for none).

        Parameters
        ----------
        store : ZStore
            Open for appending (``mode="a"``), with the fitted number of rows.
        overwrite : bool, default=True
            Replace columns of the same names.
        """
        check_is_fitted(self, "filaments_")
        if store.n_rows != self.n_points_:
            raise InvalidParameterError(
                f"FilamentDetector.write_columns: the store has {store.n_rows} rows but the detector was fitted "
                f"on {self.n_points_}."
            )
        values = {
            "local_dim": self.local_dim_, "linearity": self.linearity_, "density": self.density_,
            "density_pvalue": self.density_pvalue_, "filament_id": self.labels_,
        }
        for name, dtype in COLUMNS.items():
            store.write_column(name, np.asarray(values[name]).astype(dtype), overwrite=overwrite)
        return list(COLUMNS)
