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

from nst_tf import checkpoint_files, images, paths, weights
from nst_tf.config import INIT_KEYWORDS, Config, default_checkpoint_dir, validate
from nst_tf.errors import ConfigError, ImageError, Interrupted, NumericalError
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
                if os.path.splitext(name)[1].lower() in images.input_extensions()
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
    # Masks are resized to each scale; more than twice the output size is never used.
    limit = 2 * config.size
    return [
        images.load_image(path, limit=limit).mean(axis=-1) / 255.0 for path in config.style_mask
    ]


def load_inputs(
    config: Config,
) -> tuple[np.ndarray, list[np.ndarray] | StyleTargets, np.ndarray | None]:
    """Reads the content, style (images or targets file) and init image of the config.

    Missing --content/--style select the built-in samples. Images larger than twice the
    output size (times the style scale) are downscaled on load, so a huge photo does not
    cost memory for nothing.
    """
    limit = 2 * config.size
    content = images.load_image(config.content or images.sample_path("content"), limit=limit)
    if config.style_targets:
        style = load_style_targets(config.style_targets)
    else:
        files = config.style_paths() or [images.sample_path("style")]
        style = [
            images.load_image(path, limit=round(limit * config.scale_of(i)))
            for i, path in enumerate(files)
        ]
    init = None
    if config.init not in INIT_KEYWORDS:
        init = images.load_image(config.init, limit=limit)
    return content, style, init


# Peak resident memory of a run, measured by scripts/benchmark.py's probe (float32, 2-core
# CPUs): about 0.8 GB for TensorFlow and the weights plus 3.9 KB per output pixel for the
# VGG19 activations kept for the backward pass (4.3 KB with XLA on AVX2, the larger is used),
# plus L-BFGS's history. At 1024x1024 px, 50 pairs took 1.2 GB more than 2 pairs: exactly
# their float32 s and y vectors.
BASE_BYTES = 0.8e9
BYTES_PER_PIXEL = 4.3e3
# The style pass runs VGG19 forward only, once per style image: --size=256
# --style_scale=8 (a 2048x2048 px style) peaked at 5.05 GB in bfloat16 and 6.77 GB in
# float32 (AVX-512 machine), so about 1.5 KB per style pixel over the base.
STYLE_BYTES_PER_PIXEL = 1.5e3


def history_bytes_per_pixel(config: Config) -> float:
    """What the optimiser's own state holds per output pixel (3 channels)."""
    if config.optimizer == "lbfgs":
        return 2 * 3 * 4 * config.lbfgs_memory  # s and y, float32
    if config.optimizer == "lbfgs_scipy":
        return (2 * config.lbfgs_memory + 5) * 3 * 8  # SciPy's float64 work array
    return 0.0  # Adam's two moments are within the activations' margin


def estimated_peak_bytes(height: int, width: int, config: Config | None = None) -> float:
    """Estimated peak memory of a run whose final scale is height x width."""
    per_pixel = BYTES_PER_PIXEL + (history_bytes_per_pixel(config) if config else 0.0)
    return BASE_BYTES + per_pixel * height * width


def style_shapes(config: Config, styles) -> list[tuple[int, int]]:
    """(height, width) of each style image as the final scale measures it: its longest
    side is --size times its --style_scale (the loop resizes it up or down to that)."""
    if isinstance(styles, StyleTargets):
        return []
    return [
        images.scaled_shape(*style.shape[:2], max(1, round(config.size * config.scale_of(i))))
        for i, style in enumerate(styles)
    ]


