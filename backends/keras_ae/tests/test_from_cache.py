"""Encoding from the training image cache (``image_cache()``, ``--from-cache``) with real models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from latentscope.backends import encode_to_store
from latentscope.cli import main
from latentscope.data import ImageCacheInfo, open_source
from latentscope.store import open_store
from latentscope_keras_ae import KerasAEBackend
from latentscope_keras_ae._cache import build_cache


def _z_ids(path):
    with open_store(path) as store:
        return store.read(), list(store.read_ids()), store.read_column("source_index")


def test_trained_model_exposes_its_cache(tiny_model, tiny_model_dir):
    # training records the cache in config.json; image_cache() names it and the source it holds
    assert json.loads((tiny_model_dir / "config.json").read_text())["image_cache"] == "image_cache.h5"
    info = tiny_model.image_cache()
    assert isinstance(info, ImageCacheInfo)
    assert info.path == tiny_model_dir / "image_cache.h5" and info.source == "synthetic:80?seed=0"
    assert KerasAEBackend.from_config(tiny_model.config).image_cache() is None  # no model directory


def test_encode_from_cache_equals_encode_from_images(tiny_model, tmp_path):
    # the training source, read from the cache, gives bitwise the z-points of decoding it
    a = encode_to_store(tiny_model, "synthetic:80", tmp_path / "images.h5", batch_size=32)
    b = encode_to_store(tiny_model, "synthetic:80", tmp_path / "cache.h5", batch_size=32, from_cache=True)
    assert a.n_rows == b.n_rows == 80 and b.n_from_cache == 80
    za, ia, sa = _z_ids(tmp_path / "images.h5")
    zb, ib, sb = _z_ids(tmp_path / "cache.h5")
    np.testing.assert_array_equal(za, zb)
    assert ia == ib and np.array_equal(sa, sb)


def test_cache_that_skipped_files_maps_rows_to_items(tiny_model_dir, tmp_path, capsys):
    # a model whose cache was built from a folder with unreadable files: rows map by id, the
    # unreadable files are tried again (and skipped again), the store equals the images path
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(7)
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    for bad in ("004.png", "005.png", "017.png"):
        (root / bad).write_bytes(b"")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("config.json", "encoder.keras", "decoder.keras"):
        shutil.copy(tiny_model_dir / name, model_dir / name)
    build_cache(open_source(f"folder:{root}", image_size=32), model_dir / "image_cache.h5").close()
    model = KerasAEBackend.load(model_dir)
    assert model.image_cache().source == f"folder:{root.resolve().as_posix()}"
    a = encode_to_store(model, f"folder:{root}", tmp_path / "images.h5", batch_size=8)
    b = encode_to_store(model, f"folder:{root}", tmp_path / "cache.h5", batch_size=8, from_cache=True)
    assert (a.n_rows, a.n_skipped) == (b.n_rows, b.n_skipped) == (27, 3) and b.n_from_cache == 27
    za, ia, sa = _z_ids(tmp_path / "images.h5")
    zb, ib, sb = _z_ids(tmp_path / "cache.h5")
    np.testing.assert_array_equal(za, zb)
    assert ia == ib and "005.png" not in ib and list(sb[3:6]) == [3, 6, 7]
    # the command line: same store, and it says how many items came from the cache
    out = tmp_path / "cli.h5"
    assert main(["encode", "--model", str(model_dir), "--data", f"folder:{root}", "--out", str(out),
                 "--batch-size", "8", "--from-cache", "--no-progress"]) == 0
    assert "27 read from the training cache" in capsys.readouterr().out
    np.testing.assert_array_equal(_z_ids(out)[0], za)


def test_model_without_cache_file_says_so(tiny_model_dir, tmp_path):
    # the cache deleted after training: image_cache() is None and --from-cache a one-line error
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("config.json", "encoder.keras", "decoder.keras"):
        shutil.copy(tiny_model_dir / name, model_dir / name)
    model = KerasAEBackend.load(model_dir)
    assert model.image_cache() is None
    from latentscope.exceptions import BackendError

    with pytest.raises(BackendError, match="'keras-ae': this model has no training image cache"):
        encode_to_store(model, "synthetic:8", tmp_path / "z.h5", from_cache=True)
