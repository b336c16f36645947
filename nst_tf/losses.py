"""Loss terms of Gatys et al. style transfer.

Two normalisations are available. "mean" (the default) makes the weights independent
of image size: the Gram matrix is divided by the number of positions H*W and the
content and style losses are means of squared differences. "course" follows the
course notes: J_content = 1/2 sum (a_C - a_G)^2, an unnormalised Gram matrix and
J_style = 1/(2 n_H n_W n_C)^2 sum (G_S - G_G)^2.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf


def gram_matrix(features: tf.Tensor, normalize: bool = True) -> tf.Tensor:
    """Channel correlations G_kk' = sum_ij a_ijk a_ijk' of a [batch, H, W, C] tensor.

    Args:
        features: Activations, shape [batch, height, width, channels].
        normalize: Divide by the number of positions H*W, so that the Gram matrix of
            a texture does not depend on the image size.

    Returns:
        Shape [batch, channels, channels].
    """
    features = tf.convert_to_tensor(features, dtype=tf.float32)
    gram = tf.linalg.einsum("bijc,bijd->bcd", features, features)
    if normalize:
        shape = tf.shape(features)
        gram /= tf.cast(shape[1] * shape[2], tf.float32)
    return gram


def content_loss(target: tf.Tensor, generated: tf.Tensor, normalization: str = "mean") -> tf.Tensor:
    """Squared distance between content activations, per image of the batch.

    Args:
        target: Activations of the content image, [batch, H, W, C] (or broadcastable).
        generated: Activations of the generated image, [batch, H, W, C].
        normalization: "mean" (mean squared difference) or "course" (half the sum).

    Returns:
        Shape [batch].
    """
    squared = tf.square(tf.cast(generated, tf.float32) - tf.cast(target, tf.float32))
    if normalization == "course":
        return 0.5 * tf.reduce_sum(squared, axis=[1, 2, 3])
    return tf.reduce_mean(squared, axis=[1, 2, 3])


def style_layer_loss(
    target_gram: tf.Tensor, generated: tf.Tensor, normalization: str = "mean"
) -> tf.Tensor:
    """Style loss of one layer, per image of the batch.

    Args:
        target_gram: Gram matrix of the style image, [batch or 1, C, C], computed with
            the same normalization.
        generated: Activations of the generated image, [batch, H, W, C].
        normalization: "mean" (mean squared difference of H*W-normalised Grams) or
            "course" (1/(2 n_H n_W n_C)^2 times the summed squared difference).

    Returns:
        Shape [batch].
    """
    gram = gram_matrix(generated, normalize=normalization != "course")
    squared = tf.square(gram - target_gram)
    if normalization == "course":
        shape = tf.cast(tf.shape(generated), tf.float32)
        return tf.reduce_sum(squared, axis=[1, 2]) / tf.square(2.0 * shape[1] * shape[2] * shape[3])
    return tf.reduce_mean(squared, axis=[1, 2])


def style_loss(
    target_grams: Mapping[str, tf.Tensor],
    generated: Mapping[str, tf.Tensor],
    layer_weights: Mapping[str, float],
    normalization: str = "mean",
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Weighted sum of per-layer style losses.

    Args:
        target_grams: Layer name -> Gram matrix of the style image.
        generated: Layer name -> activations of the generated image.
        layer_weights: Layer name -> lambda_l.
        normalization: See style_layer_loss.

    Returns:
        (sum_l lambda_l J_l with shape [batch], {layer: unweighted J_l})
    """
    per_layer = {
        name: style_layer_loss(target_grams[name], generated[name], normalization)
        for name in layer_weights
    }
    total = tf.add_n([layer_weights[name] * loss for name, loss in per_layer.items()])
    return total, per_layer


def total_variation_loss(images: tf.Tensor, normalization: str = "mean") -> tf.Tensor:
    """Anisotropic total variation sum |x[i,j]-x[i+1,j]| + |x[i,j]-x[i,j+1]|, per image.

    Args:
        images: [batch, H, W, C].
        normalization: "mean" divides by the number of pixel values so the weight does
            not depend on size; "course" is the plain sum.

    Returns:
        Shape [batch].
    """
    images = tf.cast(images, tf.float32)
    down = tf.reduce_sum(tf.abs(images[:, 1:, :, :] - images[:, :-1, :, :]), axis=[1, 2, 3])
    right = tf.reduce_sum(tf.abs(images[:, :, 1:, :] - images[:, :, :-1, :]), axis=[1, 2, 3])
    tv = down + right
    if normalization == "course":
        return tv
    return tv / tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32)
