"""VGG19's facts, free of TensorFlow: layer names, downsampling, receptive fields, tiles.

The settings check layer names, the memory planner sizes tiles, and nst_tf.core.tiling
cuts images with these before (or without) TensorFlow loading the network.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

# Keras VGG19 convolution names in network order. Kept here (not read from Keras)
# so that settings can be checked before TensorFlow is imported.
VGG19_CONV_LAYERS = (
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block3_conv4",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block4_conv4",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
    "block5_conv4",
)


# Where FeatureExtractor.head() hands over to tail(): blocks 1-2 hold most of the
# activations per pixel (64 and 128 channels at full and half resolution) but only a
# quarter of the arithmetic; blocks 3-5 the rest. The split tiled step runs the head tile
# by tile and the tail on the whole image.
SPLIT_BEFORE = "block3_conv1"


def layer_downsampling(layer: str) -> int:
    """How many times smaller than the input a layer's feature map is (1, 2, ..., 16)."""
    block = int(layer[len("block")])
    return 2 ** (block - 1)


def receptive_field(layer: str) -> tuple[int, int]:
    """How far a feature of `layer` sees beyond its own pooling cell, left and right.

    A feature at position p of a layer downsampled d times depends on the input pixels
    d*p - left ... d*p + d - 1 + right: each 3x3 convolution widens the range by one
    position of its own resolution, and each 2x2 pooling doubles it.

    Args:
        layer: A VGG19 conv layer name, e.g. "block5_conv1".

    Returns:
        (left, right) in pixels.
    """
    # Walk from the layer back to the input: [lo, hi] is the range of the current
    # resolution's positions that feature 0 depends on.
    lo = hi = 0
    for name in reversed(VGG19_CONV_LAYERS[: VGG19_CONV_LAYERS.index(layer) + 1]):
        lo, hi = lo - 1, hi + 1  # the 3x3 convolution
        if name.endswith("_conv1") and not name.startswith("block1"):
            lo, hi = 2 * lo, 2 * hi + 1  # the 2x2 pooling before this block
    return -lo, hi - (layer_downsampling(layer) - 1)


def halo_and_grid(layers: Sequence[str]) -> tuple[int, int]:
    """The halo a tile needs for these layers, and the grid tile origins must lie on.

    Returns:
        (halo, grid): the grid is the downsampling of the deepest layer (16 for block5);
        the halo is the widest receptive field rounded up to the grid, so that a tile's
        crop also starts on the grid.
    """
    grid = max(layer_downsampling(name) for name in layers)
    reach = max(max(receptive_field(name)) for name in layers)
    return grid * math.ceil(reach / grid), grid


def smallest_tile(layers: Sequence[str]) -> int:
    """The smallest tile worth running for these layers: one halo wide (smaller tiles are
    mostly halo), and at least one grid cell."""
    halo, grid = halo_and_grid(layers)
    return max(halo, grid)


def split_halo_and_grid(layers: Sequence[str]) -> tuple[int, int] | None:
    """The halo and grid of the head's tiles in the split tiled step.

    The head (the layers before SPLIT_BEFORE) runs tile by tile and ends in the input of
    SPLIT_BEFORE, at a quarter of the resolution; that map must be exact in each tile's
    interior, as must the head's own requested layers.

    Returns:
        (halo, grid), or None when no layer used is at or after SPLIT_BEFORE (the whole
        network is then the head, and there is nothing to split).
    """
    order = VGG19_CONV_LAYERS.index
    if max(order(name) for name in layers) < order(SPLIT_BEFORE):
        return None
    grid = layer_downsampling(SPLIT_BEFORE)
    # The input of SPLIT_BEFORE reaches as far as its features less its own 3x3
    # convolution: one position of its resolution on each side.
    reach = max(receptive_field(SPLIT_BEFORE)) - grid
    for name in layers:
        if order(name) < order(SPLIT_BEFORE):
            reach = max(reach, *receptive_field(name))
    return grid * math.ceil(reach / grid), grid


@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile: its interior (what it contributes) and its crop (interior plus halo).

    Coordinates are image pixels (y0, y1, x0, x1), [start, stop) per axis.
    """

    interior: tuple[int, int, int, int]
    crop: tuple[int, int, int, int]


def _edges(length: int, tile: int, grid: int) -> list[int]:
    """Interior edges along one axis: equal tiles of at most `tile` px, on the grid."""
    count = math.ceil(length / tile)
    step = grid * math.ceil(length / count / grid)
    return sorted({min(i * step, length) for i in range(count)} | {length})


def plan_tiles(height: int, width: int, tile: int, halo: int, grid: int) -> list[Tile]:
    """The tiles covering a height x width image, in row-major order.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        tile: Largest interior side, a multiple of `grid`.
        halo: Pixels of context on each side of an interior (a multiple of `grid`).
        grid: Tile origins lie on multiples of this.

    Returns:
        Tiles whose interiors partition the image.
    """
    rows, cols = _edges(height, tile, grid), _edges(width, tile, grid)
    return [
        Tile(
            (y0, y1, x0, x1),
            (max(0, y0 - halo), min(height, y1 + halo), max(0, x0 - halo), min(width, x1 + halo)),
        )
        for y0, y1 in zip(rows[:-1], rows[1:], strict=True)
        for x0, x1 in zip(cols[:-1], cols[1:], strict=True)
    ]


def layer_channels(layer: str) -> int:
    """How many channels (feature maps) a VGG19 convolution has: 64 in block 1, doubling
    per block up to 512."""
    return min(64 * layer_downsampling(layer), 512)
