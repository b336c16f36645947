"""The artist's controls, each checked numerically on small images and a random-weight VGG19."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LAYERS
from PIL import Image

from nst_tf.commands.preflight import expand_styles
from nst_tf.core import color
from nst_tf.core.losses import gram_loss, gram_matrix
from nst_tf.engine.stylizer import Stylizer, stylize_arrays
from nst_tf.errors import ConfigError
from nst_tf.model.features import FeatureExtractor
from nst_tf.settings.config import Config, validate

RNG = np.random.default_rng(11)


def _image(h=24, w=32, low=0, high=255):
    return RNG.uniform(low, high, (h, w, 3)).astype(np.float32)


def test_blended_styles_target_the_weighted_gram(model):
    config = validate(Config(style="a.png,b.png", style_blend_weights=(7, 3), **LAYERS))
    stylizer = Stylizer(config, model)
    a, b = _image(), _image()
    targets = stylizer.targets(stylizer.prepare(_image(), [a, b]), 32)
    (group,) = targets.styles
    for name in LAYERS["style_layers"]:
        ga, gb = (gram_matrix(model(image[None])[name]).numpy() for image in (a, b))
        expected = 0.7 * ga + 0.3 * gb
        np.testing.assert_allclose(group.layers[name].gram.numpy(), expected, rtol=1e-4)


def test_style_folders_share_their_entry_weight(tmp_path):
    folder = tmp_path / "styles"
    folder.mkdir()
    for name in ("one.png", "two.jpg"):
        Image.fromarray(_image().astype(np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    single = tmp_path / "single.png"
    Image.fromarray(_image().astype(np.uint8)).save(single)
    config = expand_styles(
        Config(style=f"{folder},{single}", style_blend_weights=(0.6, 0.4), style_scale=(1.0, 2.0))
    )
    assert config.style_paths() == [str(folder / "one.png"), str(folder / "two.jpg"), str(single)]
    assert config.blend_weights(3) == pytest.approx([0.3, 0.3, 0.4])
    assert config.style_scale == (1.0, 1.0, 2.0)
    validate(config)


def test_style_scale_measures_the_style_at_a_relative_size(model):
    content, style = _image(), _image(32, 32)
    base = dict(size=32, min_size=0, steps=1, **LAYERS)
    stylize_arrays(content, style, Config(style_scale=(0.25,), **base), model=model)
    with pytest.raises(ConfigError, match="too small"):  # 32 * 0.02 -> 1 px: block2 needs 2
        stylize_arrays(content, style, Config(style_scale=(0.02,), **base), model=model)
    only_style = dict(base, steps=3, content_weight=0.0, style_weight=1.0, init="noise")
    small = stylize_arrays(content, style, Config(style_scale=(0.5,), **only_style), model=model)
    large = stylize_arrays(content, style, Config(style_scale=(2.0,), **only_style), model=model)
    assert np.abs(small - large).max() > 0.1


@pytest.mark.parametrize("space", color.COLOR_SPACES)
def test_luminance_preservation_keeps_the_content_chroma(model, space):
    content = _image(low=60, high=190)  # colours whose mix stays inside the RGB cube
    style = _image()
    config = Config(
        size=32, min_size=0, steps=3, preserve_color="luminance", color_space=space, **LAYERS
    )
    plain = stylize_arrays(
        content, style, dataclasses.replace(config, preserve_color="none"), model=model
    )
    kept = stylize_arrays(content, style, config, model=model)
    chroma_kept = color.to_space(kept, space)[..., 1:]
    chroma_content = color.to_space(content, space)[..., 1:]
    inside = np.all((kept > 0.5) & (kept < 254.5), axis=-1)
    assert inside.mean() > 0.9
    np.testing.assert_allclose(chroma_kept[inside], chroma_content[inside], atol=1e-3)
    luma = color.to_space(kept, space)[..., 0][inside]
    np.testing.assert_allclose(luma, color.to_space(plain, space)[..., 0][inside], atol=1e-3)


def test_histogram_matching_gives_the_style_the_content_statistics():
    content = _image(48, 48, 80, 170) * np.array([1.0, 0.8, 0.6], np.float32)
    style = np.clip(_image(40, 40, 100, 160) + np.array([0, 0, 60], np.float32), 0, 255)
    matched = color.match_color(style, content).reshape(-1, 3).astype(np.float64)
    reference = content.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(matched.mean(0), reference.mean(0), atol=1e-3)
    np.testing.assert_allclose(
        np.cov(matched, rowvar=False), np.cov(reference, rowvar=False), rtol=1e-3, atol=1e-2
    )


def test_average_pooling_replaces_max_pooling(model):
    avg = FeatureExtractor(["block1_conv1", "block2_conv1"], vgg_weights=None, pooling="avg")
    avg.set_weights(model.get_weights())
    kinds = {layer.__class__.__name__ for layer in avg.vgg.layers}
    assert "AveragePooling2D" in kinds and "MaxPooling2D" not in kinds
    x = _image(16, 16)[None]
    np.testing.assert_allclose(avg(x)["block1_conv1"], model(x)["block1_conv1"], rtol=1e-5)
    block1 = model.vgg.get_layer("block1_conv2")
    probe = keras.Model(model.vgg.input, block1.output)(
        tf.reverse(x, [-1]) - tf.constant([103.939, 116.779, 123.68])
    )
    pooled = probe.numpy().reshape(1, 8, 2, 8, 2, 64).mean(axis=(2, 4))
    kernel, bias = avg.vgg.get_layer("block2_conv1").get_weights()
    padded = np.pad(pooled[0], ((1, 1), (1, 1), (0, 0)))
    expected = np.maximum(
        np.einsum(
            "ijhwc,hwco->ijo",
            np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(0, 1)).transpose(
                0, 1, 3, 4, 2
            ),
            kernel,
        )
        + bias,
        0,
    )
    np.testing.assert_allclose(avg(x)["block2_conv1"].numpy()[0], expected, rtol=1e-3, atol=1e-2)


def test_content_layer_weights_weigh_each_layer(model):
    config = Config(
        content_layers=("block1_conv1", "block2_conv1"),
        content_layer_weights=(2.0, 0.5),
        style_layers=("block1_conv1",),
    )
    stylizer = Stylizer(config, model)
    content, image = _image()[None], _image()[None]
    targets = stylizer.targets(stylizer.prepare(content, content[0]), 32)
    terms = stylizer.evaluate(image, targets)
    from nst_tf.core.losses import content_loss

    expected = 2.0 * content_loss(
        model(content)["block1_conv1"], model(image)["block1_conv1"]
    ) + 0.5 * content_loss(model(content)["block2_conv1"], model(image)["block2_conv1"])
    assert float(terms["content"]) == pytest.approx(float(expected[0]), rel=1e-5)


def test_geometric_style_layer_weights():
    weights = Config(style_layer_weight_exp=0.5).layer_weights()
    raw = [1, 0.5, 0.25, 0.125, 0.0625]
    assert list(weights.values()) == pytest.approx([w / sum(raw) for w in raw])
    assert sum(Config().layer_weights().values()) == pytest.approx(1.0)


def test_init_style_and_noise_ratio(model):
    content, style = _image(), _image(40, 40)
    for_style = Stylizer(Config(init="style", **LAYERS), model)
    inputs = for_style.prepare(content, style)
    start = for_style.start_image(inputs, (24, 32), tf.random.Generator.from_seed(3)).numpy()
    expected_style = tf.image.resize(style[None], (24, 32), method="bicubic", antialias=True)
    np.testing.assert_allclose(start, np.clip(expected_style.numpy(), 0, 255), atol=1e-3)
    noise = tf.random.Generator.from_seed(3).uniform((1, 24, 32, 3), 0.0, 255.0).numpy()
    noisy = Stylizer(Config(init_noise_ratio=0.25, **LAYERS), model)
    blended = noisy.start_image(
        noisy.prepare(content, style), (24, 32), tf.random.Generator.from_seed(3)
    )
    np.testing.assert_allclose(blended.numpy(), 0.75 * content[None] + 0.25 * noise, rtol=1e-5)


def _w2_reference(style_features, generated_features):
    import scipy.linalg

    a = style_features.reshape(-1, style_features.shape[-1]).astype(np.float64)
    b = generated_features.reshape(-1, generated_features.shape[-1]).astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False, bias=True), np.cov(b, rowvar=False, bias=True)
    root_a = scipy.linalg.sqrtm(cov_a).real
    cross = scipy.linalg.sqrtm(root_a @ cov_b @ root_a).real
    w2 = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(cross)
    return w2 / a.shape[-1]


def test_wasserstein_loss_matches_scipy():
    from nst_tf.core import losses

    style = RNG.normal(size=(1, 9, 9, 6)).astype(np.float32) * 2 + 1
    generated = RNG.normal(size=(1, 7, 8, 6)).astype(np.float32)
    mean, cov = losses.feature_statistics(style)
    value = losses.wasserstein_layer_loss(
        mean, losses.sqrtm_psd(cov), cov, *losses.feature_statistics(generated)
    )
    assert float(value[0]) == pytest.approx(_w2_reference(style, generated), rel=1e-3)
    same = losses.wasserstein_layer_loss(mean, losses.sqrtm_psd(cov), cov, mean, cov)
    assert abs(float(same[0])) < 1e-3


def test_wasserstein_style_loss_runs_and_decreases():
    # The trained network: a random one leaves channels dead at random, which makes the
    # covariances singular, where the W2 root has no usable gradient and L-BFGS stalls.
    trained = FeatureExtractor(["block1_conv1", "block2_conv1"])
    config = Config(
        size=64,
        min_size=0,
        steps=8,
        style_loss="wasserstein",
        init="noise",
        content_weight=0.0,
        style_weight=1.0,
        **LAYERS,
    )
    history = []
    images = _image(48, 64), _image(48, 64, low=40, high=200)
    stylize_arrays(*images, validate(config), model=trained, callbacks=[history.append])
    assert history[-1].losses["style"] < 0.5 * history[0].losses["style"]


def test_style_masks_put_each_style_in_its_region(model):
    """Left half: style A; right half: style B. A's statistics are matched on the left only."""
    height, width = 32, 64
    stripes = np.zeros((32, 32, 3), np.float32)
    stripes[:, ::4] = 255  # style A: vertical stripes
    smooth = np.full((32, 32, 3), 128, np.float32) + RNG.normal(0, 3, (32, 32, 3)).astype(
        np.float32
    )
    left = np.zeros((height, width), np.float32)
    left[:, : width // 2] = 1
    config = validate(
        Config(
            size=64,
            min_size=0,
            steps=30,
            style="a.png,b.png",
            style_mask=("l.png", "r.png"),
            init="noise",
            content_weight=0.0,
            style_weight=1.0,
            **LAYERS,
        )
    )
    result = stylize_arrays(
        _image(height, width), [stripes, smooth], config, model=model, masks=[left, 1 - left]
    )
    features = model(result[None])["block1_conv1"]

    def loss(style, mask):
        target = gram_matrix(model(style[None])["block1_conv1"])
        return float(gram_loss(target, gram_matrix(features, mask=mask))[0])

    mask_left = tf.constant(left[None, :, :, None])
    # A's texture is matched where its mask is on, and clearly not where it is off.
    assert loss(stripes, mask_left) < 0.5 * loss(stripes, 1 - mask_left)
    assert loss(smooth, 1 - mask_left) < 0.5 * loss(smooth, mask_left)
