"""--style_strength: the style weight calibrated from the terms measured on the photo.

Small images and the random-weight VGG19 (conftest's `model`); the calibration is checked
against numpy computations of the two magnitudes, and the dial's effect on short runs.
"""

import numpy as np
import pytest
import scipy.linalg
from conftest import LAYERS

from nst_tf.core.balance import REFERENCE_BALANCE, calibrated_style_weight
from nst_tf.engine.stylizer import Stylizer, resize_images
from nst_tf.errors import ConfigError
from nst_tf.settings.config import RECIPE, Config, validate

RNG = np.random.default_rng(26)
CONTENT = RNG.uniform(0, 255, (24, 32, 3)).astype(np.float32)
# Two styles far apart: coarse noise, and a smooth colour ramp.
NOISE = np.kron(RNG.uniform(0, 255, (8, 8, 3)), np.ones((4, 4, 1))).astype(np.float32)
RAMP = np.dstack(
    [*np.meshgrid(np.linspace(20, 230, 32), np.linspace(0, 90, 32)), np.full((32, 32), 128.0)]
)
RAMP = RAMP.astype(np.float32)
BASE = dict(size=32, min_size=0, **LAYERS)


def _features(model, image):
    photo = resize_images(image[None], *image.shape[:2])
    return {name: value.numpy().astype(np.float64)[0] for name, value in model(photo).items()}


def _gram(f):
    flat = f.reshape(-1, f.shape[-1])
    return flat.T @ flat / flat.shape[0]


def _w2(style, generated):
    """crowsonkb's squared 2-Wasserstein distance of fitted Gaussians, over the channels."""
    a, b = (f.reshape(-1, f.shape[-1]) for f in (style, generated))
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a.T, bias=True), np.cov(b.T, bias=True)
    root = scipy.linalg.sqrtm(cov_a)
    cross = scipy.linalg.sqrtm(root @ cov_b @ root).real
    distance = (
        np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(cross)
    )
    return distance / a.shape[1]


def _magnitudes(model, style, loss):
    """(S, M) by numpy: the style term of the photo and the content term of no features."""
    photo, painting = _features(model, CONTENT), _features(model, style)
    layers = LAYERS["style_layers"]
    if loss == "gram":
        per_layer = [np.mean((_gram(photo[n]) - _gram(painting[n])) ** 2) for n in layers]
    else:
        per_layer = [_w2(painting[n], photo[n]) for n in layers]
    (content_layer,) = LAYERS["content_layers"]
    return np.mean(per_layer), np.mean(photo[content_layer] ** 2)  # equal layer weights


@pytest.mark.parametrize("loss", ["gram", "wasserstein"])
def test_the_calibrated_weight_is_the_formula_on_numpy_magnitudes(model, loss):
    config = Config(style_loss=loss, style_strength=1.5, content_weight=2.0, **BASE)
    stylizer = Stylizer(config, model)
    targets = stylizer.targets(stylizer.prepare(CONTENT, NOISE), 32)
    gap, scale = _magnitudes(model, NOISE, loss)
    expected = 1.5 * REFERENCE_BALANCE * 2.0 * scale / gap
    assert float(targets.style_weight) == pytest.approx(expected, rel=2e-3)
    assert calibrated_style_weight(1.5, 2.0, gap, scale) == pytest.approx(expected, rel=1e-12)


def test_the_start_balance_is_the_same_for_every_style_and_loss(model):
    """weight * S / (content_weight * M) at the photo, from the compiled step's terms, is
    strength * REFERENCE_BALANCE for two styles and both losses, whose raw style terms
    differ by orders of magnitude."""
    ratios, raw = [], []
    for loss in ("gram", "wasserstein"):
        for style in (NOISE, RAMP):
            stylizer = Stylizer(Config(style_loss=loss, style_strength=0.7, **BASE), model)
            targets = stylizer.targets(stylizer.prepare(CONTENT, style), 32)
            terms = stylizer.evaluate(CONTENT[None], targets)
            _, scale = _magnitudes(model, style, loss)
            assert terms["content"] == pytest.approx(0.0, abs=1e-3 * scale)
            ratios.append(float(targets.style_weight) * terms["style"] / scale)
            raw.append(terms["style"])
    np.testing.assert_allclose(ratios, 0.7 * REFERENCE_BALANCE, rtol=2e-3)
    assert max(raw) / min(raw) > 100


