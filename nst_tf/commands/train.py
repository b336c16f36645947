"""`nst-tf-train`: learn one style from the user's photos; write a MODEL_DIR.

Kept thin: the flags become a TrainSettings, every check that needs no TensorFlow runs
first (settings, the output folder, the photos, the style, the weights), then the
engine's Trainer trains and io.model_dir writes the result.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

from absl import logging

from nst_tf.commands import common, flags
from nst_tf.commands.preflight import expand_styles
from nst_tf.commands.run import SignalGuard, _quiet_stderr
from nst_tf.engine import checkpoint_files
from nst_tf.errors import ConfigError, Interrupted
from nst_tf.io import images, model_dir, photos
from nst_tf.io.paths import shown
from nst_tf.model import weights
from nst_tf.settings.training import TrainSettings, validate_training

# A clip gives at most this many frames (the first ones), each scaled to --size by
# ffmpeg: about 0.4 GB at 512x288.
MAX_FRAMES = 1000


def _clip_frames(path: str, size: int):
    """(name, frame) for a video clip's first MAX_FRAMES frames, scaled to `size`."""
    from nst_tf.io.clips import open_clip  # pylint: disable=import-outside-toplevel

    clip = open_clip(path)
    for index, frame in enumerate(clip.read(0, MAX_FRAMES, longest=size)):
        yield f"frame{index:05d}", frame


def load_training_photos(settings: TrainSettings) -> photos.PhotoSet:
    """The photos of --images (a folder, or a clip's frames), fitted and split.

    Raises:
        ConfigError: too few usable photos (see photos.build_photo_set).
        ImageError: the clip cannot be read.
    """
    source = settings.images
    label = f"--images={shown(source)}"
    if os.path.isdir(source):
        items = photos.read_photos(photos.list_photos(source), settings.size)
        contiguous = False
    elif os.path.isfile(source):
        if os.path.splitext(source)[1].lower() in images.input_extensions():
            raise ConfigError(f"{label} is one image: give a folder of photos or a video clip")
        items, contiguous = _clip_frames(source, settings.size), True
    else:
        raise ConfigError(f"{label}: no such folder or clip; check the path")
    return photos.build_photo_set(
        items,
        size=settings.size,
        crop=settings.crop_size,
        batch=settings.batch_size,
        holdout=settings.holdout,
        seed=settings.seed,
        contiguous=contiguous,
        source=label,
    )


def _style_files(settings: TrainSettings) -> tuple[list[str], TrainSettings]:
    """The style image files (folders expanded) and the settings with their blend."""
    config = expand_styles(settings.config())
    files = config.style_paths() or [images.sample_path("style")]
    expanded = dataclasses.replace(
        settings,
        style=config.style,
        style_blend_weights=config.style_blend_weights,
        style_scale=config.style_scale,
    )
    return files, expanded


