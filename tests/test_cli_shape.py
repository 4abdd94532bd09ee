"""One CLI shape: STORE positional everywhere (old ``evaluate --store`` still works), one pairs
syntax (old forms still work), one out-directory guard, one progress adapter, batch sizes
resolved once through ``preferred_batch_size``, and ``--seed`` reaching a backend's ``rng``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from latentscope import create_store, open_store
from latentscope.backends import LinearBackend, encode_to_store, preferred_batch_size, refresh_backends
from latentscope.cli import main
from latentscope.cli._common import Progress, check_out, prepare_out
from latentscope.data import open_source
from latentscope.exceptions import InvalidParameterError, StoreError


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _t3_cloud(n=800, d=6, seed=0):
    """A correlated cloud with t3 marginals (heavy tails), off the origin."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (1.0 + (rng.standard_t(3, size=(n, d)) * np.geomspace(2.0, 0.3, d)) @ q.T).astype(np.float32)


@pytest.fixture(scope="module")
def zstore(tmp_path_factory):
    path = tmp_path_factory.mktemp("shape") / "z.h5"
    with create_store(path, 6, backend="test", source="synthetic") as s:
        s.append(_t3_cloud())
    return path


# A plugin that states a batch preference and records every batch size it is given; its
# encode/decode keep the old protocol default (256), so only a caller that resolves the batch
# through preferred_batch_size gives it 8 / 24.
_PLUGIN = '''
from pathlib import Path

from latentscope.backends import LinearBackend


class PrefersBackend(LinearBackend):
    name = "prefers"
    description = "test: prefers batches of 24 (encode) and 8 (decode)"

    @classmethod
    def load(cls, path):
        m = LinearBackend.load(path)
        obj = cls(m.mean, m.components, image_shape=m.image_shape)
        obj.log = Path(path) / "batches.txt"
        return obj

    def default_batch_size(self, task):
        return {"encode": 24, "decode": 8}[task]

    def _note(self, task, batch_size):
        with open(self.log, "a") as fh:
            fh.write(f"{task} {batch_size}\\n")

    def encode(self, images, *, batch_size=256):
        self._note("encode", batch_size)
        return super().encode(images, batch_size=batch_size)

    def decode(self, z, *, batch_size=256):
        self._note("decode", batch_size)
        return super().decode(z, batch_size=batch_size)
'''


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """A linear model on 200 synthetic 32x32 faces, the store encoding them, and the 'prefers' plugin."""
    root = tmp_path_factory.mktemp("shape_linear")
    src = open_source("synthetic:200", image_size=(32, 32))
    model = LinearBackend.train(src, root / "model", z_dim=12, rng=0)
    encode_to_store(model, src, root / "z.h5")
    site = root / "site"
    dist = site / "latentscope_prefers-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: latentscope-prefers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[latentscope.backends]\nprefers = latentscope_test_prefers:PrefersBackend\n")
    (site / "latentscope_test_prefers.py").write_text(textwrap.dedent(_PLUGIN))
    sys.path.insert(0, str(site))
    refresh_backends()
    yield root / "model", root / "z.h5"
    sys.path.remove(str(site))
    refresh_backends()


def _batches(model):
    log = model / "batches.txt"
    lines = log.read_text().split("\n") if log.exists() else []
    log.unlink(missing_ok=True)
    return {(task, int(bs)) for task, bs in (ln.split() for ln in lines if ln)}


_EVAL = ("--regions", "mvn", "-n", 30, "--kid-subsets", 0, "--no-reference", "--grid", 2, "--no-progress")


# -- STORE positional; the old --store still works -------------------------------------------

def test_evaluate_store_errors_are_one_line_exit_2(linear, tmp_path, capsys):
    model, store = linear
    base = ("--backend", "linear", "--model", model, "--out", tmp_path / "x", *_EVAL)
    code, _, err = _run(capsys, "evaluate", store, "--store", store, *base)
    assert (code, err) == (2, f"error: the store is given twice (STORE and --store {store}); give it once, as STORE; "
                              "see 'latentscope evaluate --help'\n")
    code, _, err = _run(capsys, "evaluate", *base)
    assert (code, err) == (2, "error: missing argument STORE; see 'latentscope evaluate --help'\n")
    # a bad value next to the old --store: the usage error alone, no deprecation notice
    code, _, err = _run(capsys, "evaluate", "--store", store, *base, "-n", 1)
    assert (code, err) == (2, "error: -n must be >= 2; got 1\n")
    assert not (tmp_path / "x").exists()


