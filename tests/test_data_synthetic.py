"""Tests of the procedural synthetic faces (latentscope.data.SyntheticFaces)."""

from __future__ import annotations

import numpy as np
import pytest

from latentscope.data import FACE_ATTRIBUTES, HAIR_COLORS, SyntheticFaces, open_source, render_faces
from latentscope.exceptions import InvalidParameterError


def test_synthetic_batches_have_images_ids_and_attributes():
    # a batch holds uint8 RGB images, string ids and every face attribute as a column
    src = SyntheticFaces(10, image_size=(24, 32), seed=1)
    batch = next(src.iter_batches(4))
    assert batch.images.shape == (4, 24, 32, 3) and batch.images.dtype == np.uint8
    assert list(batch.ids) == ["0", "1", "2", "3"]
    assert set(batch.attributes) == set(FACE_ATTRIBUTES) == set(src.attribute_names)
    for name, (dtype, _) in FACE_ATTRIBUTES.items():
        assert batch.attributes[name].dtype == dtype and batch.attributes[name].shape == (4,)
    assert batch.start == 0 and batch.stop == 4 and list(batch.indices) == [0, 1, 2, 3]


def test_synthetic_items_independent_of_batching_and_workers():
    # item i depends only on (seed, i): batch size, start offset and threads change nothing
    src = SyntheticFaces(1100, image_size=16, seed=5)  # spans two parameter blocks
    whole = src.read(1000, 1100, workers=0)
    parts = [b for b in src.iter_batches(7, start=1000, stop=1100, workers=2, prefetch=3)]
    np.testing.assert_array_equal(whole.images, np.concatenate([b.images for b in parts]))
    np.testing.assert_array_equal(whole.attributes["smile"], np.concatenate([b.attributes["smile"] for b in parts]))
    again = SyntheticFaces(1100, image_size=16, seed=5).read(1000, 1100)
    np.testing.assert_array_equal(whole.images, again.images)


def test_synthetic_seeds_differ():
    # different seeds give different faces
    a = SyntheticFaces(8, image_size=16, seed=0).read().images
    b = SyntheticFaces(8, image_size=16, seed=1).read().images
    assert not np.array_equal(a, b)


def test_synthetic_attribute_ranges():
    # the drawn parameters stay in their documented ranges and vary across faces
    attrs = SyntheticFaces(2000, image_size=8).read().attributes
    assert set(np.unique(attrs["glasses"])) == {0, 1}
    assert set(np.unique(attrs["hair_color"])) <= set(range(len(HAIR_COLORS)))
    for name in ("skin_tone", "eye_openness", "mouth_open", "hair_length"):
        assert 0 <= attrs[name].min() and attrs[name].max() <= 1 and attrs[name].std() > 0.1
    assert -1 <= attrs["smile"].min() and attrs["smile"].max() <= 1
    assert np.abs(attrs["yaw"]).max() <= 35 and attrs["yaw"].std() > 5
    assert 0.05 < attrs["glasses"].mean() < 0.2


def test_synthetic_cheek_has_the_skin_colour():
    # the renderer draws from its parameters: a cheek pixel shows the face's skin colour
    src = SyntheticFaces(64, image_size=96, seed=3)
    p = src.params()
    images = src.read().images.astype(np.float64) / 255
    h = w = 96
    for i in range(64):
        u, v = -0.55 * p["face_width"][i], 0.25 * p["face_height"][i]
        roll = np.deg2rad(p["roll"][i])
        x = p["face_x"][i] + u * np.cos(roll) - v * np.sin(roll)
        y = p["face_y"][i] + u * np.sin(roll) + v * np.cos(roll)
        col, row = int((x + 1) / 2 * w), int((y + 1) / 2 * h)
        shade = 1 - 0.22 * (0.55**2 + 0.25**2) - 0.12 * p["light"][i] * 0.55
        np.testing.assert_allclose(images[i, row, col], p["_skin_rgb"][i] * shade, atol=0.08)


def test_synthetic_faces_are_not_flat():
    # every image has structure (features drawn), and faces differ from each other
    images = SyntheticFaces(32, image_size=32).read().images.astype(np.float64)
    assert (images.reshape(32, -1).std(axis=1) > 10).all()
    assert images.std(axis=0).mean() > 20


def test_synthetic_render_sizes():
    # any image size, square or not, renders
    src = SyntheticFaces(3)
    for size in [(8, 8), (20, 40), (128, 96)]:
        assert render_faces(src.params(), size).shape == (3, *size, 3)


def test_synthetic_spec_and_resize():
    # the canonical spec names count and seed; with_image_size keeps the data
    src = open_source("synthetic:12?seed=4", image_size=16)
    assert src.spec == "synthetic:12?seed=4" and len(src) == 12
    big = src.with_image_size(32)
    assert big.image_shape == (32, 32, 3) and src.image_shape == (16, 16, 3)
    np.testing.assert_array_equal(big.read().attributes["smile"], src.read().attributes["smile"])


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_synthetic_rejects_bad_n(n):
    # n must be a positive integer
    with pytest.raises(InvalidParameterError, match="n must be an integer >= 1"):
        SyntheticFaces(n)


def test_synthetic_early_stop_releases_threads():
    # leaving a threaded iteration early cancels pending work without hanging
    src = SyntheticFaces(5000, image_size=16)
    for k, batch in enumerate(src.iter_batches(64, workers=2, prefetch=4)):
        if k == 2:
            break
    assert batch.start == 128


@pytest.mark.parametrize(("kwargs", "match"), [({"batch_size": 0}, "batch_size must be an integer >= 1"),
                                               ({"start": -1}, "start must be an integer >= 0"),
                                               ({"workers": -2}, "workers must be >= 0")])
def test_iter_batches_validates_eagerly(kwargs, match):
    # bad arguments fail at the call, before any iteration
    with pytest.raises(InvalidParameterError, match=match):
        SyntheticFaces(4).iter_batches(**kwargs)
