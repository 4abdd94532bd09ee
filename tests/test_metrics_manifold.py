"""Improved precision/recall and density/coverage on distributions with known answers.

Tolerances. Density and coverage have distribution-free expectations (Naeem et al. 2020):
for two samples of one continuous distribution, E[density] = 1 exactly and
E[coverage] = 1 - prod_{i=1..k} (N - i) / (N + M - i). Precision and recall have no such
closed form (the union of k = 3 balls leaves gaps that grow with the dimension), so their
bands come from a simulation with the same sizes (60 seeds, n = 1000, our code):

=====================================  =============  =============
case (2-D unless said)                 precision      recall
=====================================  =============  =============
one Gaussian, both sets                0.980 +- 0.007 0.980 +- 0.006
one Gaussian, both sets, 8-D           0.888 +- 0.012 0.888 +- 0.012
fake = Gaussian restricted to x0 > 0   0.980 +- 0.009 0.525 +- 0.019
real = Gaussian restricted to x0 > 0   0.521 +- 0.018 0.982 +- 0.009
=====================================  =============  =============

(density 0.997 +- 0.017 and coverage 0.971 +- 0.008 for one Gaussian, 2-D). The
tests below allow about four simulated standard deviations. The recall of a half-space
restriction is the share of real mass in the restricted support (1/2), scaled by the
single-distribution recall, plus a strip of about one kNN radius beyond the cut.
"""

from __future__ import annotations

import numpy as np
import pytest

from latentscope.exceptions import InvalidParameterError
from latentscope.metrics import density_coverage, manifold_metrics, precision_recall

N = 1000


def _half_gaussian(rng, n, dim=2):
    x = rng.normal(size=(3 * n, dim))
    return x[x[:, 0] > 0][:n]


def _expected_coverage(n_real, n_fake, k):
    return 1.0 - np.prod([(n_real - i) / (n_real + n_fake - i) for i in range(1, k + 1)])


def test_precision_recall_identical_distributions_are_high_but_below_one():
    rng = np.random.default_rng(10)
    pr2 = precision_recall(rng.normal(size=(N, 2)), rng.normal(size=(N, 2)), k=3)
    assert 0.95 <= pr2.precision < 1.0 and 0.95 <= pr2.recall < 1.0
    assert (pr2.k, pr2.n_real, pr2.n_fake, pr2.method) == (3, N, N, "exact")
    pr8 = precision_recall(rng.normal(size=(N, 8)), rng.normal(size=(N, 8)), k=3)
    assert 0.84 <= pr8.precision <= 0.94 and 0.84 <= pr8.recall <= 0.94
    assert pr8.precision < pr2.precision and pr8.recall < pr2.recall