def test_old_store_option_in_a_real_process(linear, tmp_path):
    # the installed entry point: the notice and the error each on one stderr line
    model, _ = linear
    other = tmp_path / "z8.h5"
    with create_store(other, 8, backend="linear") as s:
        s.append(_t3_cloud(30, 8))
    cmd = [sys.executable, "-c", "import sys; from latentscope.cli import main; sys.exit(main())", "evaluate",
           "--backend", "linear", "--model", str(model), "--store", str(other), "--out", str(tmp_path / "x"), *map(str, _EVAL)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"warning: latentscope evaluate --store is deprecated; give the store as the first argument "
        f"(latentscope evaluate {other} ...).",
        "error: the model's z_dim (12) differs from the store's (8); use the model the store was encoded with.",
    ]


# -- one pairs syntax ---------------------------------------------------------------------------

def test_analyze_pairs_repeated_and_old_forms_agree(zstore, tmp_path, capsys):
    from latentscope.analysis import Correlations

    common = ("--no-figures", "--no-progress", "--no-core", "--bins", 20)
    code, _, err = _run(capsys, "analyze", zstore, "--out", tmp_path / "new", "--pairs", "0,1", "--pairs", "4,2", *common)
    assert code == 0 and "warning" not in err, err
    for old in ("0,1 4,2", "0,1;4,2"):
        code, _, err = _run(capsys, "analyze", zstore, "--out", tmp_path / "old", "--pairs", old, "--overwrite", *common)
        assert code == 0
        assert err == (f"warning: --pairs {old!r}: several pairs in one value are deprecated; give one pair per "
                       "--pairs (--pairs 0,1 --pairs 4,2).\n")
        assert [tuple(p) for p in Correlations.load(tmp_path / "old" / "correlations").pairs_] == [(0, 1), (4, 2)]
    assert [tuple(p) for p in Correlations.load(tmp_path / "new" / "correlations").pairs_] == [(0, 1), (4, 2)]


def test_sample_pairs_repeated_and_old_form_draw_the_same(zstore, tmp_path, capsys):
    common = ("--region", "ellipse", "--level", 0.9, "-n", 40, "--seed", 2, "--n-reference", 100, "--no-progress")
    code, _, err = _run(capsys, "sample", zstore, "--pairs", "0,1", "--pairs", "2,3", "--out", tmp_path / "new", *common)
    assert code == 0 and err == "", err
    code, _, err = _run(capsys, "sample", zstore, "--pairs", "0,1;2,3", "--out", tmp_path / "old", *common)
    assert code == 0 and err.startswith("warning: --pairs '0,1;2,3': several pairs in one value are deprecated")
    with open_store(tmp_path / "new" / "samples.h5") as a, open_store(tmp_path / "old" / "samples.h5") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert json.loads((tmp_path / "new" / "sampler.json").read_text())["params"]["pairs"] == [[0, 1], [2, 3]]


@pytest.mark.parametrize(("pairs", "message"), [
    (["0,1", "chain"], "error: --pairs: 'disjoint' or 'chain' must be the only value; got ['0,1', 'chain'].\n"),
    (["0-1"], "error: --pairs: each pair must be 'i,j' with integers (or one of: disjoint, chain); got '0-1'.\n"),
    (["1,2,3"], "error: --pairs: each pair must be 'i,j' with integers (or one of: disjoint, chain); got '1,2,3'.\n"),
])
def test_sample_bad_pairs_are_one_line(zstore, tmp_path, capsys, pairs, message):
    extra = [a for p in pairs for a in ("--pairs", p)]
    code, _, err = _run(capsys, "sample", zstore, "--region", "ellipse", *extra, "--out", tmp_path / "o", "--no-progress")
    assert (code, err) == (1, message)
    assert not (tmp_path / "o").exists()


