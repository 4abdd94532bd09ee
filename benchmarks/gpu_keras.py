"""GPU benchmark of the keras-ae model: encoding and training throughput (images/s).

Self-contained: needs only keras (any backend), numpy, and this repository's
``latentscope`` core and ``backends/keras_ae`` plugin, which it puts on ``sys.path``
itself (nothing needs installing but Keras). Run from the repository root::

    KERAS_BACKEND=jax python benchmarks/gpu_keras.py            # full run, ~2-3 min on an H100
    KERAS_BACKEND=tensorflow python benchmarks/gpu_keras.py --quick   # tiny sizes, CPU smoke test

What it measures on the ``celeba96`` model (96x96x3 -> z=256, encoder filters
64-64-128-128, decoder 128-128-64-64):

encode
    * ``predict_on_batch`` on float32 input scaled on the host (4 bytes/pixel moved);
    * ``predict_on_batch`` on uint8 input, cast and scaled inside the compiled
      function on the device (what ``KerasAEBackend.encode`` does under TensorFlow and
      torch);
    * ``KerasAEBackend.encode`` itself on a large uint8 array (under JAX: a jitted
      ``stateless_call`` with up to 4 batches in flight, ``_predict.BatchRunner``);
    * JAX only: a jitted ``stateless_call`` with several batches in flight (host->device
      copies overlap compute), and with the input already on the device (the bare
      compute rate, an upper bound);
    * the same with the ``mixed_bfloat16`` policy.
train
    ``train_on_batch`` steady state (the plugin's training loop) at batch 128 and 256,
    after warm-up; and ``fit`` with ``steps_per_execution`` on an in-memory array.

Prints a table and writes JSON to ``$OUT/gpu_keras.json`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "backends" / "keras_ae"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402

T_START = time.perf_counter()


def _log(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _sync(y):
    """Block until a backend tensor is computed."""
    if hasattr(y, "block_until_ready"):
        return y.block_until_ready()
    return np.asarray(y)


def measure(fn, items_per_call: int, *, min_time: float, max_calls: int = 10_000, warmup: int = 2):
    """(images/s, first-call seconds, calls) of ``fn`` after ``warmup`` calls."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        fn()
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= min_time or calls >= max_calls:
            break
    return items_per_call * calls / dt, first, calls


