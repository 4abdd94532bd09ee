"""The main job: the whole story of the latent-space series on one page.

Runs the ``latentscope`` commands a user would type, one after the other, on the
embedded default data (procedural synthetic faces) or on a real CelebA folder:

1. train the convolutional autoencoder (keras-ae, ``small`` preset on CPUs),
2. encode the images into a z-point store,
3. analyze the store (component histograms, correlations, radii, PCA, boxes, core),
4. sample from the regions of the series (cube, pca-box, mvn, gmm, ellipse) and decode,
5. look for filaments,
6. evaluate the generators with weight-free metrics,

and writes ``OUT/index.html`` with every figure and image grid.

Run it with ``make demo`` (synthetic faces) or ``make demo CELEBA=/path/to/celeba``
(the ``celeba96`` preset; a GPU is advisable there), or directly::

    python examples/demo.py --out demo-out [--celeba PATH] [--images 2500] [--epochs 8]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shlex
import sys
import time
from pathlib import Path

REGIONS = ("cube", "pca-box", "mvn", "gmm", "ellipse")
EVAL_REGIONS = ("cube", "normal", "gauss", "mvn", "pca-box", "pca-gauss", "ellipse", "gmm", "kde")


def run(step: str, args: list[str], timings: dict) -> None:
    """Run one ``latentscope`` command in this process; stop the demo if it fails."""
    from latentscope.cli import main

    print(f"\n== {step}\n$ latentscope {shlex.join(args)}", flush=True)
    t0 = time.perf_counter()
    code = main(args)
    timings[step] = time.perf_counter() - t0
    print(f"   ({timings[step]:.1f} s)", flush=True)
    if code != 0:
        sys.exit(f"demo: step '{step}' failed with exit status {code}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)")
    p.add_argument("--celeba", default="", help="a CelebA folder; default: synthetic faces")
    p.add_argument("--images", type=int, default=None, help="number of synthetic images (default: 2500; CelebA: all)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: 8 synthetic, 24 CelebA)")
    p.add_argument("-n", "--samples", type=int, default=1000, help="generated images per region for the metrics")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny sizes, for the test suite")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    if a.celeba:
        data = f"celeba:{a.celeba}"
        preset, epochs = "celeba96", a.epochs or 24
    else:
        n_images = a.images or (300 if a.quick else 2500)
        data, preset, epochs = f"synthetic:{n_images}", "small", a.epochs or (1 if a.quick else 8)
    n_eval = 100 if a.quick else a.samples
    regions = ("cube", "mvn") if a.quick else REGIONS
    eval_regions = ("cube", "mvn") if a.quick else EVAL_REGIONS
    eval_extra = ["--kid-subsets", "5"] if a.quick else []
    model, store = out / "model", out / "z.h5"
    seed = ["--seed", str(a.seed)]
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    run("train", ["train", "--backend", "keras-ae", "--preset", preset, "--data", data, "--epochs", str(epochs),
                  "--out", str(model), *seed, *(["--overwrite"] if model.exists() else [])], timings)
    run("encode", ["encode", "--backend", "keras-ae", "--model", str(model), "--data", data,
                   "--out", str(store), "--overwrite"], timings)
    run("info", ["info", str(store)], timings)
    run("analyze", ["analyze", str(store), "--out", str(out / "analysis"), "--overwrite"], timings)
    for region in regions:
        extra = ["--k", "10"] if region == "gmm" else []
        run(f"sample {region}", ["sample", str(store), "--region", region, "-n", "64", *seed, *extra,
                                 "--backend", "keras-ae", "--model", str(model),
                                 "--out", str(out / "samples" / region), "--overwrite"], timings)
    run("filaments", ["filaments", str(store), "--out", str(out / "filaments"), *seed,
                      "--backend", "keras-ae", "--model", str(model), "--overwrite"], timings)
    run("evaluate", ["evaluate", str(store), "--backend", "keras-ae", "--model", str(model),
                     "--data", data, "--regions", ",".join(eval_regions), "-n", str(n_eval), *seed, *eval_extra,
                     "--out", str(out / "evaluate"), "--overwrite"], timings)
    timings["total"] = time.perf_counter() - t_start
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    write_index(out, data, preset, epochs, timings)
    print(f"\nDone in {timings['total'] / 60:.1f} min. Open {out / 'index.html'}")


# -- the page --------------------------------------------------------------------------------


def _img(path: Path, out: Path, caption: str, width: int = 480) -> str:
    if not path.exists():
        return ""
    rel = html.escape(os.path.relpath(path, out))
    return (f'<figure><a href="{rel}"><img src="{rel}" width="{width}"></a>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _landing_line(out: Path, region: str) -> str:
    path = out / "samples" / region / "landing.json"
    if not path.exists():
        return ""
    d = json.loads(path.read_text())
    keys = [("in_fragment_rate", "in-fragment"), ("frac_in_pca_box", "in PCA box"),
            ("frac_in_ellipsoid", "in 0.99 ellipsoid")]
    parts = [f"{label} {d[k]:.2f} (held-out data {d.get('data_' + k, float('nan')):.2f})"
             for k, label in keys if isinstance(d.get(k), (int, float))]
    if isinstance(d.get("mahalanobis_median"), (int, float)):
        parts.append(f"Mahalanobis radius {d['mahalanobis_median']:.0f} (data {d.get('data_mahalanobis_median', 0):.0f})")
    return ", ".join(parts)


def _key_numbers(out: Path, filaments: str) -> str:
    """The deciding numbers, for the top of the page: best regions, in-fragment rates, filaments found."""
    rows = []
    metrics = _read(out / "evaluate" / "metrics.json")
    if metrics:
        d = json.loads(metrics)
        best = d.get("best", {})
        rows += [(f"best region on {m}", best.get(m) or "n/a") for m in ("fd_latent", "precision", "recall")]
        rows += [(f"in-fragment rate, {r['label']}", f"{r['in_fragment']:.2f}") for r in d.get("rows", [])
                 if not r.get("reference") and isinstance(r.get("in_fragment"), (int, float))]
    if filaments:
        rows.append(("filaments", filaments))
    if not rows:
        return ""
    body = "".join(f"<tr><th scope='row'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<div class='key'><strong>Deciding numbers</strong><table>{body}</table></div>"


def write_index(out: Path, data: str, preset: str, epochs: int, timings: dict) -> None:
    """Write OUT/index.html: the story of the run with every figure."""
    analysis, fil, ev = out / "analysis" / "figures", out / "filaments", out / "evaluate"
    model_pngs = sorted((out / "model" / "recon").glob("*.png"))
    sec = []
    sec.append(f"<h2>1. Data and model</h2><p>Data <code>{html.escape(data)}</code>, keras-ae preset "
               f"<code>{preset}</code>, {epochs} epochs.</p>"
               + (_img(model_pngs[-1], out, "Reconstructions after the last epoch (top: input, bottom: output)")
                  if model_pngs else ""))
    figs = sorted(analysis.glob("*.png")) if analysis.exists() else []
    sec.append("<h2>2. The fragment: where the z-points lie</h2>"
               "<p>Component histograms are close to Gaussian, components are correlated (inclined "
               "ellipses), the radii sit in a thin shell far from where cube or N(0, I) vectors fall, and "
               "the PCA spectrum shows a few dominant axes. "
               f'Full report: <a href="analysis/index.html">analysis/index.html</a>.</p>'
               + "".join(_img(f, out, f.stem.replace("_", " ")) for f in figs))
    grids = []
    for region in REGIONS:
        cap = f"{region}: {_landing_line(out, region)}"
        grids.append(_img(out / "samples" / region / "grid.png", out, cap, width=320))
    sec.append("<h2>3. Generators: which regions decode to faces</h2>"
               "<p>Cube samples around the origin miss the fragment and decode to no faces; samples from "
               "the data's PCA box, the fitted normal, the ex-post GMM and the confidence-ellipse rule "
               "land in it.</p>" + "".join(grids))
    table = _read(ev / "metrics.html")
    sec.append("<h2>4. Metrics (weight-free)</h2><p>Re-encoded Fréchet distance (lower is better), "
               "pixel-PCA and random-conv Fréchet distances, precision / recall and density / coverage per "
               "region in three feature spaces. The rule's precision counts a sample only when its z-point is in "
               "the fragment and its image lies among the real images' random-conv features.</p>"
               + (table or f"<pre>{html.escape(_read(ev / 'metrics.md'))}</pre>")
               + _img(ev / "chart.png", out, "Metrics per region", 720)
               + '<p>Full page: <a href="evaluate/index.html">evaluate/index.html</a>.</p>')
    fil_summary = _read(fil / "filaments.json")
    n_fil = ""
    if fil_summary:
        d = json.loads(fil_summary)
        n_fil = (f"{d.get('n_filaments', 0)} filament(s) reported among {d.get('n_points', 0)} z-points "
                 f"({d.get('n_candidates', 0)} dense candidates).")
    fil_figs = sorted(fil.glob("*.png")) if fil.exists() else []
    sec.append(f"<h2>5. Filaments</h2><p>{n_fil} Density is judged by a scale-free local contrast "
               "against a smoothed-bootstrap null cloud with the data's covariance (docs/filaments.md).</p>" + "".join(_img(f, out, f.stem) for f in fil_figs[:6]))
    sec.insert(0, _key_numbers(out, n_fil))
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.1f} s</td></tr>" for k, v in timings.items())
    sec.append(f"<h2>Timings</h2><table>{rows}</table>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>latentscope demo</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:auto}figure{display:inline-block;margin:6px;"
            "vertical-align:top}figcaption{font-size:12px;max-width:480px}pre{background:#f4f4f4;padding:8px;"
            "overflow:auto}table{border-collapse:collapse}th,td{padding:2px 8px;border-bottom:1px solid #eee;"
            "text-align:right}th:first-child,td:first-child{text-align:left}.key{background:#f4f7fb;"
            "border:1px solid #c8d6e5;padding:8px 14px;margin:12px 0}</style></head><body><h1>latentscope demo</h1>" + "".join(sec) + "</body></html>")
    (out / "index.html").write_text(page)


if __name__ == "__main__":
    main()
