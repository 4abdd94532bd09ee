"""The learned priors of the plugin (``flow``, ``diffusion``) on a curved, heavy-tailed 64-D cloud:
registration, landing, memorisation, saving, parameters. The pre-registered acceptance test
(closer to held-out data than gmm, 64-D and 256-D) is ``test_priors_synthetic.py``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentscope.neighbors import nearest_distances
from latentscope.samplers import all_samplers, landing_report, load_sampler, make_sampler, sampler_plugins


def _cloud(n, rng, dim=64):
    """A curved 6-D surface in 64-D: multivariate t5 coordinates u, z = uA + 2 tanh(u)^2 B + lognormal noise."""
    g = rng.standard_normal((n, 6))
    u = g / np.sqrt(rng.chisquare(5, size=(n, 1)) / 5)
    crng = np.random.default_rng(123)
    A, B = crng.standard_normal((6, dim)), crng.standard_normal((6, dim))
    z = u @ A + 2.0 * (np.tanh(u) ** 2) @ B
    z += 0.15 * (np.exp(0.5 * rng.standard_normal((n, dim))) - np.exp(0.125))
    return z + 2.0


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    Z = _cloud(3000, rng).astype(np.float32)
    fit, test = Z[:2200], Z[2200:]
    priors = {
        "flow": make_sampler("flow", epochs=40, patience=8, progress=False).fit(fit, rng=1),
        "diffusion": make_sampler("diffusion", epochs=20, patience=8, progress=False).fit(fit, rng=1),
    }
    return fit, test, priors


def test_plugin_registers_flow_and_diffusion():
    assert sampler_plugins()["flow"] == "latentscope_keras_ae._flow:FlowSampler"
    assert {"flow", "diffusion"} <= set(all_samplers())


@pytest.mark.slow
def test_priors_land_in_the_fragment_like_held_out_data(fitted):
    # in-fragment rate within 0.05 of the held-out rows' own rate (both calibrated on the same split)
    fit, test, priors = fitted
    for name in ("flow", "diffusion"):
        S = priors[name].sample(800, rng=2)
        rep = landing_report(S, np.concatenate([fit, test]), n_reference=800, rng=0)
        assert abs(rep.in_fragment_rate - rep.data_in_fragment_rate) <= 0.05, (name, rep.in_fragment_rate)


@pytest.mark.slow
def test_priors_do_not_memorise_training_codes(fitted):
    # samples are no nearer to the training codes than held-out rows are (whitened distances)
    fit, test, priors = fitted
    mu = fit.mean(0)
    lam, V = np.linalg.eigh(np.cov(fit, rowvar=False))
    W = V / np.sqrt(lam)
    ref = np.median(nearest_distances((test - mu) @ W, (fit - mu) @ W, k=1))
    for name in ("flow", "diffusion"):
        d = nearest_distances((priors[name].sample(800, rng=4) - mu) @ W, (fit - mu) @ W, k=1)
        assert np.median(d) > 0.8 * ref, (name, np.median(d), ref)


@pytest.mark.slow
def test_saved_prior_repeats_its_samples_without_pickle(fitted, tmp_path):
    _, _, priors = fitted
    for name in ("flow", "diffusion"):
        s = priors[name]
        assert s.history_["epochs_run"] == len(s.history_["val_loss"]) >= s.best_epoch_ >= 1
        a = s.sample(64, rng=5)
        s.save(tmp_path / name)
        with np.load(tmp_path / f"{name}.npz", allow_pickle=False) as f:
            assert {"weights_", "mean_", "components_", "scales_"} <= set(f.files)
        assert json.loads((tmp_path / f"{name}.json").read_text())["scalars"]["history_"]["loss"]
        b = load_sampler(tmp_path / name).sample(64, rng=5)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(a, s.sample(64, rng=5))


def test_bad_parameters_are_one_line_errors():
    from latentscope.exceptions import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="steps must be <= 1000"):
        make_sampler("diffusion", steps=5000).fit(np.zeros((50, 4)) + np.arange(4), rng=0)
    X = np.random.default_rng(0).standard_normal((50, 4))
    with pytest.raises(InvalidParameterError, match="val_fraction must be a number in"):
        make_sampler("flow", val_fraction=0.9).fit(X, rng=0)
    with pytest.raises(InvalidParameterError, match=r"weight_decay must be a number in \[0, 1\); got -0.1"):
        make_sampler("flow", weight_decay=-0.1).fit(X, rng=0)
    with pytest.raises(InvalidParameterError, match=r"dropout must be a number in \[0, 1\); got 1.5"):
        make_sampler("diffusion", dropout=1.5).fit(X, rng=0)
    with pytest.raises(InvalidParameterError, match='hidden must be a positive int or "auto"; got .wide.'):
        make_sampler("flow", hidden="wide").fit(X, rng=0)


@pytest.mark.slow
def test_auto_width_scales_with_the_training_rows(fitted):
    from latentscope_keras_ae._priors import auto_hidden

    assert [auto_hidden("auto", n, 128) for n in (100, 1980, 2700, 4104, 200000)] == [32, 64, 64, 128, 128]
    assert auto_hidden("auto", 200000, 256) == 256 and auto_hidden(96, 10, 256) == 96
    _, _, priors = fitted  # 2,200 fit rows, 1,980 of them trained on
    assert priors["flow"].hidden_ == priors["diffusion"].hidden_ == 64
    assert priors["flow"].to_dict()["params"]["hidden"] == "auto"
