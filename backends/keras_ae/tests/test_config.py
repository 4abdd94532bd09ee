"""AEConfig, presets and the filters option (no Keras needed)."""

from __future__ import annotations

import pytest

from latentscope.exceptions import InvalidParameterError
from latentscope_keras_ae import PRESETS, AEConfig, preset_config
from latentscope_keras_ae._config import parse_filters


def test_preset_config_reference_values():
    # The reference AE of the brief.
    cfg = preset_config("celeba96")
    assert cfg.image_shape == (96, 96, 3)
    assert cfg.z_dim == 256
    assert cfg.encoder_filters == (64, 64, 128, 128)
    assert cfg.decoder_filters == (128, 128, 64, 64)
    assert (cfg.loss, cfg.learning_rate, cfg.epochs) == ("bce", 5e-4, 24)
    assert cfg.encoder_flops() < 0.1e9  # the GPU goal assumes < 0.1 GFLOP per image
    assert set(PRESETS) >= {"celeba96", "small"}


def test_preset_config_unknown_name_lists_presets():
    with pytest.raises(InvalidParameterError, match=r"preset must be one of \['celeba96', 'small'\]; got 'huge'"):
        preset_config("huge")


def test_aeconfig_rejects_image_size_not_divisible():
    with pytest.raises(InvalidParameterError, match=r"divisible by 2\*\*4 = 16"):
        AEConfig(image_size=(40, 40))


def test_aeconfig_rejects_mismatched_decoder_filters():
    with pytest.raises(InvalidParameterError, match="decoder_filters must hold 4"):
        AEConfig(decoder_filters=(8, 8))


def test_aeconfig_without_output_conv_needs_rgb_last():
    with pytest.raises(InvalidParameterError, match=r"decoder_filters\[-1\] must be 3"):
        AEConfig(output_conv=False)
    assert AEConfig(output_conv=False, decoder_filters=(128, 64, 32, 3)).decoder_filters[-1] == 3


@pytest.mark.parametrize("bad", [{"loss": "l1"}, {"z_dim": 0}, {"learning_rate": -1.0}, {"batch_norm_momentum": 1.0}])
def test_aeconfig_rejects_bad_values(bad):
    with pytest.raises(InvalidParameterError, match=next(iter(bad))):
        AEConfig(**bad)


def test_aeconfig_dict_roundtrip():
    cfg = preset_config("small").replace(z_dim=16)
    assert AEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InvalidParameterError, match="unknown configuration keys"):
        AEConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("64,64,128,128", ((64, 64, 128, 128), (128, 128, 64, 64))),
        ("8,16:32,4", ((8, 16), (32, 4))),
        ("8,16/32,4", ((8, 16), (32, 4))),
        ([8, 16], ((8, 16), (16, 8))),
        (((8, 16), (4, 3)), ((8, 16), (4, 3))),
    ],
)
def test_parse_filters_spellings(value, expected):
    assert parse_filters(value) == expected


def test_parse_filters_rejects_garbage():
    with pytest.raises(InvalidParameterError, match="filters"):
        parse_filters("8,x")


def test_loading_the_plugin_class_imports_no_framework():
    # `latentscope backends` loads the class; that must not pay for TensorFlow's import
    import json
    import subprocess
    import sys

    code = ("import sys, json; from latentscope.backends import get_backend; cls = get_backend('keras-ae'); "
            "print(json.dumps([cls.name, sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'keras', 'tensorflow', 'jax', 'torch'})]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    name, frameworks = json.loads(out.stdout.strip().splitlines()[-1])
    assert name == "keras-ae" and frameworks == []
