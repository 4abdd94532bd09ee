"""Statistics split by a per-point attribute (e.g. CelebA's 'Smiling')."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_positive
from ..exceptions import InvalidParameterError
from ..stream import DEFAULT_MAX_BYTES, as_zsource, run_pass
from ._base import Analysis, ProgressFn, pass_progress
from ._passes import FirstPass, FirstPassResult, SecondPass, SecondPassResult, describe, numerical_rank
from ._pca import PCAFrame

__all__ = ["AttributeSplit", "AttributeGroups", "attribute_groups"]

MAX_GROUPS = 16
_BINARY = ({-1, 1}, {0, 1}, {False, True})


@dataclass(frozen=True)
class AttributeGroups:
    """How the rows are split: the group values, names and the row -> group mapping."""

    attribute: str
    values: tuple
    names: tuple
    threshold: float | None = None

    @property
    def n_groups(self) -> int:
        return len(self.values)

    def group_of(self, labels: np.ndarray) -> np.ndarray:
        """Group index of each label."""
        lab = np.asarray(labels)
        if lab.ndim != 1:
            lab = lab.reshape(lab.shape[0], -1)
            if lab.shape[1] != 1:
                raise InvalidParameterError(f"attribute {self.attribute!r} must hold one value per row; got shape {labels.shape}.")
            lab = lab[:, 0]
        if self.threshold is not None:
            return (lab.astype(np.float64) > self.threshold).astype(np.intp)
        if lab.dtype.kind in "OUS":
            lab = np.array([v.decode() if isinstance(v, bytes) else v for v in lab], dtype=object)
            lookup = {v: i for i, v in enumerate(self.values)}
            return np.array([lookup[v] for v in lab], dtype=np.intp)
        vals = np.asarray(self.values)
        idx = np.searchsorted(vals, lab)
        idx = np.clip(idx, 0, len(vals) - 1)
        if not np.all(vals[idx] == lab):
            raise InvalidParameterError(f"attribute {self.attribute!r}: a value outside {list(self.values)} appeared.")
        return idx.astype(np.intp)


def _iter_labels(source: Any, attribute: str | None, labels: Any) -> Any:
    src = as_zsource(source, owner="AttributeSplit")
    try:
        if labels is not None:
            lab = np.asarray(labels)
            n = src.n_rows
            if lab.shape[:1] != (n,):
                raise InvalidParameterError(f"AttributeSplit: labels must have one value per row ({n}); got shape {lab.shape}.")
            yield lab
            return
        if not src.is_store:
            raise InvalidParameterError("AttributeSplit: an array source needs labels=...; a store names a column.")
        names = src.store.column_names
        if attribute not in names:
            raise InvalidParameterError(f"{src.path}: no column {attribute!r}; the store has: {', '.join(names) or 'none'}.")
        step = 1 << 18
        for lo in range(0, src.n_rows, step):
            yield src.column(attribute, slice(lo, min(src.n_rows, lo + step)))
    finally:
        if src is not source:
            src.close()  # a store this call opened from a path


def attribute_groups(source: Any, attribute: str | None, *, labels: Any = None, threshold: float | None = None) -> AttributeGroups:
    """Scan an attribute (a store column or ``labels``) and define the row groups.

    Binary attributes (values in {-1, 1}, {0, 1} or bools) give the groups
    ``"not NAME"`` and ``"NAME"``; other attributes with at most 16 distinct values
    give one group per value; with ``threshold`` the groups are ``<= threshold`` and
    ``> threshold``.
    """
    name = attribute or "label"
    if threshold is not None:
        thr = float(threshold)
        for _ in _iter_labels(source, attribute, labels):
            pass
        return AttributeGroups(name, (0, 1), (f"{name} <= {thr:g}", f"{name} > {thr:g}"), thr)
    seen: set = set()
    for chunk in _iter_labels(source, attribute, labels):
        chunk = np.asarray(chunk)
        if chunk.ndim > 1:
            if int(np.prod(chunk.shape[1:])) != 1:
                raise InvalidParameterError(f"attribute {name!r} must hold one value per row; got shape {chunk.shape}.")
            chunk = chunk.reshape(-1)
        if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
            raise InvalidParameterError(f"attribute {name!r} holds non-finite values.")
        u = np.unique(chunk)
        seen.update(v.decode() if isinstance(v, bytes) else v.item() if isinstance(v, np.generic) else v for v in u)
        if len(seen) > MAX_GROUPS:
            raise InvalidParameterError(
                f"attribute {name!r} has more than {MAX_GROUPS} distinct values; pass a threshold (CLI: --by-threshold) to split it.")
    if len(seen) < 2:
        raise InvalidParameterError(f"attribute {name!r} must take at least 2 values to split by; got {sorted(seen, key=str)}.")
    values = tuple(sorted(seen, key=lambda v: (str(type(v)), v)))
    if set(values) in _BINARY or set(values) == {0.0, 1.0} or set(values) == {-1.0, 1.0}:
        names = (f"not {name}", name)
    else:
        names = tuple(f"{name}={v}" for v in values)
    return AttributeGroups(name, values, names)


class AttributeSplit(Analysis):
    """Component statistics split by an attribute, and the direction between group means.

    Parameters
    ----------
    attribute : str, optional
        Store column to split by (or pass ``labels`` to :meth:`fit`).
    threshold : float, optional
        Split a numeric attribute at this value instead of by distinct values.
    bins : int, default=100
    fine_bins : int, default=4096
    max_bytes : int, default=DEFAULT_MAX_BYTES (64 MiB)
    n_threads : int, default=1

    Attributes
    ----------
    groups_ : AttributeGroups
    group_names_ : list of str
    group_n_ : ndarray of shape (n_groups,)
    group_mean_, group_std_, group_skewness_, group_excess_kurtosis_, group_median_ : ndarray of shape (n_groups, dim)
    hist_edges_ : ndarray of shape (dim, bins + 1)
        Shared edges (min to max over all rows).
    group_hist_counts_ : ndarray of shape (n_groups, dim, bins)
    effect_size_ : ndarray of shape (dim,)
        Per component ``(mean_last - mean_first) / pooled std`` (Cohen's d).
    direction_ : ndarray of shape (dim,)
        Unit vector from the first group's mean to the last group's mean.
    direction_length_ : float
        Euclidean distance between the two means.
    direction_mahalanobis_ : float
        The same distance in Mahalanobis units of the full covariance.
    direction_pc_cosines_ : ndarray of shape (dim,)
        Cosine between the direction and each principal axis.
    projection_edges_ : ndarray of shape (bins + 1,)
    projection_counts_ : ndarray of shape (n_groups, bins)
        Distribution of ``(z - mean) . direction_`` per group.
    projection_mean_, projection_std_ : ndarray of shape (n_groups,)
    separation_ : float
        ``(projection mean difference) / pooled projection std`` between the first and last group.
    n_samples_seen_ : int
    """

    _kind = "AttributeSplit"
    _arrays = ("group_n", "group_mean", "group_std", "group_skewness", "group_excess_kurtosis", "group_median",
               "hist_edges", "group_hist_counts", "effect_size", "direction", "direction_pc_cosines",
               "projection_edges", "projection_counts", "projection_mean", "projection_std")
    _scalars = ("n_samples_seen", "direction_length", "direction_mahalanobis", "separation", "group_names")

    def __init__(self, attribute: str | None = None, *, threshold: float | None = None, bins: int = 100,
                 fine_bins: int = 4096, max_bytes: int = DEFAULT_MAX_BYTES, n_threads: int = 1) -> None:
        self.attribute = attribute
        self.threshold = threshold
        self.bins = bins
        self.fine_bins = fine_bins
        self.max_bytes = max_bytes
        self.n_threads = n_threads

    def raw_fine_bins(self) -> int:
        return int(self.bins * -(-self.fine_bins // self.bins))

    def fit(self, source: Any, *, labels: Any = None, progress: ProgressFn | None = None) -> "AttributeSplit":
        """Fit from a store (splitting by its column ``attribute``) or an array with ``labels``."""
        check_positive(self.bins, "bins", owner="AttributeSplit", integer=True, minimum=1)
        groups = attribute_groups(source, self.attribute, labels=labels, threshold=self.threshold)
        column = self.attribute if labels is None else None
        G = groups.n_groups
        first = run_pass(source, lambda: FirstPass(groups=G), max_bytes=self.max_bytes, group_of=groups.group_of,
                         labels=labels, column=column, progress=pass_progress(progress, "pass 1"),
                         n_threads=self.n_threads).result()
        if first.n < 2:
            raise InvalidParameterError(f"AttributeSplit: at least 2 rows are needed; the source has {first.n}.")
        frame = PCAFrame().fit_covariance(first.cov)
        direction = self.direction_from(first, groups)
        sp = SecondPass(first, None, raw_bins=self.raw_fine_bins(), pc_bins=None, radial=False, direction=direction,
                        groups=G, track_norm=False)
        second = run_pass(source, sp.fork, max_bytes=self.max_bytes, group_of=groups.group_of, labels=labels,
                          column=column, progress=pass_progress(progress, "pass 2"), n_threads=self.n_threads).result()
        return self._from_passes(first, frame, second, groups)

    @staticmethod
    def direction_from(first: FirstPassResult, groups: AttributeGroups) -> np.ndarray:
        """Unit vector from the first group's mean to the last group's mean (zeros if equal or empty)."""
        gm = first.group_mean
        if first.group_n[0] == 0 or first.group_n[-1] == 0:
            return np.zeros(gm.shape[1])
        d = gm[-1] - gm[0]
        n = np.linalg.norm(d)
        return d / n if n > 0 else np.zeros_like(d)

    def _from_passes(self, first: FirstPassResult, frame: PCAFrame, second: SecondPassResult,
                     groups: AttributeGroups) -> "AttributeSplit":
        G = groups.n_groups
        self.groups_ = groups
        self.attribute_ = groups.attribute
        self.group_names_ = list(groups.names)
        self.n_samples_seen_ = int(first.n)
        self.group_n_ = first.group_n.copy()
        dim = first.mean.shape[0]
        stats = {k: np.full((G, dim), np.nan) for k in ("mean", "std", "skewness", "excess_kurtosis", "median")}
        for g in range(G):
            c = second.raw_sums.central(g)
            if c["n"] == 0:
                continue
            d = describe(c)
            stats["mean"][g] = c["mean"]
            stats["std"][g] = d["std"]
            stats["skewness"][g] = d["skewness"]
            stats["excess_kurtosis"][g] = d["excess_kurtosis"]
            stats["median"][g] = second.raw_hist.quantiles([0.5], g)[0]
        for k, v in stats.items():
            setattr(self, f"group_{k}_", v)
        self.hist_edges_, _ = second.raw_hist.coarse(self.bins)
        self.group_hist_counts_ = np.stack([second.raw_hist.coarse(self.bins, g)[1] for g in range(G)])
        a, b = 0, G - 1
        na, nb = self.group_n_[a], self.group_n_[b]
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled = np.sqrt(((na * self.group_std_[a] ** 2) + (nb * self.group_std_[b] ** 2)) / max(na + nb, 1))
            self.effect_size_ = np.where(pooled > 0, (self.group_mean_[b] - self.group_mean_[a]) / pooled, np.nan)
        delta = first.group_mean[b] - first.group_mean[a] if na and nb else np.zeros(dim)
        self.direction_length_ = float(np.linalg.norm(delta))
        self.direction_ = delta / self.direction_length_ if self.direction_length_ > 0 else np.zeros(dim)
        r = numerical_rank(frame.explained_variance_)
        dt = delta @ frame.components_.T
        self.direction_mahalanobis_ = float(np.sqrt(np.sum(dt[:r] ** 2 / frame.explained_variance_[:r]))) if r else float("nan")
        self.direction_pc_cosines_ = frame.components_ @ self.direction_
        self._projection(second, G)
        return self

    def _projection(self, second: SecondPassResult, G: int) -> None:
        h = second.projection
        if h is None:
            self.projection_edges_ = np.zeros(self.bins + 1)
            self.projection_counts_ = np.zeros((G, self.bins), np.int64)
            self.projection_mean_ = self.projection_std_ = np.full(G, np.nan)
            self.separation_ = float("nan")
            return
        e, _ = h.coarse(self.bins)
        self.projection_edges_ = e[0]
        self.projection_counts_ = np.stack([h.coarse(self.bins, g)[1][0] for g in range(G)])
        mids = (h.edges[0, :-1] + h.edges[0, 1:]) / 2
        c = h.counts[:, 0, :].astype(np.float64)
        n = c.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = (c * mids).sum(1) / n
            v = (c * (mids[None] - m[:, None]) ** 2).sum(1) / n
        self.projection_mean_, self.projection_std_ = m, np.sqrt(v)
        a, b = 0, G - 1
        pooled = np.sqrt((n[a] * v[a] + n[b] * v[b]) / max(n[a] + n[b], 1))
        self.separation_ = float((m[b] - m[a]) / pooled) if pooled > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        self._check_fitted()
        top = np.argsort(-np.nan_to_num(np.abs(self.effect_size_)))[:10]
        return {
            "attribute": self.attribute_, "groups": self.group_names_, "group_n": [int(v) for v in self.group_n_],
            "direction_length": self.direction_length_, "direction_mahalanobis": self.direction_mahalanobis_,
            "separation": self.separation_,
            "top_components_by_effect_size": [[int(k), float(self.effect_size_[k])] for k in top],
            "top_pc_cosines": [[int(k), float(self.direction_pc_cosines_[k])]
                               for k in np.argsort(-np.abs(self.direction_pc_cosines_))[:5]],
        }

    def _restore(self, scalars: dict, arrays: dict) -> None:
        self.n_samples_seen_ = int(self.n_samples_seen_)
        self.attribute_ = self.attribute
