"""The work on one photo of a batch: read it as nst-tf reads a content image, check it fits
the worker's memory, stylise it, then write its result and, last, its sidecar.

Runs in a worker (nst_tf.commands.raypool); the engine is imported only when a photo is
stylised, so that the driver never loads TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

import numpy as np

from nst_tf.commands.jobs import Job, Outcome, Photo, gigabytes
from nst_tf.commands.records import TEMP_TAG, read_record, write_error, write_record
from nst_tf.engine.memory import PlanSettings
from nst_tf.errors import ConfigError, NstError
from nst_tf.io import images
from nst_tf.settings.files import OutputFiles


def load_photo(path: str, size: int) -> np.ndarray:
    """The photo as float32 RGB, decoded as nst-tf decodes a content image: a photo larger
    than twice `size` is made small while it is decoded (JPEG draft, 8-bit reduction
    before the float copy) and one above images.MAX_PIXELS is refused, so a 9000x9000
    PNG never costs its full size in float32.

    Raises:
        ImageError: the file is not an image nst_tf reads, or too large.
    """
    return images.load_image(path, limit=2 * size)


def check_fits(height: int, width: int, settings: PlanSettings, memory_bytes: float) -> str | None:
    """Why a height x width result cannot run in `memory_bytes`, or None if it can: the
    engine's own plan (whole, or tiled where the whole-image step would not fit)."""
    from nst_tf.engine import memory  # pylint: disable=import-outside-toplevel

    if memory_bytes == float("inf"):
        return None
    try:
        memory.plan_scale(height, width, settings, memory_bytes)
    except ConfigError:
        need = memory.smallest_budget(height, width, settings)
        how = "untiled (--tile_size=0)" if str(settings.tile_size) == "0" else "even tiled"
        return (
            f"at {width}x{height} px it needs at least {gigabytes(need)} {how}, more "
            f"than the {gigabytes(memory_bytes)} a worker has; raise --memory_per_worker "
            "or lower --size"
        )
    return None


def stylize_photo(stylizer, job: Job, photo: Photo, style, masks=None, init=None) -> Outcome:
    """Stylises one photo with a ready Stylizer and writes its output, then its sidecar.

    A failure that belongs to the photo (not an image, too small, too large for the
    worker's memory, a loss gone NaN, a result that cannot be written) is written to
    NAME.error.json and returned; running this twice for a photo leaves one output and
    one sidecar. The output is written as nst-tf writes one: at config.bit_depth, with
    the photo's ICC profile and DPI where its format carries them.

    Args:
        stylizer: The worker's nst_tf.engine.stylizer.Stylizer, built from job.config.
        job: The batch.
        photo: The photo.
        style: What Stylizer.stylize takes as the style (images, Gram targets or a
            MeasuredStyle).
        masks: The style masks, or None.
        init: The start image when config.init is a path, or None.
    """
    from nst_tf.engine.monitoring import ProgressLogger  # pylint: disable=C0415

    start = time.perf_counter()
    config = job.config
    try:
        content = load_photo(photo.path, config.size)
    except NstError as err:
        return write_error(job, photo, str(err), final=True)
    shape = images.scaled_shape(*content.shape[:2], config.size)
    too_big = check_fits(*shape, PlanSettings.of(config), job.memory_bytes)
    if too_big:
        return write_error(job, photo, too_big, final=False)
    last = ProgressLogger(0)
    monitor = _monitor(config, config.to_dict(), photo, content)
    callbacks = [last] if monitor is None else [last, monitor]
    try:
        result = stylizer.stylize(content, style, init=init, masks=masks, callbacks=callbacks)
    except NstError as err:  # too small for the layers, or a loss gone NaN
        return write_error(job, photo, str(err), final=True)
    losses = last.last.losses if last.last else {}
    steps = last.last.step if last.last else 0
    if monitor is not None:
        monitor.finish(steps, result, losses)
    return finish_photo(job, photo, result, start, losses, steps, stylizer.trace_count)


def finish_photo(
    job: Job, photo: Photo, result: np.ndarray, start: float, losses: dict, steps: int, traces: int
) -> Outcome:
    """Writes a stylised photo's result, then its sidecar (which vouches for it).

    Args:
        job: The batch.
        photo: The photo.
        result: Its stylised pixels, [H, W, 3] 0..255.
        start: time.perf_counter() when the photo's work began.
        losses: The final losses for the sidecar ({} without an optimisation).
        steps: The optimiser's steps.
        traces: The worker's step traces so far.

    Returns:
        Its Outcome: done, or failed with the reason written to NAME.error.json.
    """
    try:
        _write_result(job, photo, result)
    except (OSError, NstError) as err:  # a full disk, for one: the next run tries again
        return write_error(job, photo, f"cannot write its result: {_reason(err)}", final=False)
    seconds = time.perf_counter() - start
    record = {
        "input": photo.path,
        "sha256": photo.sha256,
        "key": photo.key,
        "output": job.output(photo.name),
        "losses": losses,
        "steps": steps,
        "seconds": round(seconds, 3),
        "traces": traces,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    try:
        # The sidecar goes last: it vouches for the whole output written before it.
        write_record(job.sidecar(photo.name), record)
    except OSError as err:
        return write_error(job, photo, f"cannot write its sidecar: {_reason(err)}", final=False)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(job.error(photo.name))  # an earlier run's failure, now superseded
    return Outcome(photo.name, True, "", seconds, traces)


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def _write_result(job: Job, photo: Photo, result: np.ndarray) -> None:
    """The result image, after a pending sidecar that marks it as ours even if we die
    while writing it; the pending sidecar goes again if the image could not be written.

    Raises:
        OSError, NstError: the sidecar or the image could not be written.
    """
    output, sidecar = job.output(photo.name), job.sidecar(photo.name)
    config = job.config
    # The photo's profile and DPI, as its output's writer and nst_tf's reader take them.
    info = images.probe_print_info(images.read_print_info(photo.path), output, config.bit_depth)
    write_record(sidecar, {"input": photo.path, "output": output, "pending": True})
    try:
        images.save_image(result, output, config.bit_depth, info, tag=TEMP_TAG)
    except BaseException:
        record = read_record(sidecar)
        if record and record.get("pending") and not os.path.exists(output):
            with contextlib.suppress(OSError):
                os.unlink(sidecar)
        raise


def _monitor(outputs: OutputFiles, hparams: dict, photo: Photo, content):
    """A TensorBoard run for this photo under outputs.logdir (its hyperparameters:
    `hparams`), or None without one."""
    if not outputs.logdir:
        return None
    from nst_tf.engine.monitoring import Monitor  # pylint: disable=import-outside-toplevel

    monitor = Monitor(outputs.logdir, outputs.snapshot_every, photo.name)
    monitor.start(hparams, content, None)
    return monitor