def device_info(keras) -> dict:
    info = {"keras": keras.__version__, "backend": keras.backend.backend(), "python": platform.python_version(),
            "numpy": np.__version__, "device": "cpu"}
    name = keras.backend.backend()
    try:
        if name == "jax":
            import jax

            d = jax.devices()[0]
            info.update(jax=jax.__version__, device=f"{d.platform}:{getattr(d, 'device_kind', d)}")
        elif name == "torch":
            import torch

            info.update(torch=torch.__version__,
                        device=f"cuda:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu")
        elif name == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_logical_devices("GPU")
            info.update(tensorflow=tf.__version__, device=f"gpu:{gpus[0].name}" if gpus else "cpu")
    except Exception as exc:  # pragma: no cover - informational only
        info["device_error"] = repr(exc)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model and sizes (a CPU smoke test)")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_keras.json (default: $OUT)")
    ap.add_argument("--budget-s", type=float, default=210.0, help="skip optional parts once this much time has passed")
    ap.add_argument("--encode-batches", default=None, help="comma-separated encode batch sizes (default 256,1024)")
    ap.add_argument("--train-batches", default=None, help="comma-separated training batch sizes (default 128,256)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the mixed_bfloat16 variants")
    args = ap.parse_args(argv)

    import keras

    from latentscope_keras_ae import KerasAEBackend
    from latentscope_keras_ae._config import preset_config
    from latentscope_keras_ae._model import (build_autoencoder, build_decoder, build_encoder, compile_autoencoder,
                                             uint8_encoder)

    backend = keras.backend.backend()
    info = device_info(keras)
    _log(f"keras {info['keras']} backend={backend} device={info['device']}")
    if args.quick:
        cfg = preset_config("small").replace(image_size=(32, 32), z_dim=16, encoder_filters=(8, 8, 16, 16),
                                             decoder_filters=(16, 16, 8, 8))
        enc_batches, train_batches, min_time, train_min_time, big_n = [16, 64], [16, 32], 0.3, 0.5, 256
    else:
        cfg = preset_config("celeba96")
        enc_batches, train_batches, min_time, train_min_time, big_n = [256, 1024], [128, 256], 2.0, 6.0, 16384
    if args.encode_batches:
        enc_batches = [int(b) for b in args.encode_batches.split(",")]
    if args.train_batches:
        train_batches = [int(b) for b in args.train_batches.split(",")]
    h, w, _ = cfg.image_shape
    info.update(model="quick" if args.quick else "celeba96", image_shape=list(cfg.image_shape), z_dim=cfg.z_dim,
                encoder_gflop_per_image=cfg.encoder_flops() / 1e9)
    rng = np.random.default_rng(0)
    results: list[dict] = []

    out_dir = Path(args.out) if args.out else None
    errors: list[str] = []

    def dump() -> None:
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            info["elapsed_s"] = round(time.perf_counter() - T_START, 1)
            (out_dir / "gpu_keras.json").write_text(json.dumps({"info": info, "results": results, "errors": errors},
                                                               indent=2))

    def record(kind: str, variant: str, batch: int, rate: float, first: float, calls: int, **extra) -> None:
        row = {"kind": kind, "variant": variant, "batch": batch, "images_per_s": round(rate, 1),
               "first_call_s": round(first, 3), "calls": calls, **extra}
        results.append(row)
        _log(f"{kind:6s} {variant:52s} batch {batch:5d}: {rate:12,.0f} img/s (first call {first:.2f} s)")
        dump()  # a run cut short still leaves its numbers

    class section:
        """Run a part of the benchmark; an exception is logged and the run goes on."""

        def __init__(self, name: str) -> None:
            self.name = name

        def __enter__(self):
            return self

        def __exit__(self, typ, exc, tb) -> bool:
            if exc is not None and not isinstance(exc, KeyboardInterrupt):
                msg = f"{self.name}: {typ.__name__}: {' '.join(str(exc).split())[:400]}"
                errors.append(msg)
                _log("FAILED " + msg)
                dump()
                return True
            return False

    def over_budget() -> bool:
        return time.perf_counter() - T_START > args.budget_s

    keras.utils.set_random_seed(0)
    encoder, decoder = build_encoder(cfg), build_decoder(cfg)
    enc_u8 = uint8_encoder(encoder)
    info["encoder_params"] = int(encoder.count_params())
    info["autoencoder_params"] = int(encoder.count_params() + decoder.count_params())
    model = KerasAEBackend(encoder, decoder, cfg)

    # ------------------------------------------------------------------ encode
    for bs in enc_batches:
        x8 = rng.integers(0, 256, (bs, h, w, 3), dtype=np.uint8)
        with section(f"encode float32 batch {bs}"):
            r = measure(lambda: encoder.predict_on_batch(x8.astype(np.float32) * np.float32(1 / 255)), bs,
                        min_time=min_time)
            record("encode", "predict_on_batch float32 (host /255)", bs, *r)
        with section(f"encode uint8 batch {bs}"):
            r = measure(lambda: enc_u8.predict_on_batch(x8), bs, min_time=min_time)
            record("encode", "predict_on_batch uint8 (cast on device)", bs, *r)
    xbig = rng.integers(0, 256, (big_n, h, w, 3), dtype=np.uint8)
    for bs in enc_batches:
        with section(f"KerasAEBackend.encode batch {bs}"):
            r = measure(lambda: model.encode(xbig, batch_size=bs), big_n, min_time=min_time, warmup=1)
            record("encode", f"KerasAEBackend.encode ({big_n} images)", bs, *r)

    def jax_variants(tag: str, u8model) -> None:
        import jax

        tv = [v.value for v in u8model.trainable_variables]
        ntv = [v.value for v in u8model.non_trainable_variables]

        @jax.jit
        def f(tv, ntv, x):
            y, _ = u8model.stateless_call(tv, ntv, x, training=False)
            return y

        for bs in enc_batches:
            n_b = max(4, big_n // bs)
            xs = [rng.integers(0, 256, (bs, h, w, 3), dtype=np.uint8) for _ in range(min(n_b, 8))]

            def pipelined():
                outs = [f(tv, ntv, jax.device_put(xs[i % len(xs)])) for i in range(n_b)]
                return [np.asarray(o) for o in outs]

            r = measure(pipelined, n_b * bs, min_time=min_time)
            record("encode", f"jax.jit stateless uint8, {n_b} in flight{tag}", bs, *r)
            xd = jax.device_put(xs[0])
            r = measure(lambda: f(tv, ntv, xd).block_until_ready(), bs, min_time=min_time)
            record("encode", f"jax.jit uint8 already on device (compute){tag}", bs, *r)

    if backend == "jax":
        with section("jax variants"):
            jax_variants("", enc_u8)
    if not args.no_bf16 and not over_budget():
        try:
            keras.config.set_dtype_policy("mixed_bfloat16")
            enc16 = build_encoder(cfg)
            enc16.set_weights(encoder.get_weights())
            enc16_u8 = uint8_encoder(enc16)
            keras.config.set_dtype_policy("float32")
            for bs in enc_batches:
                x8 = rng.integers(0, 256, (bs, h, w, 3), dtype=np.uint8)
                r = measure(lambda: enc16_u8.predict_on_batch(x8), bs, min_time=min_time)
                z32 = np.asarray(enc_u8.predict_on_batch(x8))
                z16 = np.asarray(enc16_u8.predict_on_batch(x8)).astype(np.float32)
                rel = float(np.abs(z16 - z32).max() / (np.abs(z32).max() + 1e-12))
                record("encode", "predict_on_batch uint8, mixed_bfloat16", bs, *r, max_rel_diff_vs_fp32=round(rel, 5))
            if backend == "jax" and not over_budget():
                jax_variants(", mixed_bfloat16", enc16_u8)
        except Exception as exc:  # bf16 kernels are missing on some CPUs/backends
            keras.config.set_dtype_policy("float32")
            _log(f"mixed_bfloat16 skipped: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------- train
    for bs in train_batches:
        if over_budget():
            _log(f"time budget spent; training at batch {bs} skipped")
            break
        keras.utils.set_random_seed(0)
        ae = compile_autoencoder(build_autoencoder(cfg), cfg)
        xs = [rng.integers(0, 256, (bs, h, w, 3), dtype=np.uint8).astype(np.float32) / 255 for _ in range(4)]
        state = {"i": 0}

        def step():
            x = xs[state["i"] % len(xs)]
            state["i"] += 1
            return ae.train_on_batch(x, x)

        with section(f"train_on_batch batch {bs}"):
            r = measure(step, bs, min_time=train_min_time, warmup=3)
            record("train", "train_on_batch (plugin loop)", bs, *r)
        if over_budget():
            continue
        with section(f"fit batch {bs}"):
            spe = 8
            n = bs * spe * (2 if args.quick else 6)
            xfit = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8).astype(np.float32) / 255
            ae2 = build_autoencoder(cfg)
            ae2.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss="binary_crossentropy",
                        steps_per_execution=spe)
            t0 = time.perf_counter()
            ae2.fit(xfit[: bs * spe], xfit[: bs * spe], batch_size=bs, epochs=1, verbose=0, shuffle=False)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            ae2.fit(xfit, xfit, batch_size=bs, epochs=1, verbose=0, shuffle=False)
            dt = time.perf_counter() - t0
            record("train", f"fit, steps_per_execution={spe} (in memory)", bs, n / dt, first, n // bs)

    # ------------------------------------------------------------------ report
    total = time.perf_counter() - T_START
    info["total_s"] = round(total, 1)
    print()
    print(f"keras-ae GPU benchmark: {info['model']} {info['image_shape']} z={info['z_dim']}, "
          f"encoder {info['encoder_gflop_per_image'] * 1e3:.1f} MFLOP/img; keras {info['keras']} "
          f"({info['backend']}) on {info['device']}")
    print(f"{'kind':6s}  {'variant':56s} {'batch':>6s} {'images/s':>14s} {'1st call s':>10s}")
    for row in results:
        print(f"{row['kind']:6s}  {row['variant']:56s} {row['batch']:6d} {row['images_per_s']:14,.0f} "
              f"{row['first_call_s']:10.2f}")
    best = max((r["images_per_s"] for r in results if r["kind"] == "encode"), default=0.0)
    print(f"best encoding rate {best:,.0f} img/s (goal on an H100: 100,000); total {total:.0f} s")
    for e in errors:
        print(f"error in {e}")
    if out_dir is not None:
        dump()
        print(f"wrote {out_dir / 'gpu_keras.json'}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
