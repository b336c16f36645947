"""Stylising with a trained TransformNet: one forward pass, or tiles that share statistics.

Instance normalisation divides by whole-image means and variances, so a tile run on its
own would normalise by its own and the seams would show. Tiled inference here is exact:
for each norm layer in turn, every tile's map before that layer (computed with the
whole-image statistics of the layers before it) gives the moments of the tile's
interior, `pooled_moments` combines them into the whole image's, and once every layer's
are known each tile is run with them and cropped to its interior. Tiles overlap by the
network's halo (its receptive field's radius), and start on multiples of 4 so that the
two stride-2 convolutions sample the same grid as the whole image's.

Every image is reflected to the next multiple of 4 on each side (at most 3 px, cropped
afterwards), tiled or not: the nearest-neighbour upsampling then doubles exactly, and
the tiled pass gives the untiled pass's pixels to float rounding for every size. (The
SavedModel serves the network as it is, without that padding: on a side that is not a
multiple of 4 its pixels differ slightly from nst-tf's.)

When to tile: the peak memory of a forward pass is about FORWARD_BYTES_PER_CHANNEL_PIXEL
bytes per pixel and unit of the network's width (measured, with headroom); a pass that
would not fit the budget (--memory_limit, else 80 % of the available memory) is tiled
with the largest tile that fits. --tile_size=N forces N px tile interiors, 0 never tiles.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import tensorflow as tf

from nst_tf.engine.forward_memory import (  # noqa: F401  (re-exported)
    FORWARD_BYTES_PER_CHANNEL_PIXEL,
    FORWARD_BYTES_PER_PIXEL,
    forward_peak_bytes,
)
from nst_tf.model.transform import InstanceNormalization, Moments, TransformNet, pooled_moments

# Tile interiors are multiples of this (the encoder's two halvings).
ALIGN = 4
# The smallest tile interior worth running (below, the halo is most of the work).
MIN_TILE = 32


def forward_bytes(model: TransformNet, height: int, width: int) -> float:
    """Estimated peak memory of one forward pass over an image of this size."""
    return forward_peak_bytes(model.width, height, width)


def plan_tile(
    model: TransformNet, height: int, width: int, budget: float, tile_size: str | int = "auto"
) -> int | None:
    """The tile interior side to use, or None for one untiled pass.

    Args:
        model: The network (its width and halo).
        height, width: The image's size.
        budget: Bytes the pass may use (math.inf: never tile on "auto").
        tile_size: "auto" (tile only when one pass would not fit), 0 or "0" (never), or
            N (tile interiors of N px, rounded up to a multiple of 4).

    Returns:
        The tile side (a multiple of 4), or None.
    """
    text = str(tile_size).strip().lower()
    if text != "auto":
        side = int(text)
        if side <= 0 or side >= max(height, width):
            return None
        return max(ALIGN, -(-side // ALIGN) * ALIGN)
    if forward_bytes(model, height, width) <= budget:
        return None
    halo = _aligned_halo(model)
    per_pixel = forward_bytes(model, 1, 1)
    side = math.sqrt(budget / per_pixel) - 2 * halo
    return max(MIN_TILE, int(side) // ALIGN * ALIGN)


def _aligned_halo(model: TransformNet) -> int:
    return -(-model.halo // ALIGN) * ALIGN


# One compiled untiled pass per network: a clip's frames (one size) share one trace, and
# the compiled pass took 0.25 s where the eager one took 0.39 s (256x192, width 32, 2 cores).
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forward(model: TransformNet, image: np.ndarray) -> tf.Tensor:
    forward = _COMPILED.get(model)
    if forward is None:
        forward = _COMPILED[model] = tf.function(model.call, reduce_retracing=True)
    return forward(tf.constant(image[None], tf.float32))[0]


def _tiles(height: int, width: int, tile: int, halo: int):
    """(interior box, input box) per tile, as (y0, y1, x0, x1), all multiples of 4."""
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            yield (y0, y1, x0, x1), (
                max(0, y0 - halo),
                min(height, y1 + halo),
                max(0, x0 - halo),
                min(width, x1 + halo),
            )


def tiled_statistics(model: TransformNet, image: np.ndarray, tile: int) -> list[Moments]:
    """Every norm layer's whole-image Moments, measured tile by tile (exact).

    Args:
        model: The network.
        image: [H, W, 3] float32 0..255, H and W multiples of 4.
        tile: The tile interior side, a multiple of 4.

    Returns:
        One Moments per norm layer, as TransformNet.norm_statistics gives for the image.
    """
    height, width = image.shape[:2]
    halo = _aligned_halo(model)
    boxes = list(_tiles(height, width, tile, halo))
    statistics: list[Moments] = []
    for index, stride in enumerate(model.norm_strides):
        parts = []
        for (y0, y1, x0, x1), (iy0, iy1, ix0, ix1) in boxes:
            patch = tf.constant(image[None, iy0:iy1, ix0:ix1], tf.float32)
            layer_map = model.pre_norm(patch, index, statistics)
            inner = layer_map[
                :,
                (y0 - iy0) // stride : (y1 - iy0) // stride,
                (x0 - ix0) // stride : (x1 - ix0) // stride,
            ]
            count = int(inner.shape[1]) * int(inner.shape[2])
            parts.append((InstanceNormalization.moments(inner), count))
        statistics.append(pooled_moments(parts))
    return statistics


def _padded(image: np.ndarray) -> np.ndarray:
    """The image reflected at its bottom and right to sides that are multiples of 4."""
    height, width = image.shape[:2]
    padded_h, padded_w = -(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN
    if (padded_h, padded_w) == (height, width):
        return image
    # Reflection needs 2 px; a 1 px side is repeated instead.
    mode = "reflect" if min(height, width) > ALIGN else "symmetric"
    return np.pad(image, ((0, padded_h - height), (0, padded_w - width), (0, 0)), mode=mode)


def _tiled_forward(model: TransformNet, padded: np.ndarray, tile: int) -> np.ndarray:
    padded_h, padded_w = padded.shape[:2]
    statistics = tiled_statistics(model, padded, tile)
    out = np.empty((padded_h, padded_w, 3), np.float32)
    for (y0, y1, x0, x1), (iy0, iy1, ix0, ix1) in _tiles(
        padded_h, padded_w, tile, _aligned_halo(model)
    ):
        patch = tf.constant(padded[None, iy0:iy1, ix0:ix1], tf.float32)
        result = model(patch, statistics=statistics)[0].numpy()
        out[y0:y1, x0:x1] = result[y0 - iy0 : y1 - iy0, x0 - ix0 : x1 - ix0]
    return out


def stylize_with_model(
    model: TransformNet,
    content: np.ndarray,
    size: int | None = None,
    budget: float = math.inf,
    tile_size: str | int = "auto",
    on_device: bool = False,
) -> np.ndarray | tf.Tensor:
    """Stylises one image with a trained network, tiled when one pass would not fit.

    Args:
        model: The trained TransformNet (see io.model_dir.load_model_dir).
        content: [H, W, 3] RGB 0..255.
        size: The output's long side; the content is resized to it (bicubic,
            antialiased) when it differs; None: the content's size.
        budget: Bytes the pass may use (see plan_tile).
        tile_size: "auto", 0 or N (see plan_tile).
        on_device: Return the tf.Tensor where the network made it instead of reading it
            out (a refinement starts from it on the device).

    Returns:
        [h, w, 3] float32 in 0..255, h and w the content's at `size`.
    """
    image = np.asarray(content, np.float32)
    height, width = image.shape[:2]
    if size is not None and max(height, width) != size:
        scale = size / max(height, width)
        shape = max(1, round(height * scale)), max(1, round(width * scale))
        image = tf.image.resize(image, shape, method="bicubic", antialias=True).numpy()
        image = np.clip(image, 0.0, 255.0)
        height, width = shape
    padded = _padded(image)
    tile = plan_tile(model, *padded.shape[:2], budget, tile_size)
    if tile is None:
        out = _forward(model, padded)
    else:
        out = tf.constant(_tiled_forward(model, padded, tile))
    out = out[:height, :width]
    return out if on_device else out.numpy()
