"""The ``latentscope`` command.

Subcommands live in ``_cmd_*.py`` modules, each exposing ``register(app)``. Errors a
user can cause (:class:`~latentscope.exceptions.LatentscopeError`) print one line and
exit with status 1; usage errors (a bad option value, a missing argument, an unknown
option) print one line too (``error: -n must be >= 1; got -5``) and exit with status 2.
Both are handled here, in :func:`main`, for every command.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import warnings
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
    "_cmd_wrap",  # wrap
    "_cmd_store",  # import, export, info
    "_cmd_analyze",  # analyze
    "_cmd_sample",  # sample, compare-samplers
    "_cmd_samplers",  # samplers
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


#: Phrases of typer's value errors, as the one-line form of :func:`main`.
_RULES = (
    (r"greater than or equal to (\S+)", "must be >= {0}"),
    (r"greater than (\S+)", "must be > {0}"),
    (r"less than or equal to (\S+)", "must be <= {0}"),
    (r"less than (\S+)", "must be < {0}"),
    (r"valid integer", "must be an integer"),
    (r"valid number", "must be a number"),
    (r"valid boolean", "must be true or false"),
)


def _typed_name(param, args: list[str]) -> tuple[str, str | None]:
    """The option name as the user typed it (or the first declared one), and the value given."""
    opts = list(getattr(param, "opts", ()) or ()) + list(getattr(param, "secondary_opts", ()) or ())
    if getattr(param, "param_type_name", "") == "argument":
        return str(getattr(param, "metavar", None) or param.name or "ARG").upper(), None
    name, value = (opts[0] if opts else f"--{param.name}"), None
    for i, tok in enumerate(args):
        for opt in opts:
            if tok == opt:
                name, value = opt, args[i + 1] if i + 1 < len(args) else None
            elif tok.startswith(opt + "=") and opt.startswith("--"):
                name, value = opt, tok[len(opt) + 1 :]
    return name, value


def _usage_line(exc: Exception, args: list[str]) -> str:
    """One line for a usage error: ``-n must be >= 1; got -5``."""
    message = " ".join(str(getattr(exc, "message", "") or exc).split()).rstrip(".")
    param = getattr(exc, "param", None)
    ctx = getattr(exc, "ctx", None)
    where = f"; see '{ctx.command_path} --help'" if ctx is not None and getattr(ctx, "command_path", None) else ""
    if param is None:
        return (message[:1].lower() + message[1:]) + where
    name, value = _typed_name(param, args)
    if type(exc).__name__ == "MissingParameter":
        kind = "argument" if getattr(param, "param_type_name", "") == "argument" else "option"
        return f"missing {kind} {name}{where}"
    for pattern, template in _RULES:
        found = re.search(pattern, message)
        if found:
            message = template.format(*found.groups())
            break
    else:
        message = "invalid value: " + message[:1].lower() + message[1:]
    return f"{name} {message}" + (f"; got {value}" if value is not None else "")


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """Warnings of latentscope as one line ``warning: ...`` on stderr; others as usual."""
    if issubclass(category, UserWarning) and category.__module__.startswith("latentscope"):
        typer.echo(f"warning: {' '.join(str(message).split())}", err=True)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``latentscope`` script: returns the exit status.

    0 on success, 1 for an error a user can cause (bad data, a damaged store), 2 for a
    usage error; each error is one line on stderr.
    """
    from ..exceptions import LatentscopeError

    usage_error = typer.BadParameter.__mro__[1]  # click's UsageError, as vendored by typer
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            result = app(args=args, prog_name="latentscope", standalone_mode=False)
        except LatentscopeError as exc:
            typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
            return 1
        except usage_error as exc:
            if type(exc).__name__ == "NoArgsIsHelpError" and getattr(exc, "ctx", None) is not None:
                typer.echo(exc.ctx.get_help())
                return int(getattr(exc, "exit_code", 2))
            typer.echo(f"error: {_usage_line(exc, args)}", err=True)
            return 2
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            return 1
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
