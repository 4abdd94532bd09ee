"""Entry-point discovery of backends: real dist-info plugins on sys.path, broken ones included."""

from __future__ import annotations

import json
import textwrap
import warnings

import pytest

from latentscope.backends import Backend, LinearBackend, get_backend, list_backends, refresh_backends
from latentscope.cli import main
from latentscope.exceptions import BackendNotFoundError

_PLUGIN = '''
import json
from pathlib import Path

import numpy as np


class EchoBackend:
    """A stand-in plugin: train() records the options it was given."""

    name = "echo"
    description = "Echo test backend: records its training options."

    def __init__(self, z_dim=2, image_shape=(8, 8, 3)):
        self.z_dim = z_dim
        self.image_shape = tuple(image_shape)

    @classmethod
    def train(cls, source, out_dir, **options):
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "options.json").write_text(json.dumps({"source": source.spec, **options}))
        return cls(options.get("z_dim", 2), source.image_shape)

    @classmethod
    def load(cls, path):
        return cls()

    def save(self, path):
        pass

    def encode(self, images, *, batch_size=256):
        return np.zeros((len(images), self.z_dim), np.float32)

    def decode(self, z, *, batch_size=256):
        return np.zeros((len(z), *self.image_shape), np.uint8)

    def fingerprint(self):
        return "echo"
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Install two plugins the way pip does (a dist-info with entry_points.txt): one works, one is broken."""
    site = tmp_path / "site"
    dist = site / "latentscope_testplugins-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: latentscope-testplugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""
        [latentscope.backends]
        echo = latentscope_test_echo:EchoBackend
        broken = latentscope_test_missing_module:Backend
    """))
    (site / "latentscope_test_echo.py").write_text(_PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    refresh_backends()
    yield site
    monkeypatch.undo()
    refresh_backends()


def test_linear_is_discovered_without_plugins():
    # the core registers 'linear' through its own entry point
    assert list_backends()["linear"] == "latentscope.backends.linear:LinearBackend"
    assert get_backend("linear") is LinearBackend


def test_discovery_lists_plugins_without_importing(plugins):
    # listing reads entry points only; nothing is imported
    import sys

    names = list_backends()
    assert {"echo", "broken", "linear"} <= set(names)
    assert "latentscope_test_echo" not in sys.modules


def test_broken_plugin_warns_and_is_left_out(plugins):
    # loading all backends warns about the broken one and keeps the others
    with pytest.warns(RuntimeWarning, match="backend 'broken' failed to load: ModuleNotFoundError"):
        loaded = list_backends(load=True)
    assert "broken" not in loaded and loaded["linear"] is LinearBackend
    assert isinstance(loaded["echo"](), Backend)


def test_get_broken_or_unknown_backend_is_one_line(plugins):
    # asking for a broken or missing backend is a BackendNotFoundError naming the installed ones
    with pytest.raises(BackendNotFoundError, match="'broken' failed to load"):
        get_backend("broken")
    with pytest.raises(BackendNotFoundError, match="no latentscope backend named 'nope'; installed: .*echo.*linear") as info:
        get_backend("nope")
    assert "\n" not in str(info.value)


def test_cli_backends_warns_about_broken_plugin(plugins, capsys):
    # `latentscope backends` lists every backend, marks the broken one and warns; exit 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape as a Python warning
        assert main(["backends"]) == 0
    out, err = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "Echo test backend" in lines["echo"] and "PCA of pixels" in lines["linear"]
    assert "[broken]" in lines["broken"]
    assert "warning:" in err and "'broken' failed to load" in err
    assert main(["backends", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["broken"]["status"] == "broken" and listing["echo"]["status"] == "ok"


def test_cli_train_passes_options_to_plugin(plugins, tmp_path, capsys):
    # train is generic: the options given reach Backend.train (a **options plugin takes them all),
    # and progress is switched off by --no-progress
    out = tmp_path / "echo-model"
    code = main(["train", "--backend", "echo", "--data", "synthetic:5", "--out", str(out), "--epochs", "3",
                 "--filters", "8,16:16,8", "--preset", "tiny", "--image-size", "24x32", "--resume", "--seed", "7",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    options = json.loads((out / "options.json").read_text())
    assert options == {"source": "synthetic:5?seed=0", "epochs": 3, "filters": [[8, 16], [16, 8]], "preset": "tiny",
                       "image_size": [24, 32], "resume": True, "seed": 7, "progress": False}
    assert "saved echo model" in capsys.readouterr().out
