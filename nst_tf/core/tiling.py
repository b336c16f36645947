"""An exact tiled value-and-gradient, for images whose whole-image step does not fit.

The style statistics (Gram sums, feature sums and covariance sums, masked Gram sums) and
the content loss are sums over positions, so they add up exactly over tiles:

1. pass 1 runs the network tile by tile and sums each tile's interior statistics into the
   statistics of the whole image; the loss is then a function of those sums alone (plus
   the total variation, computed on the whole image, which is cheap);
2. pass 2 takes the gradient of the loss with respect to the sums (held fixed per tile:
   the sums enter each tile's backward pass as output gradients) and backpropagates each
   tile's share through its network to all of its pixels, halo included; the pixel
   gradients of overlapping tiles are added into one full-size gradient.

Each tile carries a halo as wide as the receptive field of the deepest layer used, and
every tile starts on the network's pooling grid, so that a tile's interior features are
exactly the whole image's there: the total loss and the gradient equal the untiled ones up
to float rounding. No seams, no blending, no style drift.

The split variant recomputes less. VGG19's first two blocks (the head) hold two thirds of
its activations per pixel but a quarter of its arithmetic, and their receptive field is
small (an 8 px halo); blocks 3-5 (the tail) are the reverse. Where memory allows, the
head runs tile by tile (twice: pass 1, and again in pass 2 for its backward pass) and
the tail once on the whole image, its output stitched from the head tiles' interiors:
the step then costs little more than the untiled one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import tensorflow as tf

from nst_tf.core import losses
from nst_tf.core.objective import LayerStats, Objective, Targets
from nst_tf.model.vgg19 import (
    Tile,
    halo_and_grid,
    layer_downsampling,
    plan_tiles,
    split_halo_and_grid,
)


def _interior(tensor: tf.Tensor, tile: Tile, cell: int, frame: str = "crop") -> tf.Tensor:
    """The part of a [batch, h, w, C] map at resolution 1/cell that is the tile's interior.

    Args:
        tensor: A map of the tile's crop (frame "crop") or of the whole image ("image").
        tile: The tile.
        cell: The map's downsampling.
        frame: Which of the two the map covers.
    """
    y0, y1, x0, x1 = tile.interior
    oy, ox = (tile.crop[0], tile.crop[2]) if frame == "crop" else (0, 0)
    # Interior edges lie on the grid except at the image's far edge, where pooling's
    # floor decides how many positions there are (y1 // cell for the whole image).
    top, left = (y0 - oy) // cell, (x0 - ox) // cell
    return _window(tensor, top, top + y1 // cell - y0 // cell, left, left + x1 // cell - x0 // cell)


def _window(tensor: tf.Tensor, y0: int, y1: int, x0: int, x1: int) -> tf.Tensor:
    """tensor[:, y0:y1, x0:x1] of a map with a static shape, whose gradient is a zero pad.

    TensorFlow's own gradient of a slice (StridedSliceGrad) runs several times slower than
    a pad on the CPU: it took 40 % of a split step's time with 4 tiles at 1024 px.
    """
    height, width = tensor.shape[1], tensor.shape[2]

    @tf.custom_gradient
    def window(whole):
        def grad(upstream):
            return _zero_padded(upstream, y0, x0, height, width)

        return whole[:, y0:y1, x0:x1], grad

    return window(tensor)


def _zero_padded(part: tf.Tensor, y0: int, x0: int, height: int, width: int) -> tf.Tensor:
    """A [batch, h, w, C] map placed at (y0, x0) in a height x width map of zeros."""
    y1, x1 = y0 + part.shape[1], x0 + part.shape[2]
    return tf.pad(part, [[0, 0], [y0, height - y1], [x0, width - x1], [0, 0]])


def _stitch(tiles: Sequence[Tile], pieces: Sequence[tf.Tensor]) -> tf.Tensor:
    """One map of the whole image from its tiles' interior pieces (tiles in row-major order)."""
    rows, row, row_start = [], [], None
    for tile, piece in zip(tiles, pieces, strict=True):
        if row and tile.interior[0] != row_start:
            rows.append(tf.concat(row, axis=2))
            row = []
        row_start = tile.interior[0]
        row.append(piece)
    rows.append(tf.concat(row, axis=2))
    return tf.concat(rows, axis=1)


