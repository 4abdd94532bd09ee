"""Sampler plugins: real dist-info entry points in the ``latentscope.samplers`` group, broken ones included."""

from __future__ import annotations

import json
import sys
import textwrap
import warnings

import numpy as np
import pytest

from latentscope import create_store, open_store
from latentscope.cli import main
from latentscope.exceptions import SamplerError
from latentscope.samplers import (
    CubeSampler, all_samplers, load_sampler, make_sampler, refresh_sampler_plugins, sampler_plugins,
)
from latentscope.samplers._spec import build_samplers

_PLUGIN = '''
import numpy as np

from latentscope.samplers import Sampler
from latentscope.samplers._data import subsample


class StudentSampler(Sampler):
    """A multivariate t with the data's mean and covariance (a stand-in plugin)."""

    name = "student"
    description = "Multivariate t test sampler."
    _array_attrs = ("mean_", "chol_")
    _scalar_attrs = ("n_fit_rows_",)

    def __init__(self, *, dof=5.0):
        self.dof = dof

    def _fit(self, source, rng, pca=None):
        X = subsample(source, None, rng)
        self.mean_ = X.mean(axis=0)
        self.chol_ = np.linalg.cholesky(np.cov(X, rowvar=False) * (self.dof - 2) / self.dof)
        self.n_fit_rows_ = int(X.shape[0])
        self.z_dim_ = int(X.shape[1])

    def _sample(self, n, rng):
        g = rng.standard_normal((n, self.z_dim_)) @ self.chol_.T
        return self.mean_ + g / np.sqrt(rng.chisquare(self.dof, size=(n, 1)) / self.dof)


class NotASampler:
    name = "notsampler"


class CubeImpostor(Sampler):
    name = "cube"
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Install sampler plugins the way pip does (a dist-info with entry_points.txt): one works, three are broken."""
    site = tmp_path / "site"
    dist = site / "latentscope_testsamplers-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: latentscope-testsamplers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""
        [latentscope.samplers]
        student = latentscope_test_student:StudentSampler
        broken = latentscope_test_missing_module:Sampler
        notsampler = latentscope_test_student:NotASampler
        cube = latentscope_test_student:CubeImpostor
    """))
    (site / "latentscope_test_student.py").write_text(_PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    refresh_sampler_plugins()
    yield site
    monkeypatch.undo()
    refresh_sampler_plugins()
    sys.modules.pop("latentscope_test_student", None)


def _cloud(n=600, d=6, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    t = rng.standard_t(4, size=(n, d)) * np.geomspace(2.0, 0.3, d)  # heavy-tailed, anisotropic
    return 1.0 + t @ q.T


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "z.h5"
    with create_store(path, 6, backend="test", source="synthetic") as s:
        s.append(_cloud())
    return path


def test_listing_reads_entry_points_without_importing(plugins):
    names = sampler_plugins()
    assert names["student"] == "latentscope_test_student:StudentSampler"
    assert {"broken", "notsampler", "cube"} <= set(names)
    assert "latentscope_test_student" not in sys.modules


def test_broken_plugins_warn_and_are_left_out(plugins):
    with pytest.warns(RuntimeWarning) as record:
        known = all_samplers()
    messages = " ".join(str(w.message) for w in record)
    assert "'broken' failed to load: ModuleNotFoundError" in messages
    assert "'notsampler' failed to load: TypeError" in messages and "not a Sampler subclass" in messages
    assert "would replace the built-in sampler 'cube'" in messages
    assert known["cube"] is CubeSampler  # a plugin never replaces a built-in
    assert "broken" not in known and "notsampler" not in known
    assert known["student"].__name__ == "StudentSampler" and "gmm" in known


def test_plugin_sampler_through_make_sampler_grammar_and_persistence(plugins, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asking for a working plugin by name imports only that one
        s = make_sampler("student", dof=7.0)
    Z = _cloud()
    s.fit(Z, rng=0)
    a = s.sample(50, rng=3)
    assert a.shape == (50, 6) and a.dtype == np.float32
    s.save(tmp_path / "st")
    with np.load(tmp_path / "st.npz", allow_pickle=False) as f:  # plain arrays, no pickle
        assert sorted(f.files) == ["chol_", "mean_"]
    assert json.loads((tmp_path / "st.json").read_text())["sampler"] == "student"
    refresh_sampler_plugins()  # a fresh registry: load_sampler finds the plugin again by name
    b = load_sampler(tmp_path / "st").sample(50, rng=3)
    np.testing.assert_array_equal(a, b)
    with pytest.warns(RuntimeWarning):
        built = build_samplers("gauss,student:dof=9", owner="test")
    assert [label for label, _, _ in built] == ["gauss", "student:dof=9"] and built[1][2].dof == 9
    with pytest.raises(SamplerError, match="option 'nu' does not apply to region 'student'"):
        make_sampler("student", nu=3)


def test_unknown_region_lists_plugins_in_one_line(plugins):
    with pytest.warns(RuntimeWarning), pytest.raises(SamplerError, match="unknown region 'nope'.*student") as info:
        make_sampler("nope")
    assert "\n" not in str(info.value)


def test_cli_samplers_lists_one_line_each_and_warns(plugins, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape as a Python warning
        assert main(["samplers"]) == 0
    out, err = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "Multivariate t test sampler." in lines["student"] and "[plugin latentscope_test_student:StudentSampler]" in lines["student"]
    assert "[broken]" in lines["broken"] and "[broken]" in lines["notsampler"]
    assert "ex-post Gaussian mixture" in lines["gmm"] and "plugin" not in lines["cube"]
    assert "warning:" in err and "'broken' failed to load" in err
    assert main(["samplers", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["student"]["status"] == "ok" and listing["broken"]["status"] == "broken"
    assert listing["cube"]["origin"] == "built-in"


def test_cli_sample_and_compare_take_plugin_regions(plugins, store_path, tmp_path, capsys):
    out = tmp_path / "student"
    code = main(["sample", str(store_path), "--region", "student:dof=6", "-n", "30", "--seed", "2", "--out", str(out),
                 "--no-progress", "--n-reference", "150"])
    _, err = capsys.readouterr()
    assert code == 0, err
    with open_store(out / "samples.h5") as s:
        Z = s.read()
    again = load_sampler(out / "sampler").sample(30, rng=np.random.default_rng(np.random.SeedSequence(2).spawn(3)[1]))
    np.testing.assert_array_equal(Z, again)
    cmp_out = tmp_path / "cmp"
    code = main(["compare-samplers", str(store_path), "--regions", "mvn,student", "-n", "40", "--out", str(cmp_out),
                 "--no-progress", "--n-reference", "150"])
    _, err = capsys.readouterr()
    assert code == 0, err
    rows = json.loads((cmp_out / "landing.json").read_text())
    assert "student" in json.dumps(rows)
