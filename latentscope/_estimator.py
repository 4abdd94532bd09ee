"""The one estimator base: parameters from the ``__init__`` signature, ``set_params``, ``repr``, ``clone``.

Every fitted object of the library (analyses, samplers, :class:`~latentscope.analysis.PCAFrame`,
:class:`~latentscope.analysis.BoundingBoxes`, :class:`~latentscope.samplers.LandingReference`,
:class:`~latentscope.metrics.PixelPCAFeatures`, :class:`~latentscope.filaments.FilamentDetector`)
follows the scikit-learn convention: ``__init__`` only stores its arguments, each under its own
name; everything learned from data is set by ``fit`` in attributes with a trailing underscore.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, TypeVar

import numpy as np

from .exceptions import InvalidParameterError

__all__ = ["Estimator", "clone"]

E = TypeVar("E", bound="Estimator")

_SKIP = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _signature_params(cls: type) -> list[inspect.Parameter]:
    init = cls.__init__
    if init is object.__init__:
        return []
    return [p for p in inspect.signature(init).parameters.values() if p.name != "self" and p.kind not in _SKIP]


def _is_default(value: Any, default: Any) -> bool:
    """Whether ``value`` equals the signature default (arrays and mixed types: never)."""
    if value is default:
        return True
    if default is inspect.Parameter.empty or isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return False
    if isinstance(value, (bool, np.bool_)) != isinstance(default, (bool, np.bool_)):
        return False
    numeric = isinstance(value, (int, float, np.number)) and isinstance(default, (int, float, np.number))
    if type(value) is not type(default) and not numeric:
        return False
    try:
        same = value == default
        return bool(same) if isinstance(same, (bool, np.bool_)) else False
    except Exception:  # exotic values that do not compare: show them
        return False


class Estimator:
    """Base class: keyword parameters read back from the ``__init__`` signature.

    A subclass's ``__init__`` stores each argument unchanged as an attribute of the
    same name (validation happens in ``fit``). The base then provides
    :meth:`get_params`, :meth:`set_params`, a scikit-learn-style ``repr`` (only the
    parameters that differ from their defaults) and :func:`clone`.

    Examples
    --------
    >>> from latentscope.analysis import PCAFrame
    >>> frame = PCAFrame(correlation=True)
    >>> frame
    PCAFrame(correlation=True)
    >>> frame.set_params(n_components=3).get_params()["n_components"]
    3
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        """Names of the ``__init__`` parameters, in signature order."""
        return [p.name for p in _signature_params(cls)]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The constructor parameters.

        Parameters
        ----------
        deep : bool, default=False
            Also list the parameters of parameters that are estimators, as
            ``"outer__inner"`` keys (scikit-learn's convention).

        Returns
        -------
        dict
            Parameter name to value (the values themselves, not copies).
        """
        out: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and isinstance(value, Estimator):
                out.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return out

    def set_params(self: E, **params: Any) -> E:
        """Set constructor parameters; returns self.

        Values are stored as given and validated by the next ``fit``. A key
        ``"outer__inner"`` sets parameter ``inner`` of the estimator held in
        ``outer``. Fitted attributes are left as they are: refit after a change.

        Raises
        ------
        InvalidParameterError
            For a name that is not a parameter (the message lists the valid ones).
        """
        valid = self._param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            outer, sep, inner = key.partition("__")
            if outer not in valid:
                raise InvalidParameterError(
                    f"{type(self).__name__}.set_params: unknown parameter {outer!r}; "
                    f"valid parameters: {', '.join(valid) or 'none'}."
                )
            if sep:
                nested.setdefault(outer, {})[inner] = value
            else:
                setattr(self, key, value)
        for outer, sub in nested.items():
            held = getattr(self, outer)
            if not isinstance(held, Estimator):
                raise InvalidParameterError(
                    f"{type(self).__name__}.set_params: {outer!r} holds {type(held).__name__}, not an estimator; "
                    f"cannot set {', '.join(sorted(sub))} on it."
                )
            held.set_params(**sub)
        return self

    def _non_default_params(self) -> dict[str, Any]:
        """The parameters whose values differ from the signature defaults."""
        defaults = {p.name: p.default for p in _signature_params(type(self))}
        return {k: v for k, v in self.get_params().items() if not _is_default(v, defaults.get(k, inspect.Parameter.empty))}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._non_default_params().items())
        return f"{type(self).__name__}({args})"


def _copy_param(value: Any) -> Any:
    # Estimators held as parameters are fitted inputs (a PCA frame, a box source): shared, not refitted.
    if isinstance(value, Estimator):
        return value
    try:
        return copy.deepcopy(value)
    except Exception:  # handles and other uncopyable objects are shared
        return value


def clone(estimator: E) -> E:
    """An unfitted copy of ``estimator`` with the same parameters.

    Parameter values are deep-copied, except estimators held as parameters (such
    as a fitted ``pca=`` frame), which are fitted inputs and are shared.

    Parameters
    ----------
    estimator : Estimator

    Returns
    -------
    Estimator
        A new instance of the same class; nothing fitted is carried over.

    Raises
    ------
    InvalidParameterError
        When ``estimator`` is not an :class:`Estimator`.

    Examples
    --------
    >>> import numpy as np
    >>> from latentscope.analysis import PCAFrame
    >>> fitted = PCAFrame(n_components=2).fit(np.random.default_rng(0).normal(size=(50, 3)))
    >>> fresh = clone(fitted)
    >>> fresh, hasattr(fresh, "components_")
    (PCAFrame(n_components=2), False)
    """
    if not isinstance(estimator, Estimator):
        raise InvalidParameterError(f"clone: estimator must be an Estimator; got {type(estimator).__name__}.")
    params = {k: _copy_param(v) for k, v in estimator.get_params(deep=False).items()}
    return type(estimator)(**params)
