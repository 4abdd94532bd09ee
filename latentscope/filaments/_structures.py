"""Steps 3-4 of a detection: candidate structures, their shape at their own scale, filaments.

The candidates are linked into structures; inside each, local spectra at the scale
of the structure decide which points are line-like, and line-like points whose
directions agree form filaments with a spine and a selection-aware p-value
(``docs/filaments.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np

from ..neighbors import exact_knn, knn_graph
from ._local import filament_pvalue, neighbourhood_spectra, spectrum_stats
from ._spine import fit_spine

__all__ = ["ShapeRule", "StructureStats", "StageProgress", "find_filaments"]

#: Candidates i, j are linked when d(i, j) <= _LINK_REACH * min(k-th distance of i, of j).
_LINK_REACH = 2.0

StageProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ShapeRule:
    """The parameters of steps 3-4 (meanings as in :class:`FilamentDetector`)."""

    k: int
    min_members: int
    max_structure: int
    scale_fraction: float
    max_scale: int
    n_sub: int
    min_snr: float
    min_linearity: float
    direction_cos: float
    min_aspect: float

    @classmethod
    def of(cls, detector: Any) -> "ShapeRule":
        """The rule of a detector's parameters."""
        return cls(**{f.name: getattr(detector, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class StructureStats:
    """Structure-scale statistics per point (NaN outside the analysed structures).

    Attributes
    ----------
    linearity, snr, dimension : ndarray of shape (n,), float64
        Filled in place by :func:`find_filaments`.
    """

    linearity: np.ndarray
    snr: np.ndarray
    dimension: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "StructureStats":
        """All NaN, for ``n`` points."""
        return cls(np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan))


def find_filaments(
    U: np.ndarray,
    d_data: np.ndarray,
    i_data: np.ndarray,
    cand: np.ndarray,
    pstat: tuple[np.ndarray, np.ndarray],
    density: np.ndarray,
    stats: StructureStats,
    rule: ShapeRule,
    gen: np.random.Generator,
    report: StageProgress,
) -> list[dict]:
    """Analyse the connected candidate structures; return the filaments found.

    Parameters
    ----------
    U : ndarray of shape (n, dim), float32
        The distinct points.
    d_data, i_data : ndarray of shape (n, k)
        Distances and indices of the k nearest neighbours.
    cand : ndarray of shape (n,), bool
        The candidates.
    pstat : (ndarray, ndarray)
        Each point's local contrast and the sorted matched null contrasts.
    density : ndarray of shape (n,)
        Density contrast per point.
    stats : StructureStats
        Filled with the structure-scale statistics of the analysed points.
    rule : ShapeRule
    gen : numpy Generator
    report : callable(stage, done, total)

    Returns
    -------
    list of dict
        One dict per filament (rows refer to ``U``): ``members`` along the spine,
        ``length``, ``thickness``, ``direction``, ``start``, ``end``, ``spine``,
        ``linearity``, ``snr``, ``density`` and ``p_value``.
    """
    from scipy.sparse import csr_matrix  # noqa: PLC0415
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

    n, dim = U.shape
    k = int(rule.k)
    cidx = np.flatnonzero(cand)
    found: list[dict] = []
    if cidx.size < max(3, int(rule.min_members)):
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
    big = np.flatnonzero(sizes >= rule.min_members)
    total = int(sizes[big].sum())
    done = 0
    for c in big[np.argsort(-sizes[big])]:
        members = cidx[comp == c]
        found.extend(_analyse_structure(U, members, i_data, pstat, density, stats, rule, gen))
        done += members.size
        report("structures", done, total)
    return found


def _analyse_structure(U, members_all, i_data, pstat, density, stats, rule, gen) -> list[dict]:
    """Shape at the structure's scale, linking, and the filaments of one structure."""
    members = members_all
    if members_all.size > rule.max_structure:
        members = np.sort(gen.choice(members_all, size=int(rule.max_structure), replace=False))
    out = _analyse_points(U, members, pstat, density, stats, rule, gen)
    if members.size < members_all.size and out:
        _propagate(out, members, members_all, i_data)
    return out


def _analyse_points(U, members, pstat, density, stats, rule, gen) -> list[dict]:
    from scipy.sparse import csr_matrix  # noqa: PLC0415
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

    k = int(rule.k)
    dim = U.shape[1]
    nm = members.size
    if nm < max(3, int(rule.min_members)):
        return []
    P = U[members]
    K = int(np.clip(round(rule.scale_fraction * nm), min(2 * k, nm - 1), min(rule.max_scale, nm - 1)))
    _, nbr = exact_knn(P, K, use_faiss=False)  # sorted, without self
    m = int(min(rule.n_sub, K + 1))
    cols = np.unique(np.round(np.linspace(0, K - 1, m - 1)).astype(np.int64))
    hoods = np.concatenate([np.arange(nm)[:, None], nbr[:, cols]], axis=1)
    eig, direction = neighbourhood_spectra(P, hoods)
    st = spectrum_stats(eig, dim)
    linear = (st.snr >= rule.min_snr) & (st.linearity >= rule.min_linearity)
    vote = linear[hoods].mean(axis=1)
    linear = vote > 0.5
    stats.linearity[members] = st.linearity
    stats.snr[members] = st.snr
    stats.dimension[members] = st.dimension
    if linear.sum() < rule.min_members:
        return []
    # link line-like neighbours whose directions agree
    kk = min(k, K)
    src = np.repeat(np.arange(nm), kk)
    dst = nbr[:, :kk].ravel()
    cos = np.abs(np.einsum("ij,ij->i", direction[src], direction[dst]))
    ok = linear[src] & linear[dst] & (cos >= rule.direction_cos)
    A = csr_matrix((np.ones(int(ok.sum()), np.int8), (src[ok], dst[ok])), shape=(nm, nm))
    n_comp, comp = connected_components(A, directed=True, connection="weak")
    comp = np.where(linear, comp, -1)
    out = []
    sizes = np.bincount(comp[comp >= 0], minlength=n_comp)
    for c in np.flatnonzero(sizes >= rule.min_members):
        loc = np.flatnonzero(comp == c)
        spine = fit_spine(P[loc], gen)
        if spine.thickness > 0 and spine.length < rule.min_aspect * spine.thickness:
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
            "p_value": filament_pvalue(pstat[0][rows], pstat[1], U.shape[0], int(rule.min_members)),
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