def _run(model, strength, steps=15, **settings):
    config = Config(style_strength=strength, steps=steps, checkpoint_every=0, **BASE, **settings)
    stylizer = Stylizer(config, model)
    last = {}
    image = stylizer.stylize(CONTENT, NOISE, callbacks=[lambda p: last.update(p.losses)])
    return image, last


def test_strength_zero_keeps_the_photo(model):
    photo, _ = _run(model, 0.0)
    assert np.abs(photo - CONTENT).max() < 1.0
    styled, _ = _run(model, 0.01)
    assert np.abs(styled - CONTENT).max() > 20.0


def test_a_stronger_dial_moves_the_result_towards_the_style(model):
    stylizer = Stylizer(Config(style_strength=1.0, **BASE), model)
    targets = stylizer.targets(stylizer.prepare(CONTENT, NOISE), 32)
    gap = stylizer.evaluate(CONTENT[None], targets)["style"]
    closed, content = [], []
    # Small strengths: REFERENCE_BALANCE is VGG19's, and on this random network and noise
    # photo the default balance already closes 98 % of the style gap.
    for strength in (1e-4, 1e-3, 1e-2, 1e-1):
        _, last = _run(model, strength)
        closed.append(1.0 - last["style"] / gap)
        content.append(last["content"])
    assert np.all(np.diff(closed) > 0), closed  # more of the style gap closed
    assert np.all(np.diff(content) > 0), content  # further from the photo's content
    assert 0 < closed[0] and closed[-1] < 1


def test_without_the_dial_the_style_weight_is_the_configured_one(model):
    stylizer = Stylizer(Config(style_weight=0.02, **BASE), model)
    targets = stylizer.targets(stylizer.prepare(CONTENT, NOISE), 32)
    assert targets.style_weight is None
    terms = stylizer.evaluate(np.clip(CONTENT[None] + 9.0, 0, 255), targets)
    assert terms["total"] == pytest.approx(terms["content"] + 0.02 * terms["style"], rel=1e-5)


def test_the_weight_stays_the_first_scales_at_later_scales(model):
    stylizer = Stylizer(Config(style_strength=1.0, size=32, min_size=16, **LAYERS), model)
    inputs = stylizer.prepare(CONTENT, NOISE)
    first = stylizer.targets(inputs, 16).style_weight
    assert stylizer.targets(inputs, 32).style_weight is first
    fresh = Stylizer(Config(style_strength=1.0, size=32, min_size=0, **LAYERS), model)
    at_32 = fresh.targets(fresh.prepare(CONTENT, NOISE), 32).style_weight
    assert float(at_32) != pytest.approx(float(first), rel=1e-3)  # 16 px measures otherwise


def test_a_tiled_scale_calibrates_as_an_untiled_one(model):
    weights = []
    for tile in ("0", "16"):
        config = Config(style_strength=1.0, tile_size=tile, **BASE)
        stylizer = Stylizer(config, model)
        weights.append(float(stylizer.targets(stylizer.prepare(CONTENT, NOISE), 32).style_weight))
    assert weights[1] == pytest.approx(weights[0], rel=1e-4)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(style_strength=-1.0), "--style_strength must be in 0..100, got -1.0"),
        (dict(style_strength=float("nan")), "--style_strength must be in 0..100, got nan"),
        (dict(style_strength=1e3), "--style_strength must be in 0..100, got 1000.0"),
        (dict(style_strength="strong"), "--style_strength must be a number, got 'strong'"),
        (dict(style_strength=1.0, style_weight=0.1), "not both"),
    ],
)
def test_bad_strengths_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError) as err:
        validate(Config(**settings))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_dial_is_part_of_the_recipe():
    assert "style_strength" in Config().of(RECIPE)
    assert Config(style_strength=1.0).of(RECIPE) != Config().of(RECIPE)
