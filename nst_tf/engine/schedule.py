"""The coarse-to-fine pyramid: the long side and the steps of each scale, and the resize
that hands an image from one scale to the next."""

from __future__ import annotations

import math

import tensorflow as tf

from nst_tf.settings.recipe import LARGE_SCALE


def scale_sizes(min_size: int, size: int, ratio: float = math.sqrt(2)) -> list[int]:
    """Long-side sizes of a coarse-to-fine pyramid: min_size, min_size*ratio, ..., size.

    Args:
        min_size: The first (coarsest) size; 0 or >= size gives a single scale.
        size: The final size.
        ratio: Growth per scale.

    Returns:
        Increasing sizes ending with `size`.
    """
    if min_size <= 0 or min_size >= size:
        return [size]
    sizes = []
    current = float(min_size)
    while round(current) < size and size / current > 1.1:
        sizes.append(round(current))
        current *= ratio
    return sizes + [size]


def scale_steps(
    min_size: int, size: int, coarse_steps: int, steps: int, schedule: str = "auto"
) -> list[int]:
    """Iterations at each scale of the pyramid from `min_size` to `size`.

    Args:
        min_size: The coarsest scale's long side (see scale_sizes).
        size: The final scale's long side.
        coarse_steps: Steps at each scale below the final one.
        steps: Steps at the final scale.
        schedule: "fixed" keeps those counts; "auto" runs fewer steps at a scale larger
            than LARGE_SCALE px, in proportion to LARGE_SCALE / size (at least a
            quarter): by then the small scales have laid out the picture and the large
            ones refine detail, at a cost per step that grows with the pixels.

    Returns:
        One step count per scale, coarse to fine.
    """
    sizes = scale_sizes(min_size, size)
    counts = [coarse_steps] * (len(sizes) - 1) + [steps]
    if schedule == "fixed":
        return counts
    return [
        n if side <= LARGE_SCALE else max(1, round(n * max(0.25, LARGE_SCALE / side)))
        for n, side in zip(counts, sizes, strict=True)
    ]


def resize_images(images: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Bicubic resize of a [batch, H, W, 3] batch, clipped to 0..255."""
    resized = tf.image.resize(images, (height, width), method="bicubic", antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)
