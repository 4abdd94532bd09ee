"""FilamentDetector: thin elongated structures in a high-dimensional point cloud.

See ``docs/filaments.md`` for the method and its justification.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._validation import SeedLike, check_fraction, check_is_fitted, check_positive, check_rng
from ..exceptions import InvalidParameterError, NonFiniteError
from ._knn import KNN_METHODS, exact_knn, knn_graph
from ._local import (
    benjamini_hochberg,
    empirical_pvalues,
    filament_pvalue,
    grow_dense,
    knn_linearity,
    local_contrast,
    match_null,
    mle_dimension,
    neighbourhood_spectra,
    run_blocks,
    single_blas_thread,
    spectrum_stats,
)
from ._spine import fit_spine

__all__ = ["Filament", "FilamentDetector", "COLUMNS"]

#: Per-point columns written by :meth:`FilamentDetector.write_columns`, with dtypes.
COLUMNS = {
    "local_dim": np.float32,
    "linearity": np.float32,
    "density": np.float32,
    "density_pvalue": np.float32,
    "filament_id": np.int32,
}

#: Scalar fields of the filament table (CSV columns, JSON keys).
TABLE_FIELDS = ("id", "n_members", "length", "thickness", "aspect", "linearity", "snr", "density",
                "p_value", "significance", "start_index", "end_index")

StageProgress = Callable[[str, int, int], None]

#: Candidates i, j are linked when d(i, j) <= _LINK_REACH * min(k-th distance of i, of j).
_LINK_REACH = 2.0

#: Rounds of matching the null to the points not flagged as candidates.
_MATCH_ROUNDS = 5

#: Candidates grow from the flagged points into neighbours whose k-th neighbour distance is
#: at most this times the flagged point's (see grow_dense).
_GROW_FACTOR = 1.25
#: ... and denser than this quantile of the null cloud's k-th neighbour distances.
_GROW_QUANTILE = 0.001


@dataclass(frozen=True, eq=False)
class Filament:
    """One detected filament.

    Attributes
    ----------
    id : int
        Number of the filament (0, 1, ...; by decreasing number of members).
    members : ndarray of int64
        Row indices of its points in the fitted data, ordered from ``start`` to ``end``.
    length : float
        Length along its spine (a polyline through denoised group centres).
    thickness : float
        Root-mean-square distance of the members from the spine, across it.
    direction : ndarray of shape (z_dim,)
        Unit leading principal direction of the members (the chord of a curved
        filament), oriented from start to end.
    start, end : ndarray of shape (z_dim,)
        The two extreme members.
    start_index, end_index : int
        Their row indices.
    spine : ndarray of shape (n_nodes, z_dim)
        The spine's nodes from start to end.
    linearity : float
        Median structure-scale linearity of the members.
    snr : float
        Median ratio of the leading local eigenvalue to the noise edge.
    density : float
        Median density contrast (null median k-th neighbour distance over the member's).
    p_value : float
        Selection-aware p-value from the null's own order statistics
        (:func:`~latentscope.filaments._local.filament_pvalue`): how likely a null
        cloud is to hold as many points as extreme as the members, whichever points
        were selected.
    """

    id: int
    members: np.ndarray
    length: float
    thickness: float
    direction: np.ndarray
    start: np.ndarray
    end: np.ndarray
    start_index: int
    end_index: int
    spine: np.ndarray
    linearity: float
    snr: float
    density: float
    p_value: float

    @property
    def n_members(self) -> int:
        return int(self.members.size)

    @property
    def aspect(self) -> float:
        """Length over thickness."""
        return float(self.length / self.thickness) if self.thickness > 0 else float("inf")

    @property
    def significance(self) -> float:
        """``-log10(p_value)``."""
        return float(-np.log10(max(self.p_value, 1e-300)))

    def summary(self) -> dict[str, Any]:
        """Scalar fields (:data:`TABLE_FIELDS`) as a JSON-friendly dict."""
        return {name: getattr(self, name) for name in TABLE_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-friendly dict (vectors as lists)."""
        out = self.summary()
        out.update(direction=self.direction.tolist(), start=self.start.tolist(), end=self.end.tolist(),
                   spine=self.spine.tolist(), members=self.members.tolist())
        return out


def _unique_rows(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first occurrence of each distinct row, and each row's group."""
    n = Z.shape[0]
    Zn = Z + np.float32(0.0)  # -0.0 -> 0.0
    h = np.fromiter((hash(r.tobytes()) for r in Zn), dtype=np.int64, count=n)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    same = np.zeros(n, bool)
    if n > 1:
        cand = np.flatnonzero(hs[1:] == hs[:-1]) + 1
        if cand.size:
            same[cand] = (Zn[order[cand]] == Zn[order[cand - 1]]).all(axis=1)
    if not same.any():
        return np.arange(n), np.arange(n)
    group_sorted = np.cumsum(~same) - 1
    group = np.empty(n, np.int64)
    group[order] = group_sorted
    first = np.full(group_sorted[-1] + 1, n, np.int64)
    np.minimum.at(first, group, np.arange(n))
    # renumber groups by first occurrence so unique rows keep the input order
    rank = np.argsort(first, kind="stable")
    inv = np.empty_like(rank)
    inv[rank] = np.arange(rank.size)
    return first[rank], inv[group]


class FilamentDetector:
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

    def __repr__(self) -> str:
        return f"FilamentDetector(k={self.k}, fdr={self.fdr}, knn={self.knn!r})"

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, by name."""
        import inspect  # noqa: PLC0415

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

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

    def _load(self, X: Any) -> tuple[np.ndarray, np.ndarray, int]:
        """Finite rows as float32, their row numbers, and the total number of rows."""
        from ..store import ZStore  # noqa: PLC0415

        own = "FilamentDetector"
        if isinstance(X, ZStore):
            Z = X.read()
        else:
            try:
                Z = np.asarray(X, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(
                    f"{own}: X must be a ZStore or a numeric array; got {type(X).__name__}."
                ) from exc
        if Z.ndim != 2:
            raise InvalidParameterError(f"{own}: X must be 2-D (n_points, z_dim); got shape {Z.shape}.")
        if Z.shape[1] < 2:
            raise InvalidParameterError(f"{own}: z_dim must be >= 2; got {Z.shape[1]}.")
        n_total = Z.shape[0]
        finite = np.isfinite(Z).all(axis=1)
        rows = np.arange(n_total)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            if self.on_nonfinite == "raise":
                raise NonFiniteError(
                    f"{own}: X holds non-finite values in {bad.size} rows (first at row {int(bad[0])}); "
                    "pass on_nonfinite='skip' to leave them out."
                )
            Z, rows = Z[finite], rows[finite]
        return np.ascontiguousarray(Z, dtype=np.float32), rows, n_total

    # -- fitting --------------------------------------------------------------------------
    def fit(self, X: Any, *, progress: StageProgress | None = None) -> "FilamentDetector":
        """Detect the filaments of ``X``.

        Parameters
        ----------
        X : ZStore or array-like of shape (n_points, z_dim)
            The z-points (read fully into memory: 4 bytes per value).
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
        Z, rows, n_total = self._load(X)
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
        mean, var, axes = self._moments(U)
        if isinstance(self.bandwidth, str):
            h = float(np.clip(np.median(d_big) / np.sqrt(max(var.sum(), 1e-300)), 0.05, 1.0))
        else:
            h = float(self.bandwidth)
        null = self._null_cloud(U, mean, var, axes, h, gen)
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
        s_lin = np.full(n, np.nan)
        s_snr = np.full(n, np.nan)
        s_dim = np.full(n, np.nan)
        found = self._structures(U, d_data, i_data, cand, (contrast, null_sorted), density, s_lin, s_snr, s_dim,
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
        self.structure_linearity_ = expand(s_lin, np.nan)
        self.structure_snr_ = expand(s_snr, np.nan)
        self.structure_dim_ = expand(s_dim, np.nan)
        # filaments, numbered by decreasing size
        found.sort(key=lambda f: -f["members"].size)
        filaments: list[Filament] = []
        labels = np.full(n_total, -1, np.int64)
        group_rows = np.argsort(inverse, kind="stable")  # finite rows grouped by their unique point
        group_start = np.searchsorted(inverse[group_rows], np.arange(n + 1))
        for fid, f in enumerate(found):
            uniq = f["members"]  # unique-point indices, ordered along the spine
            pieces = [rows[group_rows[group_start[u]:group_start[u + 1]]] for u in uniq]
            members = np.concatenate(pieces).astype(np.int64)
            labels[members] = fid
            filaments.append(Filament(
                id=fid, members=members, length=f["length"], thickness=f["thickness"],
                direction=f["direction"], start=U[f["start"]].copy(), end=U[f["end"]].copy(),
                start_index=int(rows[first[f["start"]]]), end_index=int(rows[first[f["end"]]]),
                spine=f["spine"], linearity=f["linearity"], snr=f["snr"], density=f["density"],
                p_value=f["p_value"],
            ))
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
        check_is_fitted(self, "filaments_")
        params = {k: v for k, v in self.get_params().items() if k != "rng"}
        params["rng"] = self.rng if isinstance(self.rng, (int, type(None))) else repr(self.rng)
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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv":
            import csv  # noqa: PLC0415

            cols = list(TABLE_FIELDS)
            with path.open("w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=cols)
                w.writeheader()
                for f in self.filaments_:
                    w.writerow(f.summary())
        else:
            rows = [f.to_dict() if vectors else f.summary() for f in self.filaments_]
            path.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        return path

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

    @staticmethod
    def _moments(U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """U's mean, and its covariance's eigenvalues (descending) and eigenvectors (rows)."""
        n, dim = U.shape
        mean = U.mean(axis=0, dtype=np.float64)
        mean32 = mean.astype(np.float32)
        step = max(1, (16 << 20) // (4 * dim))
        starts = list(range(0, n, step))
        parts: dict[int, np.ndarray] = {}

        def scatter(lo: int) -> None:
            b = U[lo:lo + step] - mean32
            parts[lo] = (b.T @ b).astype(np.float64)  # float32 products, summed in float64

        run_blocks(scatter, starts)
        cov = np.sum([parts[lo] for lo in starts], axis=0) / max(1, n - 1)
        w, V = np.linalg.eigh(cov)
        return mean, np.clip(w[::-1], 0.0, None), V[:, ::-1].T.copy()

    @staticmethod
    def _null_cloud(U: np.ndarray, mean: np.ndarray, var: np.ndarray, axes: np.ndarray, h: float,
                    gen: np.random.Generator) -> np.ndarray:
        """The smoothed-bootstrap null: each point shrunk to the mean and jittered once (float32).

        ``mu + sqrt(1 - h^2) (z_i - mu) + h eps``, ``eps ~ N(0, Sigma)``: the draw of the
        ``kde`` sampler (:class:`~latentscope.samplers.KDESampler`), with every point used
        once instead of resampled, so the null has exactly the data's mean and covariance
        up to the noise's sampling error.
        """
        from ..samplers._kde import KDESampler  # noqa: PLC0415

        n, dim = U.shape
        kde = KDESampler(bandwidth=h)  # float32 factors: the noise's product runs in float32
        kde.mean_ = mean
        kde.variances_, kde.components_ = var.astype(np.float32), axes.astype(np.float32)
        out = np.empty((n, dim), np.float32)
        step = max(1, (16 << 20) // (8 * dim))
        starts = list(range(0, n, step))
        gens = dict(zip(starts, gen.spawn(len(starts))))  # one stream per block: thread-order free

        def draw(lo: int) -> None:
            hi = min(n, lo + step)
            xi = gens[lo].standard_normal((hi - lo, dim), dtype=np.float32)
            out[lo:hi] = kde._draw(U, np.arange(lo, hi), xi, h)

        run_blocks(draw, starts)
        return out

    def _structures(self, U, d_data, i_data, cand, pstat, density, s_lin, s_snr, s_dim, gen, report) -> list[dict]:
        """Analyse the connected candidate structures; return the filaments found."""
        from scipy.sparse import csr_matrix  # noqa: PLC0415
        from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

        n, dim = U.shape
        k = int(self.k)
        cidx = np.flatnonzero(cand)
        found: list[dict] = []
        if cidx.size < max(3, int(self.min_members)):
            return found
        # Edges between candidates i and j with d(i, j) within twice *both* points' k-th
        # neighbour distances: a sparse bulk point that passed the density test cannot
        # bridge two structures. They come from the all-points graph and from a second
        # graph among the candidates alone (the all-points forest may cut a sparse
        # structure in two).
        dk = d_data[cidx, -1]
        pos = np.full(n, -1, np.int64)
        pos[cidx] = np.arange(cidx.size)
        nb = pos[i_data[cidx]].ravel()
        src = np.repeat(np.arange(cidx.size), k)
        ok = (nb >= 0) & (d_data[cidx].ravel() <= _LINK_REACH * dk[np.maximum(nb, 0)])
        srcs, dsts = [src[ok]], [nb[ok]]
        kc = min(k, cidx.size - 1)
        dc, ic, _ = knn_graph(U[cidx], kc, method="exact" if cidx.size <= 10_000 else "forest", rng=gen,
                              n_trees=4, leaf_size=1024)
        s2 = np.repeat(np.arange(cidx.size), kc)
        ok = dc.ravel() <= _LINK_REACH * np.minimum(dk[s2], dk[ic.ravel()])
        srcs.append(s2[ok])
        dsts.append(ic.ravel()[ok])
        src, dst = np.concatenate(srcs), np.concatenate(dsts)
        A = csr_matrix((np.ones(src.size, np.int8), (src, dst)), shape=(cidx.size, cidx.size))
        n_comp, comp = connected_components(A, directed=True, connection="weak")
        sizes = np.bincount(comp, minlength=n_comp)
        big = np.flatnonzero(sizes >= self.min_members)
        total = int(sizes[big].sum())
        done = 0
        for c in big[np.argsort(-sizes[big])]:
            members = cidx[comp == c]
            found.extend(self._analyse_structure(U, members, i_data, pstat, density, s_lin, s_snr, s_dim, gen))
            done += members.size
            report("structures", done, total)
        return found

    def _analyse_structure(self, U, members_all, i_data, pstat, density, s_lin, s_snr, s_dim, gen) -> list[dict]:
        """Shape at the structure's scale, linking, and the filaments of one structure."""
        members = members_all
        if members_all.size > self.max_structure:
            members = np.sort(gen.choice(members_all, size=int(self.max_structure), replace=False))
        out = self._analyse_points(U, members, pstat, density, s_lin, s_snr, s_dim, gen)
        if members.size < members_all.size and out:
            _propagate(out, members, members_all, i_data)
        return out

    def _analyse_points(self, U, members, pstat, density, s_lin, s_snr, s_dim, gen) -> list[dict]:
        from scipy.sparse import csr_matrix  # noqa: PLC0415
        from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

        k = int(self.k)
        dim = U.shape[1]
        nm = members.size
        if nm < max(3, int(self.min_members)):
            return []
        P = U[members]
        K = int(np.clip(round(self.scale_fraction * nm), min(2 * k, nm - 1), min(self.max_scale, nm - 1)))
        _, nbr = exact_knn(P, K, use_faiss=False)  # sorted, without self
        m = int(min(self.n_sub, K + 1))
        cols = np.unique(np.round(np.linspace(0, K - 1, m - 1)).astype(np.int64))
        hoods = np.concatenate([np.arange(nm)[:, None], nbr[:, cols]], axis=1)
        eig, direction = neighbourhood_spectra(P, hoods)
        st = spectrum_stats(eig, dim)
        linear = (st.snr >= self.min_snr) & (st.linearity >= self.min_linearity)
        vote = linear[hoods].mean(axis=1)
        linear = vote > 0.5
        s_lin[members] = st.linearity
        s_snr[members] = st.snr
        s_dim[members] = st.dimension
        if linear.sum() < self.min_members:
            return []
        # link line-like neighbours whose directions agree
        kk = min(k, K)
        src = np.repeat(np.arange(nm), kk)
        dst = nbr[:, :kk].ravel()
        cos = np.abs(np.einsum("ij,ij->i", direction[src], direction[dst]))
        ok = linear[src] & linear[dst] & (cos >= self.direction_cos)
        A = csr_matrix((np.ones(int(ok.sum()), np.int8), (src[ok], dst[ok])), shape=(nm, nm))
        n_comp, comp = connected_components(A, directed=True, connection="weak")
        comp = np.where(linear, comp, -1)
        out = []
        sizes = np.bincount(comp[comp >= 0], minlength=n_comp)
        for c in np.flatnonzero(sizes >= self.min_members):
            loc = np.flatnonzero(comp == c)
            spine = fit_spine(P[loc], gen)
            if spine.thickness > 0 and spine.length < self.min_aspect * spine.thickness:
                continue
            rows = members[loc]
            out.append({
                "members": rows[spine.order],
                "length": spine.length,
                "thickness": spine.thickness,
                "direction": spine.direction,
                "start": int(rows[spine.start]),
                "end": int(rows[spine.end]),
                "spine": spine.nodes,
                "linearity": float(np.median(st.linearity[loc])),
                "snr": float(np.median(st.snr[loc])),
                "density": float(np.median(density[rows])),
                "p_value": filament_pvalue(pstat[0][rows], pstat[1], U.shape[0], int(self.min_members)),
            })
        return out


def _propagate(found: list[dict], analysed: np.ndarray, members_all: np.ndarray, i_data: np.ndarray) -> None:
    """Give the structure's unanalysed points the filament of their nearest analysed neighbour.

    Rounds over the kNN graph: a point takes the label (filament or none) of the first
    labelled point in its neighbour list; points labelled in one round label others in
    the next. Added members go right after their source in the spine order.
    """
    lab: dict[int, tuple[int, int]] = {}
    for j, f in enumerate(found):
        for r, u in enumerate(f["members"]):
            lab[int(u)] = (j, r)
    done = set(int(a) for a in analysed)
    rest = [int(u) for u in np.setdiff1d(members_all, analysed)]
    added: list[list[tuple[int, int]]] = [[] for _ in found]
    for _ in range(32):
        if not rest:
            break
        nxt = []
        newly: dict[int, tuple[int, int] | None] = {}
        for u in rest:
            src = next((int(v) for v in i_data[u] if int(v) in done), None)
            if src is None:
                nxt.append(u)
                continue
            newly[u] = lab.get(src)
        for u, jl in newly.items():
            done.add(u)
            if jl is not None:
                lab[u] = jl
                added[jl[0]].append((jl[1], u))
        if len(nxt) == len(rest):
            break
        rest = nxt
    for j, f in enumerate(found):
        if not added[j]:
            continue
        ranks = np.concatenate([np.arange(f["members"].size, dtype=np.float64), [r + 0.5 for r, _ in added[j]]])
        mem = np.concatenate([f["members"], [u for _, u in added[j]]]).astype(np.int64)
        f["members"] = mem[np.argsort(ranks, kind="stable")]
