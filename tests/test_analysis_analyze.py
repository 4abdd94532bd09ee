"""analyze() and ``latentscope analyze``: every analysis in two passes, results, figures, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentscope import create_store, open_store
from latentscope.analysis import (
    AttributeSplit,
    BoundingBoxes,
    ComponentStats,
    CoreCovariance,
    Correlations,
    GaussianRadius,
    PCAFrame,
    RadialDistribution,
    analyze,
)
from latentscope.cli import main
from latentscope.exceptions import InvalidParameterError, NonFiniteError


def _store(path, X, **columns):
    with create_store(path, X.shape[1]) as s:
        s.append(X, columns=columns or None)
    return path


@pytest.mark.slow
def test_analyze_recovers_a_known_anisotropic_off_centre_normal(tmp_path):
    # mean, covariance and eigenvalues within sampling error; Mahalanobis radii follow chi_256
    rng = np.random.default_rng(0)
    dim, n = 256, 40000
    evals = np.geomspace(20.0, 0.05, dim)
    Q = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    cov = (Q * evals) @ Q.T
    mu = rng.normal(size=dim) * 0.5 + 0.3
    X = (rng.normal(size=(n, dim)) * np.sqrt(evals)) @ Q.T + mu
    path = _store(tmp_path / "z.h5", X.astype(np.float32))
    res = analyze(path, None, core=False, quantiles=None, n_pairs=2)
    assert res.n_passes == 2
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.max(np.abs(res.pca.mean_ - mu) / se_mean) < 5
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.max(np.abs(res.pca.covariance_ - cov) / se_cov) < 6
    np.testing.assert_allclose(res.pca.explained_variance_[:20], evals[:20], rtol=5 * np.sqrt(2 / n) + 0.01)
    assert res.pca.explained_variance_.sum() == pytest.approx(evals.sum(), rel=0.01)
    rad = res.radial
    h = rad.fine_["mahalanobis"]
    chi = GaussianRadius(1.0, dim)
    ks = np.max(np.abs(h.cdf()[0] - chi.cdf(h.edges[0])))
    assert ks < 0.01
    assert rad.stats_["mahalanobis"]["mean"] == pytest.approx(chi.mean(), rel=0.002)
    assert rad.stats_["mahalanobis"]["std"] == pytest.approx(chi.std(), rel=0.03)
    # every PC is Gaussian, and so is every raw component
    assert np.max(res.pca_components.ks_distance_) < 0.015
    assert np.max(res.components.ks_distance_) < 0.015
    assert res.radial.origin_mahalanobis_ == pytest.approx(np.sqrt(mu @ np.linalg.solve(cov, mu)), rel=0.02)


@pytest.mark.slow
def test_analyze_writes_results_figures_and_index(tmp_path):
    # every analysis is saved, loads back, and every figure is linked from index.html
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(4000, 6)) @ rng.normal(size=(6, 6)) + 1).astype(np.float32)
    smile = np.where(X[:, 0] > 1, 1, -1).astype(np.int8)
    path = _store(tmp_path / "z.h5", X, Smiling=smile)
    out = tmp_path / "out"
    seen = []
    res = analyze(path, out, by="Smiling", progress=lambda name, done, total: seen.append(name), n_threads=2)
    assert seen[0] == "pass 1" and "pass 2" in seen and res.n_passes == 2 + res.core.n_passes_ - 1
    assert sorted(set(seen)) == sorted({f"pass {k}" for k in range(1, res.n_passes + 1)})
    for stem, cls in [("components", ComponentStats), ("pca_components", ComponentStats), ("correlations", Correlations),
                      ("radial", RadialDistribution), ("pca", PCAFrame), ("boxes_minmax", BoundingBoxes),
                      ("boxes_quantile", BoundingBoxes), ("core", CoreCovariance), ("attribute", AttributeSplit)]:
        assert cls.load(out / stem) is not None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 4000 and summary["attribute"]["groups"] == ["not Smiling", "Smiling"]
    q = summary["quantile_boxes"]
    assert q["fraction_inside_pca"] == BoundingBoxes.load(out / "boxes_quantile").pca_box_.fraction_inside(X)
    page = (out / "index.html").read_text()
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(pngs) >= 11
    for name in pngs:
        assert f"figures/{name}" in page
        assert (out / "figures" / name).stat().st_size > 10_000
    # degenerate: z_dim 1 draws its figures too (no pairs at all)
    res1 = analyze(rng.normal(size=(500, 1)) + 3, tmp_path / "d1", core_max_iter=2, quantiles=None)
    assert res1.pca.mean_.shape == (1,) and (tmp_path / "d1" / "index.html").exists()
    assert not (tmp_path / "d1" / "figures" / "pair_densities.png").exists()


def test_analyze_matches_the_standalone_analyses(tmp_path):
    # the shared passes give the same results as each class fitted on its own
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(3000, 5)) @ rng.normal(size=(5, 5))).astype(np.float32)
    res = analyze(X, None, core=True, core_max_iter=3, n_threads=1)
    alone = ComponentStats().fit(X)
    np.testing.assert_array_equal(res.components.hist_counts_, alone.hist_counts_)
    np.testing.assert_allclose(res.components.skewness_, alone.skewness_, rtol=1e-12)
    pcs = ComponentStats(frame=res.pca).fit(X)
    np.testing.assert_array_equal(res.pca_components.fine_counts_, pcs.fine_counts_)
    bb = BoundingBoxes(quantiles=(0.005, 0.995)).fit(X)
    np.testing.assert_allclose(res.quantile_boxes.pca_box_.lo, bb.pca_box_.lo, rtol=1e-9, atol=1e-9)
    assert res.quantile_boxes.fraction_inside_pca_ == bb.fraction_inside_pca_
    # analyze starts the C-steps from a radius-trimmed step folded into pass 2, the class from the full estimate:
    # both reach the same fixed point (the same kept rows), up to the float32 accumulation of the passes
    core = CoreCovariance(max_iter=3).fit(X)
    assert res.core.converged_ and core.converged_
    np.testing.assert_allclose(res.core.covariance_, core.covariance_, rtol=1e-5, atol=1e-8)
    rd = RadialDistribution().fit(X)
    assert res.radial.stats_["origin"]["mean"] == pytest.approx(rd.stats_["origin"]["mean"], rel=1e-12)
    noq = analyze(X, None, core=False, n_threads=1)
    assert noq.n_passes == 3 and noq.quantile_boxes.fraction_inside_pca_ == bb.fraction_inside_pca_


def test_analyze_bad_and_degenerate_input(tmp_path):
    # empty store and one row are clear errors; non-finite rows too; z_dim 1/2 and constant components work
    empty = tmp_path / "empty.h5"
    create_store(empty, 4).close()
    with pytest.raises(InvalidParameterError, match="no rows"):
        analyze(empty, None)
    with pytest.raises(InvalidParameterError, match="at least 2 rows"):
        analyze(np.ones((1, 3)), None)
    bad = np.random.default_rng(3).normal(size=(50, 3))
    bad[10, 2] = np.nan
    with pytest.raises(NonFiniteError, match="non-finite"):
        analyze(bad, None)
    rng = np.random.default_rng(4)
    for dim in (1, 2):
        res = analyze(rng.normal(size=(500, dim)) + 3, tmp_path / f"d{dim}", figures=False, core_max_iter=2)
        assert res.pca.mean_.shape == (dim,) and res.radial.rank_ == dim
        assert res.boxes.pca_box_.contains(np.zeros((0, dim))).shape == (0,)
        assert (tmp_path / f"d{dim}" / "summary.json").exists()
    # a core that cannot be fitted is skipped with a note; the quantile boxes still get their pass
    res = analyze(rng.normal(size=(400, 2)), None, core_trim=1e-9)
    assert res.core is None and "core covariance skipped" in res.notes[0] and res.n_passes == 3
    assert 0 < res.quantile_boxes.fraction_inside_pca_ < 1
    X = np.column_stack([rng.normal(size=300), np.full(300, 1.0), rng.normal(size=300)])
    res = analyze(X, None, core_max_iter=2)
    assert res.components.std_[1] == 0 and res.radial.rank_ == 2 and res.boxes.log_volume_axis_ == -np.inf
    assert res.boxes.pca_box_.contains(X).all()


def test_cli_analyze(tmp_path, capsys):
    # the command writes results, prints a summary, and refuses to overwrite without --overwrite
    rng = np.random.default_rng(5)
    X = (rng.normal(size=(2000, 4)) + 2).astype(np.float32)
    path = _store(tmp_path / "z.h5", X, Smiling=np.where(X[:, 1] > 2, 1, -1).astype(np.int8))
    out = tmp_path / "res"
    args = ["analyze", str(path), "--out", str(out), "--no-figures", "--no-progress", "--pairs", "0,1 2,3",
            "--by", "Smiling", "--bins", "40"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "analysed 2,000 z-points of dimension 4" in text and "Smiling" in text
    corr = Correlations.load(out / "correlations")
    assert [tuple(p) for p in corr.pairs_] == [(0, 1), (2, 3)]
    assert ComponentStats.load(out / "components").hist_counts_.shape == (4, 40)
    assert not (out / "index.html").exists()
    assert main(args) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--quantiles", "none", "--no-core"]) == 0
    assert not (out / "boxes_quantile.json").exists() and not (out / "core.json").exists()  # stale results removed
    assert main(["analyze", str(path), "--out", str(out), "--overwrite", "--pairs", "0-1"]) == 1
    assert "each pair must be 'i,j'" in capsys.readouterr().err
