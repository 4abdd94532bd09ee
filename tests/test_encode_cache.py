"""Encoding from a training image cache (encode_to_store(from_cache=True), --from-cache).

The caches here are real HDF5 files written the way a training run writes its cache:
one row per readable item, in source order, with the item ids beside the images.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from latentscope.backends import LinearBackend, encode_to_store, training_image_cache
from latentscope.backends._encode import SOURCE_INDEX, skipped_path
from latentscope.cli import main
from latentscope.data import CachedSource, ImageCacheInfo, SyntheticFaces, open_source
from latentscope.exceptions import BackendError, DataSourceError
from latentscope.store import open_store


class _Stop(Exception):
    pass


class CachingLinear(LinearBackend):
    """The linear backend with a training cache, as a plugin would expose it."""

    cache: ImageCacheInfo | None = None

    def image_cache(self):
        return self.cache


def write_cache(path: Path, source, *, rows=None) -> Path:
    """What a training run caches: the readable items of ``source`` (``rows`` of them)."""
    batch = source.read()
    keep = slice(None) if rows is None else rows
    with h5py.File(path, "w") as f:
        f["images"] = batch.images[keep]
        f["ids"] = np.asarray(batch.ids[keep]).astype(str).astype(object).astype(h5py.string_dtype())
    return path


@pytest.fixture(scope="module")
def linear():
    return LinearBackend.fit(SyntheticFaces(120, image_size=20, seed=9), z_dim=6, n_iter=3)


@pytest.fixture
def model(linear):
    m = CachingLinear(linear.mean, linear.components, image_shape=linear.image_shape)
    return m


@pytest.fixture
def folder(tmp_path):
    """12 PNGs of 30x26 pixels, two of them unreadable (items 3 and 8)."""
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(4)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (30, 26, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    (root / "03.png").write_bytes(b"")
    (root / "08.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def _contents(path):
    with open_store(path) as store:
        cols = {name: store.read_column(name) for name in store.column_names}
        return store.read(), list(store.read_ids()), cols, store.provenance["source"]


def _assert_same_store(a, b):
    za, ia, ca, sa = _contents(a)
    zb, ib, cb, sb = _contents(b)
    np.testing.assert_array_equal(za, zb)
    assert ia == ib and sa == sb and ca.keys() == cb.keys()
    for name in ca:
        np.testing.assert_array_equal(ca[name], cb[name])


def test_cache_with_skipped_files_maps_rows_to_items(tmp_path, model, folder):
    # the cache lacks the two unreadable files: its rows 0..9 are items 0-2, 4-7, 9-11
    spec = f"folder:{folder}"
    src = open_source(spec, image_size=(20, 20))
    model.cache = ImageCacheInfo(write_cache(tmp_path / "cache.h5", src), source=src.spec)
    cached = CachedSource(src, model.cache)
    np.testing.assert_array_equal(cached.rows, [0, 1, 2, -1, 3, 4, 5, 6, -1, 7, 8, 9])
    assert cached.n_cached == 10
    a = encode_to_store(model, spec, tmp_path / "images.h5", batch_size=5)
    b = encode_to_store(model, spec, tmp_path / "cache.z.h5", batch_size=5, from_cache=True)
    assert (a.n_rows, a.n_skipped, a.n_from_cache) == (10, 2, 0)
    assert (b.n_rows, b.n_skipped, b.n_from_cache) == (10, 2, 10)
    _assert_same_store(tmp_path / "images.h5", tmp_path / "cache.z.h5")
    assert skipped_path(tmp_path / "images.h5").read_text() == skipped_path(tmp_path / "cache.z.h5").read_text()
    np.testing.assert_array_equal(_contents(tmp_path / "cache.z.h5")[2][SOURCE_INDEX], [0, 1, 2, 4, 5, 6, 7, 9, 10, 11])


def test_cache_rows_are_read_not_decoded(tmp_path, model, folder):
    # a cache row changed on purpose changes that item's z-point only: the cache is really read
    spec = f"folder:{folder}"
    src = open_source(spec, image_size=(20, 20))
    path = write_cache(tmp_path / "cache.h5", src)
    with h5py.File(path, "a") as f:
        f["images"][4] = 255 - f["images"][4]  # item 5 ("05.png")
    model.cache = ImageCacheInfo(path, source=src.spec)
    encode_to_store(model, spec, tmp_path / "images.h5", batch_size=4)
    encode_to_store(model, spec, tmp_path / "cache.z.h5", batch_size=4, from_cache=True)
    za, ids, _, _ = _contents(tmp_path / "images.h5")
    zb = _contents(tmp_path / "cache.z.h5")[0]
    differs = np.flatnonzero(np.abs(za - zb).max(axis=1) > 0)
    assert [ids[i] for i in differs] == ["05.png"]


def test_partial_cache_decodes_the_rest_and_resumes(tmp_path, model):
    # a cache of the first 50 of 70 synthetic faces (other count, same seed): 50 read, 20 decoded;
    # a store begun from the images and resumed from the cache equals one run
    big = SyntheticFaces(70, image_size=20, seed=2)
    model.cache = ImageCacheInfo(write_cache(tmp_path / "cache.h5", SyntheticFaces(50, image_size=20, seed=2)),
                                 source="synthetic:50?seed=2")
    full = encode_to_store(model, big, tmp_path / "images.h5", batch_size=16)
    part = encode_to_store(model, big, tmp_path / "cache.z.h5", batch_size=16, from_cache=True)
    assert full.n_rows == part.n_rows == 70 and part.n_from_cache == 50
    _assert_same_store(tmp_path / "images.h5", tmp_path / "cache.z.h5")

    def stop_after_two(done, total, calls=[]):  # noqa: B006 - one call counter per test
        calls.append(done)
        if len(calls) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        encode_to_store(model, big, tmp_path / "resumed.h5", batch_size=16, progress=stop_after_two)
    resumed = encode_to_store(model, big, tmp_path / "resumed.h5", batch_size=16, from_cache=True)
    assert resumed.resumed and resumed.n_written == 38 and resumed.n_from_cache == 18  # items 32..49 cached
    _assert_same_store(tmp_path / "images.h5", tmp_path / "resumed.h5")


def test_cache_of_other_images_is_refused(tmp_path, model, folder):
    # another source, another image size, duplicate ids: one-line errors, no store
    src = SyntheticFaces(10, image_size=20, seed=1)
    path = write_cache(tmp_path / "cache.h5", src)
    model.cache = ImageCacheInfo(path, source="synthetic:10?seed=1")
    with pytest.raises(DataSourceError, match=r"holds images of 'synthetic:10\?seed=1', not of 'synthetic:10\?seed=0'"):
        encode_to_store(model, SyntheticFaces(10, image_size=20), tmp_path / "z.h5", from_cache=True)
    small = write_cache(tmp_path / "small.h5", SyntheticFaces(10, image_size=16, seed=1))
    model.cache = ImageCacheInfo(small, source="synthetic:10?seed=1")
    with pytest.raises(DataSourceError, match="the cache holds 16x16 images; the source is read at 20x20"):
        encode_to_store(model, src, tmp_path / "z.h5", from_cache=True)
    with h5py.File(path, "a") as f:
        f["ids"][1] = b"0"
    model.cache = ImageCacheInfo(path, source="synthetic:10?seed=1")
    with pytest.raises(DataSourceError, match="its ids are not unique") as info:
        encode_to_store(model, src, tmp_path / "z.h5", from_cache=True)
    assert "\n" not in str(info.value) and not (tmp_path / "z.h5").exists()


def test_backend_without_a_cache_is_a_one_line_error(tmp_path, model, linear):
    # no image_cache() method, a model without a cache, or a wrong return type
    with pytest.raises(BackendError, match=r"backend 'linear' keeps no training image cache .*without --from-cache"):
        encode_to_store(linear, SyntheticFaces(4, image_size=20), tmp_path / "z.h5", from_cache=True)
    model.cache = None
    with pytest.raises(BackendError, match="this model has no training image cache"):
        training_image_cache(model)
    model.cache = str(tmp_path / "cache.h5")
    with pytest.raises(BackendError, match="must return a latentscope.data.ImageCacheInfo or None; got str"):
        training_image_cache(model)


def test_cli_from_cache_with_a_backend_without_cache(tmp_path, capsys):
    # the CLI prints the backend's refusal as one line and exits 1
    assert main(["train", "--backend", "linear", "--data", "synthetic:40", "--out", str(tmp_path / "m"),
                 "--z-dim", "4", "--image-size", "16", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["encode", "--model", str(tmp_path / "m"), "--data", "synthetic:40", "--out", str(tmp_path / "z.h5"),
                 "--from-cache", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "keeps no training image cache" in err and err.count("\n") == 1
