"""Style targets files: round trip, refusals, and a run that uses them."""

import keras
import numpy as np
import pytest

from nst_tf.errors import ConfigError
from nst_tf.io.targets import StyleTargets, check_compatible, load_style_targets
from nst_tf.settings.config import Config

RNG = np.random.default_rng(5)
LAYERS = ("block1_conv1", "block2_conv1")


def _targets():
    channels = {"block1_conv1": 64, "block2_conv1": 128}
    grams = {name: RNG.normal(size=(1, c, c)).astype(np.float32) for name, c in channels.items()}
    return StyleTargets(grams, 256, "mean", "ab" * 32)


def test_round_trip(tmp_path):
    targets = _targets()
    targets.save(str(tmp_path / "t.npz"))
    loaded = load_style_targets(str(tmp_path / "t.npz"))
    assert list(loaded.grams) == list(LAYERS)
    for name in LAYERS:
        np.testing.assert_array_equal(loaded.grams[name], targets.grams[name])
    assert (loaded.size, loaded.normalization, loaded.weights_sha256) == (256, "mean", "ab" * 32)
    assert [p.name for p in tmp_path.iterdir()] == ["t.npz"]  # no temp file left


@pytest.mark.parametrize(
    "content, message",
    [(b"not a zip", "not a style targets file"), (None, "no such file")],
)
def test_bad_files_are_refused(tmp_path, content, message):
    path = tmp_path / "t.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_style_targets(str(path))


def test_a_pickle_inside_is_never_loaded(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, layers=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ConfigError, match="not a style targets file"):
        load_style_targets(str(path))


def test_incompatible_targets_are_refused():
    targets = _targets()
    check_compatible(targets, LAYERS, "mean", "ab" * 32)
    with pytest.raises(ConfigError, match="lack layers block3_conv1"):
        check_compatible(targets, LAYERS + ("block3_conv1",), "mean", "ab" * 32)
    with pytest.raises(ConfigError, match="normalization=mean"):
        check_compatible(targets, LAYERS, "course", "ab" * 32)
    with pytest.raises(ConfigError, match="other VGG19 weights"):
        check_compatible(targets, LAYERS, "mean", "cd" * 32)
    with pytest.raises(ConfigError, match="--pooling=max"):
        check_compatible(targets, LAYERS, "mean", "ab" * 32, pooling="avg")


def test_a_run_from_targets_matches_style_statistics():
    """Gram targets from an image drive the same optimisation as the image itself."""
    from nst_tf.core.losses import gram_matrix
    from nst_tf.engine.stylizer import stylize_arrays
    from nst_tf.model.features import FeatureExtractor

    keras.utils.set_random_seed(0)
    model = FeatureExtractor(list(LAYERS), vgg_weights=None)
    config = Config(
        size=32, min_size=0, steps=4, content_layers=("block2_conv1",), style_layers=LAYERS
    )
    content = RNG.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    style = RNG.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    features = model(style[None])
    grams = {name: gram_matrix(features[name]).numpy() for name in config.style_layers}
    from_image = stylize_arrays(content, style, config, model=model)
    from_targets = stylize_arrays(content, grams, config, model=model)
    np.testing.assert_allclose(from_targets, from_image, atol=0.05)