def _placed(tile_grad: tf.Tensor, tile: Tile, height: int, width: int) -> tf.Tensor:
    """A tile crop's pixel gradient, zero-padded to the whole image's place."""
    return _zero_padded(tile_grad, tile.crop[0], tile.crop[2], height, width)


def _merge(first: dict, second: dict) -> dict:
    """Two sets of sums (see TiledStep._sums) over different layers, as one."""
    merged = {key: {**first[key], **second[key]} for key in ("style", "content")}
    merged["masked"] = {
        group: {**first["masked"].get(group, {}), **second["masked"].get(group, {})}
        for group in first["masked"].keys() | second["masked"].keys()
    }
    return merged


def layer_shape(batch: int, height: int, width: int, layer: str, channels: int) -> tf.Tensor:
    """The shape [batch, h, w, C] of a layer's map for a height x width image."""
    cell = layer_downsampling(layer)
    return tf.constant([batch, height // cell, width // cell, channels], tf.int32)


class TiledStep:
    """The tiled (image, targets) -> (packed loss terms, gradient), traceable.

    Tiles run one after another (each waits for the previous one's result), so the
    memory of the network's activations is that of one tile (split: one head tile, and
    the tail's for the whole image).

    Args:
        model: The FeatureExtractor.
        objective: The run's Objective.
        tile: Largest tile interior side in pixels (rounded down to the grid).
        split: Run the head in tiles and the tail whole (see the module's docstring);
            ignored when every layer used is in the head.
    """

    def __init__(self, model, objective: Objective, tile: int, split: bool = False):
        self.model, self.objective = model, objective
        self.layers = tuple(model.layer_names)
        self.halo, self.grid = halo_and_grid(self.layers)
        self.tile = max(self.grid, tile // self.grid * self.grid)
        head = split_halo_and_grid(self.layers) if split else None
        self.split = head is not None
        if head:
            self.head_halo, self.head_grid = head

    def tiles(self, height: int, width: int) -> list[Tile]:
        """The tiles of a height x width image (through the whole network)."""
        return plan_tiles(height, width, self.tile, self.halo, self.grid)

    def head_tiles(self, height: int, width: int) -> list[Tile]:
        """The split step's head tiles of a height x width image."""
        return plan_tiles(height, width, self.tile, self.head_halo, self.head_grid)

    # --- per-tile sums ------------------------------------------------------------------

    def _sums(self, features, tile: Tile, targets: Targets | None, shift) -> dict:
        """One tile's additive pieces of the objective: a nested dict of tensors.

        Args:
            features: The tile crop's features by layer (all of them, or the head's or
                the tail's: the pieces are of the layers given).
            tile: The tile.
            targets: The targets (content maps and masks at whole-image resolution), or
                None for statistics only.
            shift: Per style layer, a constant [batch, C] subtracted before the
                Wasserstein sums (see `_statistics`), or None for the Gram loss.
        """
        objective = self.objective
        sums = {"style": {}, "masked": {}, "content": {}}
        inner = {
            name: _interior(features[name], tile, layer_downsampling(name)) for name in features
        }
        style_layers = [name for name in objective.style_weights if name in features]
        for name in style_layers:
            f = inner[name]
            if objective.style_loss == "wasserstein":
                centred = f - shift[name][:, None, None, :]
                sums["style"][name] = {
                    "sum": tf.reduce_sum(centred, axis=[1, 2]),
                    "outer": losses.gram_matrix(centred, normalize=False),
                }
            else:
                sums["style"][name] = {"gram": losses.gram_matrix(f, normalize=False)}
        if targets is None:
            return sums
        for index, group in enumerate(targets.styles):
            if group.masks is None or objective.style_loss != "gram":
                continue
            sums["masked"][str(index)] = {
                name: losses.gram_matrix(
                    inner[name],
                    normalize=False,
                    mask=_interior(group.masks[name], tile, layer_downsampling(name), "image"),
                )
                for name in style_layers
            }
        for name in (name for name in objective.content_weights if name in features):
            target = _interior(targets.content[name], tile, layer_downsampling(name), "image")
            sums["content"][name] = tf.reduce_sum(tf.square(inner[name] - target), axis=[1, 2, 3])
        return sums

    def _shift(self, features, tile: Tile):
        """The first tile's interior feature means: a constant shift for the W2 sums."""
        if self.objective.style_loss != "wasserstein":
            return None
        return {
            name: tf.stop_gradient(
                tf.reduce_mean(_interior(features[name], tile, layer_downsampling(name)), [1, 2])
            )
            for name in self.objective.style_weights
            if name in features
        }

    def _statistics(self, sums, shapes, shift, masks=None) -> dict[str, LayerStats]:
        """Whole-image LayerStats by layer from summed tile pieces.

        The Wasserstein sums are of features minus a constant shift s (the first tile's
        mean): cov = sum (f-s)(f-s)^T / N - (mu-s)(mu-s)^T holds for any s, and with s
        near the mean float32 loses nothing to cancellation.
        """
        normalize = self.objective.normalization != "course"
        stats = {}
        for name in self.objective.style_weights:
            count = tf.cast(shapes[name][1] * shapes[name][2], tf.float32)
            if self.objective.style_loss == "wasserstein":
                shifted_mean = sums[name]["sum"] / count
                cov = sums[name]["outer"] / count - tf.einsum(
                    "bc,bd->bcd", shifted_mean, shifted_mean
                )
                stats[name] = LayerStats(mean=shifted_mean + shift[name], cov=cov)
                continue
            gram = sums[name] if masks is not None else sums[name]["gram"]
            if normalize:
                gram /= losses.gram_divisor(shapes[name], None if masks is None else masks[name])
            stats[name] = LayerStats(gram=gram)
        return stats

    # --- the passes -----------------------------------------------------------------------

    def _crop(self, image: tf.Tensor, tile: Tile, after) -> tf.Tensor:
        # The control dependency makes a tile wait for the previous one: without it the
        # graph runtime may run independent tiles at once and hold all their activations.
        y0, y1, x0, x1 = tile.crop
        with tf.control_dependencies(tf.nest.flatten(after)):
            return tf.identity(image[:, y0:y1, x0:x1])

    def _layer_shapes(self, image: tf.Tensor, features) -> dict[str, tf.Tensor]:
        """Whole-image map shapes of the layers in `features` (any image's: for channels)."""
        batch, height, width = image.shape[0], image.shape[1], image.shape[2]
        return {
            name: layer_shape(batch, height, width, name, features[name].shape[-1])
            for name in features
        }

    def value_and_grad(self, image: tf.Tensor, targets: Targets):
        """The packed loss terms and the gradient of the total at `image`, tile by tile.

        Args:
            image: [batch, H, W, 3] with a static shape (the tiles are planned from it).
            targets: What to compare with, as for the untiled step.

        Returns:
            (values, gradient) exactly as Stylizer's untiled step returns them.
        """
        if self.split:
            return self._split_value_and_grad(image, targets)
        objective = self.objective
        tiles = self.tiles(image.shape[1], image.shape[2])
        # Pass 1. The last tile runs under a tape that pass 2 reuses, sparing one forward.
        total, after, last = None, (), None
        for index, tile in enumerate(tiles):
            crop = self._crop(image, tile, after)
            last = tf.GradientTape() if index == len(tiles) - 1 else None
            with last or contextlib.nullcontext():
                if last:
                    last.watch(crop)
                features = self.model(crop)
                if index == 0:
                    shift = self._shift(features, tile)
                part = self._sums(features, tile, targets, shift)
            total = part if total is None else tf.nest.map_structure(tf.add, total, part)
            after = total
        shapes = self._layer_shapes(image, features)
        last_part, last_crop = part, crop

        with tf.GradientTape() as tape:
            tape.watch(total)
            tape.watch(image)
            terms = self._terms(image, total, targets, shapes, shift)
        d_total, grad = tape.gradient(
            terms["total"], (total, image), unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        # Pass 2, last tile first (its forward is still held by the tape of pass 1).
        height, width = image.shape[1], image.shape[2]
        for index in range(len(tiles) - 1, -1, -1):
            tile = tiles[index]
            if index == len(tiles) - 1:
                tape, part, crop = last, last_part, last_crop
            else:
                crop = self._crop(image, tile, grad)
                with tf.GradientTape() as tape:
                    tape.watch(crop)
                    part = self._sums(self.model(crop), tile, targets, shift)
            tile_grad = tape.gradient(
                part,
                crop,
                output_gradients=d_total,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            grad += _placed(tile_grad, tile, height, width)
        terms["grad_norm"] = tf.norm(grad)
        return objective.pack(terms), grad

    def _split_value_and_grad(self, image: tf.Tensor, targets: Targets):
        """value_and_grad with the head in tiles and the tail on the whole image."""
        height, width = image.shape[1], image.shape[2]
        tiles = self.head_tiles(height, width)
        # Pass 1: the head tile by tile, forward only; its statistics are summed and its
        # output (the tail's input) is stitched from the tiles' interiors.
        head_total, after, pieces = None, (), []
        for index, tile in enumerate(tiles):
            crop = self._crop(image, tile, after)
            features, boundary = self.model.head(crop)
            if index == 0:
                head_shift, channels = self._shift(features, tile), dict(features)
            part = self._sums(features, tile, targets, head_shift)
            head_total = (
                part if head_total is None else tf.nest.map_structure(tf.add, head_total, part)
            )
            pieces.append(_interior(boundary, tile, self.head_grid))
            after = (head_total, pieces[-1])
        boundary = _stitch(tiles, pieces)
        # The tail once, whole, under a tape that also sees the head's sums and the image
        # (for the terms computed on it, such as the total variation).
        whole = Tile((0, height, 0, width), (0, height, 0, width))
        with tf.GradientTape() as tape:
            tape.watch((boundary, head_total, image))
            tail = self.model.tail(boundary)
            tail_shift = self._shift(tail, whole)
            shift = None if head_shift is None else {**head_shift, **tail_shift}
            total = _merge(head_total, self._sums(tail, whole, targets, tail_shift))
            shapes = self._layer_shapes(image, {**channels, **tail})
            terms = self._terms(image, total, targets, shapes, shift)
        d_head, d_boundary, grad = tape.gradient(
            terms["total"],
            (head_total, boundary, image),
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        # Pass 2: each head tile again, backpropagating its own sums' share and its part
        # of the tail's input gradient to all of its pixels.
        for tile in reversed(tiles):
            crop = self._crop(image, tile, grad)
            with tf.GradientTape() as tape:
                tape.watch(crop)
                features, boundary = self.model.head(crop)
                part = self._sums(features, tile, targets, head_shift)
                inner = _interior(boundary, tile, self.head_grid)
            tile_grad = tape.gradient(
                (part, inner),
                crop,
                output_gradients=(d_head, _interior(d_boundary, tile, self.head_grid, "image")),
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            grad += _placed(tile_grad, tile, height, width)
        terms["grad_norm"] = tf.norm(grad)
        return self.objective.pack(terms), grad

    def _terms(self, image, total, targets: Targets, shapes, shift) -> dict[str, tf.Tensor]:
        """The objective's terms from the summed pieces (and TV on the whole image)."""
        objective = self.objective
        shared = self._statistics(total["style"], shapes, shift)
        generated = tuple(
            (
                self._statistics(total["masked"][str(i)], shapes, shift, group.masks)
                if str(i) in total["masked"]
                else shared
            )
            for i, group in enumerate(targets.styles)
        )
        content = {
            name: losses.content_loss_of_sum(
                total["content"][name],
                tf.reduce_prod(shapes[name][1:]),
                objective.normalization,
            )
            for name in objective.content_weights
        }
        return objective.terms(image, None, targets, generated, content=content, shapes=shapes)

    # --- forward only: the targets of a large scale ---------------------------------------

    def features(self, image: tf.Tensor, names: Sequence[str]) -> dict[str, tf.Tensor]:
        """The whole image's maps of `names`, stitched from tile interiors.

        Args:
            image: [batch, H, W, 3].
            names: Layers to return (for instance the content layers).
        """
        tiles = self.tiles(image.shape[1], image.shape[2])
        pieces = {name: [] for name in names}
        for tile in tiles:
            y0, y1, x0, x1 = tile.crop
            features = self.model(image[:, y0:y1, x0:x1])
            for name in names:
                pieces[name].append(_interior(features[name], tile, layer_downsampling(name)))
        return {name: _stitch(tiles, pieces[name]) for name in names}

    def style_statistics(self, image: tf.Tensor) -> dict[str, LayerStats]:
        """The LayerStats of every style layer of `image`, summed over tiles."""
        tiles = self.tiles(image.shape[1], image.shape[2])
        total = None
        for index, tile in enumerate(tiles):
            y0, y1, x0, x1 = tile.crop
            features = self.model(image[:, y0:y1, x0:x1])
            if index == 0:
                shift = self._shift(features, tile)
            part = self._sums(features, tile, None, shift)["style"]
            total = part if total is None else tf.nest.map_structure(tf.add, total, part)
        return self._statistics(total, self._layer_shapes(image, features), shift)
