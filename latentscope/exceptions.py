"""Exception hierarchy of latentscope.

Every error a user can cause derives from :class:`LatentscopeError`; the CLI prints
those as one line and exits with status 1. Subclasses also derive from the builtin
exception a Python user would expect to catch.
"""

from __future__ import annotations

__all__ = [
    "LatentscopeError",
    "InvalidParameterError",
    "NotFittedError",
    "StoreError",
    "StoreFormatError",
    "StoreReadOnlyError",
    "StoreFormatWarning",
    "NonFiniteError",
    "DataSourceError",
    "BackendError",
    "BackendNotFoundError",
    "SamplerError",
]


class LatentscopeError(Exception):
    """Base class of every error a user of latentscope can cause."""


class InvalidParameterError(LatentscopeError, ValueError, TypeError):
    """A parameter has a wrong type or value."""


class NotFittedError(LatentscopeError, ValueError, AttributeError):
    """An estimator, sampler or detector was used before ``fit``."""


class StoreError(LatentscopeError, OSError):
    """A z-point store cannot be opened, read or written."""


class StoreFormatError(StoreError, ValueError):
    """A file is not a latentscope store, or has an unsupported format version."""


class StoreReadOnlyError(StoreError, PermissionError):
    """A write was attempted on a store opened read-only."""


class StoreFormatWarning(UserWarning):
    """A store can be read but not fully verified (format version 1 has no checksums)."""


class NonFiniteError(LatentscopeError, ValueError):
    """An array holds NaN or infinite values where finite values are required."""


class DataSourceError(LatentscopeError, ValueError):
    """An image source is malformed, empty or unreadable."""


class BackendError(LatentscopeError, RuntimeError):
    """A model backend failed to load, save, encode or decode."""


class BackendNotFoundError(BackendError, LookupError):
    """No installed backend has the requested name."""


class SamplerError(LatentscopeError, ValueError):
    """A sampler cannot draw (bad region options, acceptance rate too low, ...)."""
