"""A stylisation's inputs, checked and prepared once for all scales: the image arguments'
checks, the prepared tensors, and a style measured once for many photos."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from nst_tf.core import color
from nst_tf.core.objective import LayerStats, StyleGroup
from nst_tf.errors import ConfigError
from nst_tf.model.vgg19 import layer_downsampling
from nst_tf.settings.keys import array_sha256


class MeasuredStyle(NamedTuple):
    """Style images' statistics at every scale of a pyramid, as numpy arrays.

    Measured once by Stylizer.measure_style and passed to stylize() as `style`, so that
    many photos of one style (on one machine or many: it pickles) share one measurement.

    Attributes:
        sizes: The long side of each scale, coarse to fine.
        stats: Per size, per style image, LayerStats by style layer.
    """

    sizes: tuple[int, ...]
    stats: tuple[tuple[dict[str, LayerStats], ...], ...]

    def at(self, size: int) -> tuple[dict[str, LayerStats], ...]:
        """The statistics at the scale of long side `size`.

        Raises:
            ConfigError: the style was not measured at that size.
        """
        if size not in self.sizes:
            raise ConfigError(
                f"the style was measured at {self.sizes} px, not at {size} px; "
                "measure it with the same --size and --min_size"
            )
        return self.stats[self.sizes.index(size)]


@dataclasses.dataclass
class Prepared:
    """A stylisation's inputs as tensors, prepared once for all scales.

    Attributes:
        content: [batch, H, W, 3] float32 in 0..255.
        styles: The style images, each [1, h, w, 3]; None with fixed style groups.
        fixed: Style groups used at every scale (a style targets file); else None.
        init: The start image for config.init, [1 or batch, h, w, 3], or None.
        masks: One [H, W] array in 0..1 per style image, or None.
        single: Whether the caller gave one [H, W, 3] image (and gets one back).
        start: An image to start the first scale from instead of config.init, or None.
        temporal: (warped previous frame [1, H, W, 3], weights [1, H, W, 1]) for a
            video frame's temporal loss, or None.
        measured: The style images' statistics measured beforehand, or None.
        style_weight: The style weight --style_strength calibrated at the first scale
            (a scalar tensor), or None until then and without the dial.
    """

    content: tf.Tensor
    styles: list[tf.Tensor] | None
    fixed: tuple[StyleGroup, ...] | None
    init: tf.Tensor | None
    masks: list[np.ndarray] | None
    single: bool
    start: tf.Tensor | None = None
    temporal: tuple[tf.Tensor, tf.Tensor] | None = None
    measured: MeasuredStyle | None = None
    style_weight: tf.Tensor | None = None

    def digests(self) -> dict:
        """The sha256 of each input's values by name (for the result's key record)."""
        named = {
            "content": [self.content],
            "style": self.styles,
            "style_targets": _leaves(self.fixed),
            "style_measured": _leaves(self.measured),
            "init": [self.init],
            "style_mask": self.masks,
            "start": [self.start],
            "temporal": list(self.temporal or ()),
        }
        return {
            name: [array_sha256(np.asarray(value)) for value in values if value is not None]
            for name, values in named.items()
            if values and any(value is not None for value in values)
        }


def _leaves(structure) -> list | None:
    """The arrays in a nested structure of tensors or arrays (None: none)."""
    if structure is None:
        return None
    return [leaf for leaf in tf.nest.flatten(structure) if leaf is not None]


HISTOGRAM_MEASURED = (
    "--preserve_color=histogram recolours the style for each photo: pass the style images"
)


def check_pixels(value, name: str, batch: bool = False) -> np.ndarray:
    """An image argument as float32 RGB in 0..255, checked before any TensorFlow work.

    Args:
        value: An [H, W, 3] array (or, with `batch`, [batch, H, W, 3], or a list of
            [H, W, 3] arrays of one shape) of RGB values in 0..255, any numeric dtype.
        name: The argument's name, for the messages.
        batch: Whether a batch is allowed.

    Returns:
        The image as a float32 array.

    Raises:
        ConfigError: the shape is not RGB (an alpha channel, a grey image), a list
            mixes shapes, or a value is NaN, infinite or outside 0..255.

    A float image whose largest value is at most 1 (0..1 scaled, the commonest
    notebook mistake) runs, but with a UserWarning: it is nearly black in 0..255.
    """
    if isinstance(value, (list, tuple)):
        if not batch:
            raise ConfigError(f"{name} must be one [H, W, 3] image array, got a list")
        shapes = {np.shape(image) for image in value}
        if len(shapes) > 1:
            shown_shapes = ", ".join(str(shape) for shape in sorted(shapes))
            raise ConfigError(
                f"{name}: the images of a batch must share one shape, got {shown_shapes}; "
                "resize them to one shape or stylise them one at a time"
            )
    array = np.asarray(value)
    scaled_float = np.issubdtype(array.dtype, np.floating)
    if not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"{name} must be a numeric image array, got dtype {array.dtype}")
    layouts = "[H, W, 3] or [batch, H, W, 3]" if batch else "[H, W, 3]"
    if array.ndim not in ((3, 4) if batch else (3,)) or array.shape[-1] != 3:
        hint = ""
        if array.ndim >= 3 and array.shape[-1] == 4:
            hint = "; drop the alpha channel with image[..., :3]"
        elif array.ndim == 2 or (array.ndim >= 3 and array.shape[-1] == 1):
            hint = "; repeat a grey image to RGB with np.dstack([image] * 3)"
        raise ConfigError(f"{name} must be {layouts} RGB, got shape {array.shape}{hint}")
    if array.size == 0:
        raise ConfigError(f"{name} is empty (shape {array.shape})")
    array = array.astype(np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        raise ConfigError(
            f"{name} has {array.size - np.count_nonzero(finite)} NaN or infinite values; "
            "give finite RGB values in 0..255"
        )
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 255.0:
        raise ConfigError(
            f"{name} has values in {low:g}..{high:g}, outside 0..255; give 8-bit RGB "
            "values (scale 16-bit images by 255 / 65535)"
        )
    if scaled_float and 0.0 < high <= 1.0:
        warnings.warn(
            f"{name} has values in {low:g}..{high:g}: it looks scaled to 0..1, but images "
            "are RGB in 0..255 (multiply by 255)",
            UserWarning,
            stacklevel=4,
        )
    return array


def style_images(images: list) -> list[np.ndarray]:
    """Each style image checked (named by its index when there are several)."""
    if not images:
        return []
    if len(images) == 1:
        return [check_pixels(images[0], "style")]
    return [check_pixels(image, f"style[{i}]") for i, image in enumerate(images)]


def prepare(
    content: np.ndarray,
    style,
    init: np.ndarray | None,
    masks: Sequence[np.ndarray] | None,
    *,
    gram_groups: Callable,
    preserve_color: str,
    blend_weights: Sequence[float],
    init_mode: str,
) -> Prepared:
    """Checks and converts a stylisation's inputs once, for all scales.

    Args:
        content: [H, W, 3] or [batch, H, W, 3] float RGB in 0..255.
        style: A [H, W, 3] style image, a list of them, Gram matrices by layer (a
            mapping, or a nst_tf.io.targets.StyleTargets) used at every scale, or a
            MeasuredStyle.
        init: Start image when `init_mode` is a path.
        masks: One [H, W] or [H, W, 1] array in 0..1 per style image.
        gram_groups: Turns Gram matrices by layer into the objective's style groups.
        preserve_color: "none", "luminance" or "histogram" (the styles recoloured).
        blend_weights: One weight per style image, or empty.
        init_mode: "content", "noise", "style" or a path (then `init` is the image).

    Raises:
        ConfigError: an argument is invalid (see check_pixels), or they disagree.
    """
    content = check_pixels(content, "content", batch=True)
    single = content.ndim == 3
    content_t = tf.constant(content[None] if single else content)
    measured = style if isinstance(style, MeasuredStyle) else None
    grams = getattr(style, "grams", style)
    styles, fixed = None, None
    if measured is not None:
        if preserve_color == "histogram":
            raise ConfigError(HISTOGRAM_MEASURED)
    elif isinstance(grams, Mapping):
        fixed = gram_groups(grams)
    else:
        images = [style] if isinstance(style, np.ndarray) else list(style)
        if not images:
            raise ConfigError("no style given: pass a style image, a list, or targets")
        if blend_weights and len(blend_weights) != len(images):
            raise ConfigError(
                f"style_blend_weights has {len(blend_weights)} values for "
                f"{len(images)} style images; give one per style image"
            )
        images = style_images(images)
        if preserve_color == "histogram":
            images = [color.match_color(image, content_t[0].numpy()) for image in images]
        styles = [tf.constant(np.asarray(image, np.float32)[None]) for image in images]
    if init_mode == "style":
        if styles is None:
            raise ConfigError("--init=style needs a style image, not style statistics")
        init = styles[0]
    elif init is not None:
        init = check_pixels(init, "init", batch=True)
        init = tf.constant(init[None] if init.ndim == 3 else init)
    masks = list(masks) if masks else None
    return Prepared(content_t, styles, fixed, init, masks, single, measured=measured)


def layer_masks(masks, shape, layers) -> list[dict[str, tf.Tensor]] | None:
    """Each style's mask at the content's size, then at every style layer's size.

    Args:
        masks: One [H, W] or [H, W, 1] array in 0..1 per style image, or None.
        shape: The content's (height, width) at this scale.
        layers: The style layers' names.
    """
    if masks is None:
        return None
    resized = []
    for mask in masks:
        at_content = tf.image.resize(np.reshape(mask, (1, *np.shape(mask)[:2], 1)), shape)
        resized.append(
            {
                # Each 2x2 pooling halves a side, rounding down.
                name: tf.image.resize(
                    at_content, [side // layer_downsampling(name) for side in shape], "area"
                )
                for name in layers
            }
        )
    return resized