def train(settings: TrainSettings, flags: str = "") -> dict:
    """Trains a network for the style and writes the MODEL_DIR.

    Args:
        settings: The settings (validated here).
        flags: The command line as text, logged to TensorBoard.

    Returns:
        The MODEL_DIR's description.

    Raises:
        NstError: bad settings, photos, style, weights or output (before any training).
        Interrupted: stopped by a signal, after a checkpoint was saved.
    """
    settings = validate_training(settings)
    output = os.path.abspath(settings.output)
    model_dir.check_model_output(output)
    checkpoint_dir = settings.checkpoint_dir() if settings.checkpoint_every else None
    if settings.resume and not checkpoint_dir:
        raise ConfigError("--resume continues a checkpoint, but --checkpoint_every=0 writes none")
    if checkpoint_dir:
        checkpoint_files.check_ours(checkpoint_dir)
    files, settings = _style_files(settings)
    styles = [
        images.load_image(path, limit=round(2 * settings.size * settings.config().scale_of(i)))
        for i, path in enumerate(files)
    ]
    source = weights.find_weights(settings.vgg_weights)
    weights.check_vgg19(source)
    photo_set = load_training_photos(settings)
    logging.info(
        "%d photos to train on, %d held out%s",
        len(photo_set.train),
        len(photo_set.heldout),
        (
            f", {photo_set.skipped + photo_set.too_small} skipped"
            if photo_set.skipped + photo_set.too_small
            else ""
        ),
    )
    with _quiet_stderr():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from nst_tf.engine import training  # pylint: disable=import-outside-toplevel
    from nst_tf.model.features import FeatureExtractor  # pylint: disable=import-outside-toplevel

    tf.get_logger().setLevel("WARNING")
    config = settings.config()
    extractor = FeatureExtractor(config.layers, source, config.precision, config.pooling)
    trainer = training.Trainer(settings, styles, extractor)
    logging.info(
        "network: width %d, %d residual blocks, %d parameters, %s",
        settings.width,
        settings.residual_blocks,
        sum(math.prod(v.shape) for v in trainer.net.trainable_variables),
        trainer.precision,
    )
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-train-{os.path.basename(output)}"
    monitor = training.TrainMonitor(settings.logdir, name, photo_set.heldout)
    if monitor.run_dir:
        logging.info("TensorBoard: tensorboard --logdir %s", shown(settings.logdir))
    monitor.start({**settings.recipe(), "style": settings.style, "flags": flags})
    bar = _ProgressBar(settings.steps)
    new_checkpoint_dir = bool(checkpoint_dir) and not os.path.exists(checkpoint_dir)
    start = time.perf_counter()
    try:
        with SignalGuard() as guard:
            last = trainer.fit(
                photo_set.train,
                photo_set.heldout,
                [bar, monitor, _HeldoutLog(), guard],
                checkpoint_dir,
                settings.resume,
            )
    except Interrupted as stop:
        if stop.checkpoint_dir:
            stop.saved = (
                f"checkpoint saved to {shown(stop.checkpoint_dir)}; run the same command "
                "with --resume to continue"
            )
        raise
    except ConfigError:
        if new_checkpoint_dir:
            checkpoint_files.discard_if_unused(checkpoint_dir)
        raise
    finally:
        bar.close()
        monitor.close()
    heldout = last.heldout if last is not None else None
    if heldout is None and photo_set.heldout:
        heldout = trainer.evaluate_set(photo_set.heldout)[0]
    meta = model_dir.write_model_dir(
        output,
        trainer.net,
        recipe={**settings.recipe(), "style": settings.style},
        styles=[{"name": os.path.basename(p), "sha256": model_dir.sha256_of(p)} for p in files],
        training={
            "steps": settings.steps,
            "seconds": round(time.perf_counter() - start, 1),
            "photos": len(photo_set.train),
            "photos_skipped": photo_set.skipped + photo_set.too_small,
            "heldout_photos": photo_set.heldout_names,
            "heldout_loss": heldout,
            "precision": trainer.precision,
            "vgg19_weights_sha256": source.sha256,
        },
        tflite=settings.tflite,
    )
    if settings.tflite and "tflite" in meta:
        logging.warning("TFLite: %s", meta["tflite"])
    total = f"{heldout['total']:.4g}" if heldout else "n/a (no photos held out)"
    logging.info("done: %d steps; held-out loss %s -> %s", settings.steps, total, shown(output))
    return meta


class _ProgressBar:
    """A tqdm bar with the step, the loss and an ETA."""

    def __init__(self, total: int):
        import tqdm  # pylint: disable=import-outside-toplevel

        self.bar = tqdm.tqdm(total=total, unit="step", desc="training", dynamic_ncols=True)

    def __call__(self, progress) -> None:
        if self.bar.n == 0 and progress.first_step > 1:
            self.bar.n = progress.first_step - 1
            self.bar.last_print_n = self.bar.n
        self.bar.set_postfix(loss=f"{progress.losses['total']:.4g}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class _HeldoutLog:
    """A line with the held-out photos' loss whenever it is measured."""

    def __call__(self, progress) -> None:
        if progress.heldout is not None:
            terms = progress.heldout
            logging.info(
                "step %5d/%d | held-out total %.4g | content %.4g | style %.4g | train %.4g",
                progress.step,
                progress.total_steps,
                terms["total"],
                terms["content"],
                terms["style"],
                progress.losses["total"],
            )


def _train_main(argv: list[str]) -> int:
    if len(argv) > 1:
        return common.unexpected_arguments(argv)

    def body():
        flag_text, _ = flags.settings_flag_file()
        train(flags.config_from_flags(TrainSettings), flags=flag_text)

    return common.guarded(body)


def define_flags() -> tuple[str, ...]:
    """nst-tf-train's flags, made from TrainSettings' descriptions."""
    return flags.define_flags(None, TrainSettings)


def main() -> None:
    """Entry point of `nst-tf-train`."""
    if os.path.basename(sys.argv[0]) == "train.py":
        sys.argv[0] = "nst-tf-train"  # messages name the command, not this file
    common.run(_train_main, define_flags())


if __name__ == "__main__":
    main()
