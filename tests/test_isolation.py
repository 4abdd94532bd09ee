"""The core never imports a deep-learning framework."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORKS = ("tensorflow", "keras", "torch", "jax", "onnxruntime", "dask", "zarr", "faiss")

_PROBE = """
import json, sys
import latentscope
after_import = sorted(m for m in sys.modules if m.split(".")[0] in {frameworks})
mpl = "matplotlib" in sys.modules
import latentscope.data, latentscope.backends, latentscope.cli
latentscope.list_backends()
latentscope.open_source("synthetic:4", image_size=8).read()
after_use = sorted(m for m in sys.modules if m.split(".")[0] in {frameworks})
print(json.dumps({{"import": after_import, "use": after_use, "mpl": mpl}}))
"""


def test_import_latentscope_leaves_frameworks_out():
    # in a fresh interpreter: import latentscope (and its data, backends and CLI modules,
    # listing backends without loading them) imports no tensorflow, keras, torch or jax
    code = _PROBE.format(frameworks=repr(set(FRAMEWORKS)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["import"] == [], found
    assert found["use"] == [], found
    assert not found["mpl"], "import latentscope should stay light (no matplotlib)"