def check_memory(config: Config, content: np.ndarray, styles=()) -> None:
    """Refuses a size whose run would not fit in this machine's memory.

    The peak is the larger of the optimisation (at the content's final size) and the
    style pass, where VGG19 runs forward on each style image at its --style_scale.

    Raises:
        ConfigError: the estimated peak exceeds the physical memory.
    """
    height, width = images.scaled_shape(content.shape[0], content.shape[1], config.size)
    need = estimated_peak_bytes(height, width, config)
    largest = max(style_shapes(config, styles), key=lambda shape: shape[0] * shape[1], default=None)
    style_need = BASE_BYTES + STYLE_BYTES_PER_PIXEL * largest[0] * largest[1] if largest else 0
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return  # unknown on this platform: let the run try
    if style_need > max(need, have):
        raise ConfigError(
            f"--style_scale={','.join(map(str, config.style_scale))} measures a style at "
            f"{largest[1]}x{largest[0]} px, which needs about {style_need / 1e9:.0f} GB of "
            f"memory, more than this machine's {have / 1e9:.0f} GB; use a smaller "
            "--style_scale or --size"
        )
    if need > have:
        raise ConfigError(
            f"--size={config.size} ({width}x{height} px) needs about {need / 1e9:.0f} GB of "
            f"memory, more than this machine's {have / 1e9:.0f} GB; use a smaller --size"
            + (" or --lbfgs_memory" if history_bytes_per_pixel(config) else "")
        )


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
        if self.received is not None:
            # The second signal: stop at once. Every file is written atomically, so
            # this leaves none half-written.
            raise KeyboardInterrupt
        self.received = signum
        # Logging from a handler is safe here: absl's handler lock is re-entrant and the
        # handler runs in the main thread between bytecodes.
        logging.info(
            "%s: stopping after this step... (Ctrl-C again to stop now)",
            signal.Signals(signum).name,
        )

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
    config = validate(config)
    if config.resume and not config.checkpoint_every:
        raise ConfigError(
            "--resume continues a checkpoint, but --checkpoint_every=0 writes and reads "
            "none; drop --resume (or resume with the --checkpoint_every of the first run)"
        )
    if config.checkpoint_every and not config.checkpoint_dir:
        config = dataclasses.replace(config, checkpoint_dir=default_checkpoint_dir(config.output))
    style_folders = [entry for entry in config.style_paths() if os.path.isdir(entry)]
    config = expand_styles(config)
    # Everything the run will write is checked against everything it reads, and probed,
    # before any input is decoded: a mistake costs nothing and destroys nothing.
    source = weights.find_weights(config.vgg_weights)
    images.check_output_path(config.output)
    paths.check_run_paths(config, style_folders, source.path)
    if config.checkpoint_dir:
        checkpoint_files.check_ours(config.checkpoint_dir)
    content, style, init = load_inputs(config)
    masks = load_masks(config)
    check_memory(config, content, style)
    weights.check_vgg19(source)
    if isinstance(style, StyleTargets):
        check_compatible(
            style, config.style_layers, config.normalization, source.sha256, config.pooling
        )
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
    new_checkpoint_dir = bool(config.checkpoint_dir) and not os.path.exists(config.checkpoint_dir)
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
            images.save_image(stop.image, config.output)
        if isinstance(stop, Interrupted):
            stop.output = config.output if stop.image is not None else None
            stop.checkpoint_dir = config.checkpoint_dir if config.checkpoint_every else None
        monitor.close()
        raise
    except ConfigError:
        if new_checkpoint_dir:  # refused before the first checkpoint: leave no trace
            checkpoint_files.discard_if_unused(config.checkpoint_dir)
        raise
    finally:
        trace.close()
    images.save_image(result, config.output)
    # A resumed run that was already complete takes no step.
    steps, losses = (logger.last.step, logger.last.losses) if logger.last else (0, {})
    monitor.finish(steps, result, losses)
    seconds = time.perf_counter() - start
    if not steps:
        logging.info(
            "the checkpoint in %s is of a finished run: no step left; wrote its image to %s",
            paths.shown(config.checkpoint_dir),
            paths.shown(config.output),
        )
    else:
        logging.info(
            "done: %d steps in %.1f s (%.2f s/step), total loss %.4g -> %s",
            steps,
            seconds,
            seconds / steps,
            losses.get("total", float("nan")),
            paths.shown(config.output),
        )
    return RunResult(result, config.output, losses, steps, seconds)
