"""The spine of a detected filament: a denoised polyline from one end to the other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
        Length of the polyline through ``nodes`` plus the reach of the extreme points
        beyond the end nodes.
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
    from ._local import single_blas_thread  # noqa: PLC0415

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


def fit_spine(P: np.ndarray, rng: np.random.Generator, *, points_per_node: int = 20, max_nodes: int = 64) -> Spine:
    """Fit the spine of one filament's points.

    The points are grouped by k-means into ``n / points_per_node`` groups (at most
    ``max_nodes``), whose centres average the transverse noise away; the longest
    path of the centres' minimum spanning tree is the spine. Each point is placed
    along the spine at its group's position plus its offset along the local tangent.

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
    n_nodes = int(np.clip(n // points_per_node, 2, max_nodes)) if n >= 4 else 1
    C, lab = _kmeans(Pc, n_nodes, rng)
    W = np.sqrt(np.maximum(((C[:, None, :] - C[None, :, :]) ** 2).sum(-1), 0.0))
    path = _tree_path(W)
    nodes = C[path]
    # cumulative arc length at the path nodes
    seg = np.linalg.norm(np.diff(nodes, axis=0), axis=1) if len(path) > 1 else np.zeros(0)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    # tangent at each path node
    if len(path) > 1:
        tang = np.gradient(nodes, axis=0)
        tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-300)
    else:
        tang = _top_direction(Pc)[None, :]
    # every group hangs on its nearest path node
    node_of_group = np.argmin(W[:, path], axis=1)
    j = node_of_group[lab]
    off = Pc - nodes[j]
    along = np.einsum("ij,ij->i", off, tang[j])
    position = cum[j] + along
    trans2 = np.maximum(np.einsum("ij,ij->i", off, off) - along**2, 0.0)
    thickness = float(np.sqrt(trans2.mean()))
    start, end = int(np.argmin(position)), int(np.argmax(position))
    position = position - position[start]
    length = float(position[end])
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
