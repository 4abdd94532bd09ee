"""The spine of a detected filament: a denoised polyline from one end to the other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stream import single_blas_thread

__all__ = ["Spine", "fit_spine"]


@dataclass(frozen=True, eq=False)
class Spine:
    """Result of :func:`fit_spine` (positions refer to the rows of the input).

    Attributes
    ----------
    nodes : ndarray of shape (n_nodes, dim)
        Group centres along the longest path of their spanning tree, start to end.
    order : ndarray of shape (n,)
        Input rows sorted by their position along the spine.
    position : ndarray of shape (n,)
        Arc-length position of each input row (same order as the input).
    length : float
        Length of the polyline through ``nodes`` (each segment corrected for the
        centres' own noise) plus the reach of the points beyond the end nodes.
    thickness : float
        Root-mean-square distance of the points from the spine, across it.
    start, end : int
        Input rows of the two extreme points.
    direction : ndarray of shape (dim,)
        Unit leading principal direction of all points, oriented from start to end.
    """

    nodes: np.ndarray
    order: np.ndarray
    position: np.ndarray
    length: float
    thickness: float
    start: int
    end: int
    direction: np.ndarray


def _top_direction(Pc: np.ndarray) -> np.ndarray:
    """Unit leading principal direction of centred points (via the smaller Gram side)."""
    n, dim = Pc.shape
    with single_blas_thread():
        if n >= dim:
            _, v = np.linalg.eigh(Pc.T @ Pc)
            u = v[:, -1]
        else:
            _, v = np.linalg.eigh(Pc @ Pc.T)
            u = Pc.T @ v[:, -1]
    norm = np.linalg.norm(u)
    return u / norm if norm > 0 else np.eye(dim)[0]


def _kmeans(P: np.ndarray, n_nodes: int, rng: np.random.Generator, n_iter: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-point initialisation and a few Lloyd steps; returns (centres, labels)."""
    n = P.shape[0]
    sq = np.einsum("ij,ij->i", P, P)
    first = int(rng.integers(n))
    chosen = [first]
    dmin = sq + sq[first] - 2 * P @ P[first]
    for _ in range(1, n_nodes):
        nxt = int(np.argmax(dmin))
        chosen.append(nxt)
        dmin = np.minimum(dmin, sq + sq[nxt] - 2 * P @ P[nxt])
    C = P[chosen].copy()
    labels = np.zeros(n, np.int64)
    for _ in range(n_iter):
        d2 = sq[:, None] + np.einsum("ij,ij->i", C, C)[None, :] - 2 * P @ C.T
        labels = np.argmin(d2, axis=1)
        counts = np.bincount(labels, minlength=n_nodes)
        sums = np.zeros_like(C)
        np.add.at(sums, labels, P)
        keep = counts > 0
        C[keep] = sums[keep] / counts[keep, None]
    keep = np.bincount(labels, minlength=n_nodes) > 0
    remap = np.cumsum(keep) - 1
    return C[keep], remap[labels]


def _tree_path(W: np.ndarray) -> list[int]:
    """Longest (weighted) path of the minimum spanning tree of a dense distance matrix."""
    from scipy.sparse.csgraph import minimum_spanning_tree, shortest_path  # noqa: PLC0415

    m = W.shape[0]
    if m == 1:
        return [0]
    tree = minimum_spanning_tree(W + 1e-300 * (W == 0))
    dist, pred = shortest_path(tree, directed=False, return_predecessors=True)
    a = int(np.argmax(dist[0]))
    b = int(np.argmax(dist[a]))
    path = [b]
    while path[-1] != a:
        path.append(int(pred[a, path[-1]]))
    return path[::-1]


def _tangents(nodes: np.ndarray) -> np.ndarray:
    """Unit tangents of a polyline, each over up to four node spacings (less noisy)."""
    m = nodes.shape[0]
    ahead = np.minimum(np.arange(m) + 2, m - 1)
    behind = np.maximum(np.arange(m) - 2, 0)
    tang = nodes[ahead] - nodes[behind]
    return tang / np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-300)


