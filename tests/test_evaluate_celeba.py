"""evaluate's rule ranks decoded garbage last on a keras-ae model trained on real CelebA faces.

Skips without the shared CelebA sample (``../shared/data`` or ``$LATENTSCOPE_SHARED_DATA``) or
without the keras-ae plugin. A tiny model (32x32, z_dim 32) trained for a few epochs on the
sample's 660 test-split images is enough: cube, normal and box codes decode to no faces, the
fitted generators to blurry ones. The same measurement with the shared 6,000-image model is in
docs/evaluate.md.
"""

from __future__ import annotations


import pytest

GARBAGE = ("cube", "normal", "box")
FITTED = ("mvn", "gmm")


@pytest.mark.slow
def test_rule_precision_ranks_garbage_last_on_celeba(celeba_tiny):
    from latentscope.metrics import evaluate_regions

    model, source, store_path = celeba_tiny
    ev = evaluate_regions(model, store_path, [*GARBAGE, *FITTED], n=200, real=source, kid_subsets=0,
                          memorisation_queries=0, rng=0, region_options={"gmm": {"n_components": 3}})
    assert ev.manifold_space == "conv" and ev.meta["fragment_gate"] is True
    fitted = min(ev[r].precision for r in FITTED)
    for r in GARBAGE:
        assert ev[r].precision < 0.1 and ev[r].precision < fitted, (r, ev[r].precision, fitted)
        assert ev[r].in_fragment == 0.0
    assert "Rule space: conv" in ev.to_markdown()
