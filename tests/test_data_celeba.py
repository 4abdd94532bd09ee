"""Tests of the CelebA reader (latentscope.data.CelebASource) and of open_source specs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentscope.data import CelebASource, FolderSource, SyntheticFaces, open_source
from latentscope.exceptions import DataSourceError, InvalidParameterError

ATTRS = ["Bald", "Eyeglasses", "Male", "Smiling"]


def shared_data() -> Path | None:
    """The project's optional real-data folder: $LATENTSCOPE_SHARED_DATA or ../shared/data."""
    env = os.environ.get("LATENTSCOPE_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def celeba_dir(tmp_path):
    """A tiny CelebA in its own layout: 6 aligned 178x218 JPEGs, one of them corrupt."""
    root = tmp_path / "celeba"
    img_dir = root / "img_align_celeba"
    img_dir.mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    for k, name in enumerate(names):
        img = np.zeros((218, 178, 3), np.uint8)
        img[:20] = 255  # white band above the centred square
        img[20:198] = (40 * k, 100, 200 - 30 * k)
        Image.fromarray(img).save(img_dir / name, quality=95)
    (img_dir / names[3]).write_bytes(b"\xff\xd8\xff\xe0 broken")
    rows = [f"{n} " + " ".join(("1" if (i + j) % 2 else "-1").rjust(2) for j in range(len(ATTRS))) for i, n in enumerate(names)]
    (root / "list_attr_celeba.txt").write_text(f"{len(names)}\n" + " ".join(ATTRS) + "\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(f"{n} {p}" for n, p in zip(names, [0, 0, 0, 1, 2, 2])) + "\n")
    (root / "identity_CelebA.txt").write_text("\n".join(f"{n} {100 + i // 2}" for i, n in enumerate(names)) + "\n")
    return root


def test_celeba_reads_images_and_attributes(celeba_dir):
    # images are the centred square resized; attributes, partition and identity are columns
    src = CelebASource(celeba_dir, image_size=32)
    assert len(src) == 6 and src.spec == f"celeba:{celeba_dir.resolve().as_posix()}"
    assert src.attribute_names == (*ATTRS, "identity", "partition")
    batch = src.read()
    assert batch.images.shape == (5, 32, 32, 3)
    assert [s[1] for s in batch.skipped] == ["000004.jpg"]
    assert batch.images[:, :2].min() < 250  # the white band above the square is cropped away
    np.testing.assert_array_equal(batch.attributes["Eyeglasses"], [1, -1, 1, 1, -1])
    np.testing.assert_array_equal(batch.attributes["partition"], [0, 0, 0, 2, 2])
    np.testing.assert_array_equal(batch.attributes["identity"], [100, 100, 101, 102, 102])
    assert batch.attributes["Male"].dtype == np.int8


def test_celeba_split(celeba_dir):
    # split keeps one partition of list_eval_partition.txt and is part of the spec
    test = open_source(f"celeba:{celeba_dir}", image_size=16, split="test")
    assert list(test.item_ids) == ["000005.jpg", "000006.jpg"] and test.spec.endswith("?split=test")
    val = open_source(f"celeba:{celeba_dir}?split=val", image_size=16)
    assert list(val.item_ids) == ["000004.jpg"]
    with pytest.raises(InvalidParameterError, match="split must be one of"):
        CelebASource(celeba_dir, split="dev")


def test_celeba_split_needs_partition_file(celeba_dir):
    # asking for a split without list_eval_partition.txt is a one-line error
    (celeba_dir / "list_eval_partition.txt").unlink()
    with pytest.raises(DataSourceError, match="needs list_eval_partition.txt"):
        CelebASource(celeba_dir, split="train")
    assert "partition" not in CelebASource(celeba_dir).attribute_names


def test_celeba_missing_annotations_and_layout(celeba_dir, tmp_path):
    # without annotation files the images still read; without images it is an error
    for name in ("list_attr_celeba.txt", "identity_CelebA.txt", "list_eval_partition.txt"):
        (celeba_dir / name).unlink()
    src = CelebASource(celeba_dir, image_size=8)
    assert src.attribute_names == () and len(src.read()) == 5
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match="no img_align_celeba"):
        CelebASource(tmp_path / "empty")


def test_celeba_crop_face_is_tighter(celeba_dir):
    # the "face" crop (140 px) is a smaller centred square than the default 178 px one
    img = np.zeros((218, 178, 3), np.uint8)
    img[20:198, :8] = 255  # inside the 178 square, well outside the 140 one
    Image.fromarray(img).save(celeba_dir / "img_align_celeba" / "000001.jpg", quality=95)
    square = CelebASource(celeba_dir, image_size=16).read(0, 1).images[0]
    face = CelebASource(celeba_dir, image_size=16, crop="face").read(0, 1).images[0]
    assert square[:, 0].mean() > 100 and face[:, 0].mean() < 5


def test_open_source_specs(celeba_dir, tmp_path):
    # the three schemes, bare folders and the ?key=value options
    assert isinstance(open_source("synthetic:5"), SyntheticFaces)
    assert open_source("synthetic:5", seed=2).spec == "synthetic:5?seed=2"
    assert isinstance(open_source(str(celeba_dir)), CelebASource)
    assert isinstance(open_source(f"folder:{celeba_dir / 'img_align_celeba'}"), FolderSource)
    assert isinstance(open_source(celeba_dir / "img_align_celeba"), FolderSource)
    assert open_source(f"folder:{celeba_dir}?crop=square").spec.endswith("?crop=square")
    src = open_source("synthetic:5", image_size="24x32")
    assert src.image_shape == (24, 32, 3)
    assert open_source(src, image_size=(8, 8)).image_shape == (8, 8, 3)


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        ("nonsense:1", {}, "spec must be 'celeba:PATH'"),
        ("synthetic:many", {}, "needs an integer N"),
        ("synthetic:10", {"split": "test"}, "split applies to celeba"),
        ("synthetic:10?seed=x", {}, "seed in"),
        ("celeba:", {}, "needs a folder path"),
        ("synthetic:10", {"image_size": 0}, "image_size must be"),
        ("synthetic:10", {"image_size": "axb"}, "image_size must be"),
    ],
)
def test_open_source_errors(spec, kwargs, match):
    # malformed specs and options are one-line parameter errors
    with pytest.raises(InvalidParameterError, match=match) as info:
        open_source(spec, **kwargs)
    assert "\n" not in str(info.value)


