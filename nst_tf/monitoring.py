"""TensorBoard logging of a run: loss scalars and image snapshots."""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from nst_tf.optimize import Progress


def _batch(image: np.ndarray) -> np.ndarray:
    """A [1, H, W, 3] uint8 batch for tf.summary.image."""
    return np.clip(np.round(image), 0, 255).astype(np.uint8)[None]


class Monitor:
    """Writes a run to TensorBoard; with logdir=None every method does nothing.

    Callers never branch on whether logging is on. Every write has an explicit step,
    and events are flushed at each snapshot so a live dashboard follows the run.

    Args:
        logdir: Directory for the event files, or None to disable logging.
        snapshot_every: Steps between generated-image snapshots (0: only at the end).
    """

    def __init__(self, logdir: str | None, snapshot_every: int = 50):
        self.snapshot_every = snapshot_every
        self.writer = (
            tf.summary.create_file_writer(logdir) if logdir else tf.summary.create_noop_writer()
        )

    def start(self, config: dict, content: np.ndarray, style: np.ndarray) -> None:
        """Logs the settings and the inputs at step 0."""
        with self.writer.as_default(step=0):
            tf.summary.text("config", "```\n" + json.dumps(config, indent=2) + "\n```")
            tf.summary.image("input/content", _batch(content))
            tf.summary.image("input/style", _batch(style))
        self.writer.flush()

    def __call__(self, progress: Progress) -> None:
        """Logs one step's losses; snapshots the image every `snapshot_every` steps."""
        with self.writer.as_default(step=progress.step):
            for name, value in progress.losses.items():
                tf.summary.scalar(f"loss/{name}", value)
            tf.summary.scalar("seconds_per_step", progress.seconds_per_step)
            tf.summary.scalar("scale_size", progress.size)
            if self.snapshot_every and progress.step % self.snapshot_every == 0:
                tf.summary.image("generated", _batch(progress.image()))
                self.writer.flush()

    def finish(self, step: int, image: np.ndarray) -> None:
        """Logs the final image and closes the writer."""
        with self.writer.as_default(step=step):
            tf.summary.image("generated", _batch(image))
        self.close()

    def close(self) -> None:
        """Flushes the events to disk and closes the writer."""
        self.writer.flush()
        self.writer.close()
