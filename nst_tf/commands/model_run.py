"""`nst-tf --model=MODEL_DIR`: stylise with a trained network, optionally refined.

The pre-flight runs before TensorFlow loads, as for an optimisation: the settings, the
MODEL_DIR's description (ours, this format version, a recipe that agrees with every
setting given), the VGG19 weights only when refining, and every written path against
every read one. Then one forward pass (tiled when too large, see engine.feedforward),
and with --refine_steps=N, N optimiser steps at the final scale from its output.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from absl import logging

from nst_tf.commands import preflight
from nst_tf.engine.memory import PlanSettings, budget_bytes
from nst_tf.errors import ConfigError, Interrupted, ModelError, NumericalError
from nst_tf.io import images, model_dir, paths
from nst_tf.model import weights
from nst_tf.settings.config import Config, default_settings, validate
from nst_tf.settings.recipe import Recipe
from nst_tf.settings.training import OBJECTIVE_SETTINGS

# The settings that define a trained network's objective: given on the command line,
# each must equal the model's (the network cannot follow another); when refining, the
# ones not given are the model's.
MODEL_RECIPE = OBJECTIVE_SETTINGS
# Settings that have no meaning with --model: the network makes the start image, and a
# forward pass has nothing to resume.
_NOT_WITH_MODEL = ("style_targets", "style_mask", "init", "resume")
# A Recipe, or settings holding one (a Config).
AnyRecipe = TypeVar("AnyRecipe", bound=Recipe)


def given_settings(config: Config) -> set[str]:
    """The settings that differ from their defaults (what a Python caller asked for)."""
    return {name for name, value in default_settings().items() if getattr(config, name) != value}


def _comparable(value):
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(value)


def _same(a, b) -> bool:
    a, b = _comparable(a), _comparable(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _shown_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "(empty)"
    return str(value)[:80]


def check_model_settings(config: Config, meta: dict, given: Collection[str]) -> Config:
    """Refuses settings a trained model cannot honour; returns the run's settings with the
    model's recipe filled in (what a refinement optimises).

    Args:
        config: The validated settings, --style folders expanded.
        meta: The MODEL_DIR's description (read_model_metadata).
        given: The settings given explicitly (flags on the command line).

    Raises:
        ConfigError: a setting given disagrees with the model, or does not apply.
        ModelError: --style is not the model's style.
    """
    label = paths.shown(config.model)
    for name in _NOT_WITH_MODEL:
        if name in given:
            raise ConfigError(
                f"--{name} does not apply with --model (the network makes the image); drop it"
            )
    if config.refine_steps == 0 and "style" in given:
        raise ConfigError(
            f"--style is not needed with --model: {label} holds its style; drop --style, "
            "or add --refine_steps=N to refine the network's output with it"
        )
    if config.refine_steps and not config.style:
        raise ConfigError(
            "--refine_steps optimises against the style: give --style, the image(s) "
            f"{label} was trained with"
        )
    recipe = meta["recipe"]
    for name in MODEL_RECIPE:
        if name in given and name in recipe and not _same(getattr(config, name), recipe[name]):
            raise ConfigError(
                f"--{name}={_shown_value(getattr(config, name))} differs from the model's "
                f"{_shown_value(recipe[name])} ({label} was trained with it): drop --{name} "
                "or train a model with it"
            )
    if config.refine_steps:
        wanted = [style["sha256"] for style in meta["styles"]]
        have = [model_dir.sha256_of(path) for path in config.style_paths()]
        if have != wanted:
            names = ", ".join(str(style.get("name", "?"))[:60] for style in meta["styles"])
            raise ModelError(
                f"--style is not the style {label} was trained with ({names}; sha256 "
                "differs): give those images, in that order"
            )
        values = {name: recipe[name] for name in MODEL_RECIPE if name in recipe}
        try:
            config = validate(dataclasses.replace(config, **values))
        except (TypeError, ConfigError) as err:
            raise ModelError(f"{label}'s recipe is not one this nst_tf runs ({err})") from None
    return config


def stylize_with_model_dir(
    config: Config,
    given: Collection[str] | None = None,
    callbacks: Sequence[Callable] = (),
):
    """nst-tf with --model: a forward pass of the trained network, then --refine_steps.

    Args:
        config: The run's settings (config.model set).
        given: The settings given on the command line; None: those that differ from
            their defaults.
        callbacks: Step callbacks of the refinement.

    Returns:
        A commands.run.RunResult (steps: the refinement's).

    Raises:
        NstError: a setting, the model, an input or the output is wrong (one line).
        Interrupted: a signal stopped the refinement (its image is written).
    """
    from nst_tf.commands.run import RunResult, _quiet_stderr  # pylint: disable=C0415

    start = time.perf_counter()
    given = given_settings(validate(config)) if given is None else set(given)
    config, style_folders = preflight.check_settings(config)
    meta = model_dir.read_model_metadata(config.model)
    # A refinement is short and starts from the network: no checkpoints.
    config = dataclasses.replace(config, checkpoint_every=0, checkpoint_dir=None)
    config = check_model_settings(config, meta, given)
    source = weights.find_weights(config.vgg_weights) if config.refine_steps else None
    images.check_output_path(config.output)
    preflight.check_run_paths(
        config if config.refine_steps else dataclasses.replace(config, style=None),
        style_folders,
        source.path if source else None,
    )
    content_path = config.content or images.sample_path("content")
    content = images.load_image(content_path, size=config.size)
    style = [images.load_image(p, limit=2 * config.size) for p in config.style_paths()]
    if source is not None:
        weights.check_vgg19(source)
    print_info = images.probe_print_info(
        images.read_print_info(content_path), config.output, config.bit_depth
    )
    budget = budget_bytes(PlanSettings.of(config))
    with _quiet_stderr():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from nst_tf.engine.feedforward import (  # pylint: disable=import-outside-toplevel
        plan_tile,
        stylize_with_model,
    )

    tf.get_logger().setLevel("WARNING")
    net, _ = model_dir.load_model_dir(config.model)
    tile = plan_tile(net, *content.shape[:2], budget, config.tile_size)
    began = time.perf_counter()
    result = stylize_with_model(net, content, budget=budget, tile_size=config.tile_size)
    logging.info(
        "network: %dx%d in %.2f s%s",
        result.shape[1],
        result.shape[0],
        time.perf_counter() - began,
        f" ({tile} px tiles sharing whole-image statistics)" if tile else "",
    )
    steps, losses = 0, {}
    if config.refine_steps:
        result, steps, losses = _refine(config, content, style, result, source, callbacks)
    images.save_image(result, config.output, config.bit_depth, print_info)
    seconds = time.perf_counter() - start
    logging.info("done in %.1f s -> %s", seconds, paths.shown(config.output))
    return RunResult(result, config.output, losses, steps, seconds)


def refine_config(settings: AnyRecipe) -> AnyRecipe:
    """The settings of a refinement (a Config's too: only its recipe changes):
    settings.refine_steps steps at the final scale only."""
    return dataclasses.replace(
        settings, min_size=0, steps=settings.refine_steps, schedule="fixed", init="content"
    )


def _refine(config, content, style, start, source, callbacks):
    from nst_tf.commands.run import SignalGuard  # pylint: disable=import-outside-toplevel
    from nst_tf.engine.monitoring import ProgressLogger  # pylint: disable=C0415
    from nst_tf.engine.stylizer import Stylizer  # pylint: disable=import-outside-toplevel
    from nst_tf.model.features import FeatureExtractor  # pylint: disable=C0415

    refined = refine_config(config)
    extractor = FeatureExtractor(refined.layers, source, refined.precision, refined.pooling)
    logger = ProgressLogger(refined.log_every)
    try:
        with SignalGuard() as guard:
            image = Stylizer(refined, extractor).stylize(
                content, style, start=start, callbacks=[logger, guard, *callbacks]
            )
    except (Interrupted, NumericalError) as stop:
        if stop.image is not None:
            images.save_image(stop.image, config.output, config.bit_depth)
            if isinstance(stop, Interrupted):
                stop.output = config.output
        raise
    steps, losses = (logger.last.step, logger.last.losses) if logger.last else (0, {})
    return image, steps, losses
