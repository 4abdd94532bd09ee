"""Training: a steady manual ``train_on_batch`` loop with per-epoch checkpoints,
exact resumption, loss history (CSV) and reconstruction grids (PNG)."""

from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latentscope.exceptions import BackendError, DataSourceError, InvalidParameterError

from ._cache import BatchReader, EpochPlan, ImageCache, array_images, build_cache
from ._config import AEConfig, parse_filters, preset_config
from ._io import CONFIG_NAME, DECODER_NAME, ENCODER_NAME, load_keras_file, write_json_atomic

__all__ = ["train", "TRAIN_OPTIONS"]

_OWNER = "keras-ae"
TRAIN_OPTIONS = (
    "preset", "epochs", "batch_size", "z_dim", "filters", "image_size", "loss", "learning_rate", "batch_norm",
    "resume", "overwrite", "seed", "progress", "on_epoch", "val_fraction", "cache", "checkpoint_every", "max_steps",
)
#: Training sets up to this size are held in memory; larger ones stream from the cache.
IN_MEMORY_BYTES = 2 << 30
#: Rows of a larger set are shuffled inside segments of about this many bytes.
SEGMENT_BYTES = 512 << 20
DEFAULT_VAL_FRACTION = 0.05
CKPT_DIR = "checkpoint"
STATE_NAME = "state.json"
HISTORY_NAME = "history.csv"
RECON_DIR = "recon"
CACHE_NAME = "image_cache.h5"
GRID_N = 8
_HISTORY_FIELDS = ("epoch", "loss", "val_loss", "images_per_s", "seconds", "n_train", "n_val")


# ----------------------------------------------------------------- options
def _resolve_config(preset: str, overrides: dict[str, Any]) -> AEConfig:
    cfg = preset_config(preset)
    changes: dict[str, Any] = {}
    for key in ("epochs", "batch_size", "z_dim", "loss", "learning_rate", "batch_norm"):
        if overrides.get(key) is not None:
            changes[key] = overrides[key]
    if isinstance(changes.get("loss"), str):
        changes["loss"] = changes["loss"].lower()
    if overrides.get("image_size") is not None:
        size = overrides["image_size"]
        if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
            size = (int(size), int(size))
        elif isinstance(size, str):
            parts = size.lower().replace("x", ",").split(",")
            try:
                size = tuple(int(p) for p in parts if p.strip())
            except ValueError:
                raise InvalidParameterError(f"{_OWNER}: image_size must look like 64 or 64x64; got {size!r}.") from None
            if len(size) == 1:
                size = size * 2
        changes["image_size"] = size
    if overrides.get("filters") is not None:
        enc, dec = parse_filters(overrides["filters"])
        changes["encoder_filters"], changes["decoder_filters"] = enc, dec
    return cfg.replace(**changes) if changes else cfg


class _Progress:
    """Where training reports: tqdm bars (``progress=True``), a ``(done, total)``
    step callback (``progress=callable``, as the CLI passes), one summary line per
    epoch on stderr (unless ``progress=False``) and an ``on_epoch(record)`` hook."""

    def __init__(self, progress: Any, on_epoch: Callable[[dict], None] | None) -> None:
        self.lines = progress is not False and progress is not None
        self.bars = progress is True and os.environ.get("LATENTSCOPE_NO_PROGRESS", "") in ("", "0")
        self.callback = progress if callable(progress) else None
        self.on_epoch = on_epoch

    def step(self, done: int, total: int) -> None:
        if self.callback is not None:
            self.callback(done, total)

    def epoch(self, rec: dict) -> None:
        if self.lines:
            val = "" if rec["val_loss"] is None else f"  val_loss {rec['val_loss']:.5f}"
            msg = (f"keras-ae epoch {rec['epoch']}/{rec['epochs']}  loss {rec['loss']:.5f}{val}  "
                   f"{rec['images_per_s']:.1f} img/s  {rec['seconds']:.1f} s")
            print(("\n" if self.callback is not None else "") + msg, file=sys.stderr, flush=True)
        if self.on_epoch is not None:
            self.on_epoch(dict(rec))


