"""The sampler protocol, its registry, and saving samplers so a run can be repeated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from .._estimator import Estimator
from .._persist import _jsonable, load_state, save_state
from .._validation import check_positive, check_rng
from .._version import __version__
from ..exceptions import InvalidParameterError, NotFittedError, SamplerError, StoreFormatError
from ..stream import ZSource
from ._data import fit_source

__all__ = ["Sampler", "make_sampler", "all_samplers", "load_sampler", "sampler_from_dict", "rejection_sample"]

_REGISTRY: dict[str, type["Sampler"]] = {}


def _is_covariance_frame(pca: Any) -> bool:
    from ..analysis import PCAFrame

    return isinstance(pca, PCAFrame) and getattr(pca, "components_", None) is not None and not pca.correlation


class Sampler(Estimator):
    """Base class of the z-point generators.

    A sampler draws float32 z-points with ``sample(n, rng)``. Samplers that need data
    (``needs_data``) are fitted first with ``fit(source)``, where ``source`` is a
    :class:`~latentscope.store.ZStore`, a path to one, an array of shape
    (n, z_dim), or (for some samplers) an analysis result such as a
    :class:`~latentscope.analysis.PCAFrame`. Geometric samplers (cube, ball,
    shell, normal) need only ``z_dim`` (or a centre) and may sample without ``fit``.

    Subclasses set the class attributes ``name`` (the registry and ``--region``
    name), ``description``, ``_array_attrs`` / ``_scalar_attrs`` (the fitted state
    that :meth:`save` writes) and implement ``_fit(source, rng, pca)`` (``source``
    a :class:`~latentscope.stream.ZSource`, a fitted analysis result or None;
    ``pca`` the frame given to ``fit`` or None) and ``_sample(n, rng)`` (float64
    result). ``__init__`` only stores keyword parameters; they are validated when
    ``fit`` starts. Parameters, ``repr`` and :func:`~latentscope.clone` come from
    :class:`~latentscope.Estimator`.

    Attributes
    ----------
    z_dim_ : int
        Latent dimension, set by ``fit``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    _array_attrs: ClassVar[tuple[str, ...]] = ()
    _scalar_attrs: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    # -- parameters ---------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """Names of the keyword parameters of ``__init__`` (the ``--region`` options)."""
        return cls._param_names()

    @property
    def needs_data(self) -> bool:
        """Whether ``fit`` must see data before ``sample`` (True unless overridden)."""
        return True

    # -- fitting and sampling -----------------------------------------------------------
    def fit(self, source: Any = None, *, rng: Any = None, pca: Any = None) -> "Sampler":
        """Fit the sampler's data-dependent state; returns self.

        Parameters
        ----------
        source : ZStore, path, array of shape (n, z_dim), h5py dataset, memmap, fitted analysis, or None
            The data, taken through :func:`~latentscope.stream.as_zsource` (a path
            is opened and closed again), or a fitted analysis result: a
            :class:`~latentscope.analysis.PCAFrame`, a
            :class:`~latentscope.analysis.BoundingBoxes`, a
            :class:`~latentscope.analysis.CoreCovariance`, a
            :class:`~latentscope.stream.MomentsResult` or a
            :class:`~latentscope.stream.CovarianceResult` (each sampler says which it
            can use). ``None`` is allowed only for samplers that need no data.
        rng : None, int, SeedSequence or Generator
            Randomness used while fitting (subsampling, mixture initialisation).
        pca : PCAFrame, optional
            A fitted covariance frame of the same data, reused by the samplers that
            work in the PCA frame (pca-box, pca-gauss, ellipse, mvn, path): it saves
            a pass and gives every tool the same principal axes (axes of nearly
            equal variance are otherwise not unique). Ignored by the others.
        """
        owner = type(self).__name__
        if pca is not None and not _is_covariance_frame(pca):
            raise InvalidParameterError(f"{owner}.fit: pca must be a fitted covariance PCAFrame (correlation=False).")
        if source is None and self.needs_data:
            raise InvalidParameterError(
                f"{owner}.fit: this sampler needs data; pass a store, a path or an array of z-points."
            )
        src = fit_source(source, owner)
        try:
            self._fit(src, check_rng(rng), pca)
        finally:
            if src is not source and isinstance(src, ZSource):
                src.close()  # closes a store only when this call opened it from a path
        return self

    def _fit(self, source: Any, rng: np.random.Generator, pca: Any = None) -> None:  # pragma: no cover - abstract
        """Fit from ``source`` (a :class:`~latentscope.stream.ZSource`, a fitted analysis result, or None).

        ``pca`` is the frame passed to :meth:`fit` (or None); samplers that work in
        the PCA frame use it instead of fitting their own.
        """
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if getattr(self, "z_dim_", None) is None:
            if not self.needs_data:
                self._fit(None, check_rng(0), None)
                return
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(store) first.")

    @property
    def is_fitted(self) -> bool:
        return getattr(self, "z_dim_", None) is not None

    def sample(self, n: int, rng: Any = None, *, dtype: Any = np.float32) -> np.ndarray:
        """Draw ``n`` z-points.

        Parameters
        ----------
        n : int
            Number of points (>= 0).
        rng : None, int, SeedSequence or Generator
            Normalised with :func:`~latentscope._validation.check_rng`; the same
            seed gives the same samples.
        dtype : {float32, float64}, default=float32
            The samples are computed in float64; float32 (the store's type) rounds
            them, so a point drawn on a region's boundary may land outside it by
            one float32 rounding.

        Returns
        -------
        ndarray of shape (n, z_dim)
        """
        check_positive(n, "n", owner=f"{type(self).__name__}.sample", integer=True, minimum=0)
        if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise InvalidParameterError(f"{type(self).__name__}.sample: dtype must be float32 or float64; got {dtype!r}.")
        self._check_fitted()
        Z = self._sample(int(n), check_rng(rng))
        return np.ascontiguousarray(Z, dtype=dtype)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def region_(self) -> Any:
        """The region every sample lies in (a :mod:`latentscope.regions` object), or None."""
        return None

    # -- persistence --------------------------------------------------------------------
    def fitted_arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays (what :meth:`save` writes to the ``.npz`` file)."""
        return {a: np.asarray(getattr(self, a)) for a in self._array_attrs if getattr(self, a, None) is not None}

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON description: name, parameters and fitted scalars (not arrays)."""
        out: dict[str, Any] = {
            "sampler": self.name,
            "class": type(self).__name__,
            "params": _jsonable(self.get_params()),
            "library_version": __version__,
        }
        if self.is_fitted:
            scal = {"z_dim_": int(self.z_dim_)}
            for a in self._scalar_attrs:
                if getattr(self, a, None) is not None:
                    scal[a] = _jsonable(getattr(self, a))
            out["fitted"] = scal
            out["fitted_arrays"] = sorted(self.fitted_arrays())
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> "Sampler":
        """Rebuild a sampler from :meth:`to_dict` (and the fitted arrays, if any)."""
        name = data.get("sampler")
        target = _lookup(name) if cls is Sampler else cls
        if target is None or (cls is not Sampler and name not in (None, cls.name)):
            raise InvalidParameterError(f"from_dict: unknown sampler {name!r}; known: {', '.join(all_samplers())}.")
        self = target(**target._params_from_json(data.get("params", {})))
        fitted = data.get("fitted")
        if fitted is not None:
            needed = set(data.get("fitted_arrays", []))
            arrays = arrays or {}
            missing = needed - set(arrays)
            if missing:
                raise StoreFormatError(f"from_dict: the fitted arrays {sorted(missing)} of {name!r} are missing.")
            for key, value in fitted.items():
                setattr(self, key, value)
            for key in needed:
                setattr(self, key, np.asarray(arrays[key]))
            self._restore()
        return self

    @classmethod
    def _params_from_json(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Turn JSON values back into parameters (lists stay lists unless overridden)."""
        return dict(params)

    def _restore(self) -> None:
        """Rebuild derived state after loading fitted attributes (override if needed)."""

    def save(self, path: str | Path) -> None:
        """Write ``path``.json (parameters, fitted scalars) and ``path``.npz (fitted arrays).

        The files follow the one persistence format (:mod:`latentscope._persist`),
        and the JSON keeps the keys ``fitted`` and ``fitted_arrays`` of earlier
        versions (the same values as ``scalars`` and ``arrays``);
        :func:`load_sampler` reads both.
        """
        d = self.to_dict()
        extra = {"sampler": self.name}
        if "fitted" in d:  # the keys sampler.json has always had, kept beside the format's own
            extra.update(fitted=d["fitted"], fitted_arrays=d["fitted_arrays"])
        save_state(path, kind="sampler", cls=d["class"], params=d["params"], scalars=d.get("fitted", {}),
                   arrays=self.fitted_arrays() if self.is_fitted else {}, extra=extra, container="npz")


def load_sampler(path: str | Path) -> Sampler:
    """Load a sampler written by :meth:`Sampler.save` (``path`` with or without suffix)."""
    state = load_state(path, "sampler")
    data = {"sampler": state.meta.get("sampler"), "params": state.params,
            "fitted": state.scalars or None, "fitted_arrays": state.meta.get("arrays", [])}
    return Sampler.from_dict(data, state.arrays)


def sampler_from_dict(data: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> Sampler:
    """Rebuild any registered sampler from its :meth:`Sampler.to_dict` form."""
    return Sampler.from_dict(data, arrays)


def _lookup(name: Any) -> type[Sampler] | None:
    """The sampler class registered as ``name``, loading its plugin the first time; None if unknown."""
    if isinstance(name, str) and name not in _REGISTRY:
        from ._plugins import load_sampler_plugins

        load_sampler_plugins([name])
    return _REGISTRY.get(name) if isinstance(name, str) else None


def all_samplers() -> dict[str, type[Sampler]]:
    """Registered samplers by name (the ``--region`` values), sorted.

    The built-in samplers and those of the installed plugins (the
    ``latentscope.samplers`` entry-point group, imported here the first time; a
    plugin that fails to load gives a ``RuntimeWarning`` and is left out).
    """
    from ._plugins import load_sampler_plugins

    load_sampler_plugins()
    return dict(sorted(_REGISTRY.items()))


def make_sampler(name: str, **options: Any) -> Sampler:
    """Build the sampler registered as ``name`` with keyword ``options``.

    Raises
    ------
    SamplerError
        Unknown name, or an option the sampler does not take.
    """
    cls = _lookup(name)
    if cls is None:
        raise SamplerError(f"make_sampler: unknown region {name!r}; choose one of: {', '.join(all_samplers())}.")
    allowed = cls.param_names()
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise SamplerError(
            f"make_sampler: option {bad[0]!r} does not apply to region {name!r}; it takes: {', '.join(allowed) or 'none'}."
        )
    return cls(**options)


def rejection_sample(
    draw: Callable[[int, np.random.Generator], np.ndarray],
    accept: Callable[[np.ndarray], np.ndarray],
    n: int,
    rng: np.random.Generator,
    *,
    min_acceptance: float,
    owner: str,
    pilot: int = 4096,
    max_batch: int = 16384,
) -> np.ndarray:
    """Draw ``n`` accepted points by rejection; fail early when acceptance is too low.

    Candidates are drawn in batches (the first of ``max(pilot, n)``); once
    ``pilot`` candidates were seen, an observed acceptance rate below
    ``min_acceptance`` raises :class:`SamplerError` giving the observed rate.
    """
    out: list[np.ndarray] = []
    got = drawn = 0
    batch = min(max(pilot, n), max_batch)
    max_draws = int(np.ceil(max(n, 1) / min_acceptance)) * 2 + pilot
    while got < n:
        cand = draw(batch, rng)
        ok = accept(cand)
        drawn += cand.shape[0]
        out.append(cand[ok])
        got += int(ok.sum())
        rate = got / drawn
        if (drawn >= pilot and rate < min_acceptance) or (got < n and drawn >= max_draws):
            raise SamplerError(
                f"{owner}: rejection sampling accepted {got} of {drawn} candidates (rate {rate:.2g}), below "
                f"min_acceptance={min_acceptance:g}; loosen the constraints (e.g. fewer or disjoint pairs, a higher level)."
            )
        if got < n:
            need = (n - got) / max(rate, min_acceptance)
            batch = int(min(max_batch, max(1024, 1.2 * need)))
    return np.concatenate(out)[:n] if out else np.empty((0, 0))
