"""The optimisation: loss terms, the compiled step, the scale pyramid and the loop."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import scipy.optimize
import tensorflow as tf
from absl import logging

from nst_tf import checkpoints, color, losses
from nst_tf.config import Config, layer_downsampling
from nst_tf.errors import ConfigError, Interrupted, NumericalError
from nst_tf.features import FeatureExtractor, resolve_xla
from nst_tf.images import scaled_shape
from nst_tf.lbfgs import BoxLbfgs


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


@dataclasses.dataclass
class Progress:
    """What the loop hands to callbacks after every step.

    Attributes:
        step: Global step, counted across all scales, starting at 1.
        scale: Index of the current scale (0 = coarsest).
        size: Long side of the current scale in pixels.
        losses: Named loss values ("total", "content", "style", "tv", "style/<layer>").
        seconds_per_step: Wall time of this step.
        image: Callable returning the current image as a float32 [H, W, 3] array.
        traces: How many times the loss graph has been traced so far in this run
            (one per scale; more would mean per-step retracing).
    """

    step: int
    scale: int
    size: int
    losses: dict[str, float]
    seconds_per_step: float
    image: Callable[[], np.ndarray]
    traces: int = 0


Targets = dict[str, tf.Tensor]


class Objective:
    """The weighted sum of content, style and TV losses against fixed targets.

    Weights are applied here and nowhere else; every term is returned by name.
    """

    def __init__(self, model: FeatureExtractor, config: Config):
        self.model = model
        self.config = config
        self.content_layers = tuple(config.content_layers)
        self.content_weights = config.content_weights()
        self.style_weights = config.layer_weights()
        self.traces = 0

    def targets(
        self,
        content: tf.Tensor,
        style: tf.Tensor | Sequence[tf.Tensor] | Mapping[str, np.ndarray],
        masks: Sequence[tf.Tensor] | None = None,
    ) -> Targets:
        """Content activations and style statistics, computed once per scale.

        Args:
            content: The content image at this scale, [batch, H, W, 3].
            style: The style image at this scale; several style images, whose statistics
                are blended with config.blend_weights (jcjohnson's blending); or Gram
                matrices by layer (a style targets file), used as they are.
            masks: With several style images, one [1, H, W, 1] mask per style (at the
                content's size) saying where in the output that style applies. Each
                style then has its own loss over its region instead of a blend.
        """
        content_features = self.model(content)
        targets = {f"content/{name}": content_features[name] for name in self.content_layers}
        if isinstance(style, Mapping):
            targets.update({f"style0/{n}": tf.constant(style[n]) for n in self.style_weights})
            targets["weight0"] = tf.constant(1.0)
            return targets
        styles = list(style) if isinstance(style, Sequence) else [style]
        blend = self.config.blend_weights(len(styles))
        stats = [self.style_statistics(image) for image in styles]
        if masks:
            # Each style counts fully in its own region; blend weights scale that.
            groups = [([s], [1.0], len(styles) * b) for s, b in zip(stats, blend, strict=True)]
        else:
            groups = [(stats, blend, 1.0)]
        for g, (members, weights, group_weight) in enumerate(groups):
            targets[f"weight{g}"] = tf.constant(group_weight)
            for key in members[0]:
                targets[f"style{g}/{key}"] = tf.add_n(
                    [w * m[key] for w, m in zip(weights, members, strict=True)]
                )
            if self.config.style_loss == "wasserstein":
                for name in self.style_weights:
                    # Blending averages the covariances; their root is taken afterwards.
                    cov = targets[f"style{g}/cov/{name}"]
                    targets[f"style{g}/cov_sqrt/{name}"] = losses.sqrtm_psd(cov)
            if masks:
                for name in self.style_weights:
                    size = tf.shape(content_features[name])[1:3]
                    targets[f"mask{g}/{name}"] = tf.image.resize(masks[g], size, method="area")
        return targets

    def style_statistics(self, style: tf.Tensor) -> dict[str, tf.Tensor]:
        """What the style loss compares, per style layer, for a style image [1, H, W, 3].

        Gram loss: the Gram matrix under the layer's name. Wasserstein loss: the
        feature mean and covariance, as "mean/<layer>" and "cov/<layer>".
        """
        if self.config.style_loss == "gram":
            return self.style_grams(style)
        features = self.model(style)
        stats = {}
        for name in self.style_weights:
            stats[f"mean/{name}"], stats[f"cov/{name}"] = losses.feature_statistics(features[name])
        return stats

    def style_grams(self, style: tf.Tensor) -> dict[str, tf.Tensor]:
        """The Gram matrix of each style layer for a style image [1, H, W, 3]."""
        features = self.model(style)
        normalize = self.config.normalization != "course"
        return {name: losses.gram_matrix(features[name], normalize) for name in self.style_weights}

    def _style_layer(self, targets, group: int, name: str, features: tf.Tensor) -> tf.Tensor:
        if self.config.style_loss == "wasserstein":
            return losses.wasserstein_layer_loss(
                targets[f"style{group}/mean/{name}"],
                targets[f"style{group}/cov_sqrt/{name}"],
                targets[f"style{group}/cov/{name}"],
                features,
            )
        mask = targets.get(f"mask{group}/{name}")
        return losses.style_layer_loss(
            targets[f"style{group}/{name}"], features, self.config.normalization, mask
        )

    def __call__(self, images: tf.Tensor, targets: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Named loss terms summed over the batch; "total" is the weighted sum."""
        # Inside tf.function this Python line runs only while tracing: a cheap,
        # testable count of how often the step is (re)compiled.
        self.traces += 1
        norm = self.config.normalization
        features = self.model(images)
        content = tf.add_n(
            [
                weight * losses.content_loss(targets[f"content/{name}"], features[name], norm)
                for name, weight in self.content_weights.items()
            ]
        )
        groups = sum(1 for key in targets if key.startswith("weight"))
        per_layer = {
            name: tf.add_n(
                [
                    targets[f"weight{g}"] * self._style_layer(targets, g, name, features[name])
                    for g in range(groups)
                ]
            )
            for name in self.style_weights
        }
        style = tf.add_n([self.style_weights[name] * loss for name, loss in per_layer.items()])
        tv = losses.total_variation_loss(images, norm)
        cfg = self.config
        terms = {
            "content": tf.reduce_sum(content),
            "style": tf.reduce_sum(style),
            "tv": tf.reduce_sum(tv),
        }
        terms["total"] = (
            cfg.content_weight * terms["content"]
            + cfg.style_weight * terms["style"]
            + cfg.tv_weight * terms["tv"]
        )
        terms["weighted/content"] = cfg.content_weight * terms["content"]
        terms["weighted/tv"] = cfg.tv_weight * terms["tv"]
        for name, value in per_layer.items():
            terms[f"style/{name}"] = tf.reduce_sum(value)
            terms[f"weighted/style/{name}"] = (
                cfg.style_weight * self.style_weights[name] * terms[f"style/{name}"]
            )
        return terms


def _value_and_grad_fn(objective: Objective, image: tf.Variable, config: Config) -> Callable:
    @tf.function(jit_compile=resolve_xla(config.xla, config.deterministic))
    def value_and_grad(targets):
        with tf.GradientTape() as tape:
            terms = objective(image, targets)
        grad = tape.gradient(terms["total"], image)
        terms["grad_norm"] = tf.norm(grad)
        return terms, grad

    return value_and_grad


def _check_finite(terms: Mapping[str, tf.Tensor], step: int) -> None:
    """Raises NumericalError naming the first loss term that is NaN or infinite."""
    if math.isfinite(float(terms["total"])) and math.isfinite(float(terms["grad_norm"])):
        return
    values = {name: float(value) for name, value in terms.items()}
    raw = [n for n in values if n not in ("total", "grad_norm") and not n.startswith("weighted/")]
    bad = [n for n in raw if not math.isfinite(values[n])]
    if bad:
        culprit = f"the {bad[0]} loss became {values[bad[0]]}"
    elif not math.isfinite(values["total"]):
        culprit = f"the weighted total overflowed to {values['total']}"
    else:
        culprit = "the gradient became NaN or infinite"
    raise NumericalError(
        f"step {step}: {culprit}; lower --learning_rate or the loss weights "
        "(the last finite image was kept)"
    )


class _Adam:
    """Adam on the image; its moments are part of the checkpoint."""

    def __init__(self, objective, image, targets, config):
        self.image, self.targets = image, targets
        # A tiny epsilon keeps Adam invariant to the loss scale, which the weights change.
        self.optimizer = keras.optimizers.Adam(
            learning_rate=float(config.learning_rate),
            beta_1=float(config.adam_beta1),
            beta_2=float(config.adam_beta2),
            epsilon=1e-8,
        )
        # Creating the slots now, not on the first call, spares tf.function a second trace.
        self.optimizer.build([image])
        self.value_and_grad = _value_and_grad_fn(objective, image, config)

        @tf.function
        def apply(grad):
            self.optimizer.apply_gradients([(grad, image)])
            # Projected gradient descent: stay inside the valid pixel range throughout,
            # rather than clamping an unbounded result at the end.
            image.assign(tf.clip_by_value(image, 0.0, 255.0))

        self.apply = apply

    def state(self) -> dict:
        return {"optimizer": self.optimizer}

    def run(self, steps: int, on_step: Callable, step: int) -> None:
        for i in range(steps):
            start = time.perf_counter()
            terms, grad = self.value_and_grad(self.targets)
            _check_finite(terms, step + i + 1)  # before the update: the image stays finite
            self.apply(grad)
            terms["learning_rate"] = self.optimizer.learning_rate
            on_step(terms, time.perf_counter() - start)


class _Lbfgs:
    """L-BFGS within the pixel bounds, in TensorFlow (nst_tf.lbfgs.BoxLbfgs).

    Each run() is a fresh minimisation, so at a checkpoint the image is the whole
    optimiser state and a resumed run repeats an uninterrupted one exactly.
    """

    def __init__(self, objective, image, targets, config):
        value_and_grad = _value_and_grad_fn(objective, image, config)
        self.minimizer = BoxLbfgs(
            image, lambda: value_and_grad(targets), memory=config.lbfgs_memory
        )

    def state(self) -> dict:
        return {}

    def run(self, steps: int, on_step: Callable, step: int) -> None:
        clock, done = [time.perf_counter()], [step]

        def after(terms, grad):
            now = time.perf_counter()
            done[0] += 1
            on_step(terms, now - clock[0])
            clock[0] = now

        self.minimizer.run(steps, after, lambda terms: _check_finite(terms, done[0] + 1))


class _ScipyLbfgs:
    """SciPy's L-BFGS-B within the pixel bounds: the reference for _Lbfgs.

    Same method, but its single-threaded float64 bookkeeping costs 0.22 s an
    iteration at 512x342 px with 20 pairs (0.45 s with 50), plus seconds of set-up per
    run; see nst_tf.lbfgs. Each run() is a fresh minimisation, as in _Lbfgs.
    """

    def __init__(self, objective, image, targets, config):
        self.image, self.targets = image, targets
        self.value_and_grad = _value_and_grad_fn(objective, image, config)
        self.memory = config.lbfgs_memory

    def state(self) -> dict:
        return {}

    def run(self, steps: int, on_step: Callable, step: int) -> None:
        image, shape = self.image, self.image.shape
        last = {}
        clock = [time.perf_counter()]
        accepted = [image.numpy()]

        def fun(x):
            image.assign(tf.constant(x.reshape(shape), tf.float32))
            terms, grad = self.value_and_grad(self.targets)
            try:
                _check_finite(terms, step + len(accepted))
            except NumericalError:
                image.assign(accepted[-1])
                raise
            last["terms"] = terms
            return float(terms["total"]), grad.numpy().astype(np.float64).ravel()

        def callback(intermediate_result):
            # The variable may hold a rejected line-search trial: show the accepted point.
            accepted[-1:] = [intermediate_result.x.reshape(shape).astype(np.float32)]
            accepted.append(accepted[-1])
            image.assign(accepted[-1])
            now = time.perf_counter()
            on_step(last["terms"], now - clock[0])
            clock[0] = now

        result = scipy.optimize.minimize(
            fun,
            image.numpy().astype(np.float64).ravel(),
            jac=True,
            method="L-BFGS-B",
            bounds=scipy.optimize.Bounds(0.0, 255.0),
            callback=callback,
            # ftol/gtol 0: run the iterations asked for; the loss scale is arbitrary.
            options={
                "maxiter": steps,
                "maxfun": 2 * steps + 10,
                "maxcor": self.memory,
                "ftol": 0.0,
                "gtol": 0.0,
            },
        )
        image.assign(tf.constant(result.x.reshape(shape), tf.float32))


_OPTIMIZERS = {"adam": _Adam, "lbfgs": _Lbfgs, "lbfgs_scipy": _ScipyLbfgs}


def resize_images(images: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Bicubic resize of a [batch, H, W, 3] batch, clipped to 0..255."""
    resized = tf.image.resize(images, (height, width), method="bicubic", antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)


def stylize_arrays(
    content: np.ndarray,
    style: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray],
    config: Config,
    init: np.ndarray | None = None,
    model: FeatureExtractor | None = None,
    callbacks: Sequence[Callable[[Progress], None]] = (),
    masks: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Stylises a batch of content images with one or more style images.

    With config.checkpoint_dir set, a checkpoint is written every config.checkpoint_every
    steps and at the end of each scale, and config.resume continues the newest one.

    Args:
        content: [batch, H, W, 3] or [H, W, 3] float RGB in 0..255, any resolution; it is
            resized to each scale of the pyramid.
        style: [H, W, 3] float RGB in 0..255, resized to each scale (times its
            config.style_scale); a list of such images, blended with
            config.style_blend_weights; or a mapping of Gram matrices by style layer (a
            style targets file) used at every scale.
        config: Validated settings (size, steps, weights, layers, optimiser...).
        init: Optional start image, same layout as `content`; used when config.init is
            a path.
        model: A FeatureExtractor for config.layers; built from config when None.
        callbacks: Called with a Progress after every step.
        masks: One [H, W] or [H, W, 1] array in 0..1 per style image, any resolution,
            saying where each style applies (region-specific styles).

    Returns:
        The result as float32, [batch, H, W, 3] (or [H, W, 3] if `content` was 3-D).

    Raises:
        NumericalError: a loss went NaN/inf; its `image` is the last finite image.
        Interrupted: a callback stopped the run; a checkpoint of that moment is saved.
    """
    single = content.ndim == 3
    content = tf.constant(content[None] if single else content, tf.float32)
    fixed_grams = style if isinstance(style, Mapping) else None
    if fixed_grams is None:
        styles = [style] if isinstance(style, np.ndarray) else list(style)
        if config.preserve_color == "histogram":
            styles = [color.match_color(image, content[0].numpy()) for image in styles]
        styles = [tf.constant(image[None], tf.float32) for image in styles]
    if config.init == "style":
        init = styles[0] if fixed_grams is None else None
        if init is None:
            raise ConfigError("--init=style needs a style image, not --style_targets")
    elif init is not None:
        init = tf.constant(init[None] if init.ndim == 3 else init, tf.float32)
    if model is None:
        model = FeatureExtractor(
            config.layers, config.vgg_weights or "auto", config.precision, config.pooling
        )
    objective = Objective(model, config)
    sizes = scale_sizes(config.min_size, config.size)
    state = checkpoints.RunState(config)
    position, restore_path = checkpoints.Position(), None
    if config.checkpoint_dir and config.resume:
        restore_path, position = checkpoints.read_position(config.checkpoint_dir, config)
        logging.info("resuming %s at step %d", restore_path, position.step)
    elif config.checkpoint_dir:
        checkpoints.clear(config.checkpoint_dir)
    image = None
    for scale in range(position.scale, len(sizes)):
        size = sizes[scale]
        height, width = scaled_shape(int(content.shape[1]), int(content.shape[2]), size)
        content_at = resize_images(content, height, width)
        if fixed_grams is None:
            # Each style is measured at its --style_scale relative to this scale's size.
            shapes = [
                scaled_shape(*image.shape[1:3], max(1, round(size * config.scale_of(i))))
                for i, image in enumerate(styles)
            ]
            _check_size(config, size, (height, width), *shapes)
            resized = [resize_images(im, *shape) for im, shape in zip(styles, shapes, strict=True)]
            masks_at = None
            if masks is not None:
                masks_at = [
                    tf.image.resize(np.reshape(m, (1, *np.shape(m)[:2], 1)), (height, width))
                    for m in masks
                ]
            targets = objective.targets(content_at, resized, masks_at)
        else:
            _check_size(config, size, (height, width))
            targets = objective.targets(content_at, fixed_grams)
        if image is None:
            start = _initial_image(config, content_at, init, state.rng)
        else:
            start = resize_images(image.value(), height, width)
        image = tf.Variable(start, trainable=True, name=f"image_{scale}")
        runner = _OPTIMIZERS[config.optimizer](objective, image, targets, config)
        manager = None
        if config.checkpoint_dir:
            checkpoint = state.checkpoint(image=image, **runner.state())
            manager = tf.train.CheckpointManager(checkpoint, config.checkpoint_dir, max_to_keep=2)
            if restore_path:
                checkpoint.restore(restore_path).assert_existing_objects_matched()
                restore_path = None
        steps = config.steps if scale == len(sizes) - 1 else config.coarse_steps
        logging.info("scale %d/%d: %dx%d px, %d steps", scale + 1, len(sizes), width, height, steps)

        def on_step(terms, seconds, scale=scale, size=size, image=image, position=position):
            position.step += 1
            position.scale_step += 1
            values = {name: float(value) for name, value in terms.items()}
            progress = Progress(
                position.step,
                scale,
                size,
                values,
                seconds,
                lambda: image.numpy()[0],
                objective.traces,
            )
            for callback in callbacks:
                callback(progress)

        try:
            while position.scale_step < steps:
                chunk = steps - position.scale_step
                # Only runs that checkpoint break L-BFGS into chunks (each a fresh
                # minimisation, so a resumed run repeats an uninterrupted one); the
                # others keep its curvature memory for the whole scale.
                if config.checkpoint_every and manager:
                    chunk = min(
                        chunk,
                        config.checkpoint_every - position.scale_step % config.checkpoint_every,
                    )
                done = position.scale_step
                runner.run(chunk, on_step, position.step)
                # L-BFGS may converge early; the chunk still counts as done so that
                # resumed and uninterrupted runs stay in step.
                position.step += done + chunk - position.scale_step
                position.scale_step = done + chunk
                _save(manager, state, position)
        except Interrupted as stop:
            _save(manager, state, position)
            stop.step, stop.image = position.step, _unbatch(image.numpy(), single)
            raise
        except NumericalError as err:
            err.image = _unbatch(image.numpy(), single)
            raise
        position.scale, position.scale_step = scale + 1, 0
    result = image.numpy()
    if config.preserve_color == "luminance":
        result = color.preserve_luminance(result, content_at.numpy(), config.color_space)
    return _unbatch(result, single)


def _save(manager, state: checkpoints.RunState, position: checkpoints.Position) -> None:
    if manager:
        state.set(position)
        manager.save(checkpoint_number=position.step)


def _unbatch(images: np.ndarray, single: bool) -> np.ndarray:
    return images[0] if single else images


def _check_size(config: Config, size: int, *shapes: tuple[int, int]) -> None:
    deepest = config.layers[-1]
    needed = layer_downsampling(deepest)
    if min(min(shape) for shape in shapes) < needed:
        raise ConfigError(
            f"at {size} px an image side is under {needed} px, too small for {deepest}; "
            "raise --size/--min_size or use shallower layers"
        )


def _initial_image(config, content, init, generator) -> tf.Tensor:
    noise = generator.uniform(tf.shape(content), 0.0, 255.0)
    if config.init == "noise":
        return noise
    start = content if config.init == "content" else resize_images(init, *content.shape[1:3])
    if start.shape[0] != content.shape[0]:  # one style image as the start of a batch
        start = tf.repeat(start, content.shape[0], axis=0)
    ratio = config.init_noise_ratio
    return (1.0 - ratio) * start + ratio * noise if ratio else start
