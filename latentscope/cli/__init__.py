"""The ``latentscope`` command.

Subcommands live in ``_cmd_*.py`` modules, each exposing ``register(app)``. Errors a
user can cause (:class:`~latentscope.exceptions.LatentscopeError`) print one line and
exit with status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Annotated, Optional

import typer

from .._version import __version__

__all__ = ["app", "main"]

app = typer.Typer(
    name="latentscope",
    help="Analyse and exploit the latent space of trained autoencoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Command modules in help order; each defines register(app).
_COMMAND_MODULES = (
    "_cmd_models",  # backends, train, encode
    "_cmd_store",  # import, export, info
    "_cmd_analyze",  # analyze
    "_cmd_sample",  # sample, compare-samplers
    "_cmd_filaments",  # filaments
    "_cmd_evaluate",  # evaluate
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"latentscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """Analyse and exploit the latent space of trained autoencoders."""


for _name in _COMMAND_MODULES:
    if importlib.util.find_spec(f"{__name__}.{_name}") is not None:
        importlib.import_module(f"{__name__}.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``latentscope`` script."""
    from ..exceptions import LatentscopeError

    try:
        app(args=argv, standalone_mode=True)
    except LatentscopeError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
