"""Training a TransformNet for one style: crops in, the stylisation's own objective as the loss.

The loss is the Objective a Stylizer minimises (engine.stylizer.objective_of), on the
frozen FeatureExtractor, with the style's statistics measured once by the Stylizer's own
measure_style at --size: the network learns to produce in one pass what the optimiser
would, so their objectives can be compared on the same photos.

The batches are a pure function of the step (stateless random crops and flips seeded by
(seed, step)), so a run resumed from the checkpoint of step N sees the batches an
uninterrupted run would have seen from step N + 1 on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hp

from nst_tf.core.objective import LayerStats, Targets
from nst_tf.engine import checkpoint_files, monitoring
from nst_tf.engine.stylizer import Stylizer, objective_of
from nst_tf.errors import ConfigError, Interrupted, NumericalError
from nst_tf.io.paths import shown
from nst_tf.model.features import FeatureExtractor, resolve_precision
from nst_tf.model.transform import TransformNet
from nst_tf.settings.training import TrainSettings

# The learning rate ends at this share of --learning_rate (cosine decay over --steps).
FINAL_LEARNING_RATE = 0.05


def crop_batches(
    photos: Sequence[np.ndarray], crop: int, batch: int, seed: int, first: int, last: int
) -> tf.data.Dataset:
    """The batches of steps first..last: [batch, crop, crop, 3] uint8 random crops, each
    flipped left-right at random, of photos drawn at random.

    Each batch depends only on (seed, step), never on what came before.

    Args:
        photos: uint8 [H, W, 3] arrays, each at least crop x crop.
        crop: The crop side.
        batch: Crops per batch.
        seed: The run's seed.
        first: The first step (1 for a fresh run).
        last: The last step.
    """
    # All photos in one flat tensor with their offsets and shapes: tf.data slices them
    # without a Python generator (which would hold the GIL against the training step).
    flat = tf.constant(np.concatenate([np.asarray(p, np.uint8).reshape(-1) for p in photos]))
    sizes = np.array([p.size for p in photos], np.int64)
    offsets = tf.constant(np.concatenate([[0], np.cumsum(sizes)[:-1]]), tf.int64)
    shapes = tf.constant(np.array([p.shape for p in photos], np.int64))
    count = len(photos)

    def one(step, index):
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.cast(seed, tf.int64), step * batch + index]), 3
        )
        which = tf.random.stateless_uniform([], seeds[0], 0, count, dtype=tf.int64)
        start, shape = offsets[which], shapes[which]
        photo = tf.reshape(flat[start : start + tf.reduce_prod(shape)], shape)
        cut = tf.image.stateless_random_crop(photo, [crop, crop, 3], seeds[1])
        return tf.image.stateless_random_flip_left_right(cut, seeds[2])

    def batch_of(step):
        return tf.stack([one(step, i) for i in range(batch)])

    steps = tf.data.Dataset.range(first, last + 1)
    return steps.map(batch_of, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


@dataclasses.dataclass
class TrainProgress:
    """What the loop hands to callbacks after every step.

    Attributes:
        step: The step just done (from 1).
        total_steps: --steps.
        first_step: The first step this call ran (after a resume, later than 1).
        losses: The step's terms per image ("total", "content", "style", "tv",
            "style/<layer>"...) and "grad_norm" of the network's weights.
        learning_rate: The rate this step used.
        seconds_per_step: Wall time of the step.
        elapsed: Seconds since this call began.
        heldout: The held-out photos' mean terms when measured at this step, else None.
        samples: The network's outputs for the held-out photos when measured, else None.
    """

    step: int
    total_steps: int
    first_step: int
    losses: dict[str, float]
    learning_rate: float
    seconds_per_step: float
    elapsed: float
    heldout: dict[str, float] | None = None
    samples: list[np.ndarray] | None = None

    @property
    def eta(self) -> float | None:
        """Seconds left at this call's pace (None before the first step's time)."""
        done = self.step - self.first_step + 1
        return self.elapsed / done * (self.total_steps - self.step) if done > 0 else None


def settings_json(settings: TrainSettings) -> str:
    """What a checkpoint must share with a run that resumes it: the recipe and the style."""
    return json.dumps({**settings.recipe(), "style": settings.style}, sort_keys=True)


class Trainer:
    """A TransformNet, its optimiser and one compiled train step for one style.

    Args:
        settings: The training settings (validated by the caller).
        styles: The style images, [H, W, 3] float32 in 0..255 (blended as for a run).
        model: A FeatureExtractor for the settings' layers; built from them when None.
    """

    def __init__(
        self,
        settings: TrainSettings,
        styles: Sequence[np.ndarray],
        model: FeatureExtractor | None = None,
    ):
        self.settings = settings
        config = settings.config()
        if model is None:
            model = FeatureExtractor(
                config.layers, config.vgg_weights, config.precision, config.pooling
            )
        self.model = model
        self.objective = objective_of(config)
        self.precision = resolve_precision(config.precision)
        keras.utils.set_random_seed(settings.seed)
        policy = "mixed_bfloat16" if self.precision == "bfloat16" else "float32"
        self.net = TransformNet(settings.width, settings.residual_blocks, dtype=policy)
        self.net(tf.zeros([1, 16, 16, 3]))
        self.schedule = keras.optimizers.schedules.CosineDecay(
            settings.learning_rate, settings.steps, alpha=FINAL_LEARNING_RATE
        )
        self.optimizer = keras.optimizers.Adam(self.schedule)
        self.optimizer.build(self.net.trainable_variables)
        self.styles = self._style_groups(Stylizer(config, model), styles)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self._traces = 0
        batch, crop = settings.batch_size, settings.crop_size
        # Terms summed over the batch are reported per image; the gradient's norm is not.
        self._per_image = tf.constant(
            [1.0 if name == "grad_norm" else 1.0 / batch for name in self.objective.term_names]
        )
        # From function objects of their own: TensorFlow counts traces per Python function.
        self._train_step = tf.function(
            functools.partial(Trainer._step, self),
            input_signature=[tf.TensorSpec([batch, crop, crop, 3], tf.uint8)],
        )
        self._measure = tf.function(
            functools.partial(Trainer._evaluate, self),
            input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)],
        )

    def _style_groups(self, stylizer: Stylizer, styles: Sequence[np.ndarray]):
        """The style's statistics at --size, measured once, blended as for a run."""
        measured = stylizer.measure_style(list(styles))
        stats = [
            {
                name: LayerStats(*(None if v is None else tf.constant(v) for v in layer))
                for name, layer in image.items()
            }
            for image in measured.at(self.settings.size)
        ]
        return self.objective.style_groups(stats, self.settings.config().blend_weights(len(stats)))

    @property
    def trace_count(self) -> int:
        """How many times the train step has been traced (once per Trainer)."""
        return self._traces

    def learning_rate(self, step: int) -> float:
        """The rate of step `step` (from 1)."""
        return float(self.schedule(step - 1))

    # --- the compiled pieces ----------------------------------------------------------

    def _targets(self, content: tf.Tensor) -> Targets:
        features = self.model(content)
        return Targets(
            {name: features[name] for name in self.objective.content_weights}, self.styles
        )

    def _step(self, crops: tf.Tensor) -> tf.Tensor:
        # Runs only while tracing: a cheap count of how often the step is compiled.
        self._traces += 1
        content = tf.cast(crops, tf.float32)
        targets = self._targets(content)
        variables = self.net.trainable_variables
        with tf.GradientTape() as tape:
            out = self.net(content, training=True)
            terms = self.objective.terms(out, self.model(out), targets)
            loss = terms["total"] / self.settings.batch_size
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        terms["grad_norm"] = tf.linalg.global_norm(grads)
        return self.objective.pack(terms) * self._per_image

    def _evaluate(self, photo: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        out = self.net(photo)
        terms = self.objective.terms(out, self.model(out), self._targets(photo))
        terms["grad_norm"] = tf.constant(0.0)
        return self.objective.pack(terms), out

    # --- what callers use -------------------------------------------------------------

    def train_step(self, crops: np.ndarray | tf.Tensor) -> dict[str, float]:
        """One optimiser step on a batch [batch, crop, crop, 3] uint8; its terms per image."""
        values = self._train_step(tf.convert_to_tensor(crops, tf.uint8))
        return self.objective.unpack(values.numpy())

    def evaluate(self, photo: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        """The objective of the network's output for one photo [H, W, 3], and the output."""
        values, out = self._measure(tf.constant(np.asarray(photo, np.float32)[None]))
        return self.objective.unpack(values.numpy()), out.numpy()[0]

    def evaluate_set(self, photos: Sequence[np.ndarray]) -> tuple[dict[str, float], list]:
        """The mean terms over photos, and the outputs."""
        results = [self.evaluate(photo) for photo in photos]
        names = results[0][0].keys()
        mean = {name: float(np.mean([terms[name] for terms, _ in results])) for name in names}
        return mean, [out for _, out in results]

    def checkpoint(self) -> tf.train.Checkpoint:
        """What a checkpoint holds: step, network, optimiser and the settings."""
        return tf.train.Checkpoint(
            step=self.step,
            net=self.net,
            optimizer=self.optimizer,
            settings=tf.Variable(settings_json(self.settings), trainable=False),
        )

    def fit(
        self,
        photos: Sequence[np.ndarray],
        heldout: Sequence[np.ndarray] = (),
        callbacks: Sequence[Callable[[TrainProgress], None]] = (),
        checkpoint_dir: str | None = None,
        resume: bool = False,
    ) -> TrainProgress | None:
        """Trains up to --steps, checkpointing every --checkpoint_every steps and at the end.

        Args:
            photos: The training photos (uint8 [H, W, 3], at least crop x crop).
            heldout: Photos never trained on, whose loss is measured every --sample_every
                steps and at the end.
            callbacks: Called with a TrainProgress after every step; one may raise
                Interrupted (a signal), after which a checkpoint is saved.
            checkpoint_dir: Where checkpoints go (None: none).
            resume: Continue the newest checkpoint there.

        Returns:
            The last step's progress (None when a resumed run had already finished).

        Raises:
            ConfigError: --resume with no checkpoint, a damaged one, or one of other settings.
            Interrupted: a callback stopped the run; its checkpoint_dir says where it was saved.
            NumericalError: the loss became NaN or infinite.
        """
        settings = self.settings
        manager = self._manager(checkpoint_dir, resume)
        first = int(self.step.numpy()) + 1
        if resume:
            logging.info("resuming %s at step %d", shown(checkpoint_dir), first - 1)
        if first > settings.steps:
            return None
        batches = crop_batches(
            photos, settings.crop_size, settings.batch_size, settings.seed, first, settings.steps
        )
        start = time.perf_counter()
        progress = None
        for step, crops in zip(range(first, settings.steps + 1), batches, strict=True):
            tick = time.perf_counter()
            losses = self.train_step(crops)
            if not np.isfinite(losses["total"]):
                raise NumericalError(
                    f"the training loss became {losses['total']} at step {step}; lower "
                    "--learning_rate or the loss weights"
                )
            self.step.assign(step)
            now = time.perf_counter()
            sample = settings.sample_every and step % settings.sample_every == 0
            measured, samples = (None, None)
            if heldout and (sample or step == settings.steps):
                measured, samples = self.evaluate_set(heldout)
            progress = TrainProgress(
                step,
                settings.steps,
                first,
                losses,
                self.learning_rate(step),
                now - tick,
                now - start,
                measured,
                samples,
            )
            try:
                for callback in callbacks:
                    callback(progress)
            except Interrupted as stop:
                if manager is not None:
                    manager.save(checkpoint_number=step)
                    stop.checkpoint_dir = checkpoint_dir
                stop.step = step
                raise
            if manager is not None and (
                step == settings.steps
                or (settings.checkpoint_every and step % settings.checkpoint_every == 0)
            ):
                manager.save(checkpoint_number=step)
                logging.info("checkpoint at step %d", step)
        return progress

    def _manager(self, directory: str | None, resume: bool):
        """The CheckpointManager of `directory`, the newest checkpoint restored on resume."""
        if directory is None:
            if resume:
                raise ConfigError("--resume needs checkpoints: drop --checkpoint_every=0")
            return None
        checkpoint = self.checkpoint()
        if resume:
            path = resumable_checkpoint(directory, settings_json(self.settings))
            checkpoint.restore(path).assert_existing_objects_matched()
        else:
            checkpoint_files.clear(directory)
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)


def resumable_checkpoint(directory: str, settings: str) -> str:
    """The newest checkpoint in `directory`, read whole and made with these settings.

    Args:
        directory: The checkpoint directory.
        settings: settings_json() of the run that resumes.

    Raises:
        ConfigError: foreign files there, no checkpoint, a damaged one, or one made with
            other settings (naming them).
    """
    checkpoint_files.check_ours(directory)
    path = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
    if path is None:
        raise ConfigError(
            f"no checkpoint to resume in {shown(directory)}; run without --resume to start afresh"
        )
    try:
        reader = tf.train.load_checkpoint(path)
        saved = reader.get_tensor("settings/.ATTRIBUTES/VARIABLE_VALUE").decode()
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)  # TensorFlow checks each tensor's CRC as it reads it
        saved = json.loads(saved)
    except (tf.errors.OpError, ValueError, KeyError, UnicodeError, OSError):
        raise ConfigError(
            f"the checkpoint in {shown(directory)} is damaged; run without --resume to start "
            "again"
        ) from None
    current = json.loads(settings)
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ConfigError(
            f"the checkpoint in {shown(directory)} was made with other settings ({diffs}); "
            "resume with the original settings or start afresh without --resume"
        )
    return path


