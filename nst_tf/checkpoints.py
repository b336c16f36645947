"""What makes a run resumable: its position, its settings, and where checkpoints live.

A checkpoint holds the image, the optimiser's state (Adam's moments; L-BFGS restarts its
memory at every checkpoint, so the image is its whole state), the global step, the
current scale and the step within it, the noise generator, and the settings that shape
the result as JSON. `--resume` refuses a checkpoint made with other such settings.
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from nst_tf.config import Config
from nst_tf.errors import ConfigError

# Settings that do not change the image a run produces; they may differ on resume.
_FREE_SETTINGS = {"output", "logdir", "snapshot_every", "log_every", "checkpoint_dir", "resume"}


def settings_json(config: Config) -> str:
    """The settings that shape the result, as canonical JSON."""
    values = {k: v for k, v in config.to_dict().items() if k not in _FREE_SETTINGS}
    return json.dumps(values, sort_keys=True)


@dataclasses.dataclass
class Position:
    """Where a run is: scale index, steps done in that scale, steps done in all."""

    scale: int = 0
    scale_step: int = 0
    step: int = 0


class RunState:
    """The tf.train objects a checkpoint saves, besides the per-scale image and optimiser."""

    def __init__(self, config: Config):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.scale = tf.Variable(0, dtype=tf.int64, trainable=False, name="scale")
        self.scale_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="scale_step")
        self.settings = tf.Variable(settings_json(config), trainable=False, name="settings")
        self.rng = tf.random.Generator.from_seed(config.seed)

    def set(self, position: Position) -> None:
        """Records the run's position before a save."""
        self.step.assign(position.step)
        self.scale.assign(position.scale)
        self.scale_step.assign(position.scale_step)

    def checkpoint(self, **per_scale) -> tf.train.Checkpoint:
        """A Checkpoint of the run state plus the current scale's image and optimiser."""
        return tf.train.Checkpoint(
            step=self.step,
            scale=self.scale,
            scale_step=self.scale_step,
            settings=self.settings,
            rng=self.rng,
            **per_scale,
        )


def read_position(directory: str, config: Config) -> tuple[str, Position]:
    """Finds the newest checkpoint in `directory` and checks it suits `config`.

    Returns:
        (checkpoint path, position).

    Raises:
        ConfigError: no checkpoint, or one made with settings that change the result.
    """
    path = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
    if path is None:
        raise ConfigError(
            f"no checkpoint to resume in {directory}; run without --resume to start afresh"
        )
    reader = tf.train.load_checkpoint(path)

    def value(name):
        return reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE")

    saved = json.loads(value("settings").decode())
    current = json.loads(settings_json(config))
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ConfigError(
            f"the checkpoint in {directory} was made with other settings ({diffs}); "
            "resume with the original settings or start afresh without --resume"
        )
    return path, Position(int(value("scale")), int(value("scale_step")), int(value("step")))


def clear(directory: str) -> None:
    """Removes a previous run's checkpoints (only the files tf.train writes there)."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if name == "checkpoint" or name.startswith("ckpt-"):
            os.remove(os.path.join(directory, name))
