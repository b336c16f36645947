"""Reading a run's inputs: the content, the styles (folders expanded), masks and the start."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from nst_tf.errors import ImageError
from nst_tf.io import images
from nst_tf.io.targets import StyleTargets, load_style_targets
from nst_tf.settings.config import INIT_KEYWORDS, Config


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
