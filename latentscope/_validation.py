"""Small shared helpers that validate user input and normalise randomness."""

from __future__ import annotations

from typing import Any, Union

import numpy as np

from .exceptions import InvalidParameterError, NonFiniteError, NotFittedError

SeedLike = Union[None, int, np.random.SeedSequence, np.random.Generator]

__all__ = ["SeedLike", "check_rng", "check_array", "check_is_fitted", "check_positive", "check_fraction"]


def check_rng(rng: SeedLike) -> np.random.Generator:
    """Normalise ``rng`` once into a :class:`numpy.random.Generator`.

    Parameters
    ----------
    rng : None, int, SeedSequence or Generator
        ``None`` draws fresh entropy; an int or SeedSequence seeds a new PCG64
        generator; a Generator is returned unchanged.
    """
    if isinstance(rng, np.random.RandomState):
        raise InvalidParameterError(
            "rng must be None, an int, a SeedSequence or a numpy Generator; got a legacy "
            "RandomState. Use numpy.random.default_rng(seed) instead."
        )
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"rng must be None, an int, a SeedSequence or a numpy Generator; got {rng!r}."
        ) from exc


def check_array(
    X: Any,
    *,
    name: str = "X",
    ndim: int = 2,
    dtype: Any = np.float64,
    finite: bool = True,
    min_rows: int = 0,
    owner: str = "",
) -> np.ndarray:
    """Convert ``X`` to an array of ``ndim`` dimensions, checking shape and finiteness."""
    prefix = f"{owner}: " if owner else ""
    try:
        arr = np.asarray(X, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"{prefix}{name} must be a numeric array; got {type(X).__name__}.") from exc
    if arr.ndim != ndim:
        raise InvalidParameterError(f"{prefix}{name} must be {ndim}-D; got shape {arr.shape}.")
    if arr.shape[0] < min_rows:
        raise InvalidParameterError(f"{prefix}{name} must have at least {min_rows} rows; got {arr.shape[0]}.")
    if finite and arr.size and not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)) if ndim >= 2 else np.flatnonzero(~np.isfinite(arr))
        raise NonFiniteError(f"{prefix}{name} holds non-finite values (first at row {int(bad[0])}; {bad.size} rows in all).")
    return arr


def check_is_fitted(obj: Any, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``obj`` has the fitted ``attribute``."""
    if getattr(obj, attribute, None) is None:
        raise NotFittedError(f"{type(obj).__name__} is not fitted yet; call fit(...) first.")


def check_positive(
    value: Any, name: str, *, owner: str = "", strict: bool = True, integer: bool = False, minimum: Any = None
) -> Any:
    """Check that ``value`` is a (strictly) positive number; return it.

    With ``minimum``, check ``value >= minimum`` instead (a count of at least 1:
    ``integer=True, minimum=1``; the message then reads "must be an integer >= 1").
    """
    prefix = f"{owner}: " if owner else ""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.integer, np.floating))
    if minimum is not None:
        too_small, rel = (lambda v: v < minimum), f">= {minimum}"
    else:
        too_small, rel = ((lambda v: v <= 0), "> 0") if strict else ((lambda v: v < 0), ">= 0")
    if isinstance(value, bool) or not ok_type or not np.isfinite(value) or too_small(value):
        raise InvalidParameterError(f"{prefix}{name} must be {kind} {rel}; got {value!r}.")
    return value


def check_fraction(value: Any, name: str, *, owner: str = "", closed: bool = False) -> float:
    """Check that ``value`` lies in (0, 1) (or [0, 1] with ``closed``); return it as float."""
    prefix = f"{owner}: " if owner else ""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    ok = (0.0 <= v <= 1.0) if closed else (0.0 < v < 1.0)
    if not ok:
        interval = "[0, 1]" if closed else "(0, 1)"
        raise InvalidParameterError(f"{prefix}{name} must lie in {interval}; got {value!r}.")
    return v
