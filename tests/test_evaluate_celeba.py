"""evaluate's rule ranks decoded garbage last on a keras-ae model trained on real CelebA faces.

Skips without the shared CelebA sample (``../shared/data`` or ``$LATENTSCOPE_SHARED_DATA``) or
without the keras-ae plugin. A tiny model (32x32, z_dim 32) trained for a few epochs on the
sample's 660 test-split images is enough: cube, normal and box codes decode to no faces, the
fitted generators to blurry ones. The same measurement with the shared 6,000-image model is in
docs/evaluate.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

GARBAGE = ("cube", "normal", "box")
FITTED = ("mvn", "gmm")


def _celeba_sample() -> Path:
    env = os.environ.get("LATENTSCOPE_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    path = root / "celeba_sample"
    if not (path / "img_align_celeba").is_dir():
        pytest.skip("the shared CelebA sample is not available")
    return path


@pytest.mark.slow
def test_rule_precision_ranks_garbage_last_on_celeba(tmp_path):
    path = _celeba_sample()
    keras_ae = pytest.importorskip("latentscope_keras_ae")
    from latentscope.backends import encode_to_store
    from latentscope.data import CelebASource
    from latentscope.metrics import evaluate_regions

    source = CelebASource(path, image_size=32, split="test")
    model = keras_ae.KerasAEBackend.train(source, tmp_path / "model", preset="small", image_size=32, z_dim=32,
                                          filters="8,8,16,16", epochs=3, batch_size=32, val_fraction=0.1, seed=0,
                                          progress=False)
    encode_to_store(model, source, tmp_path / "z.h5")
    ev = evaluate_regions(model, tmp_path / "z.h5", [*GARBAGE, *FITTED], n=200, real=source, kid_subsets=0,
                          memorisation_queries=0, seed=0, region_options={"gmm": {"n_components": 3}})
    assert ev.manifold_space == "conv" and ev.meta["fragment_gate"] is True
    fitted = min(ev[r].precision for r in FITTED)
    for r in GARBAGE:
        assert ev[r].precision < 0.1 and ev[r].precision < fitted, (r, ev[r].precision, fitted)
        assert ev[r].in_fragment == 0.0
    assert "Rule space: conv" in ev.to_markdown()
