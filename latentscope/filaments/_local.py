"""Per-point local statistics: kNN density, intrinsic dimension, local PCA spectra."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..stream import run_blocks

__all__ = [
    "mle_dimension", "knn_linearity", "neighbourhood_spectra",
    "SpectrumStats", "spectrum_stats", "empirical_pvalues", "benjamini_hochberg",
    "local_contrast", "match_null", "filament_pvalue", "grow_dense",
]

Progress = Callable[[int, int], None]
_POWER_STEPS = 20


def mle_dimension(dist: np.ndarray) -> np.ndarray:
    """Levina-Bickel maximum-likelihood intrinsic dimension from kNN distances.

    Parameters
    ----------
    dist : ndarray of shape (n, k)
        Distances to the k nearest neighbours, ascending, all > 0.

    Returns
    -------
    ndarray of shape (n,)
        ``(k - 2) / sum_{j<k} log(T_k / T_j)`` (the bias-corrected form of MacKay and
        Ghahramani); ``inf`` where all k distances are equal.
    """
    d = np.asarray(dist, dtype=np.float64)
    k = d.shape[1]
    if k < 2:
        return np.full(d.shape[0], np.nan)
    d = np.maximum(d, d[:, -1:] * 1e-12)
    logs = np.log(d[:, -1:] / d[:, :-1]).sum(axis=1)
    num = k - 2 if k > 2 else 1
    with np.errstate(divide="ignore"):
        return np.where(logs > 0, num / np.where(logs > 0, logs, 1.0), np.inf)


def _gather_centred(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    P = X[rows].astype(np.float32, copy=False)
    P -= P.mean(axis=1, keepdims=True)
    return P


def _top_eigenvalue(G: np.ndarray, steps: int) -> np.ndarray:
    """Largest eigenvalue of a stack of PSD matrices: Rayleigh quotient after power steps.

    The quotient's error is second order in the residual of the vector, so it is
    accurate even where the two leading eigenvalues are close.
    """
    far = np.argmax(np.einsum("bii->bi", G), axis=1)
    x = np.take_along_axis(G, far[:, None, None], axis=2)
    for _ in range(steps):
        x = G @ x
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    return np.einsum("bi,bi->b", x[:, :, 0], (G @ x)[:, :, 0])


def knn_linearity(X: np.ndarray, idx: np.ndarray, *, block: int = 4096, progress: Progress | None = None) -> np.ndarray:
    """Single-scale linearity: largest local PCA eigenvalue over their sum.

    The neighbourhood of point ``i`` is ``i`` and its neighbours ``idx[i]``; the
    largest eigenvalue of its Gram matrix comes from 30 power steps.

    Returns
    -------
    ndarray of shape (n,), float32
        ``lambda_1 / sum(lambda)`` in ``[1 / min(k + 1, dim), 1]``.
    """
    n = idx.shape[0]
    out = np.empty(n, np.float32)
    hood = np.concatenate([np.arange(n)[:, None], idx], axis=1)

    def one(lo: int) -> None:
        hi = min(n, lo + block)
        P = _gather_centred(X, hood[lo:hi])
        G = (P @ P.transpose(0, 2, 1)).astype(np.float64)
        tot = np.einsum("bii->b", G)
        top = _top_eigenvalue(G, 30)
        out[lo:hi] = np.where(tot > 0, top / np.where(tot > 0, tot, 1.0), np.nan)

    starts = list(range(0, n, block))
    run_blocks(one, starts, sizes=[min(block, n - lo) for lo in starts], progress=progress)
    return out


def neighbourhood_spectra(
    X: np.ndarray, hoods: np.ndarray, *, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Local PCA of many neighbourhoods of equal size, via their Gram matrices.

    Parameters
    ----------
    X : ndarray of shape (n, dim)
    hoods : ndarray of shape (n_hoods, m), int
        Row indices of each neighbourhood's points.

    Returns
    -------
    eig : ndarray of shape (n_hoods, m), float64
        Eigenvalues of the centred scatter matrix, descending (the nonzero
        eigenvalues of the scatter equal those of the Gram matrix).
    direction : ndarray of shape (n_hoods, dim), float32
        Unit principal direction of each neighbourhood.
    """
    n_h, m = hoods.shape
    dim = X.shape[1]
    eig = np.empty((n_h, m), np.float64)
    direction = np.empty((n_h, dim), np.float32)

    def one(lo: int) -> None:
        hi = min(n_h, lo + block)
        P = _gather_centred(X, hoods[lo:hi])
        G = (P @ P.transpose(0, 2, 1)).astype(np.float64)
        eig[lo:hi] = np.clip(np.linalg.eigvalsh(G)[:, ::-1], 0.0, None)
        # leading eigenvector by power iteration from the column of the point
        # farthest from the centroid (fast where it matters: a dominant direction)
        far = np.argmax(np.einsum("bii->bi", G), axis=1)
        x = np.take_along_axis(G, far[:, None, None], axis=2)
        for _ in range(_POWER_STEPS):
            x = G @ x
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        u = np.einsum("bm,bmd->bd", x[:, :, 0].astype(np.float32), P)
        norm = np.linalg.norm(u, axis=1, keepdims=True)
        direction[lo:hi] = u / np.where(norm > 0, norm, 1.0)

    run_blocks(one, list(range(0, n_h, block)))
    return eig, direction


