"""The pieces of every HTML page latentscope writes (``analyze``, ``evaluate``, the demo) and of ``_repr_html_``.

One style sheet, figures that link to their full-size PNG, and a box of the deciding
numbers for the top of a page. Everything is escaped here; callers pass plain text
(or already built HTML where the name says so).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["page", "figure", "key_numbers", "kv_table", "fmt"]

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
img { max-width: 100%; border: 1px solid #ddd; }
figure { display: inline-block; margin: 6px; vertical-align: top; }
figcaption { font-size: 0.85em; max-width: 480px; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.2em 0.8em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #999; }
.key { background: #f4f7fb; border: 1px solid #c8d6e5; padding: 0.6em 1em; margin: 1em 0; }
.key td, .key th { border: none; }
section { margin-top: 2em; }
"""


def fmt(value: Any) -> str:
    """A value as short, escaped text: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def page(title: str, body_html: str) -> str:
    """A complete HTML document with the shared style sheet."""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body_html}\n</body></html>\n")


def figure(path: str | os.PathLike, root: str | os.PathLike | None = None, caption: str = "", *,
           width: int | None = None) -> str:
    """An ``<img>`` linked to its full-size PNG, with a caption; empty when a file under ``root`` is missing.

    ``path`` is made relative to ``root`` (the page's folder) when ``root`` is given.
    """
    p = Path(path)
    if root is not None:
        if not p.exists():
            return ""
        p = Path(os.path.relpath(p, root))
    src = html.escape(p.as_posix())
    size = f' width="{int(width)}"' if width else ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><a href="{src}"><img src="{src}"{size} alt="{html.escape(caption or p.stem)}"></a>{cap}</figure>'


def kv_table(rows: Iterable[tuple[str, Any]], *, cls: str = "") -> str:
    """A two-column table of (label, value) rows."""
    body = "".join(f"<tr><th scope='row'>{html.escape(str(k))}</th><td>{fmt(v)}</td></tr>" for k, v in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}>{body}</table>"


def key_numbers(rows: Sequence[tuple[str, Any]], title: str = "Deciding numbers") -> str:
    """The box at the top of a page: the few numbers that decide (best region, in-fragment rates, filaments)."""
    if not rows:
        return ""
    return f'<div class="key"><strong>{html.escape(title)}</strong>{kv_table(rows)}</div>'
