"""The one place that imports faiss (optional, the ``knn`` extra): probe, flat and IVF searches.

faiss works in float32. Every caller shifts its points by a common centre first
(the mean of the set searched against), which keeps the cancellation error of
``|q|^2 + |x|^2 - 2 q.x`` small far from the origin.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["faiss_module", "faiss_available", "flat_index", "flat_search", "drop_self", "ivf_graph"]


def faiss_module() -> Any:
    """The faiss module, or None when it cannot be imported (imported lazily, only when used)."""
    try:
        import faiss  # noqa: PLC0415 - optional, heavy
    except ImportError:
        return None
    return faiss


def faiss_available() -> bool:
    """Whether faiss can be imported (the optional ``knn`` extra: ``pip install 'latentscope-ae[knn]'``).

    Returns
    -------
    bool
    """
    return faiss_module() is not None


def flat_index(points: np.ndarray) -> Any:
    """An exhaustive ``faiss.IndexFlatL2`` holding ``points`` (as float32)."""
    faiss = faiss_module()
    ref = np.ascontiguousarray(points, dtype=np.float32)
    index = faiss.IndexFlatL2(ref.shape[1])
    index.add(ref)
    return index


def drop_self(d2: np.ndarray, ii: np.ndarray, self_idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (or, if absent, its last entry) from ``k + 1`` results.

    Returns the ``k`` remaining squared distances (float32, clipped at 0) and indices (int64).
    """
    is_self = ii == self_idx[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones_like(is_self)
    keep[np.arange(ii.shape[0]), drop] = False
    d2 = d2[keep].reshape(-1, k)
    ii = ii[keep].reshape(-1, k)
    return np.maximum(d2, 0.0).astype(np.float32), ii.astype(np.int64)


def flat_search(
    centred: np.ndarray, k: int, *, progress: Callable[[int, int], None] | None = None, step: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest *other* rows of every row of ``centred`` (float32, already centred).

    Returns squared distances (float32) and indices (int64), ascending.
    """
    n = centred.shape[0]
    index = flat_index(centred)
    d2 = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        dd, ii = index.search(centred[lo:hi], k + 1)
        d2[lo:hi], idx[lo:hi] = drop_self(dd, ii, np.arange(lo, hi), k)
        if progress is not None:
            progress(hi, n)
    return d2, idx


def ivf_graph(
    centred: np.ndarray, k: int, *, nprobe: int, rng: np.random.Generator,
    progress: Callable[[int, int], None] | None = None, step: int = 16384,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate ``k`` nearest other rows from ``faiss.IndexIVFFlat`` (``sqrt(n)`` lists, ``nprobe`` probes).

    Returns squared distances (float32; ``inf`` where the probed lists held too few
    points) and indices (int64).
    """
    faiss = faiss_module()
    n, dim = centred.shape
    nlist = int(max(1, min(4096, round(np.sqrt(n)))))
    quant = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quant, dim, nlist)
    train = centred[rng.choice(n, size=min(n, 40 * nlist), replace=False)]
    index.cp.seed = int(rng.integers(2**31 - 1))
    index.train(train)
    index.add(centred)
    index.nprobe = int(nprobe)
    d2 = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        dd, ii = index.search(centred[lo:hi], k + 1)
        dd = np.where(ii < 0, np.inf, dd)
        d2[lo:hi], idx[lo:hi] = drop_self(dd, ii, np.arange(lo, hi), k)
        if progress is not None:
            progress(hi, n)
    return d2, idx
