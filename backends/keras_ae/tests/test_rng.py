"""One randomness idiom: ``from_config(rng=)`` (an int is Keras' seed; ``seed=`` still works),
and ``batch_size=None`` resolved through ``latentscope.backends.preferred_batch_size``."""

from __future__ import annotations

import numpy as np
import pytest

from latentscope.exceptions import InvalidParameterError
from latentscope_keras_ae import KerasAEBackend


def test_from_config_rng_and_deprecated_seed(tiny_model):
    cfg = tiny_model.config
    a = KerasAEBackend.from_config(cfg, rng=3)
    with pytest.warns(DeprecationWarning, match=r"from_config: seed= is deprecated; pass rng= instead"):
        b = KerasAEBackend.from_config(cfg, seed=3)
    assert a.fingerprint() == b.fingerprint()  # an int is Keras' integer seed, as seed= was
    c = KerasAEBackend.from_config(cfg, rng=np.random.SeedSequence(3))
    d = KerasAEBackend.from_config(cfg, rng=np.random.SeedSequence(3))
    assert c.fingerprint() == d.fingerprint() != a.fingerprint()
    with pytest.raises(InvalidParameterError, match="rng must be None, an int, a SeedSequence or a numpy Generator"):
        KerasAEBackend.from_config(cfg, rng="x")


def test_batch_size_none_is_the_backend_preference(tiny_model):
    from latentscope.backends import preferred_batch_size

    z = np.random.default_rng(0).standard_t(3, size=(40, tiny_model.z_dim)).astype(np.float32)
    assert preferred_batch_size(tiny_model, "decode") == tiny_model.default_batch_size("decode")
    np.testing.assert_array_equal(tiny_model.decode(z), tiny_model.decode(z, batch_size=preferred_batch_size(tiny_model, "decode")))
    with pytest.raises(InvalidParameterError, match=r"^keras-ae: batch_size must be an integer >= 1; got 0\.$"):
        tiny_model.decode(z, batch_size=0)