class TrainMonitor:
    """Writes a training run to TensorBoard; with logdir=None every method does nothing.

    Scalars loss/<term> and optim/{learning_rate, grad_norm, seconds_per_step} every
    step; heldout/<term> and each held-out photo's stylisation (photo | network) at each
    --sample_every step; the settings as text and HParams once.

    Args:
        logdir: Parent directory for runs, or None.
        name: The run's subdirectory name.
        heldout: The held-out photos (the left half of the sample strips).
    """

    def __init__(self, logdir: str | None, name: str, heldout=()):
        self.run_dir = monitoring.make_run_dir(logdir, name) if logdir else None
        if self.run_dir:
            self.writer = tf.summary.create_file_writer(self.run_dir, flush_millis=2000)
        else:
            self.writer = tf.summary.create_noop_writer()
        self.heldout = list(heldout)

    def start(self, settings: dict) -> None:
        """Logs the settings (text and HParams) at step 0."""
        with self.writer.as_default(step=0):
            tf.summary.text("settings", "```\n" + json.dumps(settings, indent=2) + "\n```")
            hp.hparams(
                {
                    k: ",".join(map(str, v)) if isinstance(v, list) else v
                    for k, v in settings.items()
                    if v is not None
                }
            )
        self.writer.flush()

    def __call__(self, progress: TrainProgress) -> None:
        with self.writer.as_default(step=progress.step):
            for name, value in progress.losses.items():
                tf.summary.scalar(
                    "optim/grad_norm" if name == "grad_norm" else f"loss/{name}", value
                )
            tf.summary.scalar("optim/learning_rate", progress.learning_rate)
            tf.summary.scalar("optim/seconds_per_step", progress.seconds_per_step)
            if progress.heldout is not None:
                for name, value in progress.heldout.items():
                    if name != "grad_norm":
                        tf.summary.scalar(f"heldout/{name}", value)
                for index, (photo, out) in enumerate(
                    zip(self.heldout, progress.samples, strict=True)
                ):
                    strip = monitoring.strip(photo.astype(np.float32), None, out)
                    tf.summary.image(f"heldout/{index}", strip[None])
                self.writer.flush()

    def close(self) -> None:
        """Flushes and closes the writer."""
        self.writer.flush()
        self.writer.close()
