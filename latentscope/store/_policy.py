"""The one block byte budget, defined at the lowest layer that reads blocks.

The store sits below the streaming engine (``latentscope.stream`` reads stores, the
store never imports the engine), so the budget lives here and
``latentscope.stream`` re-exports it as :data:`latentscope.stream.DEFAULT_MAX_BYTES`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidParameterError

__all__ = ["DEFAULT_MAX_BYTES", "check_max_bytes"]

#: The one default memory budget of a block of z-points read from a source (64 MiB).
#: Passes that hand blocks to threads cut each read block into smaller work units
#: themselves (:func:`latentscope.stream.run_pass`), so there is no second budget.
DEFAULT_MAX_BYTES = 64 << 20


def check_max_bytes(max_bytes: Any, *, owner: str = "") -> int:
    """Check a byte budget (a positive integer); return it as ``int``."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        prefix = f"{owner}: " if owner else ""
        raise InvalidParameterError(f"{prefix}max_bytes must be a positive integer; got {max_bytes!r}.")
    return int(max_bytes)
