"""The Stylizer: owns the network and the compiled step, and runs the coarse-to-fine loop.

Built once from a Config, a Stylizer keeps the FeatureExtractor and one compiled
value-and-gradient step, traced once per image shape, so the thousandth photo of a size
costs no trace. A run reads as its seams: prepare the inputs, then for each scale the
targets, the start image and the optimisation, handing the image up to the next scale.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from nst_tf.core import balance, color
from nst_tf.core.objective import LayerStats, Objective, Targets, TemporalTarget
from nst_tf.core.tiling import layer_shape
from nst_tf.engine import checkpoints, memory
from nst_tf.engine.optimize import OptimizerSettings
from nst_tf.engine.prepared import (
    HISTOGRAM_MEASURED,
    MeasuredStyle,
    Prepared,
    check_pixels,
    layer_masks,
    prepare,
    style_images,
)
from nst_tf.engine.progress import Clock, Progress, Reporter
from nst_tf.engine.schedule import resize_images, scale_sizes, scale_steps
from nst_tf.engine.steps import StepCache
from nst_tf.errors import ConfigError, Interrupted, NumericalError
from nst_tf.io.images import scaled_shape
from nst_tf.model.features import FeatureExtractor, resolve_xla
from nst_tf.settings import keys
from nst_tf.settings.config import Config, layer_channels, layer_downsampling, validate
from nst_tf.settings.recipe import Recipe


class Stylizer:
    """Stylises images with one network and one compiled step for all of them.

    Args:
        config: The settings (validated here): the recipe of the result and how to run.
        model: A FeatureExtractor for config.layers; built from config when None.
        temporal_weight: Weight of the temporal loss that holds video frames to the
            previous stylised frame (0: none; see nst_tf.commands.video).

    Example::

        stylizer = Stylizer(Config(size=512))
        for photo in photos:                        # one trace per image shape
            result = stylizer.stylize(photo, painting)
    """

    def __init__(
        self,
        config: Config,
        model: FeatureExtractor | None = None,
        temporal_weight: float = 0.0,
    ):
        self.config = validate(config)
        if model is None:
            model = FeatureExtractor(
                config.layers, config.vgg_weights, config.precision, config.pooling
            )
        self.model = model
        self.objective = objective_of(config, temporal_weight)
        self.host_reads = 0
        self._traces = 0
        # From a function object of its own: TensorFlow counts traces per Python function
        # and would call one trace per Stylizer "retracing".
        self._step = tf.function(
            functools.partial(Stylizer._value_and_grad, self), jit_compile=self.xla
        )
        plan_settings = memory.PlanSettings.of(self.config)
        self.steps = StepCache(
            self._step,
            self.model,
            self.objective,
            self.config.optimizer,
            OptimizerSettings.of(self.config),
            plan_settings,
            # The memory budget is read once: scales are planned against the same number.
            memory.budget_bytes(plan_settings),
        )

    @property
    def budget(self) -> float:
        """The memory budget in bytes the scales are planned against."""
        return self.steps.budget

    @budget.setter
    def budget(self, value: float) -> None:
        self.steps.budget = value

    @property
    def xla(self) -> bool:
        """Whether the step is compiled with XLA (config.xla resolved for this machine)."""
        return resolve_xla(self.config.xla, self.config.deterministic)

    @property
    def trace_count(self) -> int:
        """How many times the step has been traced: once per image shape."""
        return self._traces

    # --- the step -----------------------------------------------------------------------

    def _value_and_grad(self, image: tf.Tensor, targets: Targets):
        # This Python line runs only while tracing: a cheap, testable count of how
        # often the step is compiled.
        self._traces += 1
        with tf.GradientTape() as tape:
            tape.watch(image)
            terms = self.objective.terms(image, self.model(image), targets)
        grad = tape.gradient(terms["total"], image)
        terms["grad_norm"] = tf.norm(grad)
        return self.objective.pack(terms), grad

    def value_and_grad(self, targets: Targets) -> Callable:
        """The compiled (image) -> (packed loss terms, gradient) against `targets`.

        This is the seam the optimisers are driven through: anything with this
        signature (for example a tiled computation) can stand in for it.
        """
        return lambda image: self._step(image, targets)

    def read(self, tensor: tf.Tensor) -> np.ndarray:
        """Brings a tensor to the host; the loop's only read per step goes through here."""
        self.host_reads += 1
        return tensor.numpy()

    def evaluate(self, image: np.ndarray, targets: Targets) -> dict[str, float]:
        """The named loss terms (and the gradient's norm) of an image [batch, H, W, 3]."""
        values, _ = self._step(tf.constant(image, tf.float32), targets)
        return self.objective.unpack(self.read(values))

    def _content_features(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        """The content layers' maps of an image (stitched from tiles when it is large)."""
        tiled = self.steps.tiles_for(image)
        if tiled is None:
            return self.model(image)
        return tiled.features(image, tuple(self.objective.content_weights))

    def _image_statistics(self, image: tf.Tensor) -> dict[str, LayerStats]:
        """The style statistics of an image (summed over tiles when it is large)."""
        tiled = self.steps.tiles_for(image)
        if tiled is None:
            return self.objective.style_statistics(self.model(image))
        return tiled.style_statistics(image)

    # --- the seams ----------------------------------------------------------------------

    def prepare(
        self,
        content: np.ndarray,
        style=None,
        init: np.ndarray | None = None,
        masks: Sequence[np.ndarray] | None = None,
    ) -> Prepared:
        """Checks and converts a stylisation's inputs once, for all scales.

        Args:
            content: [H, W, 3] or [batch, H, W, 3] float RGB in 0..255.
            style: A [H, W, 3] style image, a list of them (blended with
                config.style_blend_weights), Gram matrices by layer (a mapping, or a
                nst_tf.io.targets.StyleTargets) used at every scale, or a MeasuredStyle.
            init: Start image when config.init is a path.
            masks: One [H, W] or [H, W, 1] array in 0..1 per style image.
        """
        config = self.config
        return prepare(
            content,
            style,
            init,
            masks,
            gram_groups=self.objective.gram_groups,
            preserve_color=config.preserve_color,
            blend_weights=config.style_blend_weights,
            init_mode=config.init,
        )

    def targets(self, inputs: Prepared, size: int) -> Targets:
        """Content activations and style statistics at the scale of long side `size`."""
        config = self.config
        height, width = scaled_shape(*inputs.content.shape[1:3], size)
        self._check_size(size, (height, width))
        content = resize_images(inputs.content, height, width)
        features = self._content_features(content)
        content_targets = {name: features[name] for name in self.objective.content_weights}
        temporal = self._temporal(inputs, (height, width))
        if inputs.fixed is not None:
            targets = Targets(content_targets, inputs.fixed, temporal)
        else:
            if inputs.measured is not None:
                stats = [
                    {name: LayerStats(*map(_constant, layer)) for name, layer in image.items()}
                    for image in inputs.measured.at(size)
                ]
            else:
                stats = self._style_statistics(inputs.styles, size)
            groups = self.objective.style_groups(
                stats,
                config.blend_weights(len(stats)),
                layer_masks(inputs.masks, (height, width), self.objective.style_weights),
            )
            targets = Targets(content_targets, groups, temporal)
        if config.style_strength is None:
            return targets
        if inputs.style_weight is None:  # the run's first scale
            inputs.style_weight = self.calibrate(content, features, targets)
        return targets._replace(style_weight=inputs.style_weight)

    def calibrate(
        self, content: tf.Tensor, features: Mapping[str, tf.Tensor], targets: Targets
    ) -> tf.Tensor:
        """The style weight of config.style_strength for these targets (see core.balance).

        The start weight is measured on the content photo at this scale: its style term
        (the style gap) and the content term of a featureless image, from the features
        already computed for the content targets (one read to the host). Then, with
        config.style_strength_pilot, a pilot of balance.PILOT_STEPS L-BFGS steps from the
        photo with the start weight (always L-BFGS, in the same compiled step when the run
        uses it) measures the balance the run is heading to, and the weight
        is corrected by it (balance.piloted_style_weight).

        Args:
            content: The content photo at this scale, [batch, H, W, 3].
            features: Its activations (at least the content layers).
            targets: The targets at this scale.

        Returns:
            The calibrated style weight, a scalar float32 tensor.
        """
        if all(name in features for name in self.objective.style_weights):
            generated = self.objective.generated_statistics(features, targets)
        else:  # tiled: only the content layers were stitched (masks are not applied)
            generated = (self._image_statistics(content),) * len(targets.styles)
        batch, height, width = content.shape[:3]
        shapes = {
            name: layer_shape(batch, height, width, name, layer_channels(name))
            for name in self.objective.style_weights
        }
        zero = {name: tf.zeros(batch) for name in self.objective.content_weights}
        terms = self.objective.terms(content, None, targets, generated, zero, shapes)
        gap, scale = self.read(tf.stack([terms["style"], self.objective.content_scale(targets)]))
        config = self.config
        strength = config.style_strength
        start = balance.calibrated_style_weight(
            1.0, config.content_weight, float(gap), float(scale)
        )
        weight, piloted = strength * start, math.nan
        if config.style_strength_pilot and weight > 0:
            weight, piloted = balance.piloted_style_weight(
                strength,
                start,
                lambda w: self.pilot(content, targets, w, balance.PILOT_STEPS),
                config.style_loss,
            )
        logging.info(
            "style strength %g: style weight %.3g (style gap %.3g, content scale %.3g, "
            "start weight %.3g, pilot balance %.3g)",
            strength,
            weight,
            gap,
            scale,
            start,
            piloted,
        )
        return tf.constant(weight, tf.float32)

    def pilot(self, content: tf.Tensor, targets: Targets, weight: float, steps: int) -> float:
        """The balance after a short L-BFGS run from the photo with a style weight.

        Args:
            content: The content photo at the first scale, [batch, H, W, 3] (the start).
            targets: The targets at that scale.
            weight: The style weight to run with.
            steps: L-BFGS iterations.

        Returns:
            Weighted content / weighted style at the pilot's last step (summed over a
            batch); NaN when no step was taken or a term was not finite.
        """
        optimizer = "lbfgs_scipy" if self.config.optimizer == "lbfgs_scipy" else "lbfgs"
        piloted = targets._replace(style_weight=tf.constant(weight, tf.float32))
        variable, runner = self.steps.runner(tuple(content.shape), piloted, optimizer)
        variable.assign(content)
        runner.reset()
        last = []

        def check(values):
            raise _PilotFailed(values)

        try:
            runner.run(steps, last.append, check, self.read)
        except _PilotFailed:
            return math.nan
        if not last:
            return math.nan
        terms = self.objective.unpack(last[-1])
        if not terms["style"] > 0:
            return math.nan
        return terms["weighted/content"] / (weight * terms["style"])

    def _temporal(self, inputs: Prepared, shape: tuple[int, int]) -> TemporalTarget | None:
        """The temporal target at this scale's shape; zero weights when there is none
        (the first frame of a clip), so that every frame shares one compiled step."""
        if "temporal" not in self.objective.weights:
            return None
        if inputs.temporal is None:
            return TemporalTarget(tf.zeros((1, *shape, 3)), tf.zeros((1, *shape, 1)))
        warped, weights = inputs.temporal
        return TemporalTarget(
            resize_images(warped, *shape), tf.image.resize(weights, shape, method="area")
        )

    def _style_statistics(self, styles: list[tf.Tensor], size: int) -> list[dict]:
        """LayerStats by layer of each style image, measured at the scale of long side
        `size` times the image's --style_scale."""
        shapes = [
            scaled_shape(*image.shape[1:3], max(1, round(size * self.config.scale_of(i))))
            for i, image in enumerate(styles)
        ]
        self._check_size(size, *shapes)
        return [
            self._image_statistics(resize_images(image, *shape))
            for image, shape in zip(styles, shapes, strict=True)
        ]

    def measure_style(self, style: np.ndarray | Sequence[np.ndarray]) -> MeasuredStyle:
        """Measures style images once at every scale, for stylize(style=...) to reuse.

        Args:
            style: A [H, W, 3] style image or a list of them, as for stylize().

        Returns:
            The statistics at every scale size, as numpy arrays (picklable).

        Raises:
            ConfigError: with config.preserve_color == "histogram", whose styles are
                recoloured for each photo and cannot be measured once.
        """
        if self.config.preserve_color == "histogram":
            raise ConfigError(HISTOGRAM_MEASURED)
        images = style_images([style] if isinstance(style, np.ndarray) else list(style))
        styles = [tf.constant(image[None]) for image in images]
        sizes = tuple(scale_sizes(self.config.min_size, self.config.size))
        stats = tuple(
            tuple(
                {name: LayerStats(*map(_numpy, layer)) for name, layer in image.items()}
                for image in self._style_statistics(styles, size)
            )
            for size in sizes
        )
        return MeasuredStyle(sizes, stats)

    def start_image(
        self, inputs: Prepared, shape: tuple[int, int], rng: tf.random.Generator
    ) -> tf.Tensor:
        """The image the first scale starts from: content, noise, style or a given image."""
        config = self.config
        content = resize_images(inputs.content, *shape)
        if inputs.start is not None:
            return resize_images(inputs.start, *shape)
        noise = rng.uniform(tf.shape(content), 0.0, 255.0)
        if config.init == "noise":
            return noise
        start = content if config.init == "content" else resize_images(inputs.init, *shape)
        if start.shape[0] != content.shape[0]:  # one style image as the start of a batch
            start = tf.repeat(start, content.shape[0], axis=0)
        ratio = config.init_noise_ratio
        return (1.0 - ratio) * start + ratio * noise if ratio else start

    def stylize(
        self,
        content: np.ndarray,
        style=None,
        *,
        init: np.ndarray | None = None,
        masks: Sequence[np.ndarray] | None = None,
        callbacks: Sequence[Callable[[Progress], None]] = (),
        start: np.ndarray | None = None,
        temporal: tuple[np.ndarray, np.ndarray] | None = None,
        schedule: Sequence[tuple[int, int]] | None = None,
    ) -> np.ndarray:
        """Stylises a content image (or a batch) with one or more styles.

        With config.checkpoint_dir set, a checkpoint is written every
        config.checkpoint_every steps and at the end of each scale, and config.resume
        continues the newest one.

        Args:
            content: [H, W, 3] or [batch, H, W, 3] RGB in 0..255 (a batch may be a list
                of [H, W, 3] arrays of one shape), any resolution; it is resized to each
                scale of the pyramid.
            style: A [H, W, 3] style image, resized to each scale (times its
                config.style_scale); a list of them, blended with
                config.style_blend_weights; or style targets (Gram matrices by layer, or a
                nst_tf.io.targets.StyleTargets) used at every scale.
            init: Optional start image, same layout as `content`; used when config.init
                is a path.
            masks: One [H, W] or [H, W, 1] array in 0..1 per style image, any
                resolution, saying where each style applies (region-specific styles).
            callbacks: Called with a Progress after every step.
            start: An image [H, W, 3] to start from instead of config.init (a video
                frame starts from the previous stylised frame, warped); a tf.Tensor is
                taken as it is, unchecked, where it is (a trained network's output).
            temporal: For a Stylizer with a temporal weight: the previous stylised frame
                warped to this one [H, W, 3] and where that warp is reliable [H, W] in
                0..1.
            schedule: (long side, steps) per scale, instead of config's pyramid.

        Returns:
            The result as float32, [H, W, 3] (or [batch, H, W, 3] for a batch).

        Every image argument is checked before any TensorFlow work (see
        check_pixels): a ConfigError names the argument whose shape is not RGB, whose
        values are NaN, infinite or outside 0..255, or whose batch mixes shapes. A float
        image whose values all lie in 0..1 is most likely scaled to 0..1 by mistake; it
        still runs (a nearly black image is valid), with a UserWarning saying so.

        Raises:
            ConfigError: an argument is invalid, as above.
            NumericalError: a loss went NaN/inf; its `image` is the last finite image.
            Interrupted: a callback stopped the run; a checkpoint of that moment is saved.
        """
        inputs = self.prepare(content, style, init, masks)
        if tf.is_tensor(start):  # a network's output, left on the device (a video's frames)
            inputs.start = tf.convert_to_tensor(start, tf.float32)[None]
        elif start is not None:
            inputs.start = tf.constant(check_pixels(start, "start")[None])
        if temporal is not None:
            warped, weights = (np.asarray(a, np.float32) for a in temporal)
            inputs.temporal = (tf.constant(warped[None]), tf.constant(weights[None, ..., None]))
        if schedule:
            sizes, steps = (list(column) for column in zip(*schedule, strict=True))
        else:
            sizes, steps = self.pyramid()
        pixels = [math.prod(scaled_shape(*inputs.content.shape[1:3], size)) for size in sizes]
        run = self._begin(
            inputs,
            sum(steps),
            [p for p, n in zip(pixels, steps, strict=True) for _ in range(n)],
            schedule,
        )
        if self.config.style_strength is not None and run.position.scale > 0:
            self.targets(inputs, sizes[0])  # a resumed run calibrates on the first scale too
        image = None
        for scale in range(run.position.scale, len(sizes)):
            image = self._stylize_scale(inputs, run, scale, sizes, steps, image, callbacks)
        if image is None:  # resumed a run that had already finished
            raise ConfigError("the run in the checkpoint has already finished")
        result = image.numpy()
        if self.config.preserve_color == "luminance":
            content_at = resize_images(inputs.content, *result.shape[1:3]).numpy()
            result = color.preserve_luminance(result, content_at, self.config.color_space)
        return _unbatch(result, inputs.single)

    def pyramid(self) -> tuple[list[int], list[int]]:
        """The long side and the steps of each scale of the settings' pyramid."""
        config = self.config
        sizes = scale_sizes(config.min_size, config.size)
        steps = scale_steps(
            config.min_size, config.size, config.coarse_steps, config.steps, config.schedule
        )
        return sizes, steps

    def _begin(
        self, inputs: Prepared, total_steps: int, step_pixels: Sequence[int], schedule
    ) -> checkpoints.Run:
        """A run's state, fresh or resumed, and its clock.

        Args:
            inputs: The prepared inputs (their values are part of the checkpoint's key).
            total_steps: Steps over all scales.
            step_pixels: The pixels of each step's scale, for the ETA.
            schedule: The (size, steps) pyramid given to stylize(), or None.
        """
        config = self.config
        record = {}
        if config.checkpoint_dir:  # the key is only needed, and hashed, to checkpoint
            source = self.model.weights_source
            record = keys.key_record(
                keys.recipe_of(config),
                inputs.digests(),
                source.sha256 if source else "",
                schedule=[list(pair) for pair in schedule] if schedule else None,
                temporal_weight=self.objective.weights.get("temporal", 0.0),
            )
        run = checkpoints.begin(record, config.seed, config.checkpoint_dir, config.resume)
        run.clock = Clock(total_steps, run.position.step + 1)
        run.clock.work = tuple(itertools.accumulate(step_pixels, initial=0))
        return run

    def _stylize_scale(self, inputs, run, scale, sizes, steps, previous, callbacks) -> tf.Tensor:
        """One scale: its targets, its start (the image handed up from the last scale),
        the optimisation, checkpoints; returns the image to hand up."""
        size = sizes[scale]
        targets = self.targets(inputs, size)
        shape = (inputs.content.shape[0], *scaled_shape(*inputs.content.shape[1:3], size))
        if previous is None:
            start = self.start_image(inputs, shape[1:], run.state.rng)
        else:
            start = resize_images(previous, *shape[1:])
        variable, runner = self.steps.runner(shape + (3,), targets)
        variable.assign(start)
        runner.reset()
        saver = checkpoints.manager(
            run, self.config.checkpoint_dir, image=variable, **runner.state()
        )
        logging.info(
            "scale %d/%d: %dx%d px, %d steps",
            scale + 1,
            len(sizes),
            shape[2],
            shape[1],
            steps[scale],
        )
        report = Reporter(self, run.clock, callbacks, scale, size, variable, run.position)
        save = functools.partial(checkpoints.save, saver, run)
        try:
            self.run_scale(runner, steps[scale], run.position, report, save)
        except Interrupted as stop:
            save()
            stop.step = run.position.step
            stop.image = _unbatch(variable.numpy(), inputs.single)
            raise
        except NumericalError as err:
            err.image = _unbatch(variable.numpy(), inputs.single)
            raise
        run.position.scale, run.position.scale_step = scale + 1, 0
        return variable.read_value()

    def run_scale(self, runner, steps: int, position, report, save: Callable[[], None]) -> None:
        """Runs one scale's steps from where `position` stands, in chunks between
        checkpoints (`save` is called after each chunk)."""
        config = self.config
        while position.scale_step < steps:
            chunk = steps - position.scale_step
            # Only runs that checkpoint break L-BFGS into chunks (each a fresh
            # minimisation, so a resumed run repeats an uninterrupted one); the others
            # keep its curvature memory for the whole scale.
            if config.checkpoint_every and config.checkpoint_dir:
                chunk = min(
                    chunk, config.checkpoint_every - position.scale_step % config.checkpoint_every
                )
            done = position.scale_step
            runner.run(chunk, report, report.check, self.read)
            # L-BFGS may converge early; the chunk still counts as done so that resumed
            # and uninterrupted runs stay in step.
            position.step += done + chunk - position.scale_step
            position.scale_step = done + chunk
            save()

    def _check_size(self, size: int, *shapes: tuple[int, int]) -> None:
        deepest = self.config.layers[-1]
        needed = layer_downsampling(deepest)
        if min(min(shape) for shape in shapes) < needed:
            raise ConfigError(
                f"at {size} px an image side is under {needed} px, too small for {deepest}; "
                "raise --size/--min_size or use shallower layers"
            )


class _PilotFailed(Exception):
    """A pilot step's terms were not finite (the pilot is then not used)."""


def _numpy(value):
    return None if value is None else value.numpy()


def _constant(value):
    return None if value is None else tf.constant(value)


def _unbatch(images: np.ndarray, single: bool) -> np.ndarray:
    return images[0] if single else images


def stylize_arrays(
    content: np.ndarray,
    style,
    config: Config,
    init: np.ndarray | None = None,
    model: FeatureExtractor | None = None,
    callbacks: Sequence[Callable[[Progress], None]] = (),
    masks: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Stylises with a one-off Stylizer; see Stylizer.stylize for the arguments.

    To stylise many images, build one Stylizer and call its stylize(): the network is
    loaded and the step compiled once.
    """
    return Stylizer(config, model).stylize(
        content, style, init=init, masks=masks, callbacks=callbacks
    )


def objective_of(recipe: Recipe, temporal_weight: float = 0.0) -> Objective:
    """The Objective a run's recipe describes.

    Args:
        recipe: The run's recipe: layers and their weights, loss weights, the
            normalization and the style loss.
        temporal_weight: Weight of the temporal loss of video frames (0: no such term).

    Returns:
        The objective, holding values only (no settings object).
    """
    return Objective(
        content_weights=recipe.content_weights(),
        style_weights=recipe.layer_weights(),
        weights={
            "content": recipe.content_weight,
            "style": recipe.style_weight,
            "tv": recipe.tv_weight,
            "temporal": temporal_weight,
        },
        normalization=recipe.normalization,
        style_loss=recipe.style_loss,
    )


__all__ = [
    "LayerStats",
    "MeasuredStyle",
    "Progress",
    "Stylizer",
    "resize_images",
    "scale_sizes",
    "check_pixels",
    "objective_of",
    "scale_steps",
    "stylize_arrays",
]
