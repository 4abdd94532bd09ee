"""Shared pieces of the command-line interface: option types, the progress adapter,
the out-directory guard, the pairs syntax and deprecation notices.

Nothing here imports numpy-heavy or model code; commands import what they need
inside their function bodies so that ``latentscope --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import typer.core

__all__ = [
    "NoProgress", "Overwrite", "Seed", "BatchSize", "Progress", "progress_disabled", "check_out", "prepare_out",
    "parse_pairs", "deprecated", "StoreOptionCommand", "Scheduler", "Workers", "on_cluster",
]

NoProgress = Annotated[
    bool, typer.Option("--no-progress", help="Hide progress bars (also: LATENTSCOPE_NO_PROGRESS=1).")
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the random generator.")]
BatchSize = Annotated[Optional[int], typer.Option(
    "--batch-size", min=1, help="Z-points per decode batch (default: the backend's choice for this hardware).")]


Scheduler = Annotated[Optional[str], typer.Option(
    "--scheduler", metavar="ADDRESS",
    help="Run the passes on a running dask.distributed scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786); "
         "its workers must see the store's path (a Zarr store; an HDF5 store only when every worker is on "
         "this host). Exclusive with --workers. Needs pip install 'latentscope-ae[dask]'.")]
Workers = Annotated[Optional[int], typer.Option(
    "--workers", metavar="N", min=1,
    help="Run the passes on a local dask.distributed cluster of N worker processes (one thread each), "
         "started for this command and closed after it. Exclusive with --scheduler. "
         "Needs pip install 'latentscope-ae[dask]'.")]


def on_cluster(scheduler: str | None, workers: int | None) -> Any:
    """The ``with`` block of ``--scheduler`` / ``--workers``: :func:`latentscope.stream.cluster`.

    Giving both is a one-line usage error; with neither nothing changes.

    Parameters
    ----------
    scheduler : str or None
        ``--scheduler ADDRESS``.
    workers : int or None
        ``--workers N``.

    Returns
    -------
    context manager
        Yields the ``distributed.Client`` (or None).
    """
    from ..exceptions import InvalidParameterError
    from ..stream import cluster

    if scheduler is not None and workers is not None:
        raise InvalidParameterError(
            f"--scheduler and --workers are exclusive: give a running scheduler or a number of local workers; "
            f"got --scheduler {scheduler} and --workers {workers}.")
    if workers is not None and workers < 1:
        raise InvalidParameterError(f"--workers: expected an integer >= 1 (local worker processes); got {workers}.")
    return cluster(scheduler=scheduler, workers=workers)


def progress_disabled(no_progress: bool = False) -> bool:
    """True when ``--no-progress`` is given or ``LATENTSCOPE_NO_PROGRESS`` is set (not ``0``)."""
    return bool(no_progress) or os.environ.get("LATENTSCOPE_NO_PROGRESS", "") not in ("", "0")


#: Units of bars that count a few steps (shown as 2/3, not 2.00/3.00).
_COUNTED = ("steps", "regions")


class Progress:
    """The one progress adapter of the CLI: tqdm bars on stderr, driven by the library.

    Pass the object itself as the ``progress`` callback of a library function. It
    takes both forms the library uses: ``progress(done, total)`` moves the bar named
    ``desc``; ``progress(stage, done, total)`` moves one bar per stage (the previous
    stage's bar is closed when another stage reports). :meth:`step` advances the
    ``desc`` bar for commands that count their own steps. With progress off (see
    :func:`progress_disabled`) nothing is drawn and tqdm is not imported.

    Parameters
    ----------
    desc : str
        Name of the main bar (``progress(done, total)`` and :meth:`step`).
    total : int, optional
        Total of the main bar; when given the bar is drawn at once.
    unit : str, default="rows"
    no_progress : bool, default=False
    """

    def __init__(self, desc: str = "", *, total: int | None = None, unit: str = "rows",
                 no_progress: bool = False) -> None:
        self.desc = desc
        self.unit = unit
        self.disabled = progress_disabled(no_progress)
        self._bars: dict[str, Any] = {}
        self._last: str | None = None
        if total is not None and not self.disabled:
            self._bar(desc, total)

    def _bar(self, stage: str, total: int | None) -> Any:
        bar = self._bars.get(stage)
        if bar is None:
            if self._last is not None and self._last != stage and self._last in self._bars:
                self._bars.pop(self._last).close()  # the previous stage is done
            from tqdm.auto import tqdm

            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit=self.unit, file=sys.stderr, dynamic_ncols=True,
                                           unit_scale=self.unit not in _COUNTED, leave=True)
        self._last = stage
        return bar

    def __call__(self, *args: Any) -> None:
        if self.disabled:
            return
        if len(args) == 2:
            stage, (done, total) = self.desc, args
        elif len(args) == 3:
            stage, done, total = args
        else:
            raise TypeError(f"progress takes (done, total) or (stage, done, total); got {len(args)} arguments")
        bar = self._bar(str(stage), total)
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def step(self, n: int = 1) -> None:
        """Advance the main bar by ``n``."""
        if not self.disabled:
            self._bar(self.desc, None).update(n)

    def close(self) -> None:
        """Close every open bar."""
        while self._bars:
            self._bars.popitem()[1].close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_out(out: Path, names: tuple[str, ...], *, overwrite: bool) -> list[str]:
    """The out-directory guard: refuse an ``out`` that holds earlier outputs unless ``overwrite``.

    Run it before any heavy work, so that a refused run costs nothing.

    Parameters
    ----------
    out : Path
        The output directory (it may not exist yet).
    names : tuple of str
        The files and folders the command writes into ``out``.
    overwrite : bool
        ``--overwrite`` was given.

    Returns
    -------
    list of str
        The ``names`` that exist in ``out`` (to be replaced).

    Raises
    ------
    StoreError
        ``out`` is a file, or it holds one of ``names`` and ``overwrite`` is False.
    """
    from ..exceptions import StoreError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out}: exists and is not a directory.")
    present = [n for n in names if (out / n).exists()]
    if present and not overwrite:
        raise StoreError(f"{out}: already holds {', '.join(present)}; pass --overwrite to replace the outputs.")
    return present


def prepare_out(out: Path, names: tuple[str, ...], *, overwrite: bool) -> Path:
    """:func:`check_out`, then remove the earlier outputs among ``names`` and create ``out``.

    Run it right before the command writes, so that stale files of an earlier run
    (say one decoded strip more than now) do not survive an ``--overwrite``.
    """
    import shutil

    out = Path(out)
    for n in check_out(out, names, overwrite=overwrite):
        p = out / n
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def deprecated(message: str) -> None:
    """Print a one-line deprecation notice ``warning: ...`` on stderr (the command goes on)."""
    typer.echo(f"warning: {' '.join(message.split())}", err=True)


def parse_pairs(values: Any, *, option: str = "--pairs", words: tuple[str, ...] = ()) -> Any:
    """The one pairs syntax: one pair ``I,J`` per option, the option repeated.

    ``["0,1", "5,9"]`` (from ``--pairs 0,1 --pairs 5,9``) -> ``[(0, 1), (5, 9)]``. The
    older forms with several pairs in one value, ``"0,1 5,9"`` (``analyze``) and
    ``"0,1;2,3"`` (``sample``), still work and print a deprecation notice.

    Parameters
    ----------
    values : str, list of str or None
        What the option received (None or empty: not given).
    option : str, default="--pairs"
        The option's name, for messages.
    words : tuple of str
        Values allowed instead of pairs (``sample``: ``disjoint``, ``chain``); a word
        must be the option's only value and is returned as it is.

    Returns
    -------
    list of (int, int), a word, or None

    Raises
    ------
    InvalidParameterError
        A pair that is not two integers, or a word mixed with pairs.
    """
    from ..exceptions import InvalidParameterError

    if values is None or (not isinstance(values, str) and not list(values)):
        return None
    texts = [values] if isinstance(values, str) else [str(v) for v in values]
    if any(t.strip() in words for t in texts):
        if len(texts) == 1:
            return texts[0].strip()
        raise InvalidParameterError(f"{option}: {' or '.join(map(repr, words))} must be the only value; got {texts!r}.")
    also = f" (or one of: {', '.join(words)})" if words else ""
    out: list[tuple[int, int]] = []
    old: list[str] = []
    for text in texts:
        items = text.replace(";", " ").split()
        if len(items) > 1:
            old.append(text)
        for item in items:
            try:
                i, j = (int(p) for p in item.split(","))
            except ValueError:
                raise InvalidParameterError(f"{option}: each pair must be 'i,j' with integers{also}; got {item!r}.") from None
            out.append((i, j))
    if not out:
        raise InvalidParameterError(f"{option}: each pair must be 'i,j' with integers{also}; got {texts!r}.")
    if old:
        spelled = " ".join(f"{option} {i},{j}" for i, j in out)
        deprecated(f"{option} {old[0]!r}: several pairs in one value are deprecated; give one pair per {option} "
                   f"({spelled}).")
    return out


class StoreOptionCommand(typer.core.TyperCommand):
    """A command whose store is its STORE argument but that still takes the old ``--store PATH``.

    ``--store PATH`` (or ``--store=PATH``) is moved in front of the other arguments
    before parsing, and a deprecation notice goes to stderr once the command line
    parses; giving the store both ways is a one-line usage error (exit 2).
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        usage_error = typer.BadParameter.__mro__[1]  # click's UsageError, as vendored by typer
        rest, moved = [], []
        i = 0
        while i < len(args):
            tok = args[i]
            if tok == "--":
                rest += args[i:]
                break
            if tok == "--store" and i + 1 < len(args):
                moved.append(args[i + 1])
                i += 2
                continue
            if tok.startswith("--store="):
                moved.append(tok[len("--store="):])
                i += 1
                continue
            rest.append(tok)
            i += 1
        if not moved:
            return super().parse_args(ctx, args)
        twice = f"the store is given twice (STORE and --store {moved[-1]}); give it once, as STORE"
        if len(moved) > 1:
            raise usage_error(twice, ctx=ctx)
        try:
            parsed = super().parse_args(ctx, moved + rest)
        except usage_error as exc:
            if "unexpected extra argument" in str(getattr(exc, "message", exc)):
                raise usage_error(twice, ctx=ctx) from None
            raise
        deprecated(f"{ctx.command_path} --store is deprecated; give the store as the first argument "
                   f"({ctx.command_path} {moved[0]} ...).")
        return parsed
