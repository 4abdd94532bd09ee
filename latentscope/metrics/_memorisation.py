"""Memorisation check: are generated items closer to training items than the data's own neighbours?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .._validation import SeedLike, check_array, check_fraction, check_positive, check_rng
from ..exceptions import InvalidParameterError
from ..neighbors import nearest_distances, reference_distances, resolve_engine
from ..stream import DEFAULT_MAX_BYTES, ZSource, reading

__all__ = ["MemorisationResult", "memorisation"]


@dataclass(frozen=True, eq=False)
class MemorisationResult:
    """Nearest-training distances of generated items against the training set's own.

    Attributes
    ----------
    generated_nn_distance : ndarray of shape (n_generated,)
        Distance of each generated item to its nearest training item.
    nearest_train_index : ndarray of shape (n_generated,), int64
        Row of that training item.
    train_nn_distance : ndarray of shape (n_train_queries,)
        Distance of each sampled training item to its nearest *other* training item
        (the reference distribution).
    quantiles : tuple of float
        The reference quantiles q.
    thresholds : ndarray of shape (n_quantiles,)
        The q-quantiles of ``train_nn_distance``.
    fraction_below : ndarray of shape (n_quantiles,)
        Share of generated items whose nearest-training distance is below each
        threshold. A generator that draws fresh samples from the data distribution
        gives about q; copies of training items push it towards 1.
    n_train : int
    method : str
        ``"exact"`` or ``"faiss"``.
    """

    generated_nn_distance: np.ndarray
    nearest_train_index: np.ndarray
    train_nn_distance: np.ndarray
    quantiles: tuple
    thresholds: np.ndarray
    fraction_below: np.ndarray
    n_train: int
    method: str

    @property
    def excess(self) -> np.ndarray:
        """``fraction_below / quantiles``: about 1 without memorisation, larger with it."""
        return self.fraction_below / np.asarray(self.quantiles)

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-item arrays)."""
        return {
            "quantiles": [float(q) for q in self.quantiles],
            "thresholds": [float(t) for t in self.thresholds],
            "fraction_below": [float(f) for f in self.fraction_below],
            "median_generated_nn_distance": float(np.median(self.generated_nn_distance)),
            "median_train_nn_distance": float(np.median(self.train_nn_distance)),
            "n_generated": int(self.generated_nn_distance.shape[0]),
            "n_train": self.n_train,
            "n_train_queries": int(self.train_nn_distance.shape[0]),
            "method": self.method,
        }


def _as_rows(x: Any, name: str) -> Any:
    """Arrays of images (n, h, w, c) become float pixel rows in [0, 1]; features, stores and paths stay."""
    shape = getattr(x, "shape", None)
    if isinstance(x, (np.ndarray, list, tuple)) or (shape is not None and len(shape) > 2):
        arr = np.asarray(x)
        if arr.ndim > 2:
            scale = 1.0 / 255.0 if arr.dtype == np.uint8 else 1.0
            arr = arr.reshape(arr.shape[0], -1).astype(np.float64) * scale
        return check_array(arr, name=name, min_rows=1, owner="memorisation")
    return x


def memorisation(
    train: Any,
    generated: Any,
    *,
    quantiles: Sequence[float] = (0.01, 0.05),
    n_train_queries: int | None = 5000,
    knn: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
    rng: SeedLike = None,
) -> MemorisationResult:
    """Flag generated items that sit suspiciously close to a training item.

    Each generated item's distance to its nearest training item is compared with the
    distribution of the training items' distances to their own nearest (other)
    training item. For a generator that samples the data distribution afresh, a
    generated item is as close to the training set as a held-out training item would
    be, so the share of generated items below the q-quantile of the training
    nearest-neighbour distances is about q; memorised (copied or nearly copied)
    training items fall far below it.

    Parameters
    ----------
    train : ZStore, store path, ZSource or array-like of shape (n_train, dim), or images (n_train, h, w, c)
        Training features, e.g. the store of encoded training images. Image arrays are
        compared in pixel space (flattened, uint8 scaled to [0, 1]).
    generated : array-like of shape (n_generated, dim), or images
        Features (or images) of the generated items, in the same space as ``train``.
    quantiles : sequence of float in (0, 1), default=(0.01, 0.05)
    n_train_queries : int or None, default=5000
        Number of training items (drawn at random) whose nearest-neighbour distance
        forms the reference distribution; each is searched against the *whole*
        training set, so the estimate is unbiased. ``None`` uses every item
        (O(n_train^2) work).
    knn : {"auto", "exact", "faiss"}, default="auto"
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
        Memory budget of one block of distances (a store is streamed block by block).
    rng : None, int, SeedSequence or Generator
        Draws the training queries.

    Returns
    -------
    MemorisationResult
    """
    owner = "memorisation"
    gen = _as_rows(generated, "generated")
    with reading(gen, owner="generated") as gen_src:
        gen_rows = np.asarray(gen_src.read(), dtype=np.float64)  # the queries, in memory
    train_rows = _as_rows(train, "train")
    with reading(train_rows, owner="train") as train_src:
        return _memorisation(train_src, gen_rows, quantiles, n_train_queries, knn, max_bytes, rng, owner)


def _memorisation(train: ZSource, gen_rows: np.ndarray, quantiles: Sequence[float], n_train_queries: int | None,
                  knn: str, max_bytes: int, rng: SeedLike, owner: str) -> MemorisationResult:
    n_train, dim = train.shape
    if n_train < 2:
        raise InvalidParameterError(f"{owner}: train must have at least 2 rows; got {n_train}.")
    if gen_rows.shape[1] != dim:
        raise InvalidParameterError(
            f"{owner}: train and generated must have the same dimension; got {dim} and {gen_rows.shape[1]}."
        )
    qs = tuple(check_fraction(q, "quantiles", owner=owner) for q in np.atleast_1d(np.asarray(quantiles, dtype=object)).tolist())
    if not qs:
        raise InvalidParameterError(f"{owner}: quantiles must hold at least one value in (0, 1); got none.")
    if n_train_queries is not None:
        check_positive(n_train_queries, "n_train_queries", owner=owner, integer=True)
    gen = check_rng(rng)
    n_q = n_train if n_train_queries is None else min(int(n_train_queries), n_train)
    method = resolve_engine(knn, n_train * max(n_q, gen_rows.shape[0]), owner=owner)

    gen_d, idx_gen = nearest_distances(gen_rows, train, 1, return_indices=True, method=method, max_bytes=max_bytes)
    gen_d = gen_d[:, 0]
    _, train_d = reference_distances(train, n_q, 1, rng=gen, method=method, max_bytes=max_bytes)
    train_d = train_d[:, 0]
    thresholds = np.quantile(train_d, qs)
    fraction = np.array([float(np.mean(gen_d <= t)) for t in thresholds])
    return MemorisationResult(gen_d, idx_gen[:, 0], train_d, qs, thresholds, fraction, int(n_train), method)
