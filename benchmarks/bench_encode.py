"""Benchmark: encoding throughput of the keras-ae ``celeba96`` model from images, from the
training cache, and bare.

One run, one model object (``celeba96``: 96x96x3 -> z=256; the seeded initial weights
cost the same as trained ones), one batch size, the same images. Paths:

bare model
    ``KerasAEBackend.encode`` on the images already decoded in memory (uint8 arrays):
    the rate no pipeline can beat.
from cache
    :func:`latentscope.backends.encode_to_store` with ``from_cache=True``: the images are
    copied from the model's uint8 training cache (``MODEL/image_cache.h5``, built here
    with the plugin's own ``build_cache``), encoded and appended to a store.
from images
    ``encode_to_store`` on the JPEGs: decoding, crop and resize in worker threads ahead
    of the model (double buffering: the next batches decode while the model runs, and
    one writer thread appends the previous batch).
serial
    The same work without overlap: decode a batch (same threads), encode it, append
    it, then the next. ``from images / serial`` is what the overlap buys.
decode only / cache read only
    The images into memory, without the model.
simulated device
    The overlap measured without CPU sharing: a stand-in backend whose ``encode``
    sleeps ``n / --sim-rate`` seconds (no CPU, GIL released, as a GPU call would) runs
    the image path overlapped and serially. Overlapped, the rate should approach
    ``min(sim-rate, decode)``; serially ``1 / (1/sim-rate + 1/decode)``.

onnx bare / onnx from images
    The same model exported with Keras' own ``Model.export(format="onnx")`` (needs
    ``tf2onnx``) and run by the ``onnx`` backend (onnxruntime, CPU provider): the
    in-memory rate and ``encode_to_store`` on the JPEGs, side by side with keras-ae in
    the same run; ``--no-onnx`` skips it, a failed export is reported and skipped.

Runs alternate between the paths; the table shows the best and the median of
``--repeat`` runs, each path's best rate over the bare model's best, and the median of
the paired ratios (each store path over the mean of the bare runs just before and after
it), and the CPU time per image of each path (all threads of the process; on a shared,
noisy machine the CPU-time ratio is the steadier figure). Goals on CPU: from cache >= 0.95, from images >= 0.85. When decoding and the model share the CPU cores
no JPEG pipeline can beat ``1 / (1/bare + 1/decode)`` images/s; with the model on a GPU
the bound is ``min(bare, decode)``. The z-points of the cache path and the image path
must be identical (checked).

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


def encode_serially(model, source, path: Path, batch_size: int, workers: int) -> int:
    """Decode, encode and append one batch after the other (no overlap); returns rows."""
    from latentscope.store import create_store

    with create_store(path, model.z_dim, backend=model.name, model_fingerprint=model.fingerprint(),
                      source=source.spec) as store:
        for lo in range(0, len(source), batch_size):
            batch = source.read(lo, lo + batch_size, workers=workers)
            z = model.encode(batch.images, batch_size=batch_size)
            store.append(z, ids=batch.ids, columns={**batch.attributes, "source_index": batch.indices})
        return store.n_rows


class SleepingDevice:
    """A stand-in backend: ``encode`` costs ``n / rate`` seconds of sleep and no CPU."""

    name = "sleeping-device"

    def __init__(self, model, rate: float) -> None:
        self.z_dim, self.image_shape, self.rate = model.z_dim, model.image_shape, float(rate)
        self._fingerprint = model.fingerprint()

    def fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, images, *, batch_size=256):
        time.sleep(len(images) / self.rate)
        return np.zeros((len(images), self.z_dim), np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="images to encode")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None,
                    help="decoder threads (default: LATENTSCOPE_WORKERS, else the cores this process may use)")
    ap.add_argument("--data", type=Path, default=None, help="a CelebA folder (default: the shared sample)")
    ap.add_argument("--no-onnx", action="store_true", help="skip the onnx backend rows")
    ap.add_argument("--sim-rate", type=float, default=2000.0, help="images/s of the simulated device (0: skip)")
    args = ap.parse_args()

    t_import = time.perf_counter()
    import keras

    from latentscope.backends import encode_to_store
    from latentscope.data import CachedSource, default_workers, open_source
    from latentscope.store import open_store
    from latentscope_keras_ae import KerasAEBackend, preset_config
    from latentscope_keras_ae._cache import build_cache
    from latentscope_keras_ae._predict import pad_rows

    t_import = time.perf_counter() - t_import
    workers = default_workers() if args.workers is None else args.workers
    cfg = preset_config("celeba96")
    model = KerasAEBackend.from_config(cfg, seed=0)
    bs = args.batch_size
    with tempfile.TemporaryDirectory(prefix="bench_encode_") as tmp_name:
        tmp = Path(tmp_name)
        spec, what = prepare_folder(tmp, args.n, args.data)
        source = open_source(spec, image_size=cfg.image_size)
        # the model's training cache, as `latentscope train` leaves it in the model directory
        model.model_dir = tmp / "model"
        build_cache(source, model.model_dir / "image_cache.h5").close()
        cached = CachedSource(source, model.image_cache())
        images = source.read(workers=workers).images  # the same images, decoded once, for the bare pass
        n = len(images)
        # warm up every batch shape either side will compile
        shapes = {bs} | ({pad_rows(n % bs, bs)} if n % bs else set())
        for m in sorted(shapes):
            model.encode(images[:m], batch_size=bs)

        onnx, onnx_note = None, "skipped (--no-onnx)"
        if not args.no_onnx:
            try:
                from latentscope.backends import OnnxBackend
                from latentscope_keras_ae._wrap import export_onnx

                enc, dec = export_onnx(model, tmp / "onnx-export")
                onnx = OnnxBackend.wrap(enc, dec, tmp / "onnx-model")
                onnx.encode(images[:bs], batch_size=bs)
                onnx_note = f"providers {','.join(onnx.providers)}"
            except Exception as exc:  # the benchmark reports a missing exporter and goes on
                onnx_note = f"skipped ({' '.join(str(exc).split())[:200]})"
        rates: dict[str, list[float]] = {k: [] for k in ("bare", "cache", "images", "serial", "decode", "read",
                                                        "onnx_bare", "onnx_images")}
        z: dict[str, np.ndarray] = {}

        cpu: dict[str, list[float]] = {k: [] for k in rates}

        def timed(key: str, fn) -> None:
            t0, c0 = time.perf_counter(), time.process_time()
            rows = fn()
            rates[key].append(rows / (time.perf_counter() - t0))
            cpu[key].append((time.process_time() - c0) / rows * 1e3)

        def store_run(key: str, r: int, **kw):
            path = tmp / f"{key}{r}.h5"

            def run() -> int:
                return encode_to_store(model, source, path, batch_size=bs, workers=workers, **kw).n_rows

            timed(key, run)
            if r == 0:
                with open_store(path) as s:
                    z[key] = s.read()

        def bare() -> None:
            timed("bare", lambda: len(z.setdefault("bare", model.encode(images, batch_size=bs))))
            bare_between.append(rates["bare"][-1])

        # each store path runs between two bare runs: its ratio is taken against their mean
        paired: dict[str, list[float]] = {k: [] for k in ("cache", "images", "serial")}
        for r in range(args.repeat):
            bare_between: list[float] = []
            bare()
            store_run("cache", r, from_cache=True)
            bare()
            store_run("images", r)
            timed("serial", lambda r=r: encode_serially(model, source, tmp / f"serial{r}.h5", bs, workers))
            bare()
            paired["cache"].append(rates["cache"][-1] / statistics.mean(bare_between[0:2]))
            paired["images"].append(rates["images"][-1] / statistics.mean(bare_between[1:3]))
            paired["serial"].append(rates["serial"][-1] / statistics.mean(bare_between[1:3]))
            if onnx is not None:
                timed("onnx_bare", lambda: len(z.setdefault("onnx_bare", onnx.encode(images, batch_size=bs))))
                timed("onnx_images", lambda r=r: encode_to_store(onnx, source, tmp / f"onnx{r}.h5", batch_size=bs,
                                                                 workers=workers).n_rows)
            timed("decode", lambda: len(source.read(workers=workers)))
            timed("read", lambda: len(cached.read(workers=workers)))
        sim: dict[str, float] = {}
        if args.sim_rate > 0:
            device = SleepingDevice(model, args.sim_rate)
            for r in range(args.repeat):
                t0 = time.perf_counter()
                done = encode_to_store(device, source, tmp / f"sim{r}.h5", batch_size=bs, workers=workers).n_rows
                sim["overlapped"] = max(sim.get("overlapped", 0.0), done / (time.perf_counter() - t0))
                t0 = time.perf_counter()
                done = encode_serially(device, source, tmp / f"simserial{r}.h5", bs, workers)
                sim["serial"] = max(sim.get("serial", 0.0), done / (time.perf_counter() - t0))

    for key in ("cache", "images"):
        assert z[key].shape == z["bare"].shape, (key, z[key].shape, z["bare"].shape)
    same = bool(np.array_equal(z["cache"], z["images"]))
    max_diff = float(np.abs(z["images"] - z["bare"]).max())
    best = {k: max(v) if v else float("nan") for k, v in rates.items()}
    rows = [("bare model (in-memory uint8 arrays)", "bare"), ("from cache (image_cache.h5 -> store)", "cache"),
            ("from images (JPEG -> store, overlapped)", "images"), ("serial (decode, encode, append in turn)", "serial"),
            ("decode only (JPEG -> uint8, threads)", "decode"), ("cache read only (HDF5 -> uint8)", "read")]
    if rates["onnx_bare"]:
        rows += [("onnx bare (same model, onnxruntime)", "onnx_bare"), ("onnx from images (JPEG -> store)", "onnx_images")]
    print(f"keras-ae celeba96 encoding: {what}; batch {bs}; keras {keras.__version__} ({keras.backend.backend()}); "
          f"{os.cpu_count()} CPUs, {workers} decoder threads; import {t_import:.1f} s")
    paired = {k: statistics.median(v) for k, v in paired.items()}
    paired.update(bare=1.0, decode=float("nan"), read=float("nan"), onnx_bare=float("nan"), onnx_images=float("nan"))
    print(f"{'path':44s} {'best img/s':>11s} {'median img/s':>13s} {'best/bare':>10s} {'paired':>7s} "
          f"{'CPU ms/img':>11s}")
    for name, key in rows:
        print(f"{name:44s} {best[key]:11.1f} {statistics.median(rates[key]):13.1f} {best[key] / best['bare']:10.2f} "
              f"{paired[key]:7.2f} {statistics.median(cpu[key]):11.3f}")
    cpu_bare = statistics.median(cpu["bare"])
    print(f"CPU time per image over the bare model's (medians; what a shared machine cannot distort much): "
          f"from cache {statistics.median(cpu['cache']) / cpu_bare:.3f}, from images "
          f"{statistics.median(cpu['images']) / cpu_bare:.3f}")
    bound = 1.0 / (1.0 / best["bare"] + 1.0 / best["decode"])
    print(f"from cache / bare = {best['cache'] / best['bare']:.2f} best, {paired['cache']:.2f} paired (goal >= 0.95); "
          f"from images / bare = {best['images'] / best['bare']:.2f} best, {paired['images']:.2f} paired (goal >= 0.85); "
          f"overlap gain from images / serial = {best['images'] / best['serial']:.2f}")
    print(f"shared-CPU bound 1/(1/bare + 1/decode) = {bound:.1f} img/s = {bound / best['bare']:.2f} of bare; "
          f"from images / bound = {best['images'] / bound:.2f}")
    print(f"z from cache == z from images: {same}; max |z_images - z_bare| = {max_diff:.2e}")
    print(f"onnx backend: {onnx_note}" + (f"; onnx bare / keras-ae bare = {best['onnx_bare'] / best['bare']:.2f}; "
                                          f"max |z_onnx - z_keras| = {np.abs(z['onnx_bare'] - z['bare']).max():.2e}"
                                          if "onnx_bare" in z else ""))
    if sim:
        dec = best["decode"]
        print(f"simulated device at {args.sim_rate:.0f} img/s (sleeps, no CPU): from images overlapped "
              f"{sim['overlapped']:.1f} img/s, serial {sim['serial']:.1f} (gain {sim['overlapped'] / sim['serial']:.2f}); "
              f"min(device, decode) = {min(args.sim_rate, dec):.1f}, 1/(1/device + 1/decode) = "
              f"{1 / (1 / args.sim_rate + 1 / dec):.1f}")


if __name__ == "__main__":
    main()
