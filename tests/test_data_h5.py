"""The h5:PATH[:DATASET] image source and the decoder-thread default."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from latentscope.backends import LinearBackend, encode_to_store
from latentscope.data import H5Source, SyntheticFaces, default_workers, open_source, pixel_key
from latentscope.exceptions import DataSourceError, InvalidParameterError
from latentscope.store import open_store


@pytest.fixture
def faces(rng):
    return rng.integers(0, 256, (13, 12, 10, 3), dtype=np.uint8)


@pytest.fixture
def h5_file(tmp_path, faces):
    path = tmp_path / "faces.h5"
    with h5py.File(path, "w") as f:
        f["images"] = faces
        f["ids"] = np.array([f"img{i:02d}.jpg".encode() for i in range(13)])
        f["smile"] = np.linspace(-1, 1, 13).astype(np.float32)
        f["male"] = (np.arange(13) % 2).astype(np.int8)
        f["person"] = np.array([f"p{i // 3}" for i in range(13)], dtype=h5py.string_dtype())
        f["source_index"] = np.arange(13) * 2  # reserved: encode writes its own
        f["not_per_item"] = np.zeros(4)
    return path


def test_h5_source_reads_images_ids_and_attributes(h5_file, faces):
    # the images come back bit for bit, with the ids and every per-item 1-D dataset
    src = open_source(f"h5:{h5_file}", image_size=(12, 10))
    assert isinstance(src, H5Source) and len(src) == 13 and src.image_shape == (12, 10, 3)
    assert src.spec == f"h5:{h5_file.resolve().as_posix()}:images"
    assert sorted(src.attribute_names) == ["male", "person", "smile"]
    batch = src.read()
    np.testing.assert_array_equal(batch.images, faces)
    assert list(batch.ids) == [f"img{i:02d}.jpg" for i in range(13)]
    np.testing.assert_array_equal(batch.attributes["smile"], np.linspace(-1, 1, 13).astype(np.float32))
    assert batch.attributes["male"].dtype == np.int8 and list(batch.attributes["person"][:4]) == ["p0", "p0", "p0", "p1"]
    # threaded batches of any size give the same images
    parts = list(src.iter_batches(5, workers=3))
    np.testing.assert_array_equal(np.concatenate([b.images for b in parts]), faces)
    np.testing.assert_array_equal(src.read_rows(np.array([7, 2, 2, 3])), faces[[7, 2, 2, 3]])


def test_h5_source_finds_the_dataset(tmp_path, faces):
    # a named dataset in a group, else the only (N, H, W, 3) dataset; ids default to indices
    path = tmp_path / "nested.h5"
    with h5py.File(path, "w") as f:
        f["train/faces"] = faces
        f["train/ids"] = np.arange(100, 113)
        f["train/labels"] = np.arange(13)
        f["meta"] = np.zeros(13)  # beside the root, not beside the images
    for spec in (f"h5:{path}", f"h5:{path}:train/faces", f"h5:{path}:/train/faces", str(path)):
        src = open_source(spec, image_size=(12, 10))
        assert src.dataset == "train/faces" and list(src.item_ids[:2]) == ["100", "101"]
        assert src.attribute_names == ("labels",)
    plain = tmp_path / "plain.hdf5"
    with h5py.File(plain, "w") as f:
        f["x"] = faces
    src = open_source(plain, image_size=(12, 10))
    assert list(src.item_ids[:3]) == ["0", "1", "2"] and src.attribute_names == ()


def test_h5_source_resizes_to_the_requested_size(h5_file, faces):
    # another image size resizes the whole image bilinearly, as Pillow does
    src = open_source(f"h5:{h5_file}", image_size=(6, 5))
    got = src.read(0, 2).images
    want = np.asarray(Image.fromarray(faces[1]).resize((5, 6), Image.Resampling.BILINEAR, reducing_gap=None))
    assert got.shape == (2, 6, 5, 3)
    np.testing.assert_array_equal(got[1], want)


@pytest.mark.parametrize(("data", "match"), [
    (np.zeros((4, 8, 8, 3), np.float32), r"images must be a uint8 array of shape \(N, H, W, 3\) with N >= 1; got float32 \(4, 8, 8, 3\)"),
    (np.zeros((4, 8, 8), np.uint8), r"images must be a uint8 array .*; got uint8 \(4, 8, 8\)"),
    (np.zeros((4, 8, 8, 4), np.uint8), r"images must be a uint8 array .*; got uint8 \(4, 8, 8, 4\)"),
    (np.zeros((0, 8, 8, 3), np.uint8), r"with N >= 1; got uint8 \(0, 8, 8, 3\)"),
])
def test_h5_source_refuses_a_wrong_dtype_or_shape(tmp_path, data, match):
    # a wrong dtype or shape is one line naming the file, dataset, expectation and value
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["images"] = data
    with pytest.raises(DataSourceError, match=match) as info:
        open_source(f"h5:{path}")
    assert "\n" not in str(info.value) and f"{path.as_posix()}:images" in str(info.value)


def test_h5_source_one_line_errors(tmp_path, faces):
    # a missing file, a non-HDF5 file, a missing or ambiguous dataset, ids of the wrong length
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a"] = faces
        f["b"] = faces
    cases = [
        (f"h5:{tmp_path / 'none.h5'}", "no such file"),
        (f"h5:{path}:faces", r"no dataset 'faces' \(datasets shaped \(N, H, W, 3\): a, b\)"),
        (f"h5:{path}", r"2 datasets are shaped \(N, H, W, 3\) \(a, b\); name one as h5:PATH:DATASET"),
    ]
    (tmp_path / "text.h5").write_text("not hdf5")
    cases.append((f"h5:{tmp_path / 'text.h5'}", "cannot be read as HDF5"))
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f["z"] = np.zeros((3, 4), np.float32)
    cases.append((f"h5:{empty}", r"no image dataset: expected 'images' or one dataset shaped \(N, H, W, 3\)"))
    short = tmp_path / "short.h5"
    with h5py.File(short, "w") as f:
        f["images"] = faces
        f["ids"] = np.arange(5)
    cases.append((f"h5:{short}", r"/ids must hold one string or integer per image, shape \(13,\); got int64 \(5,\)"))
    for spec, match in cases:
        with pytest.raises(DataSourceError, match=match) as info:
            open_source(spec)
        assert "\n" not in str(info.value)
    with pytest.raises(InvalidParameterError, match="crop does not apply to h5: sources"):
        open_source(f"h5:{short}?crop=square")


def test_h5_source_encodes_like_the_array(tmp_path, h5_file, faces):
    # encode_to_store on an h5: source writes the array's z-points, ids and attributes
    model = LinearBackend.fit(SyntheticFaces(40, image_size=(12, 10)), z_dim=4, n_iter=2)
    result = encode_to_store(model, f"h5:{h5_file}", tmp_path / "z.h5", batch_size=8)
    assert result.n_rows == 13
    with open_store(tmp_path / "z.h5") as store:
        np.testing.assert_array_equal(store.read(), np.concatenate([model.encode(faces[:8]), model.encode(faces[8:])]))
        assert list(store.read_ids())[:2] == ["img00.jpg", "img01.jpg"]
        np.testing.assert_array_equal(store.read_column("source_index"), np.arange(13))
        assert store.read_column("male").dtype == np.int8


def test_pixel_key_drops_only_item_selection():
    # split and the synthetic count select items; root, crop, seed and dataset decide pixels
    assert pixel_key("celeba:/d?split=train") == pixel_key("celeba:/d?split=test") == pixel_key("celeba:/d")
    assert pixel_key("celeba:/d?split=train&crop=face") == pixel_key("celeba:/d?crop=face") != pixel_key("celeba:/d")
    assert pixel_key("synthetic:100?seed=2") == pixel_key("synthetic:7?seed=2") != pixel_key("synthetic:7?seed=3")
    assert pixel_key("synthetic:7") == pixel_key("synthetic:9?seed=0")
    assert pixel_key("folder:/a") != pixel_key("folder:/b") and pixel_key("h5:/a.h5:x") != pixel_key("h5:/a.h5:y")


def test_default_workers_uses_the_allowed_cores(monkeypatch):
    # the cores this process may run on (not the machine's count), or LATENTSCOPE_WORKERS
    import os

    monkeypatch.delenv("LATENTSCOPE_WORKERS", raising=False)
    if hasattr(os, "sched_getaffinity"):
        assert default_workers() == len(os.sched_getaffinity(0))
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
        assert default_workers() == 3
    monkeypatch.setenv("LATENTSCOPE_WORKERS", "11")
    assert default_workers() == 11
    for bad in ("0", "many"):
        monkeypatch.setenv("LATENTSCOPE_WORKERS", bad)
        with pytest.raises(InvalidParameterError, match=f"LATENTSCOPE_WORKERS must be an integer >= 1; got '{bad}'"):
            default_workers()
