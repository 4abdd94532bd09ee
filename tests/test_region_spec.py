"""The one region grammar (latentscope/samplers/_spec.py) and its use by sample and compare-samplers."""

from __future__ import annotations

import numpy as np
import pytest

from latentscope import create_store, open_store
from latentscope.cli import main
from latentscope.exceptions import InvalidParameterError, SamplerError
from latentscope.samplers import make_sampler
from latentscope.samplers._spec import (
    DEFAULT_REGION_OPTIONS,
    MATCHED_OPTIONS,
    build_samplers,
    non_default_params,
    parse_region_spec,
    region_slug,
)


def test_spec_values_and_lists():
    # values are read as numbers, none/booleans, bracketed tuples (nested too) or strings
    assert parse_region_spec("ellipse:pairs=[[0,1],[2,3]]:level=0.9") == ("ellipse", {"pairs": ([0, 1], [2, 3]), "level": 0.9})
    assert parse_region_spec(" cube:halfwidth=match:center=mean ") == ("cube", {"halfwidth": "match", "center": "mean"})
    assert parse_region_spec("gmm:max-samples=none") == ("gmm", {"max_samples": None})
    assert region_slug("ellipse:level=0.9") == "ellipse_level-0.9" and region_slug("::") == "region"
    with pytest.raises(InvalidParameterError, match="must start with a region name"):
        parse_region_spec(":level=1")


def test_build_samplers_merges_defaults_caller_and_spec_options():
    # defaults < region_options < the spec; a default a sampler does not take is dropped
    out = build_samplers("cube,cube:halfwidth=2,gmm,ellipse:level=0.8", {"gmm": {"n_components": 4}})
    by = {label: s for label, _, s in out}
    assert by["cube"].get_params()["halfwidth"] == "match"
    assert by["cube:halfwidth=2"].get_params()["halfwidth"] == 2
    assert by["gmm"].get_params()["n_components"] == 4
    assert by["ellipse:level=0.8"].get_params()["level"] == 0.8
    assert [name for _, name, _ in out] == ["cube", "cube", "gmm", "ellipse"]
    assert build_samplers(["gmm"])[0][2].get_params()["n_components"] == DEFAULT_REGION_OPTIONS["gmm"]["n_components"]
    assert build_samplers(["cube"], defaults={})[0][2].get_params()["halfwidth"] != "match"
    assert MATCHED_OPTIONS["cube"] == {"halfwidth": "match"}


def test_build_samplers_labels_sampler_objects_and_refuses_bad_lists():
    s = make_sampler("gauss", scale=0.5)
    assert non_default_params(s) == {"scale": 0.5}
    assert build_samplers([s])[0][0] == "gauss:scale=0.5"
    with pytest.raises(SamplerError, match="^x: unknown region 'moon'; choose from: "):
        build_samplers("cube,moon", owner="x")
    with pytest.raises(InvalidParameterError, match="^x: region 'mvn' is listed twice"):
        build_samplers("mvn, mvn", owner="x")
    with pytest.raises(InvalidParameterError, match="^x: 'store-z' is the reference row"):
        build_samplers("store-z", reserved={"store-z": "is the reference row"}, owner="x")
    with pytest.raises(InvalidParameterError, match="regions is empty"):
        build_samplers(" , ")
    with pytest.raises(SamplerError, match="region_options names an unknown region 'moon'"):
        build_samplers("cube", {"moon": {}})


# -- the CLI ---------------------------------------------------------------------------------
def _cloud(n=500, d=6, seed=0):
    # lognormal marginals with correlations: a non-Gaussian cloud
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return np.exp(rng.normal(size=(n, d)) * np.geomspace(0.8, 0.2, d)) @ q.T


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "z.h5"
    with create_store(path, 6, backend="test", source="synthetic") as s:
        s.append(_cloud())
    return path


def _run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_sample_spec_equals_the_flags(store_path, tmp_path, capsys):
    # --region NAME:KEY=VALUE draws exactly what the shorthand flags draw
    a, b = tmp_path / "a", tmp_path / "b"
    code, out, err = _run(["sample", store_path, "--region", "pca-box:shrink=0.8:n_components=3", "-n", 30, "--seed", 4,
                           "--out", a, "--no-progress"], capsys)
    assert code == 0, err
    assert out.startswith("pca-box:shrink=0.8:n_components=3: 30 z-points")
    code, _, err = _run(["sample", store_path, "--region", "pca-box", "--shrink", 0.8, "--components", 3, "-n", 30,
                         "--seed", 4, "--out", b, "--no-progress"], capsys)
    assert code == 0, err
    with open_store(a / "samples.h5") as sa, open_store(b / "samples.h5") as sb:
        np.testing.assert_array_equal(sa.read(), sb.read())
        assert sa.provenance["source"] == "sampler:pca-box"
    code, _, err = _run(["sample", store_path, "--region", "pca-box:shrink=0.8", "--shrink", 0.7, "-n", 5,
                         "--out", tmp_path / "c", "--no-progress"], capsys)
    assert code == 1 and err == "error: --region 'pca-box:shrink=0.8' and a flag both set 'shrink'; give it once.\n"


def test_cli_compare_samplers_takes_specs(store_path, tmp_path, capsys):
    # a spec in --regions gets its own sub-directory and row
    out = tmp_path / "cmp"
    code, stdout, err = _run(["compare-samplers", store_path, "--regions", "cube,ellipse:level=0.8", "-n", 40,
                              "--n-reference", 100, "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    assert (out / "ellipse_level-0.8" / "samples.h5").exists() and (out / "cube" / "samples.h5").exists()
    assert "ellipse:level=0.8" in (out / "landing.md").read_text() and "ellipse:level=0.8" in stdout
    code, _, err = _run(["compare-samplers", store_path, "--regions", "cube,moon:level=1", "--out", tmp_path / "x",
                         "--no-progress"], capsys)
    assert code == 1 and err.startswith("error: --regions must list regions from:")
