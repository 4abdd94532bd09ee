"""Benchmark: encoding throughput of the keras-ae ``celeba96`` model, full pipeline vs bare.

Encodes a folder of CelebA JPEGs into a z-point store with
:func:`latentscope.backends.encode_to_store` (JPEG decoding, crop and resize in worker
threads overlapping the model, HDF5 appends), and runs the bare encoder forward pass
(``KerasAEBackend.encode``) on the same images already decoded in memory. Both use
the same model object (``celeba96``: 96x96x3 -> z=256; weights are the seeded
initialisation, which costs the same as trained ones) and the same batch size; the
compiled function is warmed up first for every batch shape either side uses. Runs
alternate between the two; the table shows the best and the median of ``--repeat``
runs and the ratio pipeline / bare of the best rates (goal: >= 0.85).

It also times decoding alone (the same JPEGs into memory, same threads). When decoding
and the model share the same CPU cores, no pipeline can beat
``1 / (1/bare + 1/decode)`` images/s; the last line compares the pipeline with that
bound too. (With the model on a GPU, the bound is ``min(bare, decode)`` instead.)

Data: the first ``--n`` images of ``/work/shared/data/celeba_sample`` when present
(linked into a temporary CelebA-layout folder), else ``--n`` synthetic faces written as
178x218 JPEGs into a temporary folder.

Usage::

    python benchmarks/bench_encode.py [--n 2048] [--batch-size 256] [--repeat 3] [--workers N] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLE = Path("/work/shared/data/celeba_sample")


def prepare_folder(tmp: Path, n: int, data: Path | None) -> tuple[str, str]:
    """A CelebA-layout folder with ``n`` JPEGs; returns (spec, description)."""
    root = tmp / "celeba"
    imgs = root / "img_align_celeba"
    imgs.mkdir(parents=True)
    src_dir = (data or SAMPLE) / "img_align_celeba"
    files = sorted(src_dir.glob("*.jpg"))[:n] if src_dir.is_dir() else []
    if len(files) >= n:
        for f in files:
            os.symlink(f, imgs / f.name)
        return f"celeba:{root}", f"{n} CelebA JPEGs (178x218) from {src_dir.parent}"
    from PIL import Image

    from latentscope.data import SyntheticFaces

    src = SyntheticFaces(n, image_size=(218, 178))
    for batch in src.iter_batches(256):
        for img, i in zip(batch.images, batch.indices):
            Image.fromarray(img).save(imgs / f"{int(i) + 1:06d}.jpg", quality=90)
    return f"celeba:{root}", f"{n} synthetic faces written as 178x218 JPEGs (no CelebA sample found)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="images to encode")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="decoder threads (default: CPU count, at most 8)")
    ap.add_argument("--data", type=Path, default=None, help="a CelebA folder (default: the shared sample)")
    args = ap.parse_args()

    t_import = time.perf_counter()
    import keras

    from latentscope.backends import encode_to_store
    from latentscope.data import open_source
    from latentscope_keras_ae import KerasAEBackend, preset_config
    from latentscope_keras_ae._predict import pad_rows

    t_import = time.perf_counter() - t_import
    cfg = preset_config("celeba96")
    model = KerasAEBackend.from_config(cfg, seed=0)
    bs = args.batch_size
    with tempfile.TemporaryDirectory(prefix="bench_encode_") as tmp_name:
        tmp = Path(tmp_name)
        spec, what = prepare_folder(tmp, args.n, args.data)
        source = open_source(spec, image_size=cfg.image_size)
        images = source.read(workers=args.workers).images  # the same images, decoded once, for the bare pass
        n = len(images)
        # warm up every batch shape either side will compile
        shapes = {bs} | ({pad_rows(n % bs, bs)} if n % bs else set())
        for m in sorted(shapes):
            model.encode(images[:m], batch_size=bs)

        bare, pipe, dec = [], [], []
        for r in range(args.repeat):
            t0 = time.perf_counter()
            z_bare = model.encode(images, batch_size=bs)
            bare.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            source.read(workers=args.workers)
            dec.append(n / (time.perf_counter() - t0))
            store = tmp / f"z{r}.h5"
            t0 = time.perf_counter()
            res = encode_to_store(model, source, store, batch_size=bs, workers=args.workers)
            pipe.append(res.n_rows / (time.perf_counter() - t0))
            if r == 0:
                from latentscope.store import open_store

                with open_store(store) as s:
                    z_pipe = s.read()
                assert z_pipe.shape == z_bare.shape, (z_pipe.shape, z_bare.shape)
                max_diff = float(np.abs(z_pipe - z_bare).max())

    rows = [("bare encoder (in-memory uint8 arrays)", bare), ("decode only (JPEG -> uint8, threads)", dec),
            ("pipeline encode_to_store (JPEG -> store)", pipe)]
    print(f"keras-ae celeba96 encoding: {what}; batch {bs}; keras {keras.__version__} "
          f"({keras.backend.backend()}); {os.cpu_count()} CPUs; import {t_import:.1f} s")
    print(f"{'path':44s} {'best img/s':>11s} {'median img/s':>13s}")
    for name, rates in rows:
        print(f"{name:44s} {max(rates):11.1f} {statistics.median(rates):13.1f}")
    ratio = max(pipe) / max(bare)
    bound = 1.0 / (1.0 / max(bare) + 1.0 / max(dec))
    print(f"ratio pipeline / bare (best): {ratio:.2f}  (goal >= 0.85)   max |z_pipeline - z_bare| = {max_diff:.2e}")
    print(f"shared-CPU bound 1/(1/bare + 1/decode) = {bound:.1f} img/s = {bound / max(bare):.2f} of bare; "
          f"pipeline / bound = {max(pipe) / bound:.2f}")


if __name__ == "__main__":
    main()
