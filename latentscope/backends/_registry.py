"""Discovery of backends through the ``latentscope.backends`` entry-point group."""

from __future__ import annotations

import functools
import warnings
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ..exceptions import BackendNotFoundError

__all__ = ["list_backends", "get_backend", "refresh_backends", "GROUP"]

#: Entry-point group under which plugins register their backend classes.
GROUP = "latentscope.backends"


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            warnings.warn(
                f"latentscope backend {ep.name!r} is registered twice ({found[ep.name].value} and {ep.value}); "
                "using the first.",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        found.setdefault(ep.name, ep)
    return found


def refresh_backends() -> None:
    """Forget the cached entry points (after installing a plugin at run time)."""
    _entry_points.cache_clear()


def list_backends(load: bool = False) -> dict[str, Any]:
    """Installed backends by name.

    Parameters
    ----------
    load : bool, default=False
        Import each plugin and map names to their classes; a plugin that fails to
        import gives a ``RuntimeWarning`` and is left out. Without ``load`` the values
        are the entry-point targets as strings and nothing is imported.
    """
    eps = _entry_points()
    if not load:
        return {name: ep.value for name, ep in sorted(eps.items())}
    out: dict[str, Any] = {}
    for name, ep in sorted(eps.items()):
        try:
            out[name] = ep.load()
        except Exception as exc:  # a broken plugin must never break discovery
            warnings.warn(f"latentscope backend {name!r} failed to load: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
    return out


def get_backend(name: str) -> Any:
    """The backend class registered as ``name``.

    Raises
    ------
    BackendNotFoundError
        No such backend, or it failed to import; the message lists the installed ones.
    """
    eps = _entry_points()
    if name not in eps:
        installed = ", ".join(sorted(eps)) or "none"
        raise BackendNotFoundError(
            f"no latentscope backend named {name!r}; installed: {installed}. "
            "Install plugins such as keras-ae with: pip install ./backends/keras_ae"
        )
    try:
        return eps[name].load()
    except Exception as exc:
        raise BackendNotFoundError(f"latentscope backend {name!r} failed to load: {type(exc).__name__}: {exc}") from exc
