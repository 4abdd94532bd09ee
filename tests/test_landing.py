"""Where samples land: landing reports against a data store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentscope import create_store
from latentscope.exceptions import InvalidParameterError, NotFittedError
from latentscope.regions import Box
from latentscope.samplers import LandingReference, LandingReport, landing_report, make_sampler
from latentscope.samplers._plots import plot_landing, plot_radial_comparison

Z_DIM = 256


def _fragment(n, seed=0):
    """An anisotropic, off-centre multivariate normal at z_dim 256 (few dominant axes)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(Z_DIM, Z_DIM)))
    lam = 4.0 * np.exp(-np.arange(Z_DIM) / 15.0) + 0.02
    mean = rng.normal(0.6, 0.3, Z_DIM)
    return mean + (rng.normal(size=(n, Z_DIM)) * np.sqrt(lam)) @ q.T


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("landing") / "fragment.h5"
    with create_store(path, Z_DIM) as s:
        s.append(_fragment(3000))
    from latentscope import open_store

    st = open_store(path)
    yield st
    st.close()


@pytest.fixture(scope="module")
def reference(store):
    return LandingReference(n_reference=1000).fit(store, rng=0)


def test_in_fragment_rates_order_the_generators(store, reference):
    # naive generators miss the off-centre, anisotropic fragment; fitted ones land in it
    rates = {}
    for name, opts in [
        ("cube", {}), ("ball", {}), ("normal", {}),
        ("cube", {"halfwidth": "match"}), ("ball", {"radius": "match"}), ("normal", {"scale": "match"}),
        ("mvn", {}), ("pca-gauss", {}), ("ellipse", {}),
    ]:
        s = make_sampler(name, **opts).fit(store, rng=1, pca=reference.pca_)
        key = name + ("-match" if opts else "")
        rates[key] = reference.report(s.sample(400, rng=2), name=key).in_fragment_rate
    naive = [rates[k] for k in ("cube", "ball", "normal", "cube-match", "ball-match", "normal-match")]
    fitted = [rates[k] for k in ("mvn", "pca-gauss", "ellipse")]
    assert max(naive) <= 0.02, rates
    assert min(fitted) >= 0.8, rates
    assert min(fitted) > max(naive)


def test_landing_report_of_the_data_itself(store, reference):
    # fresh rows of the data's law land about nn_quantile in-fragment; out of sample, the covariance fitted on
    # 3000 rows in 256-D underestimates small variances, so fewer fresh rows than data rows are inside the
    # 0.99 ellipsoid and the min/max box
    fresh = _fragment(3600, seed=0)[3000:]
    rep = reference.report(fresh, name="data-law")
    assert isinstance(rep, LandingReport)
    assert 0.85 <= rep.in_fragment_rate <= 1.0
    assert rep.frac_in_ellipsoid >= 0.8 and rep.data_frac_in_ellipsoid >= 0.97
    assert rep.data_frac_in_pca_box == 1.0 and rep.frac_in_pca_box >= 0.5
    assert rep.radius_mean == pytest.approx(rep.data_radius_mean, rel=0.02)
    assert rep.data_mahalanobis_median == pytest.approx(np.sqrt(Z_DIM), rel=0.05)
    assert rep.mahalanobis_median == pytest.approx(np.sqrt(Z_DIM), rel=0.15)
    assert rep.knn.startswith("exact") and rep.n_reference == 1000
    assert rep.radius_counts.sum() == 600 and rep.data_radius_counts.sum() == 3000
    assert rep.mahalanobis_counts.sum() == 600
    own = reference.report(store.read(slice(0, 50)))
    assert own.frac_in_pca_box == 1.0 and own.nn_median == 0.0  # the rows themselves are in the data


def test_landing_report_json_and_figures(store, reference, tmp_path):
    rep = reference.report(make_sampler("gauss").fit(store).sample(100, rng=0), name="gauss")
    data = json.loads(json.dumps(rep.to_dict(per_sample=True)))
    assert data["name"] == "gauss" and len(data["per_sample"]["radii"]) == 100
    assert set(rep.summary()) >= {"in_fragment_rate", "frac_in_pca_box", "frac_in_ellipsoid", "nn_threshold"}
    plot_landing(rep, tmp_path / "landing.png")
    plot_radial_comparison([rep], reference.data_radii_, reference.data_mahalanobis_, tmp_path / "radial.png")
    assert (tmp_path / "landing.png").stat().st_size > 10_000 and (tmp_path / "radial.png").stat().st_size > 10_000


def test_landing_report_function_and_custom_box():
    # the one-call form, with an axis box given instead of the PCA box
    X = np.random.default_rng(0).normal(size=(500, 4))
    box = Box(-np.ones(4), np.ones(4))
    rep = landing_report(np.zeros((5, 4)), X, box=box, n_reference=100, rng=0, name="origin")
    assert rep.frac_in_pca_box == 1.0
    assert rep.data_frac_in_pca_box == pytest.approx(float(box.contains(X).mean()))
    assert rep.in_fragment_rate == 1.0  # the centre of a normal cloud is close to data points


def test_landing_bad_input(reference):
    with pytest.raises(InvalidParameterError, match="samples must have 256 columns"):
        reference.report(np.zeros((3, 5)))
    with pytest.raises(NotFittedError, match="LandingReference is not fitted"):
        LandingReference().report(np.zeros((3, 5)))
    with pytest.raises(InvalidParameterError, match=r"level must lie in \(0, 1\)"):
        LandingReference(level=1.5).fit(np.zeros((5, 2)))
