"""Library version, read from the installed distribution metadata."""

from __future__ import annotations

from importlib import metadata as _metadata

DISTRIBUTION = "latentscope-ae"

try:
    __version__ = _metadata.version(DISTRIBUTION)
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