def _place(Pc: np.ndarray, nodes: np.ndarray, node_of_point: np.ndarray, *, corrected: bool):
    """Arc-length positions of points hung on polyline nodes; also the squared
    transverse residuals and the (noise-corrected) cumulative node positions."""
    m = nodes.shape[0]
    tang = _tangents(nodes)
    off = Pc - nodes[node_of_point]
    along = np.einsum("ij,ij->i", off, tang[node_of_point])
    trans2 = np.maximum(np.einsum("ij,ij->i", off, off) - along**2, 0.0)
    seg2 = (np.diff(nodes, axis=0) ** 2).sum(axis=1)
    if corrected:
        # E|c_a - c_b|^2 = seg^2 + var_a + var_b, var = mean transverse residual^2 / count
        counts = np.maximum(np.bincount(node_of_point, minlength=m), 1)
        var_c = np.bincount(node_of_point, weights=trans2, minlength=m) / counts**2
        seg2 = np.maximum(seg2 - var_c[:-1] - var_c[1:], 0.25 * seg2)
    cum = np.concatenate([[0.0], np.cumsum(np.sqrt(seg2))])
    return cum[node_of_point] + along, along, trans2, cum


def fit_spine(P: np.ndarray, rng: np.random.Generator, *, points_per_node: int = 20, max_nodes: int = 64) -> Spine:
    """Fit the spine of one filament's points.

    Two passes, in the manner of a principal curve. First the points are grouped by
    k-means into at most 16 groups; the longest path of the centres' minimum spanning
    tree orders the points (each hangs on its group's nearest path node, offset along
    the local tangent). Then the ordered points are cut into bins of about
    ``points_per_node`` (at most ``max_nodes`` bins); the bin means average the
    transverse noise away without fitting it (k-means centres in many dimensions do)
    and form the spine. Segment lengths are corrected for the bin means' remaining
    noise.

    Parameters
    ----------
    P : ndarray of shape (n, dim)
    rng : numpy Generator
    points_per_node, max_nodes : int
    """
    P = np.asarray(P, dtype=np.float64)
    n = P.shape[0]
    mu = P.mean(axis=0)
    Pc = P - mu
    if n < 4:
        nodes = Pc.mean(axis=0, keepdims=True)
        along = Pc @ _top_direction(Pc)
        position = along - along.min()
        trans2 = np.maximum((Pc**2).sum(axis=1) - along**2, 0.0)
        start, end = int(np.argmin(position)), int(np.argmax(position))
        length = float(position[end])
    else:
        # pass 1: a coarse ordering from a few k-means groups
        C, lab = _kmeans(Pc, int(np.clip(n // points_per_node, 2, 16)), rng)
        W = np.sqrt(np.maximum(((C[:, None, :] - C[None, :, :]) ** 2).sum(-1), 0.0))
        path = _tree_path(W)
        if len(path) > 1:
            hang = np.argmin(W[:, path], axis=1)[lab]
            position, _, _, _ = _place(Pc, C[path], hang, corrected=False)
        else:
            position = Pc @ _top_direction(Pc)
        # pass 2: bins of consecutive points along that ordering
        m = int(np.clip(n // points_per_node, 2, max_nodes))
        order = np.argsort(position, kind="stable")
        node_of_point = np.empty(n, np.int64)
        node_of_point[order] = np.arange(n) * m // n
        counts = np.bincount(node_of_point, minlength=m)
        nodes = np.zeros((m, Pc.shape[1]))
        np.add.at(nodes, node_of_point, Pc)
        nodes /= counts[:, None]
        position, along, trans2, cum = _place(Pc, nodes, node_of_point, corrected=True)

        # reach beyond the end nodes: for points spread evenly over a bin of width w,
        # the mean outward offset of those beyond its centre is w / 4
        def reach(node: int, sign: float) -> float:
            out = sign * along[node_of_point == node]
            out = out[out > 0]
            return 2.0 * float(out.mean()) if out.size else 0.0

        length = float(cum[-1] + reach(0, -1.0) + reach(m - 1, 1.0))
        start, end = int(np.argmin(position)), int(np.argmax(position))
        position = position - position[start]
    thickness = float(np.sqrt(trans2.mean()))
    direction = _top_direction(Pc)
    if direction @ (P[end] - P[start]) < 0:
        direction = -direction
    return Spine(
        nodes=(nodes + mu).astype(np.float32),
        order=np.argsort(position, kind="stable"),
        position=position,
        length=length,
        thickness=thickness,
        start=start,
        end=end,
        direction=direction.astype(np.float32),
    )