@dataclass(frozen=True, eq=False)
class SpectrumStats:
    """Noise-corrected summary of local PCA spectra (one value per neighbourhood).

    Attributes
    ----------
    noise : ndarray
        Estimated per-direction variance of isotropic noise (sigma^2).
    edge : ndarray
        Largest eigenvalue pure noise would give (the Marchenko-Pastur edge).
    snr : ndarray
        Largest eigenvalue over ``edge``; above 1 the neighbourhood has a resolved
        direction.
    linearity : ndarray
        ``s_1 / sum_j s_j`` with ``s_j = max(lambda_j - edge, 0)`` over the leading
        ``n_signal`` eigenvalues: 1 for a curve, about 1/2 for a sheet; 0 when
        nothing is resolved.
    dimension : ndarray
        Participation ratio ``(sum s)^2 / sum s^2`` of the same excesses (0 when
        nothing is resolved): about 1 for a curve, 2 for a sheet.
    """

    noise: np.ndarray
    edge: np.ndarray
    snr: np.ndarray
    linearity: np.ndarray
    dimension: np.ndarray


def spectrum_stats(eig: np.ndarray, dim: int, *, n_signal: int = 3) -> SpectrumStats:
    """Separate resolved directions from isotropic noise in local PCA spectra.

    For ``m`` points (``n = m - 1`` degrees of freedom) with isotropic noise of
    variance ``sigma^2`` in ``dim`` directions, the nonzero scatter eigenvalues fill
    ``sigma^2 [(sqrt(n) - sqrt(dim))^2, (sqrt(n) + sqrt(dim))^2]``. ``sigma^2`` is
    estimated from the eigenvalues after the first ``r = min(n_signal, q - 1)``
    (``q = min(n, dim)``), whose sum is about ``(n - r)(dim - r) sigma^2``.

    Parameters
    ----------
    eig : ndarray of shape (n_hoods, m)
        Descending eigenvalues from :func:`neighbourhood_spectra`.
    dim : int
        Dimension of the space.
    n_signal : int, default=3
        Leading eigenvalues treated as possible signal.
    """
    eig = np.asarray(eig, dtype=np.float64)
    m = eig.shape[1]
    n = m - 1
    q = min(n, dim)
    r = max(1, min(n_signal, q - 1))
    rest = eig[:, r:q].sum(axis=1)
    noise = rest / max(1, (n - r) * (dim - r))
    edge = noise * (np.sqrt(n) + np.sqrt(dim)) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(edge > 0, eig[:, 0] / edge, np.inf)
        s = np.clip(eig[:, :r] - edge[:, None], 0.0, None)
        tot = s.sum(axis=1)
        lin = np.where(tot > 0, s[:, 0] / np.where(tot > 0, tot, 1.0), 0.0)
        pr = np.where(tot > 0, tot**2 / np.where(tot > 0, (s**2).sum(axis=1), 1.0), 0.0)
    return SpectrumStats(noise=noise, edge=edge, snr=snr, linearity=lin, dimension=pr)


def empirical_pvalues(stat: np.ndarray, null_sorted: np.ndarray) -> np.ndarray:
    """Lower-tail empirical p-values ``(1 + #{null <= stat}) / (n_null + 1)``."""
    count = np.searchsorted(null_sorted, stat, side="right")
    return (1.0 + count) / (null_sorted.size + 1.0)


def benjamini_hochberg(p: np.ndarray, q: float) -> np.ndarray:
    """Boolean mask of the hypotheses rejected by Benjamini-Hochberg at level ``q``.

    NaN p-values are never rejected but count among the tests.
    """
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return np.zeros(0, bool)
    pp = np.where(np.isnan(p), np.inf, p)
    order = np.argsort(pp, kind="stable")
    thresh = q * np.arange(1, m + 1) / m
    ok = pp[order] <= thresh
    if not ok.any():
        return np.zeros(m, bool)
    last = int(np.flatnonzero(ok)[-1])
    out = np.zeros(m, bool)
    out[order[: last + 1]] = True
    return out


