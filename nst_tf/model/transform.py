"""The feed-forward stylizer: Johnson et al.'s transform network with instance normalisation.

Johnson, Alahi & Fei-Fei ("Perceptual Losses for Real-Time Style Transfer", 2016) train
one network per style; Ulyanov et al. (2016) showed that instance normalisation in place
of batch normalisation makes it much better. Two departures from the paper:

- Upsampling is a resize (nearest neighbour) followed by a convolution, not a transposed
  convolution, whose uneven overlap paints a checkerboard (Odena et al., Distill 2016).
- Each stage resizes to the exact size its encoder stage had, so any image size works,
  odd ones included, and the output has the input's height and width without cropping.

Instance normalisation's statistics are whole-image means and variances. To stylise an
image in tiles that still share them, the statistics can be computed apart from being
applied: `TransformNet.norm_statistics(images)` gives each norm layer's `Moments`, and
`TransformNet(images, statistics=...)` applies given ones instead of its own;
`pooled_moments` combines moments measured on parts of an image into the whole's, and
`TransformNet.pre_norm(images, index, statistics)` gives the map that norm layer `index`
normalises, for measuring it tile by tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import keras
import tensorflow as tf

# Inputs smaller than this on a side are enlarged to it and the output shrunk back: the
# reflection padding of the 9x9 convolution needs 5 px, and the encoder quarters the image.
MIN_SIDE = 16


class Moments(NamedTuple):
    """One instance-norm layer's statistics: per image and channel, over its positions.

    Attributes:
        mean: [batch, channels] float32.
        variance: [batch, channels] float32 (population variance).
    """

    mean: tf.Tensor
    variance: tf.Tensor


def pooled_moments(parts: Sequence[tuple[Moments, tf.Tensor | float]]) -> Moments:
    """The moments of a whole map from the moments of disjoint parts of it.

    Args:
        parts: (moments of the part, its number of positions) for parts that cover the
            map once (tile interiors).

    Returns:
        The whole map's Moments: counts weigh the means, and each part's variance is
        corrected by its mean's distance from the whole's (the parallel-variance rule).
    """
    counts = [tf.cast(count, tf.float32) for _, count in parts]
    total = tf.add_n(counts)
    mean = tf.add_n([m.mean * c for (m, _), c in zip(parts, counts, strict=True)]) / total
    second = tf.add_n(
        [
            (m.variance + tf.square(m.mean - mean)) * c
            for (m, _), c in zip(parts, counts, strict=True)
        ]
    )
    return Moments(mean, second / total)


@keras.saving.register_keras_serializable(package="nst_tf")
class InstanceNormalization(keras.layers.Layer):
    """Normalises each image's channels by their own mean and variance over the positions,
    then scales and shifts them by learned per-channel gamma and beta.

    Always computed in float32 (under a bfloat16 policy too): variances of activations in
    bfloat16's 8 bits of mantissa would be coarse.

    Args:
        epsilon: Added to the variance before the square root.
        **kwargs: Passed to keras.layers.Layer.
    """

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    @staticmethod
    def moments(x: tf.Tensor) -> Moments:
        """Each image's per-channel mean and variance of x [batch, H, W, C]."""
        mean, variance = tf.nn.moments(tf.cast(x, tf.float32), axes=[1, 2])
        return Moments(mean, variance)

    def call(self, x, statistics: Moments | None = None):
        """Normalises x [batch, H, W, C] by `statistics`, or by its own moments when None."""
        x = tf.cast(x, tf.float32)
        if statistics is None:
            statistics = self.moments(x)
        mean = statistics.mean[:, None, None, :]
        scale = tf.math.rsqrt(statistics.variance[:, None, None, :] + self.epsilon)
        return (x - mean) * scale * self.gamma + self.beta

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(epsilon=self.epsilon)
        return config


