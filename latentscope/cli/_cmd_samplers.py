"""``latentscope samplers``: the built-in samplers and those of the installed plugins, one line each."""

from __future__ import annotations

import json
import warnings
from typing import Annotated

import typer

__all__ = ["register"]


def samplers_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
) -> None:
    """List the samplers (the --region names): built-in ones and plugins, with their descriptions."""
    from ..samplers import all_samplers, sampler_plugins
    from ..samplers._plugins import sampler_plugin_errors

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        known = all_samplers()
    plugins = sampler_plugins()
    broken = sampler_plugin_errors()
    rows: list[tuple[str, str, str, str]] = []  # name, status, origin, description
    for name, cls in known.items():
        origin = plugins.get(name, "built-in") if name not in broken else "built-in"
        desc = str(cls.description or "").strip().splitlines()
        rows.append((name, "ok", origin, desc[0] if desc else ""))
    for name, why in broken.items():
        typer.echo(f"warning: latentscope sampler {name!r} failed to load: {why}", err=True)
        if name not in known:
            rows.append((name, "broken", plugins.get(name, ""), f"failed to load ({why})"))
    rows.sort()
    if as_json:
        typer.echo(json.dumps({n: {"status": s, "origin": o, "description": d} for n, s, o, d in rows}, indent=2))
        return
    width = max(len(r[0]) for r in rows)
    for name, status, origin, desc in rows:
        where = "" if origin == "built-in" else f" [plugin {origin}]"
        mark = "[broken] " if status == "broken" else ""
        typer.echo(f"{name:<{width}}  {mark}{desc}{where}")


def register(app: typer.Typer) -> None:
    """Add ``samplers`` to the ``latentscope`` app."""
    app.command("samplers")(samplers_cmd)
