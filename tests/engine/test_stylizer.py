"""The Stylizer: one network and one compiled step for many images."""

import dataclasses
import math

import numpy as np
import pytest
from conftest import LAYERS

from nst_tf.engine import memory
from nst_tf.engine.schedule import scale_steps
from nst_tf.engine.stylizer import Progress, Stylizer
from nst_tf.errors import ConfigError
from nst_tf.io.images import scaled_shape
from nst_tf.settings.config import Config

RNG = np.random.default_rng(21)


def _steps_of(config):
    """Each scale's steps of a Config's pyramid."""
    return scale_steps(
        config.min_size, config.size, config.coarse_steps, config.steps, config.schedule
    )


def _photo(height=24, width=32):
    return RNG.uniform(0, 255, (height, width, 3)).astype(np.float32)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_same_size_photos_trace_the_step_once(model, optimizer):
    config = Config(size=32, min_size=0, steps=3, optimizer=optimizer, **LAYERS)
    stylizer = Stylizer(config, model)
    style = _photo(20, 20)
    stylizer.stylize(_photo(), style)
    after_first = stylizer.trace_count
    assert after_first >= 1
    for _ in range(2):
        stylizer.stylize(_photo(), style)
    assert stylizer.trace_count == after_first


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_a_reused_stylizer_gives_what_a_fresh_one_gives(model, optimizer):
    """The compiled functions are reused, so the second photo's targets must reach them."""
    config = Config(size=32, min_size=0, steps=4, optimizer=optimizer, **LAYERS)
    first, second, style, other_style = _photo(), _photo(), _photo(20, 20), _photo(16, 16)
    reused = Stylizer(config, model)
    reused.stylize(first, style)
    again = reused.stylize(second, other_style)
    fresh = Stylizer(config, model).stylize(second, other_style)
    np.testing.assert_allclose(again, fresh, atol=1e-3)
    assert np.abs(again - second).max() > 1.0


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_one_host_read_per_step(model, optimizer):
    config = Config(size=45, min_size=32, steps=4, coarse_steps=3, optimizer=optimizer, **LAYERS)
    stylizer = Stylizer(config, model)
    history = []
    stylizer.stylize(_photo(48, 64), _photo(20, 20), callbacks=[history.append])
    assert len(history) == sum(_steps_of(config)) == 7
    assert stylizer.host_reads == len(history)


def test_progress_counts_the_whole_run_and_estimates_what_is_left(model):
    config = Config(size=45, min_size=32, steps=4, coarse_steps=3, **LAYERS)
    history = []
    Stylizer(config, model).stylize(_photo(48, 64), _photo(20, 20), callbacks=[history.append])
    assert {p.total_steps for p in history} == {7}
    assert [p.step for p in history] == list(range(1, 8))
    elapsed = [p.elapsed for p in history]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    # The estimate is the pace per pixel so far times the pixels left: three steps of
    # the 32 px scale done, four of the 45 px scale to go.
    small, large = (math.prod(scaled_shape(48, 64, size)) for size in (32, 45))
    third = history[2]
    assert third.work[-1] == 3 * small + 4 * large
    assert third.eta == pytest.approx(third.elapsed / (3 * small) * (4 * large))
    assert history[-1].eta == 0


def test_stylize_validates_its_config(model):
    with pytest.raises(ConfigError, match="--steps"):
        Stylizer(Config(steps=-1, **LAYERS), model)
    with pytest.raises(ConfigError, match="unknown layer"):
        Stylizer(Config(content_layers=("block9_conv9",)), model)


def test_a_batch_and_a_single_image_share_the_loop(model):
    config = Config(size=32, min_size=0, steps=2, **LAYERS)
    stylizer = Stylizer(config, model)
    batch = np.stack([_photo(), _photo()])
    assert stylizer.stylize(batch, _photo(20, 20)).shape == (2, 24, 32, 3)
    assert stylizer.stylize(batch[0], _photo(20, 20)).shape == (24, 32, 3)


def _progress(step, elapsed, work, first_step=1):
    return Progress(
        step,
        0,
        0,
        {},
        0.0,
        lambda: None,
        total_steps=4,
        elapsed=elapsed,
        first_step=first_step,
        work=work,
    )


def test_the_eta_weighs_steps_by_their_pixels():
    # Two steps at a 10x10 scale, then two at 20x20: four times the pixels each.
    work = (0, 100, 200, 600, 1000)
    # 2 s for the first 200 pixels: the 800 left take 8 s (by steps it would say 2 s).
    assert _progress(2, 2.0, work).eta == pytest.approx(8.0)
    # Resumed at step 3: 4 s for its 400 pixels, 400 left.
    assert _progress(3, 4.0, work, first_step=3).eta == pytest.approx(4.0)
    assert _progress(4, 9.0, work).eta == 0.0
    # Without the pixels, by steps.
    assert _progress(2, 2.0, ()).eta == pytest.approx(2.0)


def test_cached_runners_give_way_to_a_scale_that_needs_the_memory(model):
    """A multi-scale run must not keep every smaller scale's L-BFGS history beside the
    largest scale's step: the cache keeps only what fits the budget beside a new shape."""
    config = Config(size=40, min_size=0, steps=1, **LAYERS)
    photo, style = _photo(48, 64), _photo(20, 20)
    roomy = Stylizer(config, model)
    roomy.budget = 1e12
    roomy.stylize(photo, style)
    roomy.config = dataclasses.replace(config, size=48)
    roomy.stylize(photo, style)
    assert len(roomy.steps) == 2  # both shapes kept: reused by the next photos
    tight = Stylizer(config, model)
    tight.stylize(photo, style)
    (kept,) = tight.steps.cached_bytes()
    assert kept >= 24 * config.lbfgs_memory * 30 * 40  # its history, at least
    # Room for the new shape's peak but not for it and the cached runner.
    need = memory.plan_scale(36, 48, config, 1e12).peak
    tight.budget = need + kept / 2
    tight.config = dataclasses.replace(config, size=48)
    tight.stylize(photo, style)
    assert len(tight.steps) == 1