class ReflectionConv(keras.layers.Layer):
    """A convolution with reflection padding (no dark border from zero padding)."""

    def __init__(self, filters: int, kernel: int, stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.pad = kernel // 2
        self.conv = keras.layers.Conv2D(
            filters, kernel, strides=stride, padding="valid", dtype=self.dtype_policy
        )

    def call(self, x):
        p = self.pad
        return self.conv(tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT"))


@keras.saving.register_keras_serializable(package="nst_tf")
class TransformNet(keras.Model):
    """Johnson et al.'s image transform network: RGB 0..255 in, stylised RGB 0..255 out.

    9x9 conv (width) -> 3x3 stride 2 (2 width) -> 3x3 stride 2 (4 width) -> residual blocks
    -> resize + 3x3 conv (2 width) -> resize + 3x3 conv (width) -> 9x9 conv (3), each conv
    but the last followed by instance normalisation and ReLU, the output squashed to
    0..255 by a sigmoid. Fully convolutional: [N, H, W, 3] in, [N, H, W, 3] out, any H, W.

    Args:
        width: Channels of the first stage (Johnson: 32); the stages have 1, 2, 4 times it.
        residual_blocks: Residual blocks at a quarter of the resolution (Johnson: 5).
        **kwargs: Passed to keras.Model (name, dtype: "mixed_bfloat16" for bfloat16
            convolutions with float32 weights).
    """

    def __init__(self, width: int = 32, residual_blocks: int = 5, **kwargs):
        super().__init__(**kwargs)
        if int(width) < 1 or int(residual_blocks) < 0:
            raise ValueError(f"width {width} must be >= 1, residual_blocks {residual_blocks} >= 0")
        self.width = int(width)
        self.residual_blocks = int(residual_blocks)
        policy = self.dtype_policy
        w = self.width

        def conv(filters, kernel, stride=1):
            return ReflectionConv(filters, kernel, stride, dtype=policy)

        self.encoder = [conv(w, 9), conv(2 * w, 3, 2), conv(4 * w, 3, 2)]
        self.blocks = [(conv(4 * w, 3), conv(4 * w, 3)) for _ in range(self.residual_blocks)]
        self.decoder = [conv(2 * w, 3), conv(w, 3)]
        self.output_conv = conv(3, 9)
        count = len(self.encoder) + 2 * len(self.blocks) + len(self.decoder)
        self.norms = [InstanceNormalization(name=f"instance_norm_{i}") for i in range(count)]

    @property
    def norm_strides(self) -> tuple[int, ...]:
        """Each norm layer's downsampling relative to the (enlarged) input: 1, 2, 4, ..., 2, 1."""
        return (1, 2, 4) + (4,) * (2 * self.residual_blocks) + (2, 1)

    @property
    def halo(self) -> int:
        """Input pixels beyond which a pixel does not affect an output pixel, once the
        statistics are fixed: the receptive field's radius (a tile needs this margin)."""
        # Radius in input pixels: 9x9 (4), two stride-2 3x3 (1 + 2), two 3x3 per block at
        # 1/4 (8), each nearest resize (up to one source pixel: 4, then 2) and 3x3 (2, 1),
        # then the 9x9 (4).
        return 4 + 1 + 2 + 8 * self.residual_blocks + 4 + 2 + 2 + 1 + 4

    def call(self, images, statistics: Sequence[Moments] | None = None):
        """Stylises images [N, H, W, 3] in 0..255.

        Args:
            images: RGB float in 0..255.
            statistics: One Moments per norm layer (see norm_statistics), used instead of
                each layer's own; None: every layer normalises by its own map's moments.

        Returns:
            [N, H, W, 3] float32 in 0..255.
        """
        return self._forward(images, statistics)[0]

    def norm_statistics(self, images) -> list[Moments]:
        """Each norm layer's Moments for these images (a thumbnail's, for instance)."""
        return self._forward(images, None)[1]

    def pre_norm(self, images, index: int, statistics: Sequence[Moments]) -> tf.Tensor:
        """The float32 map norm layer `index` normalises, with the layers before it using
        `statistics[:index]`: measure its moments tile by tile, then pool them."""
        return self._forward(images, statistics, stop_before=index)

    def _forward(self, images, statistics, stop_before: int | None = None):
        images = tf.convert_to_tensor(images)
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        # Tiny inputs are enlarged, so that padding and the two halvings stay valid.
        small = tf.logical_or(height < MIN_SIDE, width < MIN_SIDE)
        work_shape = tf.where(
            small, tf.maximum(tf.stack([height, width]), MIN_SIDE), tf.stack([height, width])
        )
        x = tf.cond(
            small,
            lambda: tf.image.resize(tf.cast(images, tf.float32), work_shape, method="bilinear"),
            lambda: tf.cast(images, tf.float32),
        )
        x = x / 127.5 - 1.0
        used = []
        counter = iter(range(len(self.norms)))

        def norm(y):
            index = next(counter)
            if index == stop_before:
                raise _Stop(tf.cast(y, tf.float32))
            layer = self.norms[index]
            moments = statistics[index] if statistics is not None else layer.moments(y)
            used.append(moments)
            return layer(y, moments)

        try:
            sizes = []
            for conv in self.encoder:
                sizes.append(tf.shape(x)[1:3])
                x = tf.nn.relu(norm(conv(x)))
            for first, second in self.blocks:
                y = tf.nn.relu(norm(first(x)))
                x = x + norm(second(y))
            for conv, size in zip(self.decoder, reversed(sizes[1:]), strict=True):
                x = tf.image.resize(x, size, method="nearest")
                x = tf.nn.relu(norm(conv(x)))
        except _Stop as stop:
            return stop.value
        x = tf.sigmoid(tf.cast(self.output_conv(x), tf.float32)) * 255.0
        x = tf.cond(
            small, lambda: tf.image.resize(x, [height, width], method="bilinear"), lambda: x
        )
        return x, used

    def get_config(self):
        config = super().get_config()
        config.update(width=self.width, residual_blocks=self.residual_blocks)
        return config


class _Stop(Exception):  # noqa: N818 - control flow, not an error
    """Ends _forward early at a norm layer, carrying the map it would normalise."""

    def __init__(self, value):
        super().__init__("stop")
        self.value = value
