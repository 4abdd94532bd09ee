"""The one region grammar of ``sample``, ``compare-samplers``, ``evaluate`` and :func:`evaluate_regions`.

A *region spec* names a sampler of the registry and, optionally, its parameters::

    NAME[:KEY=VALUE[:KEY=VALUE...]]          e.g.  ellipse:level=0.9:n_components=32

Keys are the sampler's parameter names (``-`` may stand for ``_``); values are read
as int, float, ``none``, ``true``/``false``, a bracketed list (a tuple, e.g.
``quantiles=[0.02,0.98]``, ``pairs=[[0,1],[2,3]]``) or else a string. A *region
list* is specs separated by commas outside brackets:
``"cube,ellipse:level=0.9,pca-box:quantiles=[0.02,0.98]"``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from ..exceptions import InvalidParameterError, SamplerError

__all__ = [
    "split_region_list", "parse_region_spec", "build_samplers", "non_default_params", "region_slug",
    "MATCHED_OPTIONS", "DEFAULT_REGION_OPTIONS",
]

#: Options of the geometric generators matched to the data's mean squared radius
#: (what ``compare-samplers`` and ``evaluate`` use unless a spec says otherwise).
MATCHED_OPTIONS: dict[str, dict[str, Any]] = {
    "cube": {"halfwidth": "match"},
    "ball": {"radius": "match"},
    "shell": {"radius": "match", "spread": "match"},
    "normal": {"scale": "match"},
}

#: Options applied by :func:`~latentscope.metrics.evaluate_regions` unless the caller
#: overrides them: the matched geometric generators, and RAE's 10-component mixture.
DEFAULT_REGION_OPTIONS: dict[str, dict[str, Any]] = {**MATCHED_OPTIONS, "gmm": {"n_components": 10}}


def split_region_list(text: str) -> list[str]:
    """Split a region list at the commas outside brackets.

    Parameters
    ----------
    text : str

    Returns
    -------
    list of str
        The specs, stripped; empty items dropped.

    Examples
    --------
    >>> split_region_list("cube, pca-box:quantiles=[0.02,0.98],gmm")
    ['cube', 'pca-box:quantiles=[0.02,0.98]', 'gmm']
    """
    out, depth, cur = [], 0, []
    for ch in str(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return [s for s in out if s]


def _parse_value(text: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    if t.startswith(("[", "(")):
        try:
            return tuple(json.loads("[" + t[1:-1] + "]"))
        except (json.JSONDecodeError, IndexError):
            pass
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            continue
    return t


def parse_region_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Read one region spec ``"NAME[:KEY=VALUE[:KEY=VALUE...]]"``.

    Parameters
    ----------
    spec : str

    Returns
    -------
    name : str
        The region (sampler registry) name.
    options : dict
        Parameter name -> value (see the module docstring for how values are read).

    Raises
    ------
    InvalidParameterError
        An empty name or an option that is not ``KEY=VALUE``.

    Examples
    --------
    >>> parse_region_spec("ellipse:level=0.9:n-components=4")
    ('ellipse', {'level': 0.9, 'n_components': 4})
    """
    parts = str(spec).strip().split(":")
    name = parts[0].strip()
    if not name:
        raise InvalidParameterError(f"region spec must start with a region name; got {spec!r}.")
    opts: dict[str, Any] = {}
    for p in parts[1:]:
        key, sep, value = p.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InvalidParameterError(f"region spec {spec!r}: options must be KEY=VALUE after ':'; got {p!r}.")
        opts[key] = _parse_value(value)
    return name, opts


def non_default_params(sampler: Any) -> dict[str, Any]:
    """The parameters of ``sampler`` that differ from its class defaults (what its ``repr`` shows).

    Parameters
    ----------
    sampler : Sampler

    Returns
    -------
    dict
    """
    return sampler._non_default_params()


def region_slug(label: str) -> str:
    """A file-name-safe form of a region label: ``"ellipse:level=0.9"`` -> ``"ellipse_level-0.9"``."""
    safe = re.sub(r"[^A-Za-z0-9.+-]+", "_", str(label).replace("=", "-")).strip("_")
    return safe or "region"


def build_samplers(
    regions: Sequence[Any] | str,
    region_options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    defaults: Mapping[str, Mapping[str, Any]] = DEFAULT_REGION_OPTIONS,
    reserved: Mapping[str, str] | None = None,
    owner: str = "evaluate_regions",
) -> list[tuple[str, str, Any]]:
    """Samplers for a region list: ``(label, registry name, sampler)`` per region.

    Options are merged as ``defaults < region_options < the spec's own``; a default
    the sampler does not take is dropped, an option given by the caller or the spec
    that it does not take is an error (from the sampler).

    Parameters
    ----------
    regions : sequence of str or Sampler, or a region list (str)
        Specs (``"gmm"``, ``"ellipse:level=0.9"``) or sampler objects (fitted ones
        are kept as they are; their label is the name plus non-default parameters).
    region_options : dict, optional
        ``{region name: {parameter: value}}`` applied to every spec of that region.
    defaults : dict, default=DEFAULT_REGION_OPTIONS
    reserved : dict of str to str, optional
        Names that are not regions, with the hint given when one is listed.
    owner : str, default="evaluate_regions"
        Name used in error messages.

    Returns
    -------
    list of (str, str, Sampler)

    Raises
    ------
    SamplerError
        An unknown region, or an unknown region in ``region_options``.
    InvalidParameterError
        An empty list, a malformed spec, an item of the wrong type or a label listed twice.
    """
    from . import Sampler, all_samplers, make_sampler  # noqa: PLC0415 - the registry imports every sampler

    known = all_samplers()
    region_options = {k: dict(v) for k, v in (region_options or {}).items()}
    reserved = dict(reserved or {})
    for key in region_options:
        if key not in known:
            raise SamplerError(f"{owner}: region_options names an unknown region {key!r}; choose from: {', '.join(known)}.")
    items = split_region_list(regions) if isinstance(regions, str) else list(regions)
    if not items:
        raise InvalidParameterError(f"{owner}: regions is empty; name at least one region.")
    out: list[tuple[str, str, Any]] = []
    for item in items:
        if isinstance(item, Sampler):
            label = item.name + "".join(f":{k}={v}" for k, v in non_default_params(item).items())
            out.append((label, item.name, item))
            continue
        if not isinstance(item, str):
            raise InvalidParameterError(
                f"{owner}: each region must be a name, a spec 'NAME:KEY=VALUE' or a Sampler; got {type(item).__name__}."
            )
        name, opts = parse_region_spec(item)
        if name in reserved:
            raise InvalidParameterError(f"{owner}: {name!r} {reserved[name]}.")
        if name not in known:
            raise SamplerError(f"{owner}: unknown region {name!r}; choose from: {', '.join(known)}.")
        given = region_options.get(name, {})
        params = {**defaults.get(name, {}), **given, **opts}
        allowed = known[name].param_names()
        params = {k: v for k, v in params.items() if k in allowed or k in opts or k in given}
        out.append((item.strip(), name, make_sampler(name, **params)))
    labels = [o[0] for o in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise InvalidParameterError(f"{owner}: region {dup[0]!r} is listed twice.")
    return out
