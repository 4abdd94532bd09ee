"""Models move between Keras backends: a model trained with TensorFlow (this process)
encodes the same z-points under JAX (a subprocess, as the lent GPU machines run it),
and a model trained under JAX loads and encodes the same here. Also checks the JAX
encode/decode path (jitted, several batches in flight) against ``predict_on_batch``.

Skipped where JAX is not installed (``make test`` installs it with the plugin's
``jax`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from latentscope.data import SyntheticFaces
from latentscope_keras_ae import KerasAEBackend

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")

_UNDER_JAX = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    from latentscope.data import SyntheticFaces
    from latentscope_keras_ae import KerasAEBackend

    tf_dir, jax_dir, out = sys.argv[1:4]
    options = json.loads(sys.argv[4])
    from latentscope_keras_ae._model import uint8_encoder

    x = SyntheticFaces(40, image_size=32, seed=5).read().images
    model = KerasAEBackend.load(tf_dir)
    z = model.encode(x, batch_size=5)  # 8 chunks, 4 in flight at a time (the jitted JAX path)
    images = model.decode(z, batch_size=6)  # 7 chunks, the last padded
    # the plain Keras path on the whole array at once
    z_ref = np.asarray(uint8_encoder(model.encoder).predict_on_batch(x))
    images_ref = np.clip(np.rint(np.asarray(model.decoder.predict_on_batch(z)) * 255), 0, 255).astype(np.uint8)
    trained = KerasAEBackend.train(SyntheticFaces(80, image_size=32), jax_dir, **options)
    np.savez(out, z=z, images=images, z_ref=z_ref, images_ref=images_ref, z_trained=trained.encode(x))
    print(json.dumps({"backend": keras.backend.backend(), "fingerprint": model.fingerprint(),
                      "trained_fingerprint": trained.fingerprint(),
                      "batch": [model.default_batch_size("encode"), model.default_batch_size("decode")]}))
""")


def test_models_move_between_tensorflow_and_jax(tiny, tiny_model_dir, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "LATENTSCOPE_NO_PROGRESS": "1"}
    jax_dir, out = tmp_path / "jax_model", tmp_path / "jax.npz"
    proc = subprocess.run([sys.executable, "-c", _UNDER_JAX, str(tiny_model_dir), str(jax_dir), str(out),
                           json.dumps({**tiny[0], "epochs": 1})], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["backend"] == "jax"
    assert facts["batch"] == [256, 128]  # JAX on CPUs
    got = np.load(out)
    # under JAX, encode/decode (jitted, batches in flight, padded last chunk) == predict_on_batch
    np.testing.assert_allclose(got["z"], got["z_ref"], rtol=1e-5, atol=1e-5 * float(np.abs(got["z_ref"]).max()))
    assert np.abs(got["images"].astype(int) - got["images_ref"].astype(int)).max() <= 1

    # TensorFlow-trained model under JAX: same fingerprint (so stores can be resumed
    # across backends), same z-points up to float32 rounding, decoded images within 1 level
    tf_model = KerasAEBackend.load(tiny_model_dir)
    x = SyntheticFaces(40, image_size=32, seed=5).read().images
    z = tf_model.encode(x, batch_size=5)
    assert facts["fingerprint"] == tf_model.fingerprint()
    np.testing.assert_allclose(got["z"], z, rtol=1e-4, atol=1e-4 * float(np.abs(z).max()))
    assert np.abs(got["images"].astype(int) - tf_model.decode(z).astype(int)).max() <= 1

    # JAX-trained model here under TensorFlow: loads, same fingerprint, same z-points
    jax_model = KerasAEBackend.load(jax_dir)
    assert jax_model.info["keras_backend"] == "jax" and jax_model.fingerprint() == facts["trained_fingerprint"]
    z_jax = got["z_trained"]
    np.testing.assert_allclose(jax_model.encode(x), z_jax, rtol=1e-4, atol=1e-4 * float(np.abs(z_jax).max()))
    assert not np.allclose(z_jax, z, atol=1e-3)  # a different model indeed
