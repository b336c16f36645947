"""The compiled-step cache: per image shape, the image variable and optimiser whose
functions are traced once, and the tiled steps for shapes too large to run whole."""

from __future__ import annotations

import dataclasses
import gc
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from nst_tf.core.objective import Objective, Targets
from nst_tf.core.tiling import TiledStep
from nst_tf.engine import memory
from nst_tf.engine.optimize import OPTIMIZERS, OptimizerSettings
from nst_tf.model.features import FeatureExtractor


class _Cached(NamedTuple):
    """A cached runner: its image variable, optimiser, held targets, and the bytes they
    keep (image-sized state and the L-BFGS history)."""

    image: tf.Variable
    runner: object
    held: object
    bytes: float


class StepCache:
    """The runners (image variable + optimiser) of the shapes seen, least recent first out.

    Args:
        step: The compiled whole-image (image, targets) -> (packed terms, gradient).
        model: The feature extractor the tiled steps run.
        objective: The objective the tiled steps evaluate.
        optimizer: The optimiser's name (a key of nst_tf.engine.optimize.OPTIMIZERS).
        optimizer_settings: Its values (the L-BFGS history is trimmed per shape to fit).
        plan_settings: The memory planner's values.
        budget: The memory budget in bytes, read once so that scales are planned
            against the same number.
    """

    # Compiled optimisers (with their image variable) kept for this many image shapes.
    CACHED_SHAPES = 8

    def __init__(
        self,
        step: Callable,
        model: FeatureExtractor,
        objective: Objective,
        optimizer: str,
        optimizer_settings: OptimizerSettings,
        plan_settings: memory.PlanSettings,
        budget: float,
    ):
        self.step, self.model, self.objective = step, model, objective
        self.optimizer, self.optimizer_settings = optimizer, optimizer_settings
        self.plan_settings, self.budget = plan_settings, budget
        self._runners: OrderedDict = OrderedDict()
        self._tiled: dict = {}

    def __len__(self) -> int:
        """How many shapes' runners are cached."""
        return len(self._runners)

    def cached_bytes(self) -> list[float]:
        """The bytes each cached runner keeps, least recently used first."""
        return [cached.bytes for cached in self._runners.values()]

    def runner(self, shape: tuple[int, ...], targets: Targets, optimizer: str | None = None):
        """The image variable and optimiser for an image shape, reused across images.

        The optimisers' functions are traced once per shape, so what changes from one
        image to the next must reach them as variables: the start image, and the
        targets, held in variables of the same structure and assigned for each image.
        `optimizer` names another optimiser than the run's (the --style_strength pilot
        is always L-BFGS).
        """
        optimizer = optimizer or self.optimizer
        layout = tf.nest.map_structure(lambda t: None if t is None else tuple(t.shape), targets)
        key = (shape, optimizer, repr(layout))
        if key in self._runners:
            self._runners.move_to_end(key)
            image, runner, held, _ = self._runners[key]
            tf.nest.map_structure(lambda v, t: t is None or v.assign(t), held, targets)
            return image, runner
        # A shape whose whole-image step would not fit the budget gets the exact tiled
        # step, and an L-BFGS history that fits beside it.
        plan = memory.plan_scale(shape[1], shape[2], self.plan_settings, self.budget)
        self._evict(plan.peak)
        image = tf.Variable(tf.zeros(shape), trainable=True, name="image")
        held = tf.nest.map_structure(
            lambda t: None if t is None else tf.Variable(t, trainable=False), targets
        )
        step = self.tiled_step(plan.tile, plan.split) or self.step
        memory.log_plan(shape[1], shape[2], self.plan_settings, plan, self.budget)
        settings = dataclasses.replace(self.optimizer_settings, lbfgs_memory=plan.lbfgs_memory)
        runner = OPTIMIZERS[optimizer](image, lambda x: step(x, held), settings)
        pixels = shape[0] * shape[1] * shape[2]
        planned = dataclasses.replace(self.plan_settings, lbfgs_memory=plan.lbfgs_memory)
        kept = (
            memory.history_bytes_per_pixel(planned) + memory.WHOLE_IMAGE_BYTES_PER_PIXEL
        ) * pixels
        self._runners[key] = _Cached(image, runner, held, kept)
        return image, runner

    def _evict(self, need: float) -> None:
        """Drops cached runners, least recently used first, to make room for a new one.

        A cached runner keeps its image, targets and L-BFGS history (24 bytes per pixel
        per pair): a multi-scale run to 4096 px would otherwise hold every smaller
        scale's history (gigabytes) beside the last scale's step. So the cache keeps at
        most CACHED_SHAPES shapes, and only as many as fit the budget beside `need`
        bytes (the new shape's planned peak).
        """
        dropped = False
        while self._runners and (
            len(self._runners) >= self.CACHED_SHAPES
            or sum(cached.bytes for cached in self._runners.values()) + need > self.budget
        ):
            self._runners.popitem(last=False)
            dropped = True
        if dropped:
            gc.collect()  # the runners' traced functions refer back to their variables

    def tiled_step(self, tile: int, split: bool = False):
        """The compiled tiled step for tiles of `tile` px (None for 0: untiled)."""
        if not tile:
            return None
        if (tile, split) not in self._tiled:
            tiled = TiledStep(self.model, self.objective, tile, split)
            self._tiled[tile, split] = (tiled, tf.function(tiled.value_and_grad))
        return self._tiled[tile, split][1]

    def tiles_for(self, image: tf.Tensor) -> TiledStep | None:
        """The TiledStep for an image too large to run whole, else None."""
        plan = memory.plan_scale(image.shape[1], image.shape[2], self.plan_settings, self.budget)
        return (
            self._tiled[plan.tile, plan.split][0]
            if self.tiled_step(plan.tile, plan.split)
            else None
        )
