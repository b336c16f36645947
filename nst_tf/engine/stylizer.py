"""The Stylizer: owns the network and the compiled step, and runs the coarse-to-fine loop.

Built once from a Config, a Stylizer keeps the FeatureExtractor and one compiled
value-and-gradient step, traced once per image shape, so the thousandth photo of a size
costs no trace. A run reads as its seams: prepare the inputs, then for each scale the
targets, the start image and the optimisation, handing the image up to the next scale.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import itertools
import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from absl import logging

from nst_tf.core import color
from nst_tf.core.objective import LayerStats, Objective, StyleGroup, Targets, TemporalTarget
from nst_tf.core.tiling import TiledStep
from nst_tf.engine import checkpoints, memory
from nst_tf.engine.optimize import OPTIMIZERS
from nst_tf.errors import ConfigError, Interrupted, NumericalError
from nst_tf.io.images import scaled_shape
from nst_tf.model.features import FeatureExtractor, resolve_xla
from nst_tf.settings.config import LARGE_SCALE, Config, layer_downsampling, validate


def scale_sizes(min_size: int, size: int, ratio: float = math.sqrt(2)) -> list[int]:
    """Long-side sizes of a coarse-to-fine pyramid: min_size, min_size*ratio, ..., size.

    Args:
        min_size: The first (coarsest) size; 0 or >= size gives a single scale.
        size: The final size.
        ratio: Growth per scale.

    Returns:
        Increasing sizes ending with `size`.
    """
    if min_size <= 0 or min_size >= size:
        return [size]
    sizes = []
    current = float(min_size)
    while round(current) < size and size / current > 1.1:
        sizes.append(round(current))
        current *= ratio
    return sizes + [size]


def scale_steps(config: Config) -> list[int]:
    """Iterations at each scale of config's pyramid: coarse_steps, ..., steps.

    With config.schedule "auto", a scale larger than LARGE_SCALE px runs fewer steps, in
    proportion to LARGE_SCALE / size (at least a quarter): by then the small scales have
    laid out the picture and the large ones refine detail, at a cost per step that grows
    with the pixels.
    """
    sizes = scale_sizes(config.min_size, config.size)
    steps = [config.coarse_steps] * (len(sizes) - 1) + [config.steps]
    if config.schedule == "fixed":
        return steps
    return [
        n if size <= LARGE_SCALE else max(1, round(n * max(0.25, LARGE_SCALE / size)))
        for n, size in zip(steps, sizes, strict=True)
    ]


def resize_images(images: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Bicubic resize of a [batch, H, W, 3] batch, clipped to 0..255."""
    resized = tf.image.resize(images, (height, width), method="bicubic", antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)


@dataclasses.dataclass
class Progress:
    """What the loop hands to callbacks after every step.

    Attributes:
        step: Global step, counted across all scales, starting at 1.
        scale: Index of the current scale (0 = coarsest).
        size: Long side of the current scale in pixels.
        losses: Named loss values ("total", "content", "style", "tv", "style/<layer>").
        seconds_per_step: Wall time of this step.
        image: Callable returning the current image as a float32 [H, W, 3] array (a
            read from the device: call it only when the image is needed).
        traces: How many times the step has been traced so far by this Stylizer.
        total_steps: Steps of the whole run, over all scales.
        elapsed: Seconds since this call of stylize() began.
        first_step: The first step this call ran (after a resume, later than 1).
        work: Pixels processed by the end of each step, from work[0] = 0 to
            work[total_steps]: a step of a scale twice as large costs about four
            times as much, so the ETA weighs steps by their pixels. Empty: by steps.
    """

    step: int
    scale: int
    size: int
    losses: dict[str, float]
    seconds_per_step: float
    image: Callable[[], np.ndarray]
    traces: int = 0
    total_steps: int = 0
    elapsed: float = 0.0
    first_step: int = 1
    work: Sequence[float] = ()

    @property
    def eta(self) -> float | None:
        """Seconds left, from the pace of the steps run so far (None at first).

        The pace is per pixel when `work` is known (a multi-scale run's later steps are
        the larger ones), else per step.
        """
        done = self.step - self.first_step + 1
        if done < 1 or self.total_steps <= 0:
            return None
        left = max(self.total_steps - self.step, 0)
        if len(self.work) == self.total_steps + 1 and self.step <= self.total_steps:
            done_work = self.work[self.step] - self.work[self.first_step - 1]
            if done_work > 0:
                return self.elapsed / done_work * (self.work[-1] - self.work[self.step])
        return self.elapsed / done * left


