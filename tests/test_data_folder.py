"""Tests of the image-folder reader and of image decoding (latentscope.data.FolderSource)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from latentscope.data import FolderSource, decode_image, open_source
from latentscope.exceptions import DataSourceError, InvalidParameterError


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, 1, 3))
    ramp = np.linspace(0, 60, w)[None, :, None]
    return np.clip(base + ramp, 0, 255).astype(np.uint8).repeat(h, axis=0)


@pytest.fixture
def mixed_folder(tmp_path):
    """A folder with good images of every kind plus broken files."""
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_rgb(60, 80, 1)).save(root / "a_rgb.jpg", quality=95)
    Image.fromarray(_rgb(40, 40, 2)).save(root / "b_rgb.png")
    Image.fromarray(np.full((30, 50), 128, np.uint8), "L").save(root / "c_grey.png")
    rgba = np.dstack([_rgb(32, 32, 3), np.full((32, 32), 100, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "d_rgba.png")
    Image.fromarray(np.full((112, 92), 200, np.uint8), "L").save(root / "sub" / "e_grey.pgm")
    Image.fromarray(np.full((300, 300), 90, np.uint8), "L").save(root / "sub" / "f_grey_jpeg.jpg")
    # broken: a truncated JPEG, an empty file, text posing as an image
    good = (root / "a_rgb.jpg").read_bytes()
    (root / "g_truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "h_empty.png").write_bytes(b"")
    (root / "i_text.jpg").write_text("not an image")
    (root / "notes.txt").write_text("ignored: not an image extension")
    (root / ".hidden.jpg").write_bytes(good)
    return root


def test_folder_lists_images_recursively_sorted(mixed_folder):
    # image files only, sorted relative paths, hidden files and other extensions ignored
    src = FolderSource(mixed_folder, image_size=16)
    assert list(src.item_ids) == ["a_rgb.jpg", "b_rgb.png", "c_grey.png", "d_rgba.png", "g_truncated.jpg",
                                  "h_empty.png", "i_text.jpg", "sub/e_grey.pgm", "sub/f_grey_jpeg.jpg"]
    assert src.attribute_names == ("label",)


def test_folder_skips_and_lists_unreadable_files(mixed_folder):
    # corrupt, empty and non-image files are skipped and named; the rest decode to RGB
    src = FolderSource(mixed_folder, image_size=(20, 24))
    batch = src.read()
    assert batch.images.shape == (6, 20, 24, 3) and batch.images.dtype == np.uint8
    assert list(batch.ids) == ["a_rgb.jpg", "b_rgb.png", "c_grey.png", "d_rgba.png", "sub/e_grey.pgm", "sub/f_grey_jpeg.jpg"]
    assert [s[1] for s in batch.skipped] == ["g_truncated.jpg", "h_empty.png", "i_text.jpg"]
    assert [s[0] for s in batch.skipped] == [4, 5, 6]
    assert set(src.skipped) == {"g_truncated.jpg", "h_empty.png", "i_text.jpg"}
    assert all(reason for reason in src.skipped.values())
    assert list(batch.indices) == [0, 1, 2, 3, 7, 8]
    assert list(batch.attributes["label"]) == ["", "", "", "", "sub", "sub"]


def test_folder_grey_and_rgba_become_rgb(mixed_folder):
    # grey images have equal channels; RGBA keeps its colour channels (alpha dropped)
    src = FolderSource(mixed_folder, image_size=8, crop="none")
    batch = src.read()
    ids = list(batch.ids)
    grey = batch.images[ids.index("c_grey.png")]
    assert (grey == 128).all()
    pgm = batch.images[ids.index("sub/e_grey.pgm")]
    assert (pgm == 200).all()
    grey_jpeg = batch.images[ids.index("sub/f_grey_jpeg.jpg")]  # decoded with draft (300 px -> 8 px)
    assert np.abs(grey_jpeg.astype(int) - 90).max() <= 2
    rgba = batch.images[ids.index("d_rgba.png")]
    expected = decode_image(mixed_folder / "d_rgba.png", (8, 8), "none")
    np.testing.assert_array_equal(rgba, expected)
    assert rgba[..., 0].mean() != rgba[..., 1].mean() or rgba[..., 1].mean() != rgba[..., 2].mean()


def test_folder_strict_raises_on_first_bad_file(mixed_folder):
    # strict mode stops at the first unreadable file and names it
    src = open_source(f"folder:{mixed_folder}", image_size=8, strict=True)
    with pytest.raises(DataSourceError, match=r"cannot read item 4 \(g_truncated.jpg\)"):
        src.read()


def test_folder_with_nothing_readable_is_an_error(tmp_path):
    # a folder whose files are all broken is a one-line error
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "y.png").write_bytes(b"")
    with pytest.raises(DataSourceError, match=r"none of the 2 items could be read \(first: x.jpg") as info:
        list(FolderSource(tmp_path, image_size=8).iter_batches(1))
    assert "\n" not in str(info.value)


def test_folder_missing_or_empty(tmp_path):
    # a missing folder and a folder without images are one-line errors
    with pytest.raises(DataSourceError, match="no such folder"):
        FolderSource(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataSourceError, match="no image files"):
        FolderSource(tmp_path)


def test_folder_not_recursive(mixed_folder):
    # recursive=False reads the top folder only (and then has no labels)
    src = FolderSource(mixed_folder, recursive=False)
    assert not any("/" in i for i in src.item_ids) and src.attribute_names == ()


def test_decode_crop_modes(tmp_path):
    # "center" keeps the target's aspect ratio, "none" stretches, "square" takes the centre square
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :12] = 255  # a white band at the left edge
    Image.fromarray(img).save(tmp_path / "wide.png")
    centre = decode_image(tmp_path / "wide.png", (10, 10), "center")
    stretched = decode_image(tmp_path / "wide.png", (10, 10), "none")
    square = decode_image(tmp_path / "wide.png", (10, 10), "square")
    assert centre.max() == 0  # the centred 40x40 square misses the band
    np.testing.assert_array_equal(centre, square)
    assert stretched[:, 0].min() == 255 and stretched[:, -1].max() == 0


def test_decode_jpeg_draft_matches_full_decode(tmp_path):
    # reduced-scale JPEG decoding (draft) stays close to decoding at full size
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((50, 50, 1))).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    fast = decode_image(tmp_path / "big.jpg", (50, 50), "center").astype(float)
    with Image.open(tmp_path / "big.jpg") as im:
        slow = np.asarray(im.convert("RGB").resize((50, 50), Image.Resampling.BILINEAR), dtype=float)
    assert np.abs(fast - slow).mean() < 4


def test_folder_rejects_bad_crop(tmp_path):
    # crop must be a known mode or a side length
    Image.fromarray(_rgb(8, 8)).save(tmp_path / "a.png")
    with pytest.raises(InvalidParameterError, match="crop must be one of"):
        FolderSource(tmp_path, crop="diagonal")


def test_folder_threaded_matches_serial(mixed_folder):
    # thread-pool decoding gives the same batches as decoding in the calling thread
    src = FolderSource(mixed_folder, image_size=12)
    serial = src.read(workers=0)
    threaded = [b for b in src.iter_batches(2, workers=3, prefetch=1)]
    np.testing.assert_array_equal(serial.images, np.concatenate([b.images for b in threaded]))
    assert [b.stop for b in threaded] == [2, 4, 6, 8, 9]


def test_save_png_round_trips_through_the_folder_reader(tmp_path):
    # the one PNG writer (also the samplers' and filaments' figures) writes pixels a folder source reads back
    from latentscope.data._imageio import save_png
    from latentscope.filaments import _plots as filament_plots
    from latentscope.samplers import plots as sampler_plots

    assert sampler_plots.save_png is save_png and filament_plots.save_png is save_png
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (20, 30, 3)).astype(np.uint8) for _ in range(3)]
    paths = [save_png(im, tmp_path / "new" / "sub" / f"{i}.png") for i, im in enumerate(images)]
    assert [p.name for p in paths] == ["0.png", "1.png", "2.png"]
    src = FolderSource(tmp_path / "new", image_size=(20, 30), crop="none")
    batch = src.read(workers=0)
    assert list(batch.ids) == ["sub/0.png", "sub/1.png", "sub/2.png"]
    np.testing.assert_array_equal(batch.images, np.stack(images))  # PNG is lossless; no resize at the same size
    assert list(batch.attributes["label"]) == ["sub"] * 3
