"""FilamentDetector on the latents of a keras-ae model trained on real CelebA faces.

Skips without the shared CelebA sample (``../shared/data`` or
``$LATENTSCOPE_SHARED_DATA``) or without the keras-ae plugin. A tiny model trained in
seconds on the sample's 660 test-split images: its codes are far from Gaussian, which
made the earlier Gaussian-null density test flag most of them. The measurement on the
full 6,000-image sample with the reference model is in docs/filaments.md.
"""

from __future__ import annotations


import numpy as np
import pytest

from latentscope.filaments import FilamentDetector


@pytest.mark.slow
def test_filaments_on_celeba_latents_are_calibrated(celeba_tiny):
    from latentscope import open_store

    model, source, store_path = celeba_tiny
    with open_store(store_path) as st:
        z = st.read()
    assert z.shape == (len(source), 32)
    kurt = ((z - z.mean(0)) ** 4).mean(0) / z.var(0) ** 2 - 3
    det = FilamentDetector(rng=0).fit(z)
    p = det.density_pvalue_
    # the codes are not Gaussian, yet the p-values are not anti-conservative and almost
    # nothing is flagged (the Gaussian-null test flagged 60 % of the reference model's codes)
    for a in (0.01, 0.05, 0.2):
        assert np.mean(p <= a) <= 1.25 * a + 4 * np.sqrt(a * (1 - a) / p.size), (a, np.mean(p <= a), kurt)
    assert det.candidates_.mean() <= 0.01
    assert det.filaments_ == []