# -- one out-directory guard ------------------------------------------------------------------

@pytest.mark.parametrize("command", ["analyze", "sample", "filaments", "evaluate"])
def test_out_that_is_a_file_is_one_line_before_any_work(linear, zstore, tmp_path, capsys, command):
    out = tmp_path / "out"
    out.write_text("not a directory")
    model, lstore = linear
    args = {
        "analyze": ("analyze", zstore),
        "sample": ("sample", zstore, "--region", "mvn"),
        "filaments": ("filaments", zstore),
        "evaluate": ("evaluate", lstore, "--backend", "linear", "--model", model, *_EVAL),
    }[command]
    code, _, err = _run(capsys, *args, "--out", out, "--no-progress")
    assert (code, err) == (1, f"error: {out}: exists and is not a directory.\n")
    assert out.read_text() == "not a directory"


def test_guard_refuses_then_replaces_only_the_named_outputs(tmp_path):
    out = tmp_path / "o"
    (out / "decoded").mkdir(parents=True)
    (out / "decoded" / "filament_007.png").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    names = ("filaments.json", "decoded")
    assert check_out(tmp_path / "new", names, overwrite=False) == []
    with pytest.raises(StoreError, match=r"already holds decoded; pass --overwrite to replace the outputs\.$"):
        check_out(out, names, overwrite=False)
    assert prepare_out(out, names, overwrite=True) == out
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # stale strips gone, other files kept


# -- one progress adapter ---------------------------------------------------------------------

def test_progress_takes_both_callback_forms_and_steps(capsys, monkeypatch):
    monkeypatch.delenv("LATENTSCOPE_NO_PROGRESS", raising=False)
    with Progress("encode", unit="img") as p:
        p(30, 120)
        p(120, 120)
        assert p._bars["encode"].n == 120
    assert p._bars == {}
    err = capsys.readouterr().err
    assert "encode" in err and "120/120" in err
    with Progress() as p:  # stages: one bar each, the previous closed when the next reports
        p("pass 1", 50, 100)
        first = p._bars["pass 1"]
        p("pass 2", 10, 10)
        assert list(p._bars) == ["pass 2"] and first.n == 50 and first.disable  # tqdm disables a closed bar
    err = capsys.readouterr().err
    assert "pass 1:  50%" in err and "pass 2: 100%" in err
    with Progress("steps", total=3, unit="steps") as p:
        p.step()
        p.step(2)
        assert p._bars["steps"].n == 3
    assert "3/3" in capsys.readouterr().err
    with pytest.raises(TypeError, match="progress takes"):
        Progress("x")(1)


def test_progress_off_draws_nothing(capsys, monkeypatch):
    monkeypatch.setenv("LATENTSCOPE_NO_PROGRESS", "1")
    with Progress("encode", total=10) as p:
        p(5, 10)
        p("pass 1", 5, 10)
        p.step()
        assert p._bars == {}
    monkeypatch.delenv("LATENTSCOPE_NO_PROGRESS")
    with Progress("encode", total=10, no_progress=True) as p:
        p(5, 10)
    assert capsys.readouterr().err == ""


# -- batch sizes resolved once ------------------------------------------------------------------

def test_preferred_batch_size_resolves_an_explicit_choice(linear):
    model = LinearBackend.load(linear[0])
    assert preferred_batch_size(model, "decode") == 256 and preferred_batch_size(model, "decode", 17) == 17
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(InvalidParameterError, match=rf"^linear: batch_size must be an integer >= 1; got {bad!r}\.$"):
            preferred_batch_size(model, "decode", bad)
    with pytest.raises(InvalidParameterError, match=r"^--batch-size: batch_size must be an integer >= 1; got 0\.$"):
        preferred_batch_size(model, "encode", 0, owner="--batch-size")
    # the backend's own default (batch_size=None) is the same resolution
    z = np.random.default_rng(0).standard_t(3, size=(50, model.z_dim)).astype(np.float32)
    np.testing.assert_array_equal(model.decode(z), model.decode(z, batch_size=7))
    with pytest.raises(InvalidParameterError, match="LinearBackend: batch_size must be an integer >= 1; got 0"):
        model.decode(z, batch_size=0)