# -------------------------------------------------------------------- data
def _open_images(source: Any, cfg: AEConfig, out: Path, cache: Any, bars: bool) -> tuple[ImageCache, str]:
    """The training images as an :class:`ImageCache`, and a spelling of the source."""
    if isinstance(source, np.ndarray):
        imgs = array_images(source)
        if imgs.image_shape != cfg.image_shape:
            raise BackendError(
                f"{_OWNER}: the model's image size is {cfg.image_size}; the images are {imgs.image_shape[:2]}."
            )
        return imgs, f"array:{imgs.n}"
    if isinstance(source, (str, os.PathLike)):
        from latentscope.data import open_source

        source = open_source(os.fspath(source), image_size=cfg.image_size)
    if not hasattr(source, "iter_batches"):
        raise InvalidParameterError(
            f"{_OWNER}: source must be an ImageSource, a source spec or a uint8 array; got {type(source).__name__}."
        )
    if tuple(source.image_size) != cfg.image_size:
        # The model decides the image size: read the same items at that size.
        if hasattr(source, "with_image_size"):
            source = source.with_image_size(cfg.image_size)
        elif getattr(source, "spec", ""):
            from latentscope.data import open_source

            source = open_source(source.spec, image_size=cfg.image_size)
        else:
            raise BackendError(
                f"{_OWNER}: the model's image size is {cfg.image_size}; the source gives {tuple(source.image_size)}."
            )
    spec = str(getattr(source, "spec", "") or type(source).__name__)
    if len(source) == 0:
        raise DataSourceError(f"{_OWNER}: the image source {spec!r} is empty.")
    from tqdm.auto import tqdm

    with tqdm(total=len(source), desc="keras-ae: caching images", unit="img", file=sys.stderr, disable=not bars,
              leave=False) as bar:
        def cb(done: int, total: int) -> None:
            bar.update(done - bar.n)

        if cache is False:
            parts = []
            for batch in source.iter_batches(256):
                parts.append(np.asarray(batch.images, dtype=np.uint8))
                cb(int(getattr(batch, "stop", None) or min(len(source), batch.start + 256)), len(source))
            return array_images(np.concatenate(parts)), spec
        path = Path(cache) if cache is not None else out / CACHE_NAME
        return build_cache(source, path, replace_mismatch=cache is None, progress=cb), spec


# ----------------------------------------------------------------- helpers
def _float_loss(value: Any) -> float:
    if isinstance(value, (list, tuple)):
        value = value[0]
    if isinstance(value, dict):
        value = value["loss"]
    return float(np.asarray(value))


def _evaluate(ae: Any, val: np.ndarray | None, batch_size: int) -> float | None:
    if val is None or len(val) == 0:
        return None
    total, n = 0.0, 0
    for a in range(0, len(val), batch_size):
        x = val[a : a + batch_size].astype(np.float32) * np.float32(1.0 / 255.0)
        total += _float_loss(ae.test_on_batch(x, x)) * len(x)
        n += len(x)
    return total / n


def _write_history(path: Path, history: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=_HISTORY_FIELDS, extrasaction="ignore")
        w.writeheader()
        for rec in history:
            w.writerow({k: ("" if rec.get(k) is None else rec.get(k)) for k in _HISTORY_FIELDS})
    os.replace(tmp, path)


def _clear(out: Path) -> None:
    for name in (CONFIG_NAME, ENCODER_NAME, DECODER_NAME, HISTORY_NAME):
        (out / name).unlink(missing_ok=True)
    for name in (CKPT_DIR, RECON_DIR):
        shutil.rmtree(out / name, ignore_errors=True)


