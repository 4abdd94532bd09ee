"""The one integer/positivity check, latentscope._validation.check_positive."""

from __future__ import annotations

import numpy as np
import pytest

from latentscope._validation import check_positive
from latentscope.exceptions import InvalidParameterError


def test_check_positive_with_a_minimum_words_the_bound():
    # counts of at least N read "must be an integer >= N"; the value is returned unchanged
    assert check_positive(1, "batch_size", integer=True, minimum=1) == 1
    assert check_positive(np.int64(0), "start", integer=True, minimum=0) == 0
    for bad in (0, -3, 2.0, True, "4", None):
        with pytest.raises(InvalidParameterError, match=r"^owner: batch_size must be an integer >= 1; got "):
            check_positive(bad, "batch_size", owner="owner", integer=True, minimum=1)
    with pytest.raises(InvalidParameterError, match=r"^x must be a number >= 2.5; got 2.4\.$"):
        check_positive(2.4, "x", minimum=2.5)


def test_check_positive_without_a_minimum_is_unchanged():
    with pytest.raises(InvalidParameterError, match=r"^o: k must be an integer > 0; got 0\.$"):
        check_positive(0, "k", owner="o", integer=True)
    with pytest.raises(InvalidParameterError, match=r"^w must be a number >= 0; got -1\.0\.$"):
        check_positive(-1.0, "w", strict=False)
    with pytest.raises(InvalidParameterError, match="must be a number > 0; got nan"):
        check_positive(float("nan"), "w")
    assert check_positive(0.0, "w", strict=False) == 0.0
