"""Acceptance test of the learned priors (issue 20), pre-registered before any run.

Pre-registered 2026-12-02 06:10 UTC (also /work/notes/prereg-D.md); not changed after seeing
results. If the rule fails, the test fails (or is an xfail that prints the numbers) and the
issue stays open.

**Clouds** (D = 64 and D = 256; ``_cloud``). The structure (rotation, offset) comes from
``default_rng(1000 + D)``. k = D / 8 curved pairs (2k = D / 4 curved axes): even pairs are
rings (angle U(0, 2 pi), radius 1 + 0.1 N(0, 1)), odd pairs bananas (a ~ N(0, 1),
b = (a^2 - 1) / sqrt(2) + 0.3 N(0, 1)); each curved coordinate standardised by its exact
standard deviation and multiplied by 3 (variance 9). The other 3D / 4 axes have variance 1:
the first half t3 (``standard_t(3) / sqrt(3)``), the second half centred, standardised
lognormal ``exp(0.75 g)``. Then ``z = c Q + offset``, Q Haar-random orthogonal, offset
~ N(2, 1) per component. The curved axes carry 75 % of the total variance; a 10-component
Gaussian mixture cannot represent a product of D / 8 independent rings and bananas.

**Sizes and seeds.** Rows ``_cloud(n_fit + 2000, D, default_rng(0))`` split in order into
fit rows (3,000 for D = 64, 4,000 for D = 256), 1,000 held-out rows, 1,000 fresh rows (the
noise floor). Every generator is fitted on the fit rows with ``rng=1``: ``flow`` and
``diffusion`` with their defaults except ``progress=False`` and ``epochs=60``; ``gmm`` and
``mvn`` with their defaults. m = 1,000 samples per generator and sample seed; sample seeds
2, 3, 4.

**Statistic.** Unbiased MMD^2 with the Gaussian kernel ``exp(-|x - y|^2 / (2 h^2))`` in the
full latent space (all D coordinates, Euclidean), h = the median pairwise distance of the
held-out rows; a generator's score is the mean MMD^2 to the held-out rows over the 3 sample
seeds. (Not whitened: whitening weighs every axis equally, so the curved 75 % of the variance
would count as 25 % of the axes. Reported, not in the rule: the same statistic on all D
whitened axes, kde and mvn, and the fresh-rows floor.)

**Decision rule** (each D; all must hold):

1. score(flow) < score(gmm) and score(diffusion) < score(gmm);
2. ``landing_report(samples, fit + held-out rows, n_reference=1000, rng=0)`` of 1,000
   samples (seed 2): ``|in_fragment_rate - data_in_fragment_rate| <= 0.05`` for both priors;
3. the median whitened distance of 1,000 samples (seed 2) to the nearest fit row is at least
   0.8 times the held-out rows' median distance to the nearest fit row (no memorisation).

Priors were tuned only on a development draw (data seed 100, fit seed 101, sample seed 102).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist
from scipy.stats import ortho_group

from latentscope.neighbors import nearest_distances
from latentscope.samplers import landing_report, make_sampler

pytestmark = pytest.mark.slow

N_FIT = {64: 3000, 256: 4000}
N_HELD = 1000
M = 1000
SAMPLE_SEEDS = (2, 3, 4)


def _cloud(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Rings and bananas (75 % of the variance) with t3 and lognormal axes, rotated and offset."""
    srng = np.random.default_rng(1000 + dim)
    Q = ortho_group.rvs(dim, random_state=srng)
    offset = srng.normal(2.0, 1.0, size=dim)
    k = dim // 8
    cols = []
    for p in range(k):
        if p % 2 == 0:  # ring: E r^2 = 1.01, each coordinate has variance 1.01 / 2
            a = rng.uniform(0, 2 * np.pi, n)
            r = 1 + 0.1 * rng.standard_normal(n)
            x, y = r * np.cos(a) / np.sqrt(1.01 / 2), r * np.sin(a) / np.sqrt(1.01 / 2)
        else:  # banana: var b = 1 + 0.09
            x = rng.standard_normal(n)
            y = ((x**2 - 1) / np.sqrt(2) + 0.3 * rng.standard_normal(n)) / np.sqrt(1.09)
        cols += [3 * x, 3 * y]
    rest = dim - 2 * k
    n_t = rest // 2
    t3 = rng.standard_t(3, size=(n, n_t)) / np.sqrt(3)
    s = 0.75
    m_ln, sd_ln = np.exp(s**2 / 2), np.sqrt((np.exp(s**2) - 1) * np.exp(s**2))
    ln = (np.exp(s * rng.standard_normal((n, rest - n_t))) - m_ln) / sd_ln
    c = np.column_stack(cols + [t3, ln])
    return c @ Q + offset


def _mmd2(x: np.ndarray, y: np.ndarray, h: float) -> float:
    """Unbiased MMD^2 with a Gaussian kernel of bandwidth h."""
    g = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * h * h))  # noqa: E731
    kxx, kyy = g(x, x), g(y, y)
    n, m = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * g(x, y).mean())


def _whitener(fit: np.ndarray):
    mu = fit.mean(0)
    lam, V = np.linalg.eigh(np.cov(fit, rowvar=False))
    W = V / np.sqrt(np.maximum(lam, 1e-12 * lam.max()))
    return lambda a: (np.asarray(a, float) - mu) @ W


