"""What makes a run resumable: its position, its settings, and where checkpoints live.

A checkpoint holds the image, the optimiser's state (Adam's moments; L-BFGS restarts its
memory at every checkpoint, so the image is its whole state), the global step, the
current scale and the step within it, the noise generator, and the settings that shape
the result's key record (settings.keys) as JSON. `--resume` refuses a checkpoint made for
another result (other settings, inputs or weights), naming what changed, and one written
before key records (an older nst_tf).
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf
from absl import logging
from google.protobuf import text_format

from nst_tf.engine import checkpoint_files
from nst_tf.engine.progress import Clock
from nst_tf.errors import ConfigError
from nst_tf.io.paths import shown
from nst_tf.settings import keys


@dataclasses.dataclass
class Position:
    """Where a run is: scale index, steps done in that scale, steps done in all."""

    scale: int = 0
    scale_step: int = 0
    step: int = 0


class RunState:
    """The tf.train objects a checkpoint saves, besides the per-scale image and optimiser.

    Args:
        settings: The result's key record (settings.keys.key_record) as JSON.
        seed: The seed of the noise generator.
    """

    def __init__(self, settings: str, seed: int):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.scale = tf.Variable(0, dtype=tf.int64, trainable=False, name="scale")
        self.scale_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="scale_step")
        self.settings = tf.Variable(settings, trainable=False, name="settings")
        self.rng = tf.random.Generator.from_seed(seed)

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


# What TensorFlow's checkpoint reader raises on damaged files: its own errors, or builtin
# exceptions its C++ status codes are mapped to (IndexError for "read less bytes than
# requested", for one); then ours for a settings value that is not JSON.
_DAMAGE = (
    tf.errors.OpError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    UnicodeError,
    RuntimeError,
    OSError,
)


def _damaged(directory: str) -> ConfigError:
    return ConfigError(
        f"the checkpoint in {shown(directory)} is damaged; run without --resume to start again"
    )


def read_position(directory: str, record: dict) -> tuple[str, Position]:
    """Finds the newest checkpoint in `directory`, verifies it whole, and checks it was
    made for the result whose key record is `record` (settings.keys.key_record).

    Every tensor is read here (TensorFlow checks each one's CRC as it reads), so that the
    restore that follows cannot fail on a truncated, emptied or altered file.

    Returns:
        (checkpoint path, position).

    Raises:
        ConfigError: no checkpoint, foreign files in the directory, a damaged checkpoint,
            or one made with settings that change the result.
    """
    checkpoint_files.check_ours(directory)
    try:
        path = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
    except (text_format.ParseError, *_DAMAGE):
        raise _damaged(directory) from None
    if path is None:
        if any(name != "checkpoint" for name in checkpoint_files.our_files(directory)):
            raise _damaged(directory)  # checkpoint data without a readable index of it
        raise ConfigError(
            f"no checkpoint to resume in {shown(directory)}; run without --resume to start afresh"
        )
    try:
        reader = tf.train.load_checkpoint(path)
        tensors = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}

        def value(name):
            return tensors[f"{name}/.ATTRIBUTES/VARIABLE_VALUE"]

        saved = json.loads(value("settings").decode())
        position = Position(int(value("scale")), int(value("scale_step")), int(value("step")))
    except _DAMAGE:
        raise _damaged(directory) from None
    if not isinstance(saved, dict):
        raise _damaged(directory)
    if saved.get("key_format") != keys.KEY_FORMAT:
        raise ConfigError(
            f"the checkpoint in {shown(directory)} was written by an older nst_tf, whose "
            "checkpoints cannot be resumed by this one; run without --resume to start again"
        )
    diffs = keys.changes(saved, json.loads(json.dumps(record)))
    if diffs:
        raise ConfigError(
            f"the checkpoint in {shown(directory)} was made with other settings ({diffs}); "
            "resume with the original settings or start afresh without --resume"
        )
    return path, position


def clear(directory: str) -> None:
    """Removes a previous run's checkpoints: only the files this program wrote there.

    Raises:
        ConfigError: the directory holds checkpoint files another program wrote.
    """
    checkpoint_files.clear(directory)


@dataclasses.dataclass
class Run:
    """One stylize() call's state across scales: what a checkpoint saves, where the run
    stands, the checkpoint to restore (until restored) and the clock."""

    state: RunState
    position: Position
    restore_path: str | None = None
    clock: Clock | None = None


def begin(record: dict, seed: int, directory: str, resume: bool) -> Run:
    """A run's state: fresh (a previous run's checkpoints cleared), or the position of the
    checkpoint it resumes.

    Args:
        record: The result's key record (settings.keys.key_record).
        seed: The noise generator's seed.
        directory: Where checkpoints go; "" for none.
        resume: Whether to continue the newest checkpoint in `directory`.
    """
    run = Run(RunState(json.dumps(record, sort_keys=True), seed), Position())
    if directory and resume:
        run.restore_path, run.position = read_position(directory, record)
        logging.info("resuming %s at step %d", run.restore_path, run.position.step)
    elif directory:
        clear(directory)
    return run


def manager(run: Run, directory: str, **per_scale) -> tf.train.CheckpointManager | None:
    """Checkpoints of this scale's image and optimiser state (`per_scale`) in `directory`
    ("" for none), restored once when the run resumes."""
    if not directory:
        return None
    checkpoint = run.state.checkpoint(**per_scale)
    saver = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)
    if run.restore_path:
        checkpoint.restore(run.restore_path).assert_existing_objects_matched()
        run.restore_path = None
    return saver


def save(saver: tf.train.CheckpointManager | None, run: Run) -> None:
    """Writes a checkpoint of the run where it stands (nothing without a manager)."""
    if saver:
        run.state.set(run.position)
        saver.save(checkpoint_number=run.position.step)
