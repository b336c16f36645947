"""A whole stylisation run from a Config: load, optimise, monitor, save."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence

import numpy as np
from absl import logging

from nst_tf.commands import preflight
from nst_tf.engine import checkpoint_files
from nst_tf.engine.memory import PlanSettings, check_memory
from nst_tf.errors import ConfigError, Interrupted, NumericalError
from nst_tf.io import images, paths
from nst_tf.io.targets import StyleTargets
from nst_tf.model import weights
from nst_tf.settings.config import Config, default_checkpoint_dir


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


def stylize(
    config: Config,
    flags: str = "",
    callbacks: Sequence[Callable] = (),
    given: Collection[str] | None = None,
) -> RunResult:
    """Runs style transfer as configured and writes the output image atomically.

    Checkpoints go to config.checkpoint_dir, by default beside the output (out.ckpt/).
    On SIGINT/SIGTERM the current image and a checkpoint are written before
    Interrupted is raised; on a NaN/inf loss the last finite image is written before
    NumericalError is raised.

    Args:
        config: The run's settings (validated here).
        flags: The command line's flags as text, logged to TensorBoard.
        callbacks: More step callbacks (after the built-in ones), each called with the
            Progress of every step; one may stop the run by raising Interrupted.
        given: The settings given on the command line (with --model, each is checked
            against the model's recipe); None: those that differ from their defaults.

    Returns:
        A RunResult with the image, output path, final losses and timing.

    Raises:
        NstError: for any problem with the settings, inputs, weights or output path.
        Interrupted: the run was stopped by a signal.
    """
    if config.model:  # a trained network instead of the optimisation
        from nst_tf.commands.model_run import (  # pylint: disable=import-outside-toplevel
            stylize_with_model_dir,
        )

        return stylize_with_model_dir(config, given, callbacks)
    start = time.perf_counter()
    config, style_folders = preflight.check_settings(config)
    if config.resume and not config.checkpoint_every:
        raise ConfigError(
            "--resume continues a checkpoint, but --checkpoint_every=0 writes and reads "
            "none; drop --resume (or resume with the --checkpoint_every of the first run)"
        )
    if config.checkpoint_every and not config.checkpoint_dir:
        config = dataclasses.replace(config, checkpoint_dir=default_checkpoint_dir(config.output))
    # Everything the run will write is checked against everything it reads, and probed,
    # before any input is decoded: a mistake costs nothing and destroys nothing.
    source = weights.find_weights(config.vgg_weights)
    images.check_output_path(config.output)
    preflight.check_run_paths(config, style_folders, source.path)
    if config.checkpoint_dir:
        checkpoint_files.check_ours(config.checkpoint_dir)
    content, style, init, masks = preflight.read_style(config, source)
    check_memory(PlanSettings.of(config), content, style)
    weights.check_vgg19(source)
    print_info = images.probe_print_info(
        images.read_print_info(config.content or images.sample_path("content")),
        config.output,
        config.bit_depth,
    )
    # TensorFlow loads only now: every mistake in the user's input is reported first,
    # in a fraction of a second, without TensorFlow's start-up messages.
    with _quiet_stderr():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from nst_tf.engine.monitoring import (  # pylint: disable=import-outside-toplevel
        Monitor,
        ProgressLogger,
        Snapshots,
        Trace,
        run_name,
    )
    from nst_tf.engine.stylizer import stylize_arrays  # pylint: disable=import-outside-toplevel
    from nst_tf.model.features import (  # pylint: disable=import-outside-toplevel
        FeatureExtractor,
        resolve_precision,
        resolve_xla,
    )

    tf.get_logger().setLevel("WARNING")  # TensorFlow's own INFO lines (checkpoint timing)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    model = FeatureExtractor(config.layers, source, config.precision, config.pooling)
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
                callbacks=[logger, monitor, trace, Snapshots(config), guard, *callbacks],
                masks=masks,
            )
    except (Interrupted, NumericalError) as stop:
        if stop.image is not None:
            images.save_image(stop.image, config.output, config.bit_depth, print_info)
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
    images.save_image(result, config.output, config.bit_depth, print_info)
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