# -------------------------------------------------------------------- train
def train(
    cls: type,
    source: Any,
    out_dir: str | os.PathLike,
    *,
    preset: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    z_dim: int | None = None,
    filters: Any = None,
    image_size: Any = None,
    loss: str | None = None,
    learning_rate: float | None = None,
    batch_norm: bool | None = None,
    resume: bool = False,
    overwrite: bool = False,
    seed: int | None = None,
    progress: Any = True,
    on_epoch: Callable[[dict], None] | None = None,
    val_fraction: float | None = None,
    cache: Any = None,
    checkpoint_every: int | None = None,
    max_steps: int | None = None,
    **unknown: Any,
):
    """See :meth:`KerasAEBackend.train`."""
    if unknown:
        raise InvalidParameterError(
            f"{_OWNER}: unknown training option(s) {sorted(unknown)}; known: {', '.join(TRAIN_OPTIONS)}."
        )
    if val_fraction is not None and not (isinstance(val_fraction, (int, float)) and not isinstance(val_fraction, bool)
                                         and 0.0 <= float(val_fraction) < 1.0):
        raise InvalidParameterError(f"{_OWNER}: val_fraction must lie in [0, 1); got {val_fraction!r}.")
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 1):
        raise InvalidParameterError(f"{_OWNER}: checkpoint_every must be an int >= 1; got {checkpoint_every!r}.")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise InvalidParameterError(f"{_OWNER}: max_steps must be an int >= 1; got {max_steps!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise InvalidParameterError(f"{_OWNER}: seed must be an int; got {seed!r}.")
    overrides = dict(epochs=epochs, batch_size=batch_size, z_dim=z_dim, filters=filters, image_size=image_size,
                     loss=loss, learning_rate=learning_rate, batch_norm=batch_norm)
    out = Path(out_dir)
    ckpt_dir = out / CKPT_DIR
    state_path = ckpt_dir / STATE_NAME
    state: dict[str, Any] | None = None

    if overwrite:
        _clear(out)
    elif state_path.is_file():
        if not resume:
            raise BackendError(
                f"{_OWNER}: {out} already holds a training checkpoint; pass resume=True (--resume) to continue it "
                "or overwrite=True (--overwrite) to start afresh."
            )
        import json

        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BackendError(f"{_OWNER}: cannot read the checkpoint state {state_path}: {exc}") from exc
    elif (out / CONFIG_NAME).exists() or (out / ENCODER_NAME).exists():
        raise BackendError(
            f"{_OWNER}: {out} already holds a model; choose another directory or pass overwrite=True (--overwrite)."
        )

    # --- configuration ------------------------------------------------------
    if state is None:
        preset = preset or "celeba96"
        cfg = _resolve_config(preset, overrides)
        seed = 0 if seed is None else int(seed)
        val_fraction = DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)
    else:
        saved = AEConfig.from_dict(state["config"])
        asked = _resolve_config(preset or state["preset"], {**overrides, "epochs": None})
        given = {k for k, v in overrides.items() if v is not None and k != "epochs"}
        if preset is not None and preset != state["preset"]:
            given.add("preset")
        conflicts = []
        for key in sorted(given):
            if key == "preset":
                conflicts.append(f"preset {preset!r} != {state['preset']!r}")
                continue
            fields = ("encoder_filters", "decoder_filters") if key == "filters" else (key,)
            for f in fields:
                if getattr(asked, f) != getattr(saved, f):
                    conflicts.append(f"{f} {getattr(asked, f)} != {getattr(saved, f)}")
        if seed is not None and int(seed) != int(state["seed"]):
            conflicts.append(f"seed {seed} != {state['seed']}")
        if val_fraction is not None and float(val_fraction) != float(state["val_fraction"]):
            conflicts.append(f"val_fraction {val_fraction} != {state['val_fraction']}")
        if conflicts:
            raise BackendError(
                f"{_OWNER}: cannot resume the training in {out}: options differ from the checkpoint ({'; '.join(conflicts)})."
            )
        preset, seed, val_fraction = state["preset"], int(state["seed"]), float(state["val_fraction"])
        cfg = saved.replace(epochs=int(epochs)) if epochs is not None else saved

    if on_epoch is not None and not callable(on_epoch):
        raise InvalidParameterError(f"{_OWNER}: on_epoch must be callable; got {on_epoch!r}.")
    report = _Progress(progress, on_epoch)
    bars = report.bars
    out.mkdir(parents=True, exist_ok=True)

    # --- data -----------------------------------------------------------------
    images, spec = _open_images(source, cfg, out, cache, bars)
    try:
        n = images.n
        n_val = int(round(n * float(val_fraction)))
        if val_fraction > 0 and n_val == 0 and n >= 2:
            n_val = 1
        n_train = n - n_val
        if n_train < 1:
            raise DataSourceError(f"{_OWNER}: too few images ({n}) for val_fraction={val_fraction}.")
        if state is not None and (state["source"] != spec or int(state["n_items"]) != n or int(state["n_val"]) != n_val):
            raise BackendError(
                f"{_OWNER}: cannot resume the training in {out}: it was trained on {state['source']!r} "
                f"({state['n_items']} items, {state['n_val']} for validation); got {spec!r} ({n} items, {n_val})."
            )
        if images.nbytes <= IN_MEMORY_BYTES:
            images = images.load()
        val = images.read(n_train, n) if n_val else None
        grid_src = val[:GRID_N] if n_val else images.read(0, min(GRID_N, n_train))
        return _fit(cls, cfg, out, images, val, grid_src, n_train, spec, preset, seed, state, report, bars,
                    checkpoint_every, max_steps, val_fraction, cache_file=images.path)
    finally:
        images.close()


