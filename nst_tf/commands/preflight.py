"""One pre-flight for every command: the checks that run before TensorFlow loads.

Each command calls these in this order, so that a mistake costs a fraction of a second
and destroys nothing: check_settings (validate, expand --style folders), find the
weights, check every written path against every read path (check_run_paths, or the
command's own written paths), then read_style (the style images or targets, masks and
start image, with the targets checked against this run's settings and weights).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from nst_tf.errors import ImageError
from nst_tf.io import images, paths
from nst_tf.io.inputs import images_in_folder
from nst_tf.io.targets import StyleTargets, check_compatible, load_style_targets
from nst_tf.model.weights import WeightsSource
from nst_tf.settings.config import INIT_KEYWORDS, Config, validate


def check_settings(config: Config) -> tuple[Config, list[str]]:
    """Validates the settings and expands --style folders.

    Returns:
        (the settings with one --style entry per image, the entries that were folders).

    Raises:
        ConfigError: a setting is wrong. ImageError: a --style folder holds no image.
    """
    config = validate(config)
    folders = [entry for entry in config.style_paths() if os.path.isdir(entry)]
    return expand_styles(config), folders


def read_style(
    config: Config, source: WeightsSource, content: bool = True
) -> tuple[np.ndarray | None, list[np.ndarray] | StyleTargets, np.ndarray | None, list | None]:
    """Reads a run's images: content, style (images or a targets file), start and masks.

    Style targets are checked against this run's layers, normalization, pooling and
    weights here, for every command.

    Args:
        config: The checked settings (see check_settings).
        source: The VGG19 weights the run will use.
        content: Whether to read the content (batch and video read theirs per photo).

    Returns:
        (content or None, style, init image or None, masks or None).

    Raises:
        NstError: an input cannot be read, or the targets do not suit the run.
    """
    photo, style, init = load_inputs(config, content=content)
    if isinstance(style, StyleTargets):
        check_compatible(
            style, config.style_layers, config.normalization, source.sha256, config.pooling
        )
    return photo, style, init, load_masks(config)


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
            found = images_in_folder(entry)
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
    config: Config, content: bool = True
) -> tuple[np.ndarray | None, list[np.ndarray] | StyleTargets, np.ndarray | None]:
    """Reads the content, style (images or targets file) and init image of the config.

    Missing --content/--style select the built-in samples. Images larger than twice the
    output size (times the style scale) are downscaled on load, so a huge photo does not
    cost memory for nothing.

    Args:
        config: The checked settings.
        content: Whether to read the content (None in its place otherwise: batch and
            video read theirs per photo or frame).
    """
    limit = 2 * config.size
    photo = None
    if content:
        photo = images.load_image(config.content or images.sample_path("content"), limit=limit)
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
    return photo, style, init


def check_run_paths(config: Config, style_folders: list[str], weights_path: str | None) -> None:
    """All checks of a stylisation run's written paths, before any work starts.

    Args:
        config: The run's settings, --style folders already expanded and the checkpoint
            directory filled in.
        style_folders: The --style entries that were folders.
        weights_path: The VGG19 weights file the run reads.

    Raises:
        OutputError: a written path overlaps an input, or cannot be written.
    """
    inputs = [("content", config.content), ("style_targets", config.style_targets)]
    inputs += [("style", path) for path in config.style_paths()]
    inputs += [("style_mask", path) for path in config.style_mask]
    if config.init not in INIT_KEYWORDS:
        inputs.append(("init", config.init))
    inputs.append(("vgg_weights", weights_path))
    written = [
        paths.Written("output", config.output),
        paths.Written("trace", config.trace),
        paths.Written("logdir", config.logdir, directory=True),
        paths.Written("checkpoint_dir", config.checkpoint_dir, directory=True),
    ]
    if config.save_every:
        stem, ext = os.path.splitext(os.path.basename(config.output))
        pattern = re.escape(stem) + r"\.step\d{5,}" + re.escape(ext)
        first = os.path.join(
            os.path.dirname(config.output), f"{stem}.step{config.save_every:05d}{ext}"
        )
        written.append(paths.Written("save_every", first, pattern=pattern))
    paths.check_no_overlap(written, inputs, [("style", folder) for folder in style_folders])
    if config.trace:
        paths.check_writable_file(config.trace, "trace")
    if config.logdir:
        paths.check_writable_directory(config.logdir, "logdir")
    if config.checkpoint_dir:
        paths.check_writable_directory(config.checkpoint_dir, "checkpoint_dir")
