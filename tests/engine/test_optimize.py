"""The scale pyramid, the objective's weighting, the Stylizer and the optimisers on a
small network."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import LAYERS

from nst_tf.core import losses
from nst_tf.core.objective import Targets
from nst_tf.engine.stylizer import Stylizer, scale_sizes, stylize_arrays
from nst_tf.errors import ConfigError
from nst_tf.settings.config import Config

RNG = np.random.default_rng(2)


def _targets(stylizer, content, style):
    """The targets of a content and a style image as they are (no resizing)."""
    objective, model = stylizer.objective, stylizer.model
    content_features = model(content[None])
    groups = objective.style_groups([objective.style_statistics(model(style[None]))], [1.0])
    return Targets({n: content_features[n] for n in objective.content_weights}, groups)


def _images(height=24, width=32):
    content = RNG.uniform(0, 255, (height, width, 3)).astype(np.float32)
    style = RNG.uniform(0, 255, (20, 20, 3)).astype(np.float32)
    return content, style


@pytest.mark.parametrize(
    "min_size, size, expected",
    [
        (0, 512, [512]),
        (512, 512, [512]),
        (256, 512, [256, 362, 512]),
        (128, 300, [128, 181, 256, 300]),
    ],
)
def test_scale_sizes(min_size, size, expected):
    assert scale_sizes(min_size, size) == expected


def test_objective_applies_each_weight_once(model):
    config = Config(
        content_weight=2.0,
        style_weight=3.0,
        tv_weight=5.0,
        style_layer_weights=(0.5, 4.0),
        **LAYERS,
    )
    stylizer = Stylizer(config, model)
    content, style = _images()
    targets = _targets(stylizer, content, style)
    image = RNG.uniform(0, 255, (1, 24, 32, 3)).astype(np.float32)
    terms = stylizer.evaluate(image, targets)
    features = model(image)
    expected_content = float(
        losses.content_loss(model(content[None])["block2_conv1"], features["block2_conv1"])[0]
    )
    gram_style = {
        n: losses.gram_matrix(model(style[None])[n]) for n in ("block1_conv1", "block2_conv1")
    }
    expected_layers = {
        n: float(losses.gram_loss(gram_style[n], losses.gram_matrix(features[n]))[0])
        for n in gram_style
    }
    expected_tv = float(losses.total_variation_loss(image)[0])
    assert terms["content"] == pytest.approx(expected_content, rel=1e-5)
    assert terms["style/block1_conv1"] == pytest.approx(expected_layers["block1_conv1"], rel=1e-5)
    assert terms["style"] == pytest.approx(
        0.5 * expected_layers["block1_conv1"] + 4.0 * expected_layers["block2_conv1"], rel=1e-5
    )
    assert terms["tv"] == pytest.approx(expected_tv, rel=1e-5)
    assert terms["total"] == pytest.approx(
        2 * terms["content"] + 3 * terms["style"] + 5 * terms["tv"], rel=1e-5
    )


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "lbfgs_scipy"])
def test_optimisers_reduce_the_loss_and_keep_pixels_in_range(model, optimizer):
    content, style = _images()
    config = Config(
        optimizer=optimizer,
        size=32,
        min_size=0,
        steps=15,
        learning_rate=5.0,
        init="noise",
        **LAYERS,
    )
    history = []
    result = stylize_arrays(content, style, config, model=model, callbacks=[history.append])
    assert [p.step for p in history] == list(range(1, 16))
    assert history[-1].losses["total"] < 0.5 * history[0].losses["total"]
    assert result.shape == (24, 32, 3) and result.dtype == np.float32
    assert result.min() >= 0 and result.max() <= 255


def test_multiscale_runs_every_scale_and_ends_at_full_size(model):
    content, style = _images(48, 64)
    config = Config(size=64, min_size=32, steps=3, coarse_steps=2, **LAYERS)
    history = []
    result = stylize_arrays(content, style, config, model=model, callbacks=[history.append])
    assert [p.size for p in history] == [32, 32, 45, 45, 64, 64, 64]
    assert result.shape == (48, 64, 3)


def test_image_too_small_for_the_deepest_layer_is_refused(model):
    content, style = _images(24, 32)
    config = Config(size=6, min_size=0, steps=1, **LAYERS)  # 6x5 px: block2 needs >= 2
    stylize_arrays(content, style, config, model=model)
    with pytest.raises(ConfigError, match="too small for block5_conv1"):
        deep = Config(
            size=12,
            min_size=0,
            steps=1,
            content_layers=("block5_conv1",),
            style_layers=("block1_conv1",),
        )
        stylize_arrays(content, style, deep, model=model)


@pytest.mark.parametrize("xla", ["off", "on"])
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_the_step_is_traced_once_per_scale(model, optimizer, xla):
    content, style = _images(48, 64)
    config = Config(
        size=64, min_size=32, steps=6, coarse_steps=5, optimizer=optimizer, xla=xla, **LAYERS
    )
    history = []
    stylize_arrays(content, style, config, model=model, callbacks=[history.append])
    assert len(history) == 16
    assert [p.traces for p in history if p.step in (1, 6, 11, 16)] == [1, 2, 3, 3]


def test_xla_compiled_step_matches_the_plain_step(model):
    content, style = _images(48, 64)
    plain = Stylizer(Config(xla="off", **LAYERS), model)
    xla = Stylizer(Config(xla="on", **LAYERS), model)
    targets = _targets(plain, content, style)
    image = tf.constant(RNG.uniform(0, 255, (1, 48, 64, 3)).astype(np.float32))
    plain_values, plain_grad = plain._step(image, targets)
    xla_values, xla_grad = xla._step(image, targets)
    assert "HloModule" in xla._step.experimental_get_compiler_ir(image, targets)(stage="hlo")
    with pytest.raises(ValueError, match="jit_compile"):
        plain._step.experimental_get_compiler_ir(image, targets)
    np.testing.assert_allclose(xla_values.numpy(), plain_values.numpy(), rtol=1e-5)
    scale = np.abs(plain_grad.numpy()).max()
    np.testing.assert_allclose(xla_grad.numpy(), plain_grad.numpy(), atol=1e-4 * scale)


def test_xla_adam_run_matches_the_plain_run(model):
    content, style = _images(48, 64)
    results, seen = {}, {}
    for xla in ("off", "on"):
        config = Config(
            size=64, min_size=32, steps=4, coarse_steps=3, optimizer="adam", xla=xla, **LAYERS
        )
        history = []
        results[xla] = stylize_arrays(
            content, style, config, model=model, callbacks=[history.append]
        )
        seen[xla] = [p.losses["total"] for p in history]
    np.testing.assert_allclose(seen["on"], seen["off"], rtol=1e-4)
    # Adam divides by the root of the second moment: where a gradient is near zero, a
    # rounding difference between XLA and oneDNN becomes a step of up to about the
    # learning rate (|m_hat / sqrt(v_hat)| <= 1 for beta1 0.9, beta2 0.99). So the images
    # must agree closely almost everywhere, and nowhere by more than one such step per
    # step taken. A wrong XLA step would move most pixels apart.
    difference = np.abs(results["on"] - results["off"])
    assert np.mean(difference < 0.01) > 0.99, np.mean(difference < 0.01)
    assert difference.max() <= config.learning_rate * (config.steps + config.coarse_steps)
    assert np.abs(results["off"] - content).max() > 1.0  # the runs did move the image


def test_noise_init_is_seeded(model):
    content, style = _images()
    config = Config(size=32, min_size=0, steps=2, init="noise", seed=7, **LAYERS)
    a = stylize_arrays(content, style, config, model=model)
    b = stylize_arrays(content, style, config, model=model)
    np.testing.assert_array_equal(a, b)


def test_a_batch_of_images_is_optimised_together(model):
    content, style = _images()
    batch = np.stack([content, content[::-1]])
    config = Config(size=32, min_size=0, steps=3, **LAYERS)
    result = stylize_arrays(batch, style, config, model=model)
    assert result.shape == (2, 24, 32, 3)
    assert not np.allclose(result[0], result[1])


def test_model_weights_do_not_change_during_a_run(model):
    before = [w.copy() for w in model.get_weights()]
    content, style = _images()
    stylize_arrays(
        content,
        style,
        Config(size=32, min_size=0, steps=3, optimizer="adam", **LAYERS),
        model=model,
    )
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("beta2", [0.5, 0.999])
def test_adam_steps_follow_a_numpy_adam(model, beta2):
    content, _ = _images(32, 32)
    style = RNG.uniform(0, 255, (32, 32, 3)).astype(np.float32)  # used at its own size
    config = Config(
        size=32,
        min_size=0,
        steps=3,
        optimizer="adam",
        learning_rate=2.0,
        adam_beta1=0.8,
        adam_beta2=beta2,
        xla="off",
        **LAYERS,
    )
    stylizer = Stylizer(config, model)
    result = stylizer.stylize(content, style)
    targets = _targets(stylizer, content, style)
    x = content[None].astype(np.float64)
    m = v = 0.0
    for t in range(1, 4):
        image = tf.Variable(x.astype(np.float32))
        with tf.GradientTape() as tape:
            total = stylizer.objective.terms(image, model(image), targets)["total"]
        g = tape.gradient(total, image).numpy().astype(np.float64)
        m = 0.8 * m + 0.2 * g
        v = beta2 * v + (1 - beta2) * g * g
        step = 2.0 * np.sqrt(1 - beta2**t) / (1 - 0.8**t)
        x = np.clip(x - step * m / (np.sqrt(v) + 1e-8), 0, 255)
    np.testing.assert_allclose(result, x[0], atol=2e-3)
    assert np.abs(result - content).max() > 1.0
