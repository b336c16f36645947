"""Issue 15: the tiled step equals the untiled one (loss and gradient), and its halo is right.

The network has random weights (what the weights are does not matter for exactness) and
the images are tiny, with tiles small enough for at least 3x3 of them. The reference is
the Stylizer's own untiled step on the same image and targets.
"""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tifffile

from nst_tf.core.tiling import TiledStep, _window
from nst_tf.engine.memory import halo_and_grid, plan_tiles, receptive_field, split_halo_and_grid
from nst_tf.engine.stylizer import Stylizer
from nst_tf.model.features import FeatureExtractor
from nst_tf.settings.config import Config

SHALLOW = dict(
    content_layers=("block2_conv2",),
    style_layers=("block1_conv1", "block2_conv1", "block3_conv1"),
)
TOLERANCE = 1e-4


def _image(height, width, seed):
    return np.random.default_rng(seed).uniform(0, 255, (height, width, 3)).astype(np.float32)


def _both(config, shape, tile, masks=None, seed=0, split=False):
    """(untiled values, untiled gradient, tiled values, tiled gradient, tile count).

    split: the split step (head tiles, tail whole) instead of whole-network tiles.
    """
    # Seeded random weights: the same network whatever ran before, so that a case is
    # reproducible (with some random networks the W2 gradient amplifies rounding).
    keras.utils.set_random_seed(seed)
    model = FeatureExtractor(config.layers, None, "float32", config.pooling)
    stylizer = Stylizer(config, model)
    height, width = shape
    inputs = stylizer.prepare(
        _image(height, width, seed),
        [_image(40, 52, seed + 1), _image(36, 30, seed + 2)],
        None,
        masks,
    )
    targets = stylizer.targets(inputs, max(shape))
    image = tf.constant(_image(height, width, seed + 3)[None])
    values, grad = stylizer.value_and_grad(targets)(image)
    tiled = TiledStep(model, stylizer.objective, tile, split)
    assert tiled.split == split
    count = len((tiled.head_tiles if split else tiled.tiles)(height, width))
    tiled_values, tiled_grad = tf.function(tiled.value_and_grad)(image, targets)
    return values.numpy(), grad.numpy(), tiled_values.numpy(), tiled_grad.numpy(), count


def _assert_close(untiled_values, untiled_grad, tiled_values, tiled_grad):
    relative = np.abs(tiled_values - untiled_values) / np.maximum(np.abs(untiled_values), 1e-30)
    assert relative.max() <= TOLERANCE, relative
    # The gradient's relative difference is taken against its largest value: single
    # elements near zero have no meaningful relative error.
    scale = np.abs(untiled_grad).max()
    assert scale > 0
    assert np.abs(tiled_grad - untiled_grad).max() / scale <= TOLERANCE


@pytest.mark.parametrize(
    "overrides",
    [
        dict(style_loss="gram"),
        # Shallow style layers: with random weights, block2/3's covariances have
        # eigenvalues at the W2 loss's clamp (26 of 256 at block3_conv1 here), where its
        # gradient amplifies any float rounding, tiled or not.
        dict(style_loss="wasserstein", style_layers=("block1_conv1", "block1_conv2")),
        dict(style_loss="gram", content_layers=("block1_conv2", "block3_conv1")),
        dict(style_loss="gram", normalization="course", tv_weight=1e-3),
        dict(style_loss="gram", pooling="avg"),
    ],
    ids=["gram", "wasserstein", "two_content_layers", "course_tv", "avg_pool"],
)
def test_tiled_equals_untiled(overrides):
    config = Config(**{**SHALLOW, "style_weight": 1.0, **overrides})
    # 70x85 is off the pooling grid: the last row and column of tiles end where pooling's
    # floor ends the maps.
    *result, count = _both(config, (70, 85), tile=24)
    assert count >= 9
    _assert_close(*result)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(style_loss="gram"),
        # W2 in the head (block1) and in the tail (block3_conv1), the content in the tail.
        dict(
            style_loss="wasserstein",
            style_layers=("block1_conv1", "block3_conv1"),
            content_layers=("block3_conv1",),
        ),
        dict(style_loss="gram", content_layers=("block1_conv2", "block3_conv1")),
        dict(style_loss="gram", normalization="course", tv_weight=1e-3),
        dict(style_loss="gram", pooling="avg"),
    ],
    ids=["gram", "wasserstein", "two_content_layers", "course_tv", "avg_pool"],
)
def test_split_tiled_equals_untiled(overrides):
    config = Config(**{**SHALLOW, "style_weight": 1.0, **overrides})
    *result, count = _both(config, (70, 85), tile=24, split=True)
    assert count >= 9
    _assert_close(*result)