def test_precision_recall_fake_support_inside_real_support():
    # fake: the real Gaussian restricted to x0 > 0 -> precision ~ 1, recall ~ 1/2
    rng = np.random.default_rng(11)
    pr = precision_recall(rng.normal(size=(N, 2)), _half_gaussian(rng, N // 2), k=3)
    assert pr.precision >= 0.94
    assert 0.45 <= pr.recall <= 0.60


def test_precision_recall_real_support_inside_fake_support():
    # the same pair swapped: precision ~ 1/2, recall ~ 1
    rng = np.random.default_rng(12)
    pr = precision_recall(_half_gaussian(rng, N // 2), rng.normal(size=(N, 2)), k=3)
    assert 0.45 <= pr.precision <= 0.60
    assert pr.recall >= 0.94


def test_precision_is_exactly_one_for_a_subset_of_the_real_points():
    # every generated point is a real point: inside its own ball (distance 0)
    rng = np.random.default_rng(13)
    real = rng.uniform(size=(600, 3))
    pr = precision_recall(real, real[rng.choice(600, 200, replace=False)])
    assert pr.precision == 1.0 and pr.recall < 1.0


def test_density_coverage_identical_distributions_match_theory():
    rng = np.random.default_rng(14)
    dc = density_coverage(rng.normal(size=(N, 2)), rng.normal(size=(N, 2)), k=5)
    assert dc.density == pytest.approx(1.0, abs=0.07)
    assert dc.coverage == pytest.approx(_expected_coverage(N, N, 5), abs=0.03)
    # unequal sizes change the expected coverage: M = N/4 -> 1 - (4/5)^5 ~ 0.67
    dc = density_coverage(rng.normal(size=(N, 2)), rng.normal(size=(N // 4, 2)), k=5)
    assert dc.coverage == pytest.approx(_expected_coverage(N, N // 4, 5), abs=0.05)
    assert dc.density == pytest.approx(1.0, abs=0.12)


def test_density_coverage_for_a_restricted_generator():
    rng = np.random.default_rng(15)
    dc = density_coverage(rng.normal(size=(N, 2)), _half_gaussian(rng, N // 2), k=5)
    assert dc.density == pytest.approx(1.0, abs=0.08)  # where it generates, it matches the density
    assert 0.45 <= dc.coverage <= 0.58  # but covers only half of the real balls


def test_coverage_not_density_reveals_mode_collapse():
    # generated points crowd the mode: each still sits in about k real balls (radii adapt
    # to the local density), so density stays near 1, but most real balls stay empty
    rng = np.random.default_rng(16)
    dc = density_coverage(rng.normal(size=(N, 4)), 0.3 * rng.normal(size=(N, 4)), k=5)
    assert dc.density > 0.8 and dc.coverage < 0.5
    # generated points off the real support: density and coverage both collapse
    far = density_coverage(rng.normal(size=(N, 4)), rng.normal(size=(N, 4)) + 4.0, k=5)
    assert far.density < 0.05 and far.coverage < 0.05


def test_manifold_metrics_do_not_depend_on_the_block_budget():
    rng = np.random.default_rng(17)
    real, fake = rng.normal(size=(300, 5)), rng.normal(size=(250, 5)) + 0.3
    big = manifold_metrics(real, fake, max_bytes=64 << 20)
    tiny = manifold_metrics(real, fake, max_bytes=1024)
    assert big == tiny
    assert big[0] == precision_recall(real, fake) and big[1] == density_coverage(real, fake)


def test_manifold_metrics_reject_bad_k():
    x = np.zeros((4, 2)) + np.arange(4)[:, None]
    with pytest.raises(InvalidParameterError, match="k_pr must be smaller than the number of rows .* \\(4\\); got 4"):
        precision_recall(x, x, k=4)
    with pytest.raises(InvalidParameterError, match="k_dc must be an integer >= 1; got 0"):
        density_coverage(x, x, k=0)
    with pytest.raises(InvalidParameterError, match="same dimension"):
        precision_recall(x, np.zeros((4, 3)), k=1)


def test_manifold_metrics_reuse_precomputed_real_radii_and_expose_the_inside_mask():
    # one real set scored against several generated sets: passing its radii changes nothing
    from latentscope.neighbors import kth_neighbour_sqdist

    rng = np.random.default_rng(21)
    real = np.exp(rng.normal(size=(400, 4)) * [1.0, 0.6, 0.3, 0.1])  # lognormal marginals
    fake = rng.standard_t(3, size=(300, 4)) * 0.5 + 1.0
    r3, r5 = kth_neighbour_sqdist(real, [3, 5])
    plain = manifold_metrics(real, fake)
    reused = manifold_metrics(real, fake, real_sqradii={3: r3, 5: r5})
    assert plain == reused
    inside = reused[0].fake_inside
    assert inside.shape == (300,) and inside.dtype == bool and inside.mean() == reused[0].precision
    with pytest.raises(InvalidParameterError, match="real_sqradii holds no radii for k = 5"):
        manifold_metrics(real, fake, real_sqradii={3: r3})