def _generators(fit: np.ndarray, fit_seed: int, epochs: int = 60) -> dict:
    return {
        "flow": make_sampler("flow", epochs=epochs, progress=False).fit(fit, rng=fit_seed),
        "diffusion": make_sampler("diffusion", epochs=epochs, progress=False).fit(fit, rng=fit_seed),
        "gmm": make_sampler("gmm").fit(fit, rng=fit_seed),
        "mvn": make_sampler("mvn").fit(fit, rng=fit_seed),
        "kde": make_sampler("kde").fit(fit, rng=fit_seed),
    }


def evaluate(dim: int, data_seed: int = 0, fit_seed: int = 1, sample_seeds=SAMPLE_SEEDS, epochs: int = 60) -> dict:
    """Every figure of the pre-registered rule for one cloud (also used by the development runs)."""
    Z = _cloud(N_FIT[dim] + 2 * N_HELD, dim, np.random.default_rng(data_seed))
    fit, held, fresh = Z[:N_FIT[dim]], Z[N_FIT[dim]:N_FIT[dim] + N_HELD], Z[N_FIT[dim] + N_HELD:]
    wh = _whitener(fit)
    h = float(np.median(pdist(held)))
    hw = float(np.median(pdist(wh(held))))
    gens = _generators(fit, fit_seed, epochs)
    out: dict = {"score": {}, "score_whitened": {}, "in_fragment": {}, "memorisation": {}, "fit_s": {}}
    for name, s in gens.items():
        draws = [s.sample(M, rng=seed) for seed in sample_seeds]
        out["score"][name] = float(np.mean([_mmd2(d, held, h) for d in draws]))
        out["score_whitened"][name] = float(np.mean([_mmd2(wh(d), wh(held), hw) for d in draws]))
        if name in ("flow", "diffusion"):
            rep = landing_report(draws[0], np.concatenate([fit, held]), n_reference=N_HELD, rng=0)
            out["in_fragment"][name] = (float(rep.in_fragment_rate), float(rep.data_in_fragment_rate))
            d = np.median(nearest_distances(wh(draws[0]), wh(fit), k=1))
            ref = np.median(nearest_distances(wh(held), wh(fit), k=1))
            out["memorisation"][name] = (float(d), float(ref))
            out["fit_s"][name] = float(s.fit_seconds_)
    out["score"]["fresh"] = _mmd2(fresh, held, h)
    out["score_whitened"]["fresh"] = _mmd2(wh(fresh), wh(held), hw)
    return out


def _check(res: dict) -> list[str]:
    failed = []
    sc = res["score"]
    for name in ("flow", "diffusion"):
        if not sc[name] < sc["gmm"]:
            failed.append(f"rule 1: MMD^2 {name} {sc[name]:.3e} >= gmm {sc['gmm']:.3e}")
        rate, data = res["in_fragment"][name]
        if abs(rate - data) > 0.05:
            failed.append(f"rule 2: {name} in-fragment {rate:.3f} vs held-out {data:.3f}")
        d, ref = res["memorisation"][name]
        if d < 0.8 * ref:
            failed.append(f"rule 3: {name} median nearest-fit distance {d:.3f} < 0.8 x held-out {ref:.3f}")
    return failed


def _fmt(res: dict) -> str:
    return "; ".join(f"{k}: " + ", ".join(f"{n}={v:.3e}" if isinstance(v, float) else f"{n}={v}" for n, v in d.items())
                     for k, d in res.items())


@pytest.mark.parametrize("dim", [64, 256])
def test_learned_priors_beat_gmm_on_the_preregistered_rule(dim):
    # Rules 2 and 3 (in-fragment rate, memorisation) are asserted. Rule 1 (closer to the
    # held-out rows than gmm) failed when first run, 2026-12-02, with these numbers
    # (MMD^2 in the full space, mean of 3 sample seeds; fresh rows = noise floor):
    #   D = 64:  flow 6.00e-4, diffusion 1.00e-3, gmm 6.1e-5, mvn -2.1e-5, kde -6.4e-5, fresh 1.5e-4
    #   D = 256: flow 1.88e-4, diffusion 3.29e-4, gmm 8.8e-5, mvn 7.7e-6, kde 3.3e-6, fresh 6.9e-5
    # Rules 2 and 3 held (in-fragment 0.957 / 0.995 vs held-out 0.951 at D = 64, 0.999 / 1.000
    # vs 0.951 at D = 256; nearest-fit distances 1.01 / 1.01 and 1.02 / 0.99 of held-out's).
    # Both priors under-disperse (on the development draw their whitened sample variance is
    # about 0.9 of the fit rows'), and the statistic cannot tell gmm, or even one Gaussian
    # (mvn), from the data at n = 1,000 (both at the fresh-rows floor). So the test is an
    # xfail that reports the numbers, and issue 20 stays open; if rule 1 ever holds, it passes.
    res = evaluate(dim)
    print(f"D={dim}: {_fmt(res)}")
    failed = _check(res)
    hard = [f for f in failed if not f.startswith("rule 1")]
    assert not hard, f"D={dim}: " + " | ".join(hard) + f"\n{_fmt(res)}"
    if failed:
        pytest.xfail(f"D={dim}: pre-registered rule 1 fails: " + " | ".join(failed))