def local_contrast(dist: np.ndarray, k: int, inner: int) -> np.ndarray:
    """Scale-free local contrast ``log((d_k^2 - d_j^2) / (d_K^2 - d_j^2))`` of each point.

    ``d_j``, ``d_k``, ``d_K`` are the distances to the ``inner``-th, ``k``-th and last
    (``K``-th) neighbour. Multiplying all distances by a constant, or adding a
    constant to all squared distances (what isotropic noise does in high dimension),
    leaves it unchanged. Locally uniform points in ``D`` dimensions give about
    ``log(log(k / j) / log(K / j))``; points on a thin line about
    ``log((k^2 - j^2) / (K^2 - j^2))``; points of a dense structure smaller than
    ``K`` points still less. Lower is denser at scale k than at scale K.

    Parameters
    ----------
    dist : ndarray of shape (n, K)
        Distances to the K nearest neighbours, ascending.
    k, inner : int
        1-based ranks, ``1 <= inner < k < K``.

    Returns
    -------
    ndarray of shape (n,), float64
        ``-inf`` where ``d_k = d_j`` (coincident neighbours), 0 where all K distances
        are equal.
    """
    d = np.asarray(dist, dtype=np.float64)
    a, b, c = d[:, inner - 1] ** 2, d[:, k - 1] ** 2, d[:, -1] ** 2
    num, den = b - a, c - a
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0))
    return out


def match_null(stat: np.ndarray, null: np.ndarray) -> np.ndarray:
    """The null's statistics moved to the data's median and upper quartile (sorted).

    An empirical null in the sense of Efron (2004): the null cloud gives the shape of
    the statistic's law, the data its location (median) and scale (upper quartile
    minus median). Concentrated structures only populate the lower tail, so the
    upper half of the data is barely touched by them.
    """
    x = np.asarray(stat, dtype=np.float64)
    y = np.asarray(null, dtype=np.float64)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 4 or y.size < 4:
        return np.sort(np.asarray(null, dtype=np.float64))
    qx = np.quantile(x, [0.5, 0.75])
    qy = np.quantile(y, [0.5, 0.75])
    spread_y = qy[1] - qy[0]
    scale = (qx[1] - qx[0]) / spread_y if spread_y > 0 else 1.0
    return np.sort(qx[0] + (np.asarray(null, dtype=np.float64) - qy[0]) * scale)


def filament_pvalue(member_stat: np.ndarray, null_sorted: np.ndarray, n_data: int, min_members: int) -> float:
    """Selection-aware p-value of a structure from the null's own order statistics.

    For ``j`` on the fixed grid ``min_members * 2**g`` (up to ``n_data``), let ``s_j``
    be the number of null statistics at or below the structure's ``j``-th lowest. If
    data and null statistics were exchangeable draws of one law, the chance that *any*
    ``j`` data points have at most ``s_j`` null values below them is the hypergeometric
    tail ``P[X >= j]``, ``X ~ Hypergeom(n_data + n_null, n_data, j + s_j)``, however
    the structure was selected. The p-value is the smallest such tail over the grid,
    times the grid's size (Bonferroni).
    """
    from scipy.stats import hypergeom  # noqa: PLC0415

    t = np.sort(np.asarray(member_stat, dtype=np.float64))
    m, n_null = t.size, null_sorted.size
    grid = []
    j = max(1, int(min_members))
    while j <= max(1, int(n_data)):
        grid.append(j)
        j *= 2
    best = 1.0
    for j in grid:
        if j > m:
            break
        s = int(np.searchsorted(null_sorted, t[j - 1], side="right"))
        best = min(best, float(hypergeom.sf(j - 1, int(n_data) + n_null, int(n_data), j + s)))
    return float(min(1.0, best * max(1, len(grid))))


def grow_dense(seeds: np.ndarray, dk: np.ndarray, idx: np.ndarray, factor: float) -> np.ndarray:
    """Seeds plus the points reachable from them through at least as dense neighbours.

    A neighbour ``j`` (in ``idx``) of a reached point joins when its k-th neighbour
    distance is at most ``factor`` times that of the seed the path started from (the
    cap is inherited, never relaxed, so the growth cannot drift into sparser
    regions). Without seeds nothing is added; an infinite ``dk`` never joins.

    Parameters
    ----------
    seeds : ndarray of shape (n,), bool
    dk : ndarray of shape (n,)
        k-th neighbour distances.
    idx : ndarray of shape (n, k), int
        Neighbour lists.
    factor : float
        Largest ratio of a joining point's k-th distance to its seed's.

    Returns
    -------
    ndarray of shape (n,), bool
    """
    n = seeds.size
    live = seeds & np.isfinite(dk)  # a seed with an infinite distance grows nothing
    cap = np.where(live, factor * np.where(live, dk, 0.0), -np.inf)
    frontier = np.flatnonzero(live)
    while frontier.size:
        src = np.repeat(frontier, idx.shape[1])
        dst = idx[frontier].ravel()
        c = cap[src]
        ok = (dk[dst] <= c) & (c > cap[dst])
        if not ok.any():
            break
        new = np.full(n, -np.inf)
        np.maximum.at(new, dst[ok], c[ok])
        better = new > cap
        cap[better] = new[better]
        frontier = np.flatnonzero(better)
    return seeds | (cap > -np.inf)
