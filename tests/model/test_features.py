"""The feature extractor: layers, preprocessing, truncation, config, frozen weights."""

import keras
import numpy as np
import pytest

from nst_tf import machine
from nst_tf.errors import ConfigError
from nst_tf.model import features
from nst_tf.model.features import IMAGENET_MEAN_BGR, FeatureExtractor

RNG = np.random.default_rng(1)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return FeatureExtractor(["block1_conv1", "block2_conv1", "block4_conv2"], vgg_weights=None)


def test_returns_named_activations_of_any_size(model):
    for height, width in [(32, 32), (40, 24)]:
        images = RNG.uniform(0, 255, (2, height, width, 3)).astype(np.float32)
        features = model(images)
        assert list(features) == ["block1_conv1", "block2_conv1", "block4_conv2"]
        assert features["block1_conv1"].shape == (2, height, width, 64)
        assert features["block2_conv1"].shape == (2, height // 2, width // 2, 128)
        assert features["block4_conv2"].shape == (2, height // 8, width // 8, 512)
        assert all(f.dtype == "float32" for f in features.values())


def test_caffe_preprocessing_matches_numpy(model):
    """block1_conv1 = relu(conv3x3(RGB->BGR minus mean)), 'same' padding."""
    image = RNG.uniform(0, 255, (1, 8, 10, 3)).astype(np.float32)
    kernel, bias = model.vgg.get_layer("block1_conv1").get_weights()
    x = image[0, :, :, ::-1] - np.array(IMAGENET_MEAN_BGR, np.float32)
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    expected = np.zeros((8, 10, 64), np.float64)
    for i in range(8):
        for j in range(10):
            patch = padded[i : i + 3, j : j + 3, :]
            expected[i, j] = np.einsum("hwc,hwco->o", patch, kernel) + bias
    expected = np.maximum(expected, 0)
    np.testing.assert_allclose(
        model(image)["block1_conv1"].numpy()[0], expected, rtol=1e-4, atol=1e-3
    )


def test_network_is_truncated_at_the_deepest_layer():
    small = FeatureExtractor(["block2_conv1", "block1_conv2"], vgg_weights=None)
    names = [layer.name for layer in small.vgg.layers]
    assert "block2_conv1" in names
    assert not any(
        name.startswith(("block2_conv2", "block3", "block4", "block5")) for name in names
    )


def test_unknown_layer_is_refused():
    with pytest.raises(ConfigError, match="block9_conv1"):
        FeatureExtractor(["block9_conv1"], vgg_weights=None)


def test_get_config_round_trips(model):
    config = model.get_config()
    clone = FeatureExtractor.from_config(config)
    assert clone.get_config() == config
    assert clone.layer_names == model.layer_names
    clone.set_weights(model.get_weights())
    image = RNG.uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(
        clone(image)["block4_conv2"].numpy(), model(image)["block4_conv2"].numpy(), rtol=1e-5
    )


def test_weights_are_frozen(model):
    assert model.trainable_weights == []
    assert len(model.non_trainable_weights) > 0


def test_bfloat16_precision_outputs_float32_close_to_float32():
    keras.utils.set_random_seed(3)
    f32 = FeatureExtractor(["block1_conv2"], vgg_weights=None)
    bf16 = FeatureExtractor(["block1_conv2"], vgg_weights=None, precision="bfloat16")
    bf16.set_weights(f32.get_weights())
    image = RNG.uniform(0, 255, (1, 16, 16, 3)).astype(np.float32)
    a, b = f32(image)["block1_conv2"].numpy(), bf16(image)["block1_conv2"].numpy()
    assert b.dtype == np.float32
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()
    assert keras.config.dtype_policy().name == "float32"  # global policy restored


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx avx2 fma{extra}
bogomips\t: 4890.80

processor\t: 1
flags\t\t: fpu sse2 avx avx2 fma{extra}
"""


@pytest.mark.parametrize(
    "extra, bf16, xla_auto",
    [
        ("", False, True),  # AVX2 only: XLA measured faster, bfloat16 emulated
        (" avx512f avx512bw", False, False),
        (" avx512f avx512_bf16", True, False),
        (" avx512f amx_bf16", True, False),
    ],
)
def test_cpu_features_choose_precision_and_xla(tmp_path, monkeypatch, extra, bf16, xla_auto):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=extra))
    flags = features.cpu_flags(str(cpuinfo))
    assert ("avx512f" in flags) == ("avx512f" in extra)
    assert {"avx2", "fma"} <= flags and "flags" not in flags and "bogomips" not in flags
    # The one place the flags are read: the memory estimate reads them too.
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    assert features.cpu_has_bfloat16() is bf16
    assert features.resolve_precision("auto") == ("bfloat16" if bf16 else "float32")
    assert features.resolve_xla("auto") is xla_auto
    assert features.resolve_xla("auto", deterministic=True) is False
    assert features.resolve_xla("on") is True
    assert features.resolve_xla("off") is False


def test_without_cpuinfo_xla_and_bfloat16_stay_off(tmp_path, monkeypatch):
    assert features.cpu_flags(str(tmp_path / "missing")) == set()
    monkeypatch.setattr(machine, "cpu_flags", lambda: set())
    assert features.resolve_xla("auto") is False
    assert features.resolve_precision("auto") == "float32"
