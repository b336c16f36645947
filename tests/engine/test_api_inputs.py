"""Stylizer.stylize refuses bad image arguments before any TensorFlow work, naming them."""

import warnings

import numpy as np
import pytest
from conftest import LAYERS

from nst_tf.engine.stylizer import Stylizer
from nst_tf.errors import ConfigError, NstError
from nst_tf.settings.config import Config

RNG = np.random.default_rng(23)


def _photo(height=24, width=32):
    return RNG.uniform(0, 255, (height, width, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def stylizer(model):
    return Stylizer(Config(size=32, min_size=0, steps=2, **LAYERS), model)


def _refused(stylizer, content, style, *words):
    before = stylizer.trace_count
    with pytest.raises(ConfigError) as caught:
        stylizer.stylize(content, style)
    message = str(caught.value)
    assert isinstance(caught.value, NstError)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert "learning rate" not in message and "loss" not in message
    # Refused before the step was traced: no TensorFlow work was done for it.
    assert stylizer.trace_count == before
    return message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("argument", ["content", "style"])
def test_nan_or_inf_pixels_are_refused_naming_the_argument(stylizer, bad, argument):
    content, style = _photo(), _photo(20, 20)
    image = content if argument == "content" else style
    image[3, 4, 1] = bad
    message = _refused(stylizer, content, style, argument, "NaN or infinite")
    assert message.startswith(argument)


@pytest.mark.parametrize("low, high", [(-255.0, 0.0), (0.0, 65535.0), (-1.0, 100.0), (0.0, 256.0)])
def test_values_outside_0_255_are_refused(stylizer, low, high):
    content = RNG.uniform(low, high, (24, 32, 3)).astype(np.float32)
    content[0, 0, 0], content[0, 0, 1] = low, high
    message = _refused(stylizer, content, _photo(20, 20), "content", "outside 0..255")
    assert f"{low:g}..{high:g}" in message


def test_a_uint16_style_is_refused(stylizer):
    style = np.full((20, 20, 3), 40000, np.uint16)
    _refused(stylizer, _photo(), style, "style", "40000", "outside 0..255")


def test_0_1_float_images_run_with_a_warning_that_says_so(stylizer):
    content = _photo() / 255.0
    with pytest.warns(UserWarning, match=r"content .*0\.\.1.*multiply by 255"):
        result = stylizer.stylize(content, _photo(20, 20))
    assert result.shape == (24, 32, 3)


def test_0_255_images_and_uint8_images_give_no_warning(stylizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stylizer.stylize(_photo().astype(np.uint8), _photo(20, 20))
        # A black content image in 0..255 is valid (max 0, not a 0..1 image).
        stylizer.stylize(np.zeros((24, 32, 3), np.float32), _photo(20, 20))


@pytest.mark.parametrize(
    "shape, hint", [((20, 20, 4), "alpha"), ((20, 20), "grey"), ((20, 20, 1), "grey")]
)
def test_a_style_that_is_not_rgb_is_refused(stylizer, shape, hint):
    style = RNG.uniform(0, 255, shape).astype(np.float32)
    _refused(stylizer, _photo(), style, "style", str(shape), hint)


def test_one_bad_style_in_a_list_is_named_by_index(stylizer):
    style = [_photo(20, 20), RNG.uniform(0, 255, (20, 20, 4))]
    _refused(stylizer, _photo(), style, "style[1]", "alpha")


def test_a_content_list_of_different_shapes_is_refused(stylizer):
    content = [_photo(24, 32), _photo(16, 16)]
    message = _refused(stylizer, content, _photo(20, 20), "content", "one shape")
    assert "(16, 16, 3)" in message and "(24, 32, 3)" in message
    assert "inhomogeneous" not in message


def test_a_content_list_of_one_shape_is_a_batch(stylizer):
    first, second = _photo(), _photo()
    result = stylizer.stylize([first, second], _photo(20, 20))
    assert result.shape == (2, 24, 32, 3)


def test_measure_style_checks_the_style_too(stylizer):
    style = _photo(20, 20)
    style[np.arange(20), np.arange(20), 0] = np.nan
    with pytest.raises(ConfigError, match="^style has 20 NaN or infinite values"):
        stylizer.measure_style(style)
