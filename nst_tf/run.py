"""A whole stylisation run from a Config: load, optimise, monitor, save."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time

import numpy as np
from absl import logging
from PIL import Image

from nst_tf import images, memory, weights
from nst_tf.config import INIT_KEYWORDS, Config, default_checkpoint_dir, validate
from nst_tf.errors import ImageError, Interrupted, NumericalError
from nst_tf.targets import StyleTargets, check_compatible, load_style_targets


@dataclasses.dataclass
class RunResult:
    """What a finished run produced.

    Attributes:
        image: The stylised image, float32 [H, W, 3] in 0..255.
        output: The path it was written to.
        losses: The named loss values of the last step.
        steps: Total steps over all scales.
        seconds: Wall time of the whole run.
    """

    image: np.ndarray
    output: str
    losses: dict[str, float]
    steps: int
    seconds: float


class ProgressLogger:
    """Logs an aligned progress line every `every` steps (and always on the first)."""

    def __init__(self, every: int):
        self.every = every
        self.last = None

    def __call__(self, progress) -> None:
        self.last = progress
        if self.every and (progress.step == 1 or progress.step % self.every == 0):
            terms = progress.losses
            logging.info(
                "step %5d | %4d px | total %.4g | content %.4g | style %.4g | tv %.4g"
                " | %.2f s/step",
                progress.step,
                progress.size,
                terms["total"],
                terms["content"],
                terms["style"],
                terms["tv"],
                progress.seconds_per_step,
            )


def expand_styles(config: Config) -> Config:
    """Replaces each --style folder by the images in it, sharing that entry's blend weight
    and style scale equally, so that later code sees one entry per style image.

    Raises:
        ImageError: a folder holds no images.
    """
    entries = config.style_paths()
    if not any(os.path.isdir(entry) for entry in entries):
        return config
    weights = config.blend_weights(len(entries))
    paths, blend, scales, masks = [], [], [], []
    for index, entry in enumerate(entries):
        found = [entry]
        if os.path.isdir(entry):
            found = sorted(
                os.path.join(entry, name)
                for name in os.listdir(entry)
                if os.path.splitext(name)[1].lower() in Image.registered_extensions()
            )
            if not found:
                raise ImageError(f"--style folder {entry} holds no images; add some or drop it")
        paths += found
        blend += [weights[index] / len(found)] * len(found)
        scales += [config.scale_of(index)] * len(found)
        masks += [config.style_mask[index]] * len(found) if config.style_mask else []
    return dataclasses.replace(
        config,
        style=",".join(paths),
        style_blend_weights=tuple(blend),
        style_scale=tuple(scales),
        style_mask=tuple(masks),
    )


def load_masks(config: Config) -> list[np.ndarray] | None:
    """The --style_mask images as [H, W] arrays in 0..1 (the mean of their channels)."""
    if not config.style_mask:
        return None
    return [images.load_image(path).mean(axis=-1) / 255.0 for path in config.style_mask]


def load_inputs(
    config: Config,
) -> tuple[np.ndarray, list[np.ndarray] | StyleTargets, np.ndarray | None]:
    """Reads the content, style (images or targets file) and init image of the config.

    Missing --content/--style select the built-in samples. Images larger than twice the
    output size (times the style scale) are downscaled on load, so a huge photo does not
    cost memory for nothing.
    """
    limit = 2 * config.size
    content = _cap(images.load_image(config.content or images.sample_path("content")), limit)
    if config.style_targets:
        style = load_style_targets(config.style_targets)
    else:
        paths = config.style_paths() or [images.sample_path("style")]
        style = [
            _cap(images.load_image(path), round(limit * config.scale_of(i)))
            for i, path in enumerate(paths)
        ]
    init = None
    if config.init not in INIT_KEYWORDS:
        init = images.load_image(config.init)
    return content, style, init


def check_memory(config: Config, content: np.ndarray) -> None:
    """Refuses a run that cannot fit this machine's memory even tiled (nst_tf.memory).

    Raises:
        ConfigError: naming the setting (--memory_limit, --tile_size) that would fit.
    """
    height, width = images.scaled_shape(content.shape[0], content.shape[1], config.size)
    memory.check_run(height, width, config)


def _cap(image: np.ndarray, limit: int) -> np.ndarray:
    if max(image.shape[:2]) <= limit:
        return image
    pil = Image.fromarray(images.to_uint8(image))
    return np.asarray(images.resize_longest(pil, limit), dtype=np.float32)


@contextlib.contextmanager
def _quiet_stderr():
    """Silences file descriptor 2 (TensorFlow's C++ start-up banner) for a moment."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class SignalGuard:
    """Turns SIGINT/SIGTERM into an Interrupted exception at the next step boundary.

    A callback of the loop: the handler only records the signal, so the step in
    flight finishes and the image and checkpoint written afterwards are consistent.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        del frame
        self.received = signum

    def __call__(self, progress) -> None:
        if self.received is not None:
            raise Interrupted(self.received, progress.step)


def stylize(config: Config, flags: str = "") -> RunResult:
    """Runs style transfer as configured and writes the output image atomically.

    Checkpoints go to config.checkpoint_dir, by default beside the output (out.ckpt/).
    On SIGINT/SIGTERM the current image and a checkpoint are written before
    Interrupted is raised; on a NaN/inf loss the last finite image is written before
    NumericalError is raised.

    Args:
        config: The run's settings (validated here).
        flags: The command line's flags as text, logged to TensorBoard.

    Returns:
        A RunResult with the image, output path, final losses and timing.

    Raises:
        NstError: for any problem with the settings, inputs, weights or output path.
        Interrupted: the run was stopped by a signal.
    """
    start = time.perf_counter()
    config = expand_styles(validate(config))
    images.check_output_path(config.output)
    if config.trace:
        images.check_output_path(config.trace, "trace", image=False)
    content, style, init = load_inputs(config)
    masks = load_masks(config)
    check_memory(config, content)
    print_info = images.read_print_info(config.content or images.sample_path("content"))
    source = weights.find_weights(config.vgg_weights)
    if isinstance(style, StyleTargets):
        check_compatible(
            style, config.style_layers, config.normalization, source.sha256, config.pooling
        )
    if config.checkpoint_every and not config.checkpoint_dir:
        config = dataclasses.replace(config, checkpoint_dir=default_checkpoint_dir(config.output))
    # TensorFlow loads only now: every mistake in the user's input is reported first,
    # in a fraction of a second, without TensorFlow's start-up messages.
    with _quiet_stderr():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from nst_tf.features import (  # pylint: disable=import-outside-toplevel
        FeatureExtractor,
        resolve_precision,
        resolve_xla,
    )
    from nst_tf.monitoring import Monitor, Trace, run_name  # pylint: disable=C0415
    from nst_tf.stylizer import stylize_arrays  # pylint: disable=import-outside-toplevel

    tf.get_logger().setLevel("WARNING")  # TensorFlow's own INFO lines (checkpoint timing)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    model = FeatureExtractor(config.layers, source.path, config.precision, config.pooling)
    logging.info(
        "VGG19 in %s, step compiled %s",
        resolve_precision(config.precision),
        "with XLA" if resolve_xla(config.xla, config.deterministic) else "without XLA",
    )
    monitor = Monitor(config.logdir, config.snapshot_every, run_name(config.content, config.style))
    if monitor.run_dir:
        logging.info(
            "TensorBoard: tensorboard --logdir %s  (this run: %s)", config.logdir, monitor.run_dir
        )
    logger = ProgressLogger(config.log_every)
    trace = Trace(config.trace)
    style_image = None if isinstance(style, StyleTargets) else style[0]
    monitor.start(config.to_dict(), content, style_image, flags)
    try:
        with SignalGuard() as guard:
            result = stylize_arrays(
                content,
                style.grams if isinstance(style, StyleTargets) else style,
                config,
                init=init,
                model=model,
                callbacks=[logger, monitor, trace, guard],
                masks=masks,
            )
    except (Interrupted, NumericalError) as stop:
        if stop.image is not None:
            images.save_image(stop.image, config.output, config.bit_depth, print_info)
        monitor.close()
        raise
    finally:
        trace.close()
    images.save_image(result, config.output, config.bit_depth, print_info)
    # A resumed run that was already complete takes no step.
    steps, losses = (logger.last.step, logger.last.losses) if logger.last else (0, {})
    monitor.finish(steps, result, losses)
    seconds = time.perf_counter() - start
    logging.info(
        "done: %d steps in %.1f s (%.2f s/step), total loss %.4g -> %s",
        steps,
        seconds,
        seconds / max(steps, 1),
        losses.get("total", float("nan")),
        config.output,
    )
    return RunResult(result, config.output, losses, steps, seconds)