# -- the real CelebA sample (skipped when the shared data is absent) ----------------------
def _celeba_sample() -> Path:
    root = shared_data()
    if root is None or not (root / "celeba_sample" / "img_align_celeba").is_dir():
        pytest.skip("the shared CelebA sample is not available")
    return root / "celeba_sample"


def test_celeba_real_sample_layout():
    # the 6,000-image sample: splits and attributes as its README states
    path = _celeba_sample()
    src = CelebASource(path)
    assert len(src) == 6000 and len(src.attribute_names) == 42
    part = src.attributes(0, 6000)["partition"]
    assert [(part == k).sum() for k in (0, 1, 2)] == [4560, 780, 660]
    male = src.attributes(0, 6000)["Male"]
    assert 0.25 < (male == 1).mean() < 0.33
    assert len(CelebASource(path, split="val")) == 780


def test_celeba_real_sample_decodes():
    # real JPEGs decode to 96x96 RGB faces at a useful rate, none skipped
    src = CelebASource(_celeba_sample(), image_size=96)
    t0 = time.perf_counter()
    batch = src.read(0, 256)
    elapsed = time.perf_counter() - t0
    assert batch.images.shape == (256, 96, 96, 3) and not batch.skipped
    assert 40 < batch.images.mean() < 200 and batch.images.std() > 30
    assert 256 / elapsed > 20  # far below the measured rate (400+/s); guards against pathological slowness
