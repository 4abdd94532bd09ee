"""Sampler plugins: discovery through the ``latentscope.samplers`` entry-point group.

A distribution registers a sampler class (a subclass of
:class:`~latentscope.samplers.Sampler` whose ``name`` is the entry-point name)::

    [project.entry-points."latentscope.samplers"]
    flow = "latentscope_keras_ae._flow:FlowSampler"

The entry points are read once (cached; :func:`refresh_sampler_plugins` forgets them)
and each plugin is imported the first time the registry is asked for all samplers or
for a name it does not hold. A plugin that fails to import, is not a sampler class, or
would replace a built-in sampler gives a ``RuntimeWarning`` and is left out: a broken
plugin never breaks ``make_sampler`` or the command line. Importing a plugin module
registers its class (``Sampler.__init_subclass__``), so ``make_sampler``, the region
grammar, ``sample``, ``compare-samplers``, ``evaluate`` and :func:`load_sampler` use it
like a built-in one. Plugin modules should import heavy libraries (Keras) only inside
``_fit`` and ``_sample``.
"""

from __future__ import annotations

import functools
import warnings
from importlib.metadata import EntryPoint, entry_points
from typing import Any

__all__ = ["GROUP", "sampler_plugins", "load_sampler_plugins", "sampler_plugin_errors", "refresh_sampler_plugins"]

#: Entry-point group under which distributions register sampler classes.
GROUP = "latentscope.samplers"

#: name -> None (loaded) or the one-line reason it was left out; filled as plugins load.
_STATUS: dict[str, str | None] = {}
#: names this module registered (removed again by refresh_sampler_plugins).
_ADDED: set[str] = set()


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            warnings.warn(
                f"latentscope sampler {ep.name!r} is registered twice ({found[ep.name].value} and {ep.value}); using the first.",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        found.setdefault(ep.name, ep)
    return found


def sampler_plugins() -> dict[str, str]:
    """Plugin samplers by name, mapped to their entry-point targets; nothing is imported.

    Returns
    -------
    dict of str to str
        ``{"flow": "latentscope_keras_ae._flow:FlowSampler", ...}``, sorted by name.
    """
    return {name: ep.value for name, ep in sorted(_entry_points().items())}


def _load_one(name: str, ep: EntryPoint, registry: dict[str, Any], base: type) -> None:
    snapshot = dict(registry)
    before = snapshot.get(name)
    try:
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{ep.value} is a {type(cls).__name__}, not a Sampler subclass")
        if cls.name != name:
            raise TypeError(f"{ep.value} has name {cls.name!r}, not the entry-point name {name!r}")
        if before is not None and before is not cls:
            raise TypeError(f"it would replace the built-in sampler {name!r} ({before.__name__})")
    except Exception as exc:  # a broken plugin must never break the registry
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        _STATUS[name] = reason
        warnings.warn(f"latentscope sampler {name!r} failed to load: {reason}", RuntimeWarning, stacklevel=3)
        return
    finally:
        # importing a plugin module registers every Sampler subclass it defines
        # (Sampler.__init_subclass__): only the entry point's own class may stay
        registry.clear()
        registry.update(snapshot)
    registry[name] = cls
    _ADDED.add(name)
    _STATUS[name] = None


def load_sampler_plugins(names: Any = None) -> dict[str, str | None]:
    """Import the plugins not tried yet (all, or only ``names``); returns name -> status.

    Parameters
    ----------
    names : iterable of str, optional
        Load only these entry points (names that are no plugin are ignored).

    Returns
    -------
    dict of str to (str or None)
        For each plugin tried so far: None when it loaded, else the reason it was left out.
    """
    from ._base import _REGISTRY, Sampler

    eps = _entry_points()
    wanted = eps if names is None else [n for n in names if n in eps]
    for name in sorted(wanted):
        if name not in _STATUS:
            _load_one(name, eps[name], _REGISTRY, Sampler)
    return dict(_STATUS)


def sampler_plugin_errors() -> dict[str, str]:
    """Plugins that failed to load, with the one-line reason (after :func:`load_sampler_plugins`)."""
    return {name: why for name, why in sorted(_STATUS.items()) if why is not None}


def refresh_sampler_plugins() -> None:
    """Forget the entry points and the plugin samplers loaded from them (after installing a plugin)."""
    from ._base import _REGISTRY

    for name in _ADDED:
        _REGISTRY.pop(name, None)
    _ADDED.clear()
    _STATUS.clear()
    _entry_points.cache_clear()