@pytest.mark.parametrize("split", [False, True], ids=["tiled", "split"])
def test_tiled_equals_untiled_with_masks(split):
    config = Config(**SHALLOW, style_weight=1.0)
    left = np.zeros((70, 85), np.float32)
    left[:, :40] = 1.0
    left[:, 40:50] = 0.5  # a soft edge
    *result, count = _both(config, (70, 85), tile=24, masks=[left, 1.0 - left], split=split)
    assert count >= 9
    _assert_close(*result)


@pytest.mark.parametrize("split", [False, True], ids=["tiled", "split"])
def test_tiled_equals_untiled_with_the_default_layers(split):
    config = Config(style_weight=1.0)
    *result, count = _both(config, (288, 300), tile=96, split=split)
    assert count >= 9
    _assert_close(*result)


def test_the_head_of_the_split_step_is_exact_in_each_tile_and_a_smaller_halo_breaks_that():
    model = FeatureExtractor(Config().layers, None, "float32")
    halo, grid = split_halo_and_grid(Config().layers)
    assert (halo, grid) == (8, 4)
    # Every layer used in the head: no split (the whole network is the head).
    assert split_halo_and_grid(("block1_conv1", "block2_conv2")) is None
    height, width = 61, 75
    image = tf.constant(_image(height, width, 6)[None])
    whole = model.head(image)[1].numpy()

    def worst(use_halo):
        error = 0.0
        for tile in plan_tiles(height, width, 16, use_halo, grid):
            y0, y1, x0, x1 = tile.crop
            crop = model.head(image[:, y0:y1, x0:x1])[1].numpy()
            iy0, iy1, ix0, ix1 = tile.interior
            inner = crop[:, (iy0 - y0) // 4 :, (ix0 - x0) // 4 :][
                :, : iy1 // 4 - iy0 // 4, : ix1 // 4 - ix0 // 4
            ]
            want = whole[:, iy0 // 4 : iy1 // 4, ix0 // 4 : ix1 // 4]
            assert inner.shape == want.shape
            if inner.size:
                error = max(error, np.abs(inner - want).max() / np.abs(whole).max())
        return error

    assert worst(halo) <= 1e-5
    assert worst(halo - grid) > 1e-3


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_a_window_is_the_slice_and_its_gradient_the_zero_padded_upstream(dtype):
    # The tiled step's slices carry a pad as their gradient (TensorFlow's own slice
    # gradient is slow on the CPU); the reference here is numpy's indexing.
    rng = np.random.default_rng(3)
    whole = rng.normal(size=(2, 9, 11, 4)).astype(np.float32)
    upstream = rng.normal(size=(2, 4, 5, 4)).astype(np.float32)
    tensor = tf.cast(whole, dtype)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        part = _window(tensor, 3, 7, 2, 7)
        value = tf.reduce_sum(tf.cast(part, tf.float32) * upstream)
    expected_grad = np.zeros_like(whole)
    expected_grad[:, 3:7, 2:7] = upstream
    np.testing.assert_array_equal(
        tf.cast(part, tf.float32).numpy(), tf.cast(tensor, tf.float32).numpy()[:, 3:7, 2:7]
    )
    grad = tf.cast(tape.gradient(value, tensor), tf.float32).numpy()
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-2 if dtype == tf.bfloat16 else 0)


