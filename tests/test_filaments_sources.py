"""FilamentDetector takes its z-points through latentscope.stream.as_zsource."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from latentscope import create_store, open_store
from latentscope.exceptions import InvalidParameterError
from latentscope.filaments import FilamentDetector, make_planted_cloud
from latentscope.stream import as_zsource

SMALL = dict(n_filaments=3, n_blobs=1, n_sheets=1, filament_points=(80, 200), blob_points=(100, 200),
             sheet_points=(150, 250))


@pytest.fixture(scope="module")
def cloud():
    # a heavy-tailed bulk (t3 copula) with planted filaments
    return make_planted_cloud(2500, 12, bulk="t3-copula", rng=7, **SMALL)


@pytest.fixture(scope="module")
def reference(cloud):
    return FilamentDetector(k=12, rng=0).fit(cloud.z)


def _same(a, b):
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.density_, b.density_)
    np.testing.assert_array_equal(a.contrast_, b.contrast_)
    assert [f.members.tolist() for f in a.filaments_] == [f.members.tolist() for f in b.filaments_]


def test_every_kind_of_source_gives_the_same_detection(tmp_path, cloud, reference):
    # a store path, an open store, a ZSource, an h5py dataset, a memmap and a float64 array
    # all give exactly the fit of the float32 array
    assert len(reference.filaments_) >= 1
    path = tmp_path / "z.h5"
    with create_store(path, cloud.z.shape[1]) as st:
        st.append(cloud.z)
    _same(FilamentDetector(k=12, rng=0).fit(path), reference)
    _same(FilamentDetector(k=12, rng=0).fit(str(path)), reference)
    with open_store(path) as st:
        _same(FilamentDetector(k=12, rng=0).fit(st), reference)
        _same(FilamentDetector(k=12, rng=0).fit(as_zsource(st)), reference)
        assert st.n_rows == cloud.z.shape[0]  # a store it was given stays open
    raw = tmp_path / "raw.h5"
    with h5py.File(raw, "w") as f:
        f.create_dataset("z", data=cloud.z, chunks=(256, cloud.z.shape[1]))
    with h5py.File(raw, "r") as f:
        _same(FilamentDetector(k=12, rng=0).fit(f["z"]), reference)
    mm = np.lib.format.open_memmap(tmp_path / "z.npy", mode="w+", dtype=np.float32, shape=cloud.z.shape)
    mm[:] = cloud.z
    mm.flush()
    _same(FilamentDetector(k=12, rng=0).fit(np.load(tmp_path / "z.npy", mmap_mode="r")), reference)
    _same(FilamentDetector(k=12, rng=0).fit(cloud.z.astype(np.float64)), reference)


def test_a_store_opened_from_a_path_is_closed_after_fit(tmp_path, cloud):
    # the detector closes the store it opened: the file can be reopened for writing
    path = tmp_path / "z.h5"
    with create_store(path, cloud.z.shape[1]) as st:
        st.append(cloud.z[:600])
    det = FilamentDetector(k=8, rng=0).fit(path)
    with open_store(path, "a") as st:  # fails while a read-only handle is still open in this process
        det.write_columns(st)
        assert "filament_id" in st.column_names


def test_bad_sources_are_one_line_errors_naming_x(tmp_path):
    with pytest.raises(InvalidParameterError, match="FilamentDetector: X: .*2-D array of z-points; got shape"):
        FilamentDetector().fit([1.0, 2.0, 3.0])
    with pytest.raises(InvalidParameterError, match="FilamentDetector: X: z-points must be numeric"):
        FilamentDetector().fit(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(InvalidParameterError, match="must be 2-D"):
        FilamentDetector().fit(np.zeros((3, 4, 5)))
