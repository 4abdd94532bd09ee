"""Shared fixtures of the core test suite."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A numpy Generator seeded from LATENTSCOPE_TEST_SEED (default 0)."""
    return np.random.default_rng(int(os.environ.get("LATENTSCOPE_TEST_SEED", "0")))
