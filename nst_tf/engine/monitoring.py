"""Watching a run: TensorBoard summaries and a JSON-lines trace."""

from __future__ import annotations

import json
import os
import re
import time
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image
from tensorboard.plugins.hparams import api as hp

from nst_tf.io import images
from nst_tf.settings.files import OutputFiles

if TYPE_CHECKING:
    from nst_tf.engine.progress import Progress


# Terms that describe the optimiser rather than the image; logged under "optim/".
_OPTIM_TERMS = ("grad_norm", "learning_rate")


def _batch(image: np.ndarray) -> np.ndarray:
    """A [1, H, W, 3] uint8 batch for tf.summary.image."""
    return images.to_uint8(image)[None]


def _at_height(image: np.ndarray, height: int) -> np.ndarray:
    pil = Image.fromarray(_batch(image)[0])
    width = max(1, round(pil.width * height / pil.height))
    return np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))


def strip(content: np.ndarray, style: np.ndarray | None, current: np.ndarray) -> np.ndarray:
    """content | style | current side by side, at the current image's height.

    With no style image (a run from style targets), the strip is content | current.
    """
    height = current.shape[0]
    inputs = [image for image in (content, style) if image is not None]
    parts = [_at_height(image, height) for image in inputs] + [_batch(current)[0]]
    return np.concatenate(parts, axis=1)


def run_name(content: str | None, style: str | None) -> str:
    """A readable, sortable run name: 20261122-063005-boston-starry_night."""

    def stem(path, default):
        name = os.path.splitext(os.path.basename(path))[0] if path else default
        return re.sub(r"[^\w.-]+", "_", name)[:40]

    return f"{time.strftime('%Y%m%d-%H%M%S')}-{stem(content, 'sample')}-{stem(style, 'sample')}"


def make_run_dir(logdir: str, name: str) -> str:
    """Creates logdir/name (or name-2, name-3...): runs never share a directory."""
    os.makedirs(logdir, exist_ok=True)
    for attempt in range(1, 1000):
        path = os.path.join(logdir, name if attempt == 1 else f"{name}-{attempt}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"too many runs named {name} in {logdir}")


def _hparam_value(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


class Monitor:
    """Writes a run to TensorBoard; with logdir=None every method does nothing.

    Callers never branch on whether logging is on. Each run writes to its own
    subdirectory of `logdir`; every write has an explicit step; events are flushed
    every two seconds and at each snapshot so a live dashboard follows the run.

    Args:
        logdir: Parent directory for runs, or None to disable logging.
        snapshot_every: Steps between image snapshots (0: only at the end).
        name: The run's subdirectory name (default: time, content and style names).
    """

    def __init__(self, logdir: str | None, snapshot_every: int = 50, name: str | None = None):
        self.snapshot_every = snapshot_every
        self.run_dir = make_run_dir(logdir, name or run_name(None, None)) if logdir else None
        if self.run_dir:
            self.writer = tf.summary.create_file_writer(self.run_dir, flush_millis=2000)
        else:
            self.writer = tf.summary.create_noop_writer()
        self.inputs = None

    def start(
        self, config: dict, content: np.ndarray, style: np.ndarray | None, flags: str = ""
    ) -> None:
        """Logs the settings (text and HParams), the flags, and the inputs at step 0."""
        self.inputs = (content, style)
        with self.writer.as_default(step=0):
            tf.summary.text("config", "```\n" + json.dumps(config, indent=2) + "\n```")
            if flags:
                tf.summary.text("flags", "```\n" + flags + "\n```")
            hp.hparams({k: _hparam_value(v) for k, v in config.items()})
            tf.summary.image("input/content", _batch(content))
            if style is not None:
                tf.summary.image("input/style", _batch(style))
        self.writer.flush()

    def __call__(self, progress: Progress) -> None:
        """Logs one step's terms; snapshots the image every `snapshot_every` steps."""
        with self.writer.as_default(step=progress.step):
            for name, value in progress.losses.items():
                prefix = "optim" if name in _OPTIM_TERMS else "loss"
                tf.summary.scalar(f"{prefix}/{name}", value)
            tf.summary.scalar("optim/seconds_per_step", progress.seconds_per_step)
            tf.summary.scalar("optim/scale_size", progress.size)
            if self.snapshot_every and progress.step % self.snapshot_every == 0:
                self.snapshot(progress.image())
                self.writer.flush()

    def snapshot(self, image: np.ndarray) -> None:
        """Logs the image (and the content | style | image strip) at the writer's step."""
        tf.summary.image("generated", _batch(image))
        if self.inputs is not None:
            tf.summary.image("strip", strip(*self.inputs, image)[None])

    def frame(self, index: int, losses: dict[str, float], seconds: float) -> None:
        """Logs a video frame's final loss terms and its time, at step `index`."""
        with self.writer.as_default(step=index):
            for name, value in losses.items():
                if name not in _OPTIM_TERMS:
                    tf.summary.scalar(f"frame/{name}", value)
            tf.summary.scalar("frame/seconds", seconds)

    def finish(self, step: int, image: np.ndarray, losses: dict[str, float]) -> None:
        """Logs the final image and the final losses (the HParams metrics), then closes."""
        with self.writer.as_default(step=step):
            self.snapshot(image)
            for name, value in losses.items():
                if name not in _OPTIM_TERMS:
                    tf.summary.scalar(f"final/{name}", value)
        self.close()

    def close(self) -> None:
        """Flushes the events to disk and closes the writer."""
        self.writer.flush()
        self.writer.close()


class Trace:
    """Writes one JSON line per step (step, scale, size, time, every term) to a file.

    With path=None it does nothing. Lines are flushed as they are written, so a
    notebook can follow a live run. The file is opened at the first step, so a run
    refused before it leaves an earlier trace of the same name untouched.
    """

    def __init__(self, path: str | None):
        self.path = path
        self.file = None
        self.start = time.perf_counter()

    def __call__(self, progress: Progress) -> None:
        if self.path is None:
            return
        if self.file is None:
            self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        record = {
            "step": progress.step,
            "scale": progress.scale,
            "size": progress.size,
            "time": round(time.perf_counter() - self.start, 4),
            "seconds_per_step": progress.seconds_per_step,
            **progress.losses,
        }
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _clock(seconds: float) -> str:
    """1:05 for 65 s; 1:02:03 past an hour."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


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
                "step %5d/%d | %4d px | total %.4g | content %.4g | style %.4g | tv %.4g"
                " | %.2f s/step | elapsed %s  eta %s",
                progress.step,
                progress.total_steps,
                progress.size,
                terms["total"],
                terms["content"],
                terms["style"],
                terms["tv"],
                progress.seconds_per_step,
                _clock(progress.elapsed),
                "?" if progress.eta is None else _clock(progress.eta),
            )


def snapshot_path(output: str, step: int) -> str:
    """Where --save_every writes the image of `step`: out.png -> out.step00120.png."""
    stem, ext = os.path.splitext(output)
    return f"{stem}.step{step:05d}{ext}"


class Snapshots:
    """Writes the current image beside the output every outputs.save_every steps (0: off),
    atomically, as NAME.stepNNNNN.EXT."""

    def __init__(self, outputs: OutputFiles):
        self.every, self.output = outputs.save_every, outputs.output

    def __call__(self, progress: Progress) -> None:
        if self.every and progress.step % self.every == 0:
            images.save_image(progress.image(), snapshot_path(self.output, progress.step))