def test_sample_uses_the_backend_preference(linear, tmp_path, capsys):
    model, store = linear
    common = ("--region", "mvn", "-n", 12, "--n-reference", 60, "--backend", "prefers", "--model", model, "--no-progress")
    code, _, err = _run(capsys, "sample", store, *common, "--out", tmp_path / "s")
    assert code == 0, err
    assert _batches(model) == {("decode", 8)}  # not the plugin's own default of 256
    code, _, err = _run(capsys, "sample", store, *common, "--out", tmp_path / "s2", "--batch-size", 5)
    assert code == 0 and _batches(model) == {("decode", 5)}


@pytest.mark.slow
def test_evaluate_store_positional_old_option_and_batch_sizes(linear, tmp_path, capsys):
    model, store = linear
    code, _, err = _run(capsys, "evaluate", store, "--backend", "prefers", "--model", model, "--out", tmp_path / "a", *_EVAL)
    assert code == 0 and err == "", err
    # no hard-coded 256 any more: one size (the backend's decode preference) for decode and re-encode
    assert _batches(model) == {("decode", 8), ("encode", 8)}
    code, _, err = _run(capsys, "evaluate", "--backend", "prefers", "--model", model, f"--store={store}", "--out",
                        tmp_path / "b", *_EVAL)
    assert code == 0, err
    assert err == f"warning: latentscope evaluate --store is deprecated; give the store as the first argument " \
                  f"(latentscope evaluate {store} ...).\n"
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    untimed = [[{k: v for k, v in row.items() if k != "seconds"} for row in d["rows"]] for d in (a, b)]
    assert untimed[0] == untimed[1] and a["command"]["store"] == b["command"]["store"] == str(store)
    assert _batches(model) == {("decode", 8), ("encode", 8)}
    code, _, err = _run(capsys, "evaluate", store, "--backend", "prefers", "--model", model, "--out", tmp_path / "a",
                        "--overwrite", "--batch-size", 32, *_EVAL)
    assert code == 0 and _batches(model) == {("decode", 32), ("encode", 32)}


# -- one randomness idiom -----------------------------------------------------------------------

def test_linear_rng_and_deprecated_seed(tmp_path):
    src = open_source("synthetic:120", image_size=(16, 16))
    a = LinearBackend.fit(src, z_dim=5, rng=3)
    with pytest.warns(DeprecationWarning, match=r"LinearBackend\.fit: seed= is deprecated; pass rng= instead"):
        b = LinearBackend.fit(src, z_dim=5, seed=3)
    assert a.fingerprint() == b.fingerprint()
    c = LinearBackend.fit(src, z_dim=5, rng=np.random.default_rng(3))
    assert c.fingerprint() == a.fingerprint()  # an int and the Generator it seeds start alike
    with pytest.warns(DeprecationWarning, match=r"LinearBackend\.train: seed= is deprecated"):
        d = LinearBackend.train(src, tmp_path / "m", z_dim=5, seed=3)
    assert d.fingerprint() == a.fingerprint()
    with pytest.raises(InvalidParameterError, match="rng must be None, an int, a SeedSequence or a numpy Generator"):
        LinearBackend.fit(src, z_dim=5, rng="x")


def test_cli_train_seed_reaches_rng(tmp_path, capsys):
    src = open_source("synthetic:80", image_size=(16, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # --seed goes to rng=, not the deprecated seed=
        code, out, err = _run(capsys, "train", "--backend", "linear", "--data", "synthetic:80", "--out", tmp_path / "m",
                              "--z-dim", 6, "--image-size", 16, "--seed", 4, "--no-progress")
    assert code == 0, err
    assert LinearBackend.load(tmp_path / "m").fingerprint() == LinearBackend.fit(src, z_dim=6, rng=4).fingerprint()
    assert LinearBackend.fit(src, z_dim=6, rng=5).fingerprint() != LinearBackend.fit(src, z_dim=6, rng=4).fingerprint()
