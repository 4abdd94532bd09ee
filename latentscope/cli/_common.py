"""Shared pieces of the command-line interface: option types, progress bars, errors.

Nothing here imports numpy-heavy or model code; commands import what they need
inside their function bodies so that ``latentscope --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Annotated, Iterator, Optional

import typer

__all__ = ["NoProgress", "Overwrite", "Seed", "progress_bar", "progress_callback", "fail"]

NoProgress = Annotated[
    bool, typer.Option("--no-progress", help="Hide progress bars (also: LATENTSCOPE_NO_PROGRESS=1).")
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the random generator.")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Items per batch.")]


def progress_disabled(no_progress: bool = False) -> bool:
    return bool(no_progress) or os.environ.get("LATENTSCOPE_NO_PROGRESS", "") not in ("", "0")


@contextmanager
def progress_bar(total: int | None, desc: str, *, no_progress: bool = False, unit: str = "rows") -> Iterator["object"]:
    """A tqdm progress bar on stderr (a no-op object when progress is off)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr,
               disable=progress_disabled(no_progress), dynamic_ncols=True, leave=True)
    try:
        yield bar
    finally:
        bar.close()


def progress_callback(bar: "object"):
    """Adapt a tqdm bar to the ``progress(done, total)`` callbacks of the library."""
    state = {"done": 0}

    def _cb(done: int, total: int) -> None:
        if getattr(bar, "total", None) != total:
            bar.total = total
        bar.update(done - state["done"])
        state["done"] = done

    return _cb


def fail(message: str) -> "typer.Exit":
    """Print a one-line user error on stderr and return the Exit to raise (status 1)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)
