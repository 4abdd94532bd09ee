"""Draw docs/img/landing-rule.png and print the numbers of the in-fragment rule in docs/samplers.md.

The cloud of issue 11: 2,500 rows at z_dim 256, eigenvalues log-spaced from 200 to 0.02 along
random orthonormal axes, mean of length 45; 1,000 fresh draws of the same law; 1,000 uniform-cube
samples (b = 1) and 1,000 independent per-component Gaussians (``gauss``). Left panel: the old
Euclidean rule (nearest-data distance against the 0.95 quantile of the data's own nearest-neighbour
distances). Right panel: the rule of ``landing_report`` (whitened coordinates of the fit rows,
thresholds set on held-out rows).

    .venv/bin/python docs/gen_landing_figure.py        # about 20 s
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from latentscope.neighbors import nearest_distances, reference_distances  # noqa: E402
from latentscope.samplers import LandingReference, make_sampler  # noqa: E402

DIM = 256


def cloud(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    lam = np.geomspace(200.0, 0.02, DIM)
    mu = rng.normal(size=DIM)
    mu *= 45.0 / np.linalg.norm(mu)
    return mu + (np.random.default_rng(seed + 1).normal(size=(n, DIM)) * np.sqrt(lam)) @ q.T


def main() -> None:
    from matplotlib.figure import Figure

    Z = cloud(3500)
    data, fresh = Z[:2500], Z[2500:]
    sets = {
        "fresh draws": fresh,
        "cube (b = 1)": make_sampler("cube", halfwidth=1.0).fit(data).sample(1000, rng=1),
        "gauss": make_sampler("gauss").fit(data).sample(1000, rng=2),
    }
    colors = {"fresh draws": "#1f5f99", "cube (b = 1)": "#c44e52", "gauss": "#dd8452"}
    # the old rule: Euclidean nearest-data distance, threshold = 0.95 quantile of the data's own
    _, own = reference_distances(data, 2000, rng=0)
    e_thr = float(np.quantile(own[:, 0], 0.95))
    ref = LandingReference().fit(data, rng=0)
    fig = Figure(figsize=(10, 4.2), dpi=110, layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    print(f"| set | Euclidean rule (old) | in-fragment (new) | typical | near | in 0.99 ellipsoid (chi2 / Hotelling) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, S in sets.items():
        d_e = nearest_distances(S, data)[:, 0]
        rep = ref.report(S, name=name)
        a1.scatter(np.linalg.norm(S - data.mean(0), axis=1), d_e, s=3, alpha=0.5, color=colors[name],
                   label=f"{name}: {np.mean(d_e < e_thr):.2f} 'in'")
        a2.scatter(rep.mahalanobis, rep.nn_distances, s=3, alpha=0.5, color=colors[name],
                   label=f"{name}: {rep.in_fragment_rate:.2f} in")
        from scipy import stats

        chi = float(np.mean(rep.mahalanobis**2 <= stats.chi2.ppf(0.99, DIM)))
        print(f"| {name} | {np.mean(d_e < e_thr):.3f} | {rep.in_fragment_rate:.3f} | {rep.typical_rate:.3f} | "
              f"{rep.near_rate:.3f} | {chi:.3f} / {rep.frac_in_ellipsoid:.3f} |")
    print(f"held-out rows: in-fragment {ref.data_in_fragment_rate_:.3f}, in ellipsoid {ref.data_frac_in_ellipsoid_:.3f}, "
          f"band {ref.typical_band_[0]:.2f}..{ref.typical_band_[1]:.2f}, threshold {ref.nn_threshold_:.2f}, "
          f"Euclidean threshold {e_thr:.2f}, tr(Sigma)^0.5 {np.sqrt(np.trace(np.cov(data.T))):.1f}")
    a1.axhline(e_thr, color="k", lw=0.8, ls="--")
    a1.set_xscale("log")
    a1.set_xlabel("|z - mean| (Euclidean)")
    a1.set_ylabel("distance to the nearest data row (Euclidean)")
    a1.set_title("Old rule: Euclidean nearest neighbour\n(dashed: 0.95 quantile of the data's own)", fontsize=9)
    a1.legend(fontsize=7, markerscale=3)
    lo, hi = ref.typical_band_
    a2.axvspan(lo, hi, color="0.9", zorder=0)
    a2.axhline(ref.nn_threshold_, color="k", lw=0.8, ls="--")
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("Mahalanobis radius (whitened by the fit rows)")
    a2.set_ylabel("whitened distance to the nearest fit row")
    a2.set_title("landing_report: typical (grey band) and near (below dashed),\nboth set on held-out rows", fontsize=9)
    a2.legend(fontsize=7, markerscale=3)
    out = ROOT / "docs" / "img" / "landing-rule.png"
    fig.savefig(out)
    print("wrote", out)


if __name__ == "__main__":
    main()
