"""Discovery of backends through the ``latentscope.backends`` entry-point group."""

from __future__ import annotations

import functools
import warnings
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from ..exceptions import BackendNotFoundError

__all__ = ["list_backends", "get_backend", "refresh_backends", "load_model", "GROUP"]

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


def load_model(path: str | Path, backend: str | None = None) -> Any:
    """Load the model directory ``path`` with ``backend``, by default the one its ``config.json`` names.

    Raises
    ------
    BackendNotFoundError
        ``backend`` is None and the directory's ``config.json`` names no backend, or the
        backend is not installed.
    """
    if backend is None:
        backend = model_backend_name(path)
        if not backend:
            raise BackendNotFoundError(f"{path}: its config.json names no backend; name it with --backend "
                                       "(see: latentscope backends).")
    return get_backend(backend).load(path)


def model_backend_name(path: str | Path) -> str | None:
    """The backend named by the ``config.json`` of the model directory ``path`` (None: none readable)."""
    import json  # noqa: PLC0415

    try:
        name = json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None
