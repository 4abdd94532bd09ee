"""Benchmark: fitting the learned priors of the keras-ae plugin (``flow``, ``diffusion``) and ``gmm``.

Writes an N x D float32 store (a curved, heavy-tailed cloud: multivariate t5
coordinates on a curved 6-D surface plus lognormal noise) and fits each sampler in
its own subprocess, so that peak memory (``ru_maxrss``, the whole process: Python,
TensorFlow and the data) is measured alone. Reports fit time, epochs run, and
samples per second for 10,000 draws.

Usage::

    python benchmarks/bench_priors.py [--rows 200000] [--dim 256] [--epochs 5] [--samplers flow,diffusion,gmm]

``--epochs`` caps the training epochs (the early stopping of a full fit usually ends
sooner or later; time per epoch is what scales with N).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from latentscope.samplers import make_sampler
path, name, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
opts = {"progress": False, "epochs": epochs, "max_samples": None} if name in ("flow", "diffusion") else {}
t0 = time.perf_counter()
s = make_sampler(name, **opts).fit(path, rng=0)
fit = time.perf_counter() - t0
t0 = time.perf_counter()
s.sample(10000, rng=1)
per_s = 10000 / (time.perf_counter() - t0)
hist = getattr(s, "history_", {}) or {}
print(json.dumps({"sampler": name, "fit_s": round(fit, 1), "epochs_run": hist.get("epochs_run"),
                  "samples_per_s": round(per_s), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def _write_store(path: Path, rows: int, dim: int) -> None:
    import numpy as np

    from latentscope import create_store

    rng = np.random.default_rng(0)
    crng = np.random.default_rng(123)
    A, B = crng.standard_normal((6, dim)), crng.standard_normal((6, dim))
    with create_store(path, dim, backend="bench", source="synthetic") as store:
        for start in range(0, rows, 50000):
            n = min(50000, rows - start)
            u = rng.standard_normal((n, 6)) / np.sqrt(rng.chisquare(5, size=(n, 1)) / 5)
            z = u @ A + 2.0 * np.tanh(u) ** 2 @ B + 0.15 * (np.exp(0.5 * rng.standard_normal((n, dim))) - np.exp(0.125))
            store.append((z + 2.0).astype(np.float32))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--samplers", default="flow,diffusion,gmm")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "z.h5"
        t0 = time.perf_counter()
        _write_store(path, args.rows, args.dim)
        print(f"store {args.rows} x {args.dim} written in {time.perf_counter() - t0:.1f} s", flush=True)
        for name in args.samplers.split(","):
            out = subprocess.run([sys.executable, "-c", _CHILD, str(path), name, str(args.epochs)],
                                 capture_output=True, text=True, check=False)
            line = next((x for x in out.stdout.splitlines() if x.startswith("{")), None)
            print(line if line else json.dumps({"sampler": name, "error": out.stderr.strip().splitlines()[-1:]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
