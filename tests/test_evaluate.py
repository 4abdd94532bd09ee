"""latentscope.metrics.evaluate_regions: the region comparison table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentscope import create_store
from latentscope.exceptions import BackendError, InvalidParameterError, SamplerError
from latentscope.metrics import RegionEvaluation, RegionScores, evaluate_regions
from latentscope.samplers._spec import parse_region_spec, split_region_list

FAST = dict(kid_subsets=3, kid_subset_size=50)


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """A linear model trained on 200 synthetic 32x32 faces and the store `latentscope encode` writes."""
    from latentscope.backends import encode_to_store, get_backend
    from latentscope.data import open_source

    root = tmp_path_factory.mktemp("evaluate")
    src = open_source("synthetic:200", image_size=(32, 32))
    model = get_backend("linear").train(src, root / "model", z_dim=12)
    encode_to_store(model, src, root / "z.h5")
    return model, root / "z.h5"


@pytest.fixture(scope="module")
def table(linear):
    model, store = linear
    return evaluate_regions(model, store, ["cube", "mvn", "gauss:scale=0.8"], n=120, rng=0, **FAST)


def test_evaluate_regions_ranks_the_cube_below_the_fitted_gaussian(table):
    cube, mvn = table["cube"], table["mvn"]
    # the cube (radius-matched, about the origin) misses the data's region entirely
    assert cube.fd_latent > 5 * mvn.fd_latent and cube.fd_pixel > 2 * mvn.fd_pixel
    assert cube.precision < mvn.precision and cube.coverage < mvn.coverage
    assert table.best("fd_latent") != "cube" and table.ranking("fd_latent")[-1] == "cube"
    assert table.ranking("precision")[-1] == "cube"


def test_evaluate_regions_scores_every_space_and_gates_the_rule(table):
    # P/R/D/C in the latent, pixel-PCA and random-conv spaces; the rule's precision is the conv precision of the
    # samples whose z-points are in the fragment, so it never exceeds either part
    assert table.manifold_space == "conv" and table.spaces == ("latent", "pixel-pca", "conv")
    assert table.meta["fragment_gate"] is True
    for r in table.rows:
        for sx in ("latent", "pixel", "conv"):
            for m in ("precision", "recall", "density", "coverage"):
                assert np.isfinite(getattr(r, f"{m}_{sx}")), (r.label, m, sx)
        assert r.recall == r.recall_conv and r.coverage == r.coverage_conv
        assert r.precision <= min(r.precision_conv, r.in_fragment) + 1e-12
        assert np.isfinite(r.fd_conv) and r.fd_conv >= 0
    # z_dim 12: a radius-matched cube overlaps the fragment a little, far less than the fitted normal
    assert table["cube"].in_fragment < 0.3 < 0.8 < table["mvn"].in_fragment
    assert table["cube"].precision < 0.3 < table["mvn"].precision
    d = table.to_dict()
    assert d["rule_space"] == "conv" and "precision_conv" in d["rows"][0] and "in_fragment" in d["rows"][0]
    md = table.to_markdown()
    assert "Rule space: conv" in md and "P / R conv (rule)" in md and "in-fragment" in md
    with pytest.raises(AttributeError):
        table["cube"].precision_nowhere


def test_evaluate_regions_rows_reference_and_previews(table):
    assert table.labels == ["cube", "mvn", "gauss:scale=0.8", "store-z"]
    ref = table["store-z"]
    assert ref.reference and not table["mvn"].reference
    assert table["gauss:scale=0.8"].options == {"scale": 0.8}
    assert table["cube"].options == {"halfwidth": "match"}
    # the store's own codes, decoded, are the closest to the real (training) images; they are copies
    assert ref.fd_latent < table["mvn"].fd_latent
    assert ref.memorisation_excess == pytest.approx(100.0) and table["mvn"].memorisation_excess < 10
    assert all(r.n == 120 for r in table.rows)
    # the store records synthetic:200: those are the real images
    assert table.real_kind == "images" and table.real_spec == "synthetic:200?seed=0" and table.n_real == 120
    assert table.latent_dim == 12 and table.pixel_dim == 64
    assert set(table.previews) == set(table.labels)
    assert table.previews["mvn"].shape == (64, 32, 32, 3) and table.previews["mvn"].dtype == np.uint8
    for r in table.rows:
        assert 0 <= r.precision <= 1 and 0 <= r.recall <= 1 and 0 <= r.coverage <= 1 and r.density >= 0


def test_evaluate_regions_tables(table):
    md = table.to_markdown()
    assert md.startswith("| region | FD latent | FD pixel-PCA |")
    assert "| store-z (reference) |" in md and "real images from synthetic:200?seed=0" in md
    best_fd = table["store-z"].fd_latent  # the reference is never bold
    assert f"**{best_fd:.3g}**" not in md
    lines = table.to_csv().splitlines()
    assert lines[0].startswith("label,region,reference,options,n,fd_latent,fd_pixel")
    assert len(lines) == 5 and lines[1].startswith("cube,cube,0,")
    d = json.loads(json.dumps(table.to_dict()))
    assert [r["label"] for r in d["rows"]] == table.labels
    assert d["best"]["fd_latent"] == table.best("fd_latent") and d["real_kind"] == "images"


def test_evaluate_regions_scores_do_not_depend_on_the_other_regions(linear, table):
    model, store = linear
    alone = evaluate_regions(model, store, ["mvn"], n=120, rng=0, reference=False, **FAST)
    assert alone.labels == ["mvn"]
    assert alone["mvn"].fd_latent == pytest.approx(table["mvn"].fd_latent, rel=1e-9)
    assert alone["mvn"].precision == table["mvn"].precision


def test_evaluate_regions_falls_back_to_decoded_store_points(linear, tmp_path):
    model, store = linear
    from latentscope import open_store

    with open_store(store) as s:
        z = s.read()
    path = tmp_path / "nosource.h5"
    with create_store(path, z.shape[1], backend="linear", source="folder:/no/such/folder") as s:
        s.append(z)
    ev = evaluate_regions(model, path, ["mvn"], n=60, rng=1, reference=False, pixel_pca=False, kid_subsets=0)
    assert ev.real_kind == "decoded-store" and ev.real_spec == "store" and ev.n_real == 60
    assert np.isnan(ev["mvn"].fd_pixel) and np.isnan(ev["mvn"].kid_latent)
    assert "no real images" in ev.to_markdown()


def test_evaluate_regions_takes_real_images_and_sampler_objects(linear):
    model, store = linear
    from latentscope.data import open_source
    from latentscope.samplers import make_sampler

    real = open_source("synthetic:80?seed=5", image_size=(32, 32)).read(0, 80).images
    ev = evaluate_regions(model, store, [make_sampler("gauss", scale=0.5), "ellipse:level=0.9"], n=50, real=real,
                          reference=False, rng=2, **FAST)
    assert ev.labels == ["gauss:scale=0.5", "ellipse:level=0.9"]
    assert ev.real_spec == "array" and ev.n_real == 50


def test_region_spec_parsing():
    assert parse_region_spec("gmm") == ("gmm", {})
    assert parse_region_spec("ellipse:level=0.9:n-components=4") == ("ellipse", {"level": 0.9, "n_components": 4})
    assert parse_region_spec("pca-box:quantiles=[0.02,0.98]:shrink=0.8") == (
        "pca-box", {"quantiles": (0.02, 0.98), "shrink": 0.8})
    assert parse_region_spec("box:quantiles=none") == ("box", {"quantiles": None})
    assert split_region_list("cube, pca-box:quantiles=[0.02,0.98],gmm") == ["cube", "pca-box:quantiles=[0.02,0.98]", "gmm"]
    with pytest.raises(InvalidParameterError, match="KEY=VALUE"):
        parse_region_spec("ellipse:level")


@pytest.mark.parametrize(
    ("regions", "error", "match"),
    [
        (["cube", "moon"], SamplerError, "unknown region 'moon'"),
        (["mvn:level=0.9"], SamplerError, "option 'level' does not apply to region 'mvn'"),
        (["mvn", "mvn"], InvalidParameterError, "listed twice"),
        ([], InvalidParameterError, "regions is empty"),
        (["store-z"], InvalidParameterError, "reference row"),
    ],
)
def test_evaluate_regions_rejects_bad_regions(linear, regions, error, match):
    model, store = linear
    with pytest.raises(error, match=match):
        evaluate_regions(model, store, regions, n=20)


def test_evaluate_regions_rejects_bad_inputs(linear, tmp_path):
    model, store = linear
    other = tmp_path / "z8.h5"
    with create_store(other, 8, backend="linear") as s:
        s.append(np.zeros((30, 8), dtype=np.float32))
    with pytest.raises(BackendError, match=r"model's z_dim \(12\) differs from the store's \(8\)"):
        evaluate_regions(model, other, ["mvn"], n=20)
    with pytest.raises(InvalidParameterError, match="n must be > max"):
        evaluate_regions(model, store, ["mvn"], n=4)
    with pytest.raises(InvalidParameterError, match=r"real images have shape \(16, 16, 3\)"):
        evaluate_regions(model, store, ["mvn"], n=20, real=np.zeros((20, 16, 16, 3), dtype=np.uint8))
    with pytest.raises(InvalidParameterError, match="manifold_space"):
        evaluate_regions(model, store, ["mvn"], n=20, manifold_space="inception")


def _row(label, fd, p, r, reference=False):
    nan = float("nan")
    return RegionScores(label, label, {}, reference, 100, fd, fd, nan, nan, nan, nan, p, r, 1.0, 0.5, 1.0, 0.0, 0.1)


def test_region_evaluation_beats_needs_all_three():
    ev = RegionEvaluation((_row("gmm", 3.0, 0.6, 0.7), _row("a", 2.0, 0.7, 0.8), _row("b", 2.0, 0.7, 0.6),
                           _row("c", 3.5, 0.9, 0.9), _row("store-z", 1.0, 0.9, 0.9, reference=True)),
                          "images", "array", 100, "latent", 4, 4, 1.0)
    assert ev.winners("gmm") == ["a"]
    assert ev.beats("a") and not ev.beats("b") and not ev.beats("c")
    assert ev.best("fd_latent") in ("a", "b") and ev.best("precision") == "c"
    assert ev.ranking("recall") == ["c", "a", "gmm", "b"]
    assert ev.winners("mvn") == []
    with pytest.raises(InvalidParameterError, match="metric must be one of"):
        ev.best("fid")


def test_evaluate_regions_seed_is_a_deprecated_name_of_rng(linear):
    # seed= still works, warns, and gives what rng= gives
    model, store = linear
    fast = dict(n=40, reference=False, pixel_pca=False, conv=False, manifold_space="latent", fragment_gate=False,
                kid_subsets=0, memorisation_queries=0)
    with pytest.warns(DeprecationWarning, match="seed= is deprecated; pass rng= instead"):
        old = evaluate_regions(model, store, ["mvn"], seed=5, **fast)
    new = evaluate_regions(model, store, ["mvn"], rng=5, **fast)
    assert old["mvn"].fd_latent == new["mvn"].fd_latent and old.seed == new.seed == 5
    with pytest.raises(InvalidParameterError, match="rng must be None, an integer >= 0"):
        evaluate_regions(model, store, ["mvn"], rng=-1, **fast)