def _fit(cls, cfg, out, images, val, grid_src, n_train, spec, preset, seed, state, report, bars, checkpoint_every,
         max_steps, val_fraction, cache_file=None):
    import keras
    from tqdm.auto import tqdm

    from ._grid import save_grid
    from ._model import build_autoencoder, build_decoder, build_encoder, compile_autoencoder

    ckpt_dir = out / CKPT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (out / RECON_DIR).mkdir(exist_ok=True)
    n_val = 0 if val is None else len(val)
    bs = cfg.batch_size

    if state is None:
        keras.utils.set_random_seed(seed)
        encoder, decoder = build_encoder(cfg), build_decoder(cfg)
        ae = compile_autoencoder(build_autoencoder(cfg, encoder, decoder), cfg)
        epoch0, step0, partial, history = 0, 0, {"loss_sum": 0.0, "seen": 0, "seconds": 0.0}, []
    else:
        ae = load_keras_file(ckpt_dir / state["checkpoint"], compile=True)
        encoder, decoder = ae.get_layer("encoder"), ae.get_layer("decoder")
        epoch0, step0 = int(state["epoch"]), int(state["step"])
        partial, history = dict(state["partial"]), list(state["history"])
        # Fresh random state for anything stochastic (there is nothing today).
        keras.utils.set_random_seed(seed + 7919 * epoch0 + step0)

    model = cls(encoder, decoder, cfg)
    model.model_dir = out
    # where the training images were cached (read back by `latentscope encode --from-cache`)
    cache_entry = {}
    if cache_file is not None:
        cache_path = Path(cache_file).resolve()
        inside = cache_path.parent == out.resolve()
        cache_entry = {"image_cache": cache_path.name if inside else cache_path.as_posix()}

    def info(epochs_done: int) -> dict[str, Any]:
        last = history[-1] if history else {}
        return {"preset": preset, "seed": seed, "source": spec, "n_train": n_train, "n_val": n_val,
                "epochs_done": epochs_done, "complete": epochs_done >= cfg.epochs,
                "loss": last.get("loss"), "val_loss": last.get("val_loss"), **cache_entry}

    def checkpoint(epoch: int, step: int, part: dict) -> None:
        name = f"autoencoder_e{epoch:04d}_s{step:07d}.keras"
        tmp = ckpt_dir / (name + ".tmp.keras")
        ae.save(tmp)
        tmp.replace(ckpt_dir / name)
        write_json_atomic(ckpt_dir / STATE_NAME, {
            "config": cfg.to_dict(), "preset": preset, "seed": seed, "source": spec, "n_items": n_train + n_val,
            "n_val": n_val, "val_fraction": val_fraction, "epoch": epoch, "step": step, "partial": part, "history": history, "checkpoint": name,
            "keras_version": keras.__version__, "keras_backend": keras.backend.backend(),
        })
        for old in ckpt_dir.glob("autoencoder_e*.keras"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def publish(epochs_done: int, partial_model: bool = False) -> None:
        model._weights_changed()
        model.info = info(epochs_done)
        if partial_model:
            model.info["complete"] = False
        model.save(out)
        _write_history(out / HISTORY_NAME, history)

    if epoch0 >= cfg.epochs:  # a finished run: make sure the model files are there
        publish(epoch0)
        return model

    reader = BatchReader(images)
    steps_run = 0
    plan_len = len(EpochPlan.make(n_train, bs, seed, 0, drop_last=True))
    total_steps = plan_len * cfg.epochs
    for epoch in range(epoch0, cfg.epochs):
        plan = EpochPlan.make(n_train, bs, seed, epoch, drop_last=True, segment_rows=None if images.in_memory else
                              max(bs, SEGMENT_BYTES // int(np.prod(cfg.image_shape))))
        start = step0 if epoch == epoch0 else 0
        part = partial if epoch == epoch0 else {"loss_sum": 0.0, "seen": 0, "seconds": 0.0}
        done_rows = sum(len(b) for b in plan.batches[:start])
        t0 = time.perf_counter()
        with tqdm(total=sum(len(b) for b in plan.batches), initial=done_rows, desc=f"keras-ae epoch {epoch + 1}/{cfg.epochs}", unit="img",
                  file=sys.stderr, disable=not bars, leave=False, dynamic_ncols=True) as bar:
            for i, x in enumerate(reader.iterate(plan, start=start, key=epoch), start=start):
                loss = _float_loss(ae.train_on_batch(x, x))
                if not math.isfinite(loss):
                    raise BackendError(
                        f"{_OWNER}: the training loss became {loss} at epoch {epoch + 1}, step {i + 1}; "
                        "lower learning_rate or check the data."
                    )
                part["loss_sum"] += loss * len(x)
                part["seen"] += len(x)
                bar.update(len(x))
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                steps_run += 1
                report.step(epoch * plan_len + i + 1, total_steps)
                if max_steps is not None and steps_run >= max_steps and i + 1 < len(plan):
                    part["seconds"] += time.perf_counter() - t0
                    checkpoint(epoch, i + 1, part)
                    publish(epoch, partial_model=True)
                    return model
                if checkpoint_every and (i + 1) % checkpoint_every == 0 and i + 1 < len(plan):
                    part["seconds"] += time.perf_counter() - t0
                    checkpoint(epoch, i + 1, part)
                    t0 = time.perf_counter()
        part["seconds"] += time.perf_counter() - t0
        val_loss = _evaluate(ae, val, bs)
        rec = {
            "epoch": epoch + 1, "epochs": cfg.epochs, "loss": part["loss_sum"] / max(1, part["seen"]),
            "val_loss": val_loss, "images_per_s": part["seen"] / max(part["seconds"], 1e-9),
            "seconds": part["seconds"], "n_train": n_train, "n_val": n_val,
        }
        history.append(rec)
        checkpoint(epoch + 1, 0, {"loss_sum": 0.0, "seen": 0, "seconds": 0.0})
        publish(epoch + 1)
        save_grid(out / RECON_DIR / f"epoch_{epoch + 1:03d}.png", grid_src, model.reconstruct(grid_src))
        report.epoch(rec)
        if max_steps is not None and steps_run >= max_steps:
            break
    return model
