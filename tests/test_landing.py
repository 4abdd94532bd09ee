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
    # naive generators miss the off-centre, anisotropic fragment; fitted ones land near the data. The fitted
    # generators are more central than the data's law (an in-sample covariance of 3,000 rows in 256-D is too
    # narrow on the thin axes; pca-gauss and ellipse keep fewer or truncated axes), which the typicality test sees
    rates, near = {}, {}
    for name, opts in [
        ("cube", {}), ("ball", {}), ("normal", {}),
        ("cube", {"halfwidth": "match"}), ("ball", {"radius": "match"}), ("normal", {"scale": "match"}),
        ("mvn", {}), ("pca-gauss", {}), ("ellipse", {}),
    ]:
        s = make_sampler(name, **opts).fit(store, rng=1)
        key = name + ("-match" if opts else "")
        rep = reference.report(s.sample(400, rng=2), name=key)
        rates[key], near[key] = rep.in_fragment_rate, rep.near_rate
    naive = [rates[k] for k in ("cube", "ball", "normal", "cube-match", "ball-match", "normal-match")]
    fitted = [rates[k] for k in ("mvn", "pca-gauss", "ellipse")]
    assert max(naive) == 0.0 and max(near[k] for k in near if k.startswith(("cube", "ball", "normal"))) == 0.0
    assert min(near[k] for k in ("mvn", "pca-gauss", "ellipse")) >= 0.95, near
    assert rates["mvn"] >= 0.8, rates
    assert min(fitted) > 0.1 and min(fitted) > max(naive), rates


def test_landing_report_of_the_data_itself(store, reference):
    # fresh rows of the data's law score like the held-out rows: the metric, box and ellipsoid are fitted on the
    # other rows, so held-out rows and fresh draws are exchangeable
    fresh = _fragment(4000, seed=0)[3000:]
    rep = reference.report(fresh, name="data-law")
    assert isinstance(rep, LandingReport)
    assert 0.92 <= rep.in_fragment_rate <= 0.98
    assert rep.data_in_fragment_rate == pytest.approx(0.95, abs=0.005)
    assert 0.97 <= rep.frac_in_ellipsoid <= 1.0 and 0.97 <= rep.data_frac_in_ellipsoid <= 1.0
    assert rep.frac_in_pca_box == pytest.approx(rep.data_frac_in_pca_box, abs=0.06)
    assert rep.radius_mean == pytest.approx(rep.data_radius_mean, rel=0.02)
    assert rep.mahalanobis_median == pytest.approx(rep.data_mahalanobis_median, rel=0.03)
    assert rep.knn.startswith("exact") and rep.metric.startswith("whitened")
    assert rep.n_reference == 1000 and rep.n_fit == 2000
    assert rep.radius_counts.sum() == 1000 and rep.data_radius_counts.sum() == 3000
    assert rep.mahalanobis_counts.sum() == 1000 and rep.data_mahalanobis_counts.sum() == 1000
    fit_rows = np.setdiff1d(np.arange(3000), reference.reference_rows_)[:50]
    own = reference.report(store.read(fit_rows))
    assert own.frac_in_pca_box == 1.0 and own.nn_median == 0.0  # the fit rows themselves are the neighbours


def test_a_point_at_the_mean_is_near_but_not_typical(store, reference):
    # the densest place of a 256-D normal is empty of data: the typicality test rejects it
    rep = reference.report(reference.pca_.mean_[None, :] + np.zeros((3, Z_DIM)))
    assert rep.near_rate == 1.0 and rep.typical_rate == 0.0 and rep.in_fragment_rate == 0.0


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
    ref = LandingReference(box=box, n_reference=100).fit(X, rng=0)
    rep = ref.report(np.zeros((5, 4)), name="origin")
    assert rep.frac_in_pca_box == 1.0
    assert rep.data_frac_in_pca_box == pytest.approx(float(box.contains(X[ref.reference_rows_]).mean()))
    # the centre is near the data, but less typical than 99.5 % of the held-out rows even in 4-D
    assert rep.near_rate == 1.0 and rep.typical_rate == 0.0 and rep.typical_band[0] > 0.1
    one = landing_report(np.zeros((5, 4)), X, box=box, n_reference=100, rng=0)
    assert one.in_fragment_rate == rep.in_fragment_rate and one.nn_threshold == rep.nn_threshold


def test_landing_bad_input(reference):
    with pytest.raises(InvalidParameterError, match="samples must have 256 columns"):
        reference.report(np.zeros((3, 5)))
    with pytest.raises(NotFittedError, match="LandingReference is not fitted"):
        LandingReference().report(np.zeros((3, 5)))
    with pytest.raises(InvalidParameterError, match=r"level must lie in \(0, 1\)"):
        LandingReference(level=1.5).fit(np.zeros((5, 2)))
    with pytest.raises(InvalidParameterError, match="at least z_dim [+] 12 = 14 rows"):
        LandingReference().fit(np.random.default_rng(0).normal(size=(13, 2)))