class _Cached(NamedTuple):
    """A cached runner: its image variable, optimiser, held targets, and the bytes they
    keep (image-sized state and the L-BFGS history)."""

    image: tf.Variable
    runner: object
    held: object
    bytes: float


class MeasuredStyle(NamedTuple):
    """Style images' statistics at every scale of a pyramid, as numpy arrays.

    Measured once by Stylizer.measure_style and passed to stylize() as `style`, so that
    many photos of one style (on one machine or many: it pickles) share one measurement.

    Attributes:
        sizes: The long side of each scale, coarse to fine.
        stats: Per size, per style image, LayerStats by style layer.
    """

    sizes: tuple[int, ...]
    stats: tuple[tuple[dict[str, LayerStats], ...], ...]

    def at(self, size: int) -> tuple[dict[str, LayerStats], ...]:
        """The statistics at the scale of long side `size`.

        Raises:
            ConfigError: the style was not measured at that size.
        """
        if size not in self.sizes:
            raise ConfigError(
                f"the style was measured at {self.sizes} px, not at {size} px; "
                "measure it with the same --size and --min_size"
            )
        return self.stats[self.sizes.index(size)]


@dataclasses.dataclass
class Inputs:
    """A stylisation's inputs as tensors, prepared once for all scales.

    Attributes:
        content: [batch, H, W, 3] float32 in 0..255.
        styles: The style images, each [1, h, w, 3]; None with fixed style groups.
        fixed: Style groups used at every scale (a style targets file); else None.
        init: The start image for config.init, [1 or batch, h, w, 3], or None.
        masks: One [H, W] array in 0..1 per style image, or None.
        single: Whether the caller gave one [H, W, 3] image (and gets one back).
        start: An image to start the first scale from instead of config.init, or None.
        temporal: (warped previous frame [1, H, W, 3], weights [1, H, W, 1]) for a
            video frame's temporal loss, or None.
        measured: The style images' statistics measured beforehand, or None.
    """

    content: tf.Tensor
    styles: list[tf.Tensor] | None
    fixed: tuple[StyleGroup, ...] | None
    init: tf.Tensor | None
    masks: list[np.ndarray] | None
    single: bool
    start: tf.Tensor | None = None
    temporal: tuple[tf.Tensor, tf.Tensor] | None = None
    measured: MeasuredStyle | None = None


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

    # Compiled optimisers (with their image variable) kept for this many image shapes.
    CACHED_SHAPES = 8

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
        self._runners = OrderedDict()
        # From a function object of its own: TensorFlow counts traces per Python function
        # and would call one trace per Stylizer "retracing".
        self._step = tf.function(
            functools.partial(Stylizer._value_and_grad, self), jit_compile=self.xla
        )
        # The memory budget is read once: scales are planned against the same number.
        self.budget = memory.budget_bytes(self.config)
        self._tiled = {}

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

    def _runner(self, shape: tuple[int, ...], targets: Targets):
        """The image variable and optimiser for an image shape, reused across images.

        The optimisers' functions are traced once per shape, so what changes from one
        image to the next must reach them as variables: the start image, and the
        targets, held in variables of the same structure and assigned for each image.
        """
        layout = tf.nest.map_structure(lambda t: None if t is None else tuple(t.shape), targets)
        key = (shape, self.config.optimizer, repr(layout))
        if key in self._runners:
            self._runners.move_to_end(key)
            image, runner, held, _ = self._runners[key]
            tf.nest.map_structure(lambda v, t: t is None or v.assign(t), held, targets)
            return image, runner
        # A shape whose whole-image step would not fit the budget gets the exact tiled
        # step, and an L-BFGS history that fits beside it.
        plan = memory.plan_scale(shape[1], shape[2], self.config, self.budget)
        self._evict(plan.peak)
        image = tf.Variable(tf.zeros(shape), trainable=True, name="image")
        held = tf.nest.map_structure(
            lambda t: None if t is None else tf.Variable(t, trainable=False), targets
        )
        step = self._tiled_step(plan.tile, plan.split) or self._step
        config = dataclasses.replace(self.config, lbfgs_memory=plan.lbfgs_memory)
        memory.log_plan(shape[1], shape[2], self.config, plan, self.budget)
        runner = OPTIMIZERS[self.config.optimizer](image, lambda x: step(x, held), config)
        pixels = shape[0] * shape[1] * shape[2]
        kept = (
            memory.history_bytes_per_pixel(config) + memory.WHOLE_IMAGE_BYTES_PER_PIXEL
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

    def evaluate(self, image: np.ndarray, targets: Targets) -> dict[str, float]:
        """The named loss terms (and the gradient's norm) of an image [batch, H, W, 3]."""
        values, _ = self._step(tf.constant(image, tf.float32), targets)
        return self.objective.unpack(self.read(values))

    def _tiled_step(self, tile: int, split: bool = False):
        """The compiled tiled step for tiles of `tile` px (None for 0: untiled)."""
        if not tile:
            return None
        if (tile, split) not in self._tiled:
            tiled = TiledStep(self.model, self.objective, tile, split)
            self._tiled[tile, split] = (tiled, tf.function(tiled.value_and_grad))
        return self._tiled[tile, split][1]

    def _tiles_for(self, image: tf.Tensor) -> TiledStep | None:
        """The TiledStep for an image too large to run whole, else None."""
        plan = memory.plan_scale(image.shape[1], image.shape[2], self.config, self.budget)
        return (
            self._tiled[plan.tile, plan.split][0]
            if self._tiled_step(plan.tile, plan.split)
            else None
        )

    def _content_features(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        """The content layers' maps of an image (stitched from tiles when it is large)."""
        tiled = self._tiles_for(image)
        if tiled is None:
            return self.model(image)
        return tiled.features(image, tuple(self.objective.content_weights))

    def _image_statistics(self, image: tf.Tensor) -> dict[str, LayerStats]:
        """The style statistics of an image (summed over tiles when it is large)."""
        tiled = self._tiles_for(image)
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
    ) -> Inputs:
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
        content = check_pixels(content, "content", batch=True)
        single = content.ndim == 3
        content_t = tf.constant(content[None] if single else content)
        measured = style if isinstance(style, MeasuredStyle) else None
        grams = getattr(style, "grams", style)
        styles, fixed = None, None
        if measured is not None:
            if config.preserve_color == "histogram":
                raise ConfigError(_HISTOGRAM_MEASURED)
        elif isinstance(grams, Mapping):
            fixed = self.objective.gram_groups(grams)
        else:
            images = [style] if isinstance(style, np.ndarray) else list(style)
            if not images:
                raise ConfigError("no style given: pass a style image, a list, or targets")
            if config.style_blend_weights and len(config.style_blend_weights) != len(images):
                raise ConfigError(
                    f"style_blend_weights has {len(config.style_blend_weights)} values for "
                    f"{len(images)} style images; give one per style image"
                )
            images = _style_images(images)
            if config.preserve_color == "histogram":
                images = [color.match_color(image, content_t[0].numpy()) for image in images]
            styles = [tf.constant(np.asarray(image, np.float32)[None]) for image in images]
        if config.init == "style":
            if styles is None:
                raise ConfigError("--init=style needs a style image, not style statistics")
            init = styles[0]
        elif init is not None:
            init = check_pixels(init, "init", batch=True)
            init = tf.constant(init[None] if init.ndim == 3 else init)
        masks = list(masks) if masks else None
        return Inputs(content_t, styles, fixed, init, masks, single, measured=measured)

    def targets(self, inputs: Inputs, size: int) -> Targets:
        """Content activations and style statistics at the scale of long side `size`."""
        config = self.config
        height, width = scaled_shape(*inputs.content.shape[1:3], size)
        self._check_size(size, (height, width))
        features = self._content_features(resize_images(inputs.content, height, width))
        content_targets = {name: features[name] for name in self.objective.content_weights}
        temporal = self._temporal(inputs, (height, width))
        if inputs.fixed is not None:
            return Targets(content_targets, inputs.fixed, temporal)
        if inputs.measured is not None:
            stats = [
                {name: LayerStats(*map(_constant, layer)) for name, layer in image.items()}
                for image in inputs.measured.at(size)
            ]
        else:
            stats = self._style_statistics(inputs.styles, size)
        return Targets(
            content_targets,
            self.objective.style_groups(
                stats,
                config.blend_weights(len(stats)),
                self._layer_masks(inputs.masks, (height, width)),
            ),
            temporal,
        )

    def _temporal(self, inputs: Inputs, shape: tuple[int, int]) -> TemporalTarget | None:
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
            raise ConfigError(_HISTOGRAM_MEASURED)
        images = _style_images([style] if isinstance(style, np.ndarray) else list(style))
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

    def _layer_masks(self, masks, shape) -> list[dict[str, tf.Tensor]] | None:
        """Each style's mask at the content's size, then at every style layer's size."""
        if masks is None:
            return None
        layer_masks = []
        for mask in masks:
            at_content = tf.image.resize(np.reshape(mask, (1, *np.shape(mask)[:2], 1)), shape)
            layer_masks.append(
                {
                    # Each 2x2 pooling halves a side, rounding down.
                    name: tf.image.resize(
                        at_content, [side // layer_downsampling(name) for side in shape], "area"
                    )
                    for name in self.objective.style_weights
                }
            )
        return layer_masks

    def start_image(
        self, inputs: Inputs, shape: tuple[int, int], rng: tf.random.Generator
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
                frame starts from the previous stylised frame, warped).
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
        if start is not None:
            inputs.start = tf.constant(check_pixels(start, "start")[None])
        if temporal is not None:
            warped, weights = (np.asarray(a, np.float32) for a in temporal)
            inputs.temporal = (tf.constant(warped[None]), tf.constant(weights[None, ..., None]))
        if schedule:
            sizes, steps = (list(column) for column in zip(*schedule, strict=True))
        else:
            sizes, steps = scale_sizes(self.config.min_size, self.config.size), scale_steps(
                self.config
            )
        pixels = [math.prod(scaled_shape(*inputs.content.shape[1:3], size)) for size in sizes]
        run = self._begin(
            sum(steps), [p for p, n in zip(pixels, steps, strict=True) for _ in range(n)]
        )
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

    def _begin(self, total_steps: int, step_pixels: Sequence[int] = ()) -> _Run:
        """A run's state: fresh, or the position of the checkpoint it resumes.

        Args:
            total_steps: Steps over all scales.
            step_pixels: The pixels of each step's scale, for the ETA.
        """
        config = self.config
        run = _Run(checkpoints.RunState(config), checkpoints.Position())
        if config.checkpoint_dir and config.resume:
            run.restore_path, run.position = checkpoints.read_position(
                config.checkpoint_dir, config
            )
            logging.info("resuming %s at step %d", run.restore_path, run.position.step)
        elif config.checkpoint_dir:
            checkpoints.clear(config.checkpoint_dir)
        run.clock = _Clock(total_steps, run.position.step + 1)
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
        variable, runner = self._runner(shape + (3,), targets)
        variable.assign(start)
        runner.reset()
        manager = self._checkpoint_manager(run, variable, runner)
        logging.info(
            "scale %d/%d: %dx%d px, %d steps",
            scale + 1,
            len(sizes),
            shape[2],
            shape[1],
            steps[scale],
        )
        report = _Reporter(self, run.clock, callbacks, scale, size, variable, run.position)
        save = functools.partial(_save, manager, run.state, run.position)
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

    def _checkpoint_manager(self, run, variable, runner) -> tf.train.CheckpointManager | None:
        """Checkpoints of this scale's image and optimiser (restored once when resuming)."""
        if not self.config.checkpoint_dir:
            return None
        checkpoint = run.state.checkpoint(image=variable, **runner.state())
        manager = tf.train.CheckpointManager(checkpoint, self.config.checkpoint_dir, max_to_keep=2)
        if run.restore_path:
            checkpoint.restore(run.restore_path).assert_existing_objects_matched()
            run.restore_path = None
        return manager

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


@dataclasses.dataclass
class _Run:
    """One stylize() call's state across scales: what a checkpoint saves, where the run
    stands, the checkpoint to restore (until restored) and the clock."""

    state: checkpoints.RunState
    position: checkpoints.Position
    restore_path: str | None = None
    clock: _Clock | None = None


class _Clock:
    """Wall time of one stylize() call, for progress and ETA."""

    def __init__(self, total_steps: int, first_step: int):
        self.start = self.last = time.perf_counter()
        self.total_steps, self.first_step = total_steps, first_step
        self.work: tuple[float, ...] = ()

    def tick(self) -> tuple[float, float]:
        """(seconds since the last tick, seconds since the start)."""
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        return seconds, now - self.start


class _Reporter:
    """Turns each step's one read into a Progress for the callbacks, and names the term
    that went non-finite."""

    def __init__(self, stylizer, clock, callbacks, scale, size, variable, position):
        self.stylizer, self.clock, self.callbacks = stylizer, clock, callbacks
        self.scale, self.size, self.variable, self.position = scale, size, variable, position

    def __call__(self, values: np.ndarray) -> None:
        position = self.position
        position.step += 1
        position.scale_step += 1
        seconds, elapsed = self.clock.tick()
        variable = self.variable
        progress = Progress(
            step=position.step,
            scale=self.scale,
            size=self.size,
            losses=self.stylizer.objective.unpack(values),
            seconds_per_step=seconds,
            image=lambda: variable.numpy()[0],
            traces=self.stylizer.trace_count,
            total_steps=self.clock.total_steps,
            elapsed=elapsed,
            first_step=self.clock.first_step,
            work=self.clock.work,
        )
        for callback in self.callbacks:
            callback(progress)

    def check(self, values: np.ndarray) -> None:
        """Raises NumericalError naming the first loss term that is NaN or infinite."""
        terms = self.stylizer.objective.unpack(values)
        step = self.position.step + 1
        raw = [
            n for n in terms if n not in ("total", "grad_norm") and not n.startswith("weighted/")
        ]
        bad = [n for n in raw if not math.isfinite(terms[n])]
        if bad:
            culprit = f"the {bad[0]} loss became {terms[bad[0]]}"
        elif not math.isfinite(terms["total"]):
            culprit = f"the weighted total overflowed to {terms['total']}"
        else:
            culprit = "the gradient became NaN or infinite"
        raise NumericalError(
            f"step {step}: {culprit}; lower --learning_rate or the loss weights "
            "(the last finite image was kept)"
        )


_HISTOGRAM_MEASURED = (
    "--preserve_color=histogram recolours the style for each photo: pass the style images"
)


def check_pixels(value, name: str, batch: bool = False) -> np.ndarray:
    """An image argument as float32 RGB in 0..255, checked before any TensorFlow work.

    Args:
        value: An [H, W, 3] array (or, with `batch`, [batch, H, W, 3], or a list of
            [H, W, 3] arrays of one shape) of RGB values in 0..255, any numeric dtype.
        name: The argument's name, for the messages.
        batch: Whether a batch is allowed.

    Returns:
        The image as a float32 array.

    Raises:
        ConfigError: the shape is not RGB (an alpha channel, a grey image), a list
            mixes shapes, or a value is NaN, infinite or outside 0..255.

    A float image whose largest value is at most 1 (0..1 scaled, the commonest
    notebook mistake) runs, but with a UserWarning: it is nearly black in 0..255.
    """
    if isinstance(value, (list, tuple)):
        if not batch:
            raise ConfigError(f"{name} must be one [H, W, 3] image array, got a list")
        shapes = {np.shape(image) for image in value}
        if len(shapes) > 1:
            shown_shapes = ", ".join(str(shape) for shape in sorted(shapes))
            raise ConfigError(
                f"{name}: the images of a batch must share one shape, got {shown_shapes}; "
                "resize them to one shape or stylise them one at a time"
            )
    array = np.asarray(value)
    scaled_float = np.issubdtype(array.dtype, np.floating)
    if not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"{name} must be a numeric image array, got dtype {array.dtype}")
    layouts = "[H, W, 3] or [batch, H, W, 3]" if batch else "[H, W, 3]"
    if array.ndim not in ((3, 4) if batch else (3,)) or array.shape[-1] != 3:
        hint = ""
        if array.ndim >= 3 and array.shape[-1] == 4:
            hint = "; drop the alpha channel with image[..., :3]"
        elif array.ndim == 2 or (array.ndim >= 3 and array.shape[-1] == 1):
            hint = "; repeat a grey image to RGB with np.dstack([image] * 3)"
        raise ConfigError(f"{name} must be {layouts} RGB, got shape {array.shape}{hint}")
    if array.size == 0:
        raise ConfigError(f"{name} is empty (shape {array.shape})")
    array = array.astype(np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        raise ConfigError(
            f"{name} has {array.size - np.count_nonzero(finite)} NaN or infinite values; "
            "give finite RGB values in 0..255"
        )
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 255.0:
        raise ConfigError(
            f"{name} has values in {low:g}..{high:g}, outside 0..255; give 8-bit RGB "
            "values (scale 16-bit images by 255 / 65535)"
        )
    if scaled_float and 0.0 < high <= 1.0:
        warnings.warn(
            f"{name} has values in {low:g}..{high:g}: it looks scaled to 0..1, but images "
            "are RGB in 0..255 (multiply by 255)",
            UserWarning,
            stacklevel=4,
        )
    return array


def _style_images(images: list) -> list[np.ndarray]:
    """Each style image checked (named by its index when there are several)."""
    if not images:
        return []
    if len(images) == 1:
        return [check_pixels(images[0], "style")]
    return [check_pixels(image, f"style[{i}]") for i, image in enumerate(images)]


def _numpy(value):
    return None if value is None else value.numpy()


def _constant(value):
    return None if value is None else tf.constant(value)


def _save(manager, state: checkpoints.RunState, position: checkpoints.Position) -> None:
    if manager:
        state.set(position)
        manager.save(checkpoint_number=position.step)


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


__all__ = [
    "LayerStats",
    "MeasuredStyle",
    "Progress",
    "Stylizer",
    "resize_images",
    "scale_sizes",
    "check_pixels",
    "stylize_arrays",
]


def objective_of(config: Config, temporal_weight: float = 0.0) -> Objective:
    """The Objective a run's settings describe.

    Args:
        config: The run's settings: layers and their weights, loss weights, the
            normalization and the style loss.
        temporal_weight: Weight of the temporal loss of video frames (0: no such term).

    Returns:
        The objective, holding values only (no settings object).
    """
    return Objective(
        content_weights=config.content_weights(),
        style_weights=config.layer_weights(),
        weights={
            "content": config.content_weight,
            "style": config.style_weight,
            "tv": config.tv_weight,
            "temporal": temporal_weight,
        },
        normalization=config.normalization,
        style_loss=config.style_loss,
    )
