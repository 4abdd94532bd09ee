"""Tests of the generic encoding pipeline (latentscope.backends.encode_to_store)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from latentscope.backends import LinearBackend, encode_to_store, preferred_batch_size
from latentscope.backends._encode import SOURCE_INDEX, skipped_path
from latentscope.data import FACE_ATTRIBUTES, SyntheticFaces
from latentscope.exceptions import BackendError, DataSourceError, InvalidParameterError
from latentscope.store import open_store


@pytest.fixture(scope="module")
def model():
    return LinearBackend.fit(SyntheticFaces(120, image_size=16, seed=9), z_dim=6, n_iter=3)


class _Stop(Exception):
    pass


def _stop_after(n_calls: int):
    calls = {"n": 0}

    def progress(done, total):
        calls["n"] += 1
        if calls["n"] == n_calls:
            raise _Stop

    return progress


def _contents(path):
    with open_store(path) as store:
        return store.read(), store.read_ids(), {name: store.read_column(name) for name in store.column_names}


def test_encode_writes_rows_ids_columns_provenance(tmp_path, model):
    # every item becomes a row with its id, attributes and source index; provenance names the model
    src = SyntheticFaces(50, image_size=16)
    result = encode_to_store(model, src, tmp_path / "z.h5", batch_size=16)
    assert (result.n_rows, result.n_written, result.n_skipped, result.resumed) == (50, 50, 0, False)
    with open_store(tmp_path / "z.h5") as store:
        z = store.read()
        np.testing.assert_allclose(z, model.encode(src.read().images), rtol=1e-5, atol=1e-5)
        assert list(store.read_ids()) == [str(i) for i in range(50)]
        assert set(store.column_names) == {*FACE_ATTRIBUTES, SOURCE_INDEX}
        np.testing.assert_array_equal(store.read_column(SOURCE_INDEX), np.arange(50))
        np.testing.assert_array_equal(store.read_column("glasses"), src.read().attributes["glasses"])
        prov = store.provenance
        assert prov["backend"] == "linear" and prov["model_fingerprint"] == model.fingerprint()
        assert prov["source"] == "synthetic:50?seed=0" and prov["image_size"] == "16x16"
        assert prov["source_items"] == 50 and prov["n_skipped"] == 0
    assert not skipped_path(tmp_path / "z.h5").exists()


def test_encode_resumes_without_duplicates(tmp_path, model):
    # an interrupted run continues after the last committed batch; the result equals one run
    src = SyntheticFaces(70, image_size=16)
    encode_to_store(model, src, tmp_path / "full.h5", batch_size=10)
    with pytest.raises(_Stop):
        encode_to_store(model, src, tmp_path / "part.h5", batch_size=10, progress=_stop_after(3))
    with open_store(tmp_path / "part.h5") as store:
        assert store.n_rows == 30
    calls = []
    result = encode_to_store(model, src, tmp_path / "part.h5", batch_size=10, progress=lambda d, t: calls.append((d, t)))
    assert result.resumed and result.n_written == 40 and result.n_rows == 70
    assert calls[0] == (10, 40) and calls[-1] == (40, 40)
    full, part = _contents(tmp_path / "full.h5"), _contents(tmp_path / "part.h5")
    np.testing.assert_array_equal(full[0], part[0])
    np.testing.assert_array_equal(full[1], part[1])
    assert full[2].keys() == part[2].keys()
    for name in full[2]:
        np.testing.assert_array_equal(full[2][name], part[2][name])
    again = encode_to_store(model, src, tmp_path / "part.h5", batch_size=10)
    assert again.n_written == 0 and again.n_rows == 70


def test_encode_refuses_another_model_or_source(tmp_path, model):
    # appending with a different model, z_dim, image size or source is a one-line error
    src = SyntheticFaces(20, image_size=16)
    encode_to_store(model, src, tmp_path / "z.h5", batch_size=8)
    other = LinearBackend(model.mean, model.components * np.float32(2), image_shape=model.image_shape)
    with pytest.raises(BackendError, match="written by model .*; write to a new store") as info:
        encode_to_store(other, src, tmp_path / "z.h5")
    assert "\n" not in str(info.value)
    fewer = LinearBackend(model.mean, model.components[:4], image_shape=model.image_shape)
    with pytest.raises(BackendError, match="holds z_dim 6 but the model encodes z_dim 4"):
        encode_to_store(fewer, src, tmp_path / "z.h5")
    small = LinearBackend.fit(SyntheticFaces(20, image_size=8), z_dim=6, n_iter=1)
    with pytest.raises(BackendError, match="encoded from 16x16 images but the model takes 8x8"):
        encode_to_store(small, src, tmp_path / "z.h5")
    with pytest.raises(BackendError, match="encoded from 'synthetic:20\\?seed=0', not 'synthetic:20\\?seed=1'"):
        encode_to_store(model, SyntheticFaces(20, seed=1), tmp_path / "z.h5")
    result = encode_to_store(other, src, tmp_path / "z.h5", overwrite=True)
    assert result.n_rows == 20 and not result.resumed


def test_encode_uses_the_model_image_size(tmp_path, model):
    # a source opened at another size is decoded at the model's size
    result = encode_to_store(model, SyntheticFaces(12, image_size=64), tmp_path / "z.h5")
    assert result.n_rows == 12
    result = encode_to_store(model, "synthetic:12", tmp_path / "y.h5")
    np.testing.assert_allclose(_contents(tmp_path / "y.h5")[0], _contents(tmp_path / "z.h5")[0], atol=1e-5)


@pytest.fixture
def folder_with_bad_files(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(9):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / f"{i:02d}.png")
    (root / "03.png").write_bytes(b"")
    (root / "07.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def test_encode_skips_and_lists_unreadable_files(tmp_path, model, folder_with_bad_files):
    # unreadable files are left out, counted in the provenance and named in the sidecar
    store_path = tmp_path / "z.h5"
    result = encode_to_store(model, f"folder:{folder_with_bad_files}", store_path, batch_size=4)
    assert result.n_rows == 7 and result.n_skipped == 2 and result.skipped_file == skipped_path(store_path)
    assert store_path.with_name("z.h5.skipped.txt").exists()
    names = [line.split("\t")[0] for line in result.skipped_file.read_text().splitlines()]
    assert names == ["03.png", "07.png"]
    with open_store(store_path) as store:
        assert "03.png" not in list(store.read_ids()) and store.provenance["n_skipped"] == 2
        np.testing.assert_array_equal(store.read_column(SOURCE_INDEX), [0, 1, 2, 4, 5, 6, 8])


def test_encode_resume_keeps_skipped_list(tmp_path, model, folder_with_bad_files):
    # a resumed run neither loses nor repeats skipped names
    store_path = tmp_path / "z.h5"
    with pytest.raises(_Stop):
        encode_to_store(model, f"folder:{folder_with_bad_files}", store_path, batch_size=4, progress=_stop_after(1))
    result = encode_to_store(model, f"folder:{folder_with_bad_files}", store_path, batch_size=4)
    assert result.n_rows == 7 and result.n_skipped == 2
    assert len(result.skipped_file.read_text().splitlines()) == 2


def test_encode_strict_stops(tmp_path, model, folder_with_bad_files):
    # strict=True raises on the first unreadable file
    with pytest.raises(DataSourceError, match=r"cannot read item 3 \(03.png\)"):
        encode_to_store(model, f"folder:{folder_with_bad_files}", tmp_path / "z.h5", strict=True)


def test_encode_nothing_readable(tmp_path, model):
    # a source without one readable image is an error and leaves no empty store
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"")
    with pytest.raises(DataSourceError, match="none of the 1 items could be read"):
        encode_to_store(model, f"folder:{tmp_path / 'imgs'}", tmp_path / "z.h5")
    assert not (tmp_path / "z.h5").exists()


def test_encode_checks_the_backend_output(tmp_path, model):
    # a backend returning the wrong shape is a BackendError, not a corrupt store
    class Broken(LinearBackend):
        def encode(self, images, *, batch_size=256):
            return np.zeros((len(images), self.z_dim + 1), np.float32)

    broken = Broken(model.mean, model.components, image_shape=model.image_shape)
    with pytest.raises(BackendError, match="returned z-points of shape"):
        encode_to_store(broken, SyntheticFaces(4), tmp_path / "z.h5")
    with pytest.raises(InvalidParameterError, match="batch_size must be an integer >= 1"):
        encode_to_store(model, SyntheticFaces(4), tmp_path / "y.h5", batch_size=0)


def test_encode_batch_defaults_to_the_backend_preference(tmp_path, model):
    # without batch_size the backend's default_batch_size("encode") sizes the batches
    seen: list[tuple[int, int | None]] = []

    class Prefers24(LinearBackend):
        def default_batch_size(self, task):
            return {"encode": 24, "decode": 8}[task]

        def encode(self, images, *, batch_size=256):
            seen.append((len(images), batch_size))
            return super().encode(images, batch_size=batch_size)

    m = Prefers24(model.mean, model.components, image_shape=model.image_shape)
    assert preferred_batch_size(m) == 24 and preferred_batch_size(m, "decode") == 8
    assert preferred_batch_size(model) == 256  # no preference stated
    result = encode_to_store(m, SyntheticFaces(50, image_size=16), tmp_path / "z.h5")
    assert result.n_rows == 50 and seen == [(24, 24), (24, 24), (2, 24)]
    seen.clear()
    encode_to_store(m, SyntheticFaces(50, image_size=16), tmp_path / "y.h5", batch_size=30)
    assert seen == [(30, 30), (20, 30)]  # an explicit size wins
    with open_store(tmp_path / "z.h5") as a, open_store(tmp_path / "y.h5") as b:
        # other batch shapes may round differently in BLAS (seen: 6e-8), never more
        np.testing.assert_allclose(a.read(), b.read(), rtol=1e-6, atol=1e-6)


def test_preferred_batch_size_checks_its_input(model):
    class Bad(LinearBackend):
        def default_batch_size(self, task):
            return 0

    bad = Bad(model.mean, model.components, image_shape=model.image_shape)
    with pytest.raises(BackendError, match=r"default_batch_size\('encode'\) must return an int >= 1; got 0"):
        preferred_batch_size(bad)
    with pytest.raises(InvalidParameterError, match="task must be 'encode' or 'decode'; got 'train'"):
        preferred_batch_size(model, "train")


def test_encode_commits_what_was_encoded_before_a_failure(tmp_path, model):
    # rows gather into commits of commit_rows; a backend failing on the 4th batch still leaves
    # the 3 encoded batches committed, and the rerun completes the store as one run would
    class FailsOnce(LinearBackend):
        calls = 0

        def encode(self, images, *, batch_size=256):
            FailsOnce.calls += 1
            if FailsOnce.calls == 4:
                raise RuntimeError("device lost")
            return super().encode(images, batch_size=batch_size)

    src = SyntheticFaces(70, image_size=16)
    flaky = FailsOnce(model.mean, model.components, image_shape=model.image_shape)
    with pytest.raises(RuntimeError, match="device lost"):
        encode_to_store(flaky, src, tmp_path / "z.h5", batch_size=10, commit_rows=25)
    with open_store(tmp_path / "z.h5") as store:
        assert store.n_rows == 30
    result = encode_to_store(flaky, src, tmp_path / "z.h5", batch_size=10, commit_rows=25)
    assert result.resumed and result.n_written == 40
    encode_to_store(model, src, tmp_path / "one.h5", batch_size=10)
    for a, b in zip(_contents(tmp_path / "z.h5")[:2], _contents(tmp_path / "one.h5")[:2]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InvalidParameterError, match="commit_rows must be an integer >= 1; got 0"):
        encode_to_store(model, src, tmp_path / "x.h5", commit_rows=0)