def test_receptive_field_matches_hand_count():
    # block1_conv1 sees one pixel each side; block5_conv1 (VGG19's 3x3 convs and 2x2
    # pools) 70 px beyond its 16 px pooling cell.
    assert receptive_field("block1_conv1") == (1, 1)
    assert receptive_field("block1_conv2") == (2, 2)
    assert receptive_field("block2_conv1") == (4, 4)
    assert receptive_field("block5_conv1") == (70, 70)
    assert halo_and_grid(Config().layers) == (80, 16)
    assert halo_and_grid(("block1_conv1",)) == (1, 1)


@pytest.mark.parametrize("layer", ["block2_conv1", "block3_conv1", "block4_conv2"])
def test_interior_features_equal_the_whole_image_and_a_smaller_halo_breaks_that(layer):
    model = FeatureExtractor((layer,), None, "float32")
    halo, grid = halo_and_grid((layer,))
    height, width = 6 * grid + 2 * halo + 3, 5 * grid + 2 * halo + 1
    image = tf.constant(_image(height, width, 5)[None])
    whole = model(image)[layer].numpy()
    cell = grid

    def worst(use_halo):
        error = 0.0
        for tile in plan_tiles(height, width, 2 * grid, use_halo, grid):
            y0, y1, x0, x1 = tile.crop
            crop = model(image[:, y0:y1, x0:x1])[layer].numpy()
            iy0, iy1, ix0, ix1 = tile.interior
            inner = crop[
                :,
                (iy0 - y0) // cell : (iy0 - y0) // cell + iy1 // cell - iy0 // cell,
                (ix0 - x0) // cell : (ix0 - x0) // cell + ix1 // cell - ix0 // cell,
            ]
            want = whole[:, iy0 // cell : iy1 // cell, ix0 // cell : ix1 // cell]
            assert inner.shape == want.shape
            if inner.size:  # a last tile thinner than a pooling cell has no positions here
                error = max(error, np.abs(inner - want).max() / np.abs(whole).max())
        return error

    assert worst(halo) <= 1e-5
    assert worst(halo - grid) > 1e-3


def test_tiles_partition_the_image_on_the_grid():
    tiles = plan_tiles(1000, 700, 256, 80, 16)
    covered = np.zeros((1000, 700), np.int32)
    for tile in tiles:
        y0, y1, x0, x1 = tile.interior
        covered[y0:y1, x0:x1] += 1
        assert y0 % 16 == 0 and x0 % 16 == 0
        assert tile.crop[0] % 16 == 0 and tile.crop[2] % 16 == 0
        assert y1 - y0 <= 256 and x1 - x0 <= 256
        assert tile.crop[0] == max(0, y0 - 80) and tile.crop[1] == min(1000, y1 + 80)
    assert (covered == 1).all()
    assert len(tiles) == 4 * 3


@pytest.mark.slow
def test_a_tiled_lbfgs_run_gives_the_untiled_image(tmp_path):
    """4 deterministic float32 L-BFGS steps at 768 px with 256 px tiles (3x3 of them, with
    the real weights, through the command line) and untiled give the same image."""
    results = {}
    for tile in ("256", "0"):
        out = tmp_path / f"tile{tile}.tif"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "nst_tf",
                "--size=768",
                "--min_size=0",
                "--steps=4",
                "--optimizer=lbfgs",
                "--precision=float32",
                "--deterministic",
                f"--tile_size={tile}",
                "--checkpoint_every=0",
                "--bit_depth=16",  # the float result to 1/257 of a level
                f"--output={out}",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=3000,
        )
        assert result.returncode == 0, result.stderr
        results[tile] = tifffile.imread(out) / 257.0
    difference = np.abs(results["256"] - results["0"])
    print(f"768 px, 4 L-BFGS steps: tiled - untiled max {difference.max():.3f}/255")
    assert difference.max() <= 3.0, difference.max()
