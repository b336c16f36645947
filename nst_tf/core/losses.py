"""Loss terms of Gatys et al. style transfer.

Two normalisations are available. "mean" (the default) makes the weights independent
of image size: the Gram matrix is divided by the number of positions H*W and the
content and style losses are means of squared differences. "course" follows the
course notes: J_content = 1/2 sum (a_C - a_G)^2, an unnormalised Gram matrix and
J_style = 1/(2 n_H n_W n_C)^2 sum (G_S - G_G)^2.
"""

from __future__ import annotations

import tensorflow as tf


@tf.custom_gradient
def _self_product(flat: tf.Tensor):
    """F^T F of [batch, positions, C] with a one-matmul gradient F (dG + dG^T).

    Autodiff of matmul(F, F) would compute F dG and F dG^T as two matmuls of the
    full feature map and add them; summing dG + dG^T first (a C x C add) halves that.
    """
    gram = tf.linalg.matmul(flat, flat, transpose_a=True)

    def grad(upstream):
        return tf.linalg.matmul(flat, upstream + tf.linalg.matrix_transpose(upstream))

    return gram, grad


def gram_matrix(
    features: tf.Tensor, normalize: bool = True, mask: tf.Tensor | None = None
) -> tf.Tensor:
    """Channel correlations G_kk' = sum_ij a_ijk a_ijk' of a [batch, H, W, C] tensor.

    Args:
        features: Activations, shape [batch, height, width, channels].
        normalize: Divide by the number of positions H*W (with a mask: by the mask's
            sum), so that the Gram matrix of a texture does not depend on the image size.
        mask: Optional weights in 0..1 per position, [batch or 1, H, W, 1]: the Gram
            matrix of the masked region only (soft edges weigh partially).

    Returns:
        Shape [batch, channels, channels].
    """
    features = tf.convert_to_tensor(features, dtype=tf.float32)
    shape = tf.shape(features)
    if mask is None:
        gram = _self_product(tf.reshape(features, [shape[0], -1, shape[3]]))
    else:
        gram = tf.linalg.einsum("bijc,bijd->bcd", features * mask, features)
    if normalize:
        gram /= gram_divisor(shape, mask)
    return gram


def gram_divisor(shape: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """What a normalised Gram matrix is divided by: the positions H*W, or the mask's sum.

    Args:
        shape: The feature map's shape [batch, H, W, C] (the whole image's, for a sum
            of tiles).
        mask: The mask over the whole map, [batch or 1, H, W, 1], or None.
    """
    if mask is None:
        return tf.cast(shape[1] * shape[2], tf.float32)
    return tf.reduce_sum(mask, axis=[1, 2, 3])[:, None, None] + 1e-8


def feature_statistics(features: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean [batch, C] and covariance [batch, C, C] of the feature vectors of each image."""
    features = tf.convert_to_tensor(features, dtype=tf.float32)
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], -1, shape[3]])
    mean = tf.reduce_mean(flat, axis=1)
    centred = flat - mean[:, None, :]
    cov = tf.linalg.einsum("bpc,bpd->bcd", centred, centred) / tf.cast(
        tf.shape(flat)[1], tf.float32
    )
    return mean, cov


def sqrtm_psd(matrix: tf.Tensor) -> tf.Tensor:
    """Square root of symmetric positive semi-definite matrices [..., C, C] (eigh)."""
    values, vectors = tf.linalg.eigh(matrix)
    roots = tf.sqrt(tf.maximum(values, 0.0))
    return tf.linalg.matmul(vectors * roots[..., None, :], vectors, transpose_b=True)


def wasserstein_layer_loss(
    target_mean: tf.Tensor,
    target_cov_sqrt: tf.Tensor,
    target_cov: tf.Tensor,
    mean: tf.Tensor,
    cov: tf.Tensor,
) -> tf.Tensor:
    """Squared 2-Wasserstein distance between Gaussians fitted to features, per image / C.

    W2^2 = |mu - mu_t|^2 + tr(S) + tr(S_t) - 2 tr((S_t^1/2 S S_t^1/2)^1/2)
    (crowsonkb/style-transfer-pytorch's style loss); divided by the channel count so
    layers of different widths weigh alike.

    Args:
        target_mean: [1, C] style feature mean.
        target_cov_sqrt: [1, C, C] square root of the style feature covariance.
        target_cov: [1, C, C] the style feature covariance.
        mean: [batch, C] feature mean of the generated image.
        cov: [batch, C, C] its feature covariance.

    Returns:
        Shape [batch].
    """
    middle = tf.linalg.matmul(tf.linalg.matmul(target_cov_sqrt, cov), target_cov_sqrt)
    middle = 0.5 * (middle + tf.linalg.matrix_transpose(middle))  # symmetric for eigh
    # Clamp before the root: its gradient is unbounded at 0.
    roots = tf.sqrt(tf.maximum(tf.linalg.eigvalsh(middle), 1e-6))
    distance = (
        tf.reduce_sum(tf.square(mean - target_mean), axis=-1)
        + tf.linalg.trace(cov)
        + tf.linalg.trace(target_cov)
        - 2.0 * tf.reduce_sum(roots, axis=-1)
    )
    return distance / tf.cast(tf.shape(cov)[-1], tf.float32)


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
    return content_loss_of_sum(
        tf.reduce_sum(squared, axis=[1, 2, 3]), tf.reduce_prod(tf.shape(squared)[1:]), normalization
    )


def content_loss_of_sum(squared_sum: tf.Tensor, count: tf.Tensor, normalization: str = "mean"):
    """The content loss given the summed squared differences (for instance over tiles).

    Args:
        squared_sum: Sum of (a_C - a_G)^2 per image, [batch].
        count: The number of values summed per image, H*W*C.
        normalization: "mean" or "course", as for content_loss.
    """
    if normalization == "course":
        return 0.5 * squared_sum
    return squared_sum / tf.cast(count, tf.float32)


def gram_loss(
    target_gram: tf.Tensor,
    gram: tf.Tensor,
    normalization: str = "mean",
    features_shape: tf.Tensor | None = None,
) -> tf.Tensor:
    """Style loss of one layer given the Gram matrices, per image of the batch.

    Args:
        target_gram: Gram matrix of the style, [batch or 1, C, C], computed with the
            same normalization.
        gram: Gram matrix of the generated image, [batch, C, C].
        normalization: "mean" (mean squared difference of H*W-normalised Grams) or
            "course" (1/(2 n_H n_W n_C)^2 times the summed squared difference).
        features_shape: The generated layer's shape [batch, H, W, C]; needed by "course".

    Returns:
        Shape [batch].
    """
    squared = tf.square(gram - target_gram)
    if normalization == "course":
        shape = tf.cast(features_shape, tf.float32)
        return tf.reduce_sum(squared, axis=[1, 2]) / tf.square(2.0 * shape[1] * shape[2] * shape[3])
    return tf.reduce_mean(squared, axis=[1, 2])


def total_variation_loss(images: tf.Tensor, normalization: str = "mean") -> tf.Tensor:
    """Anisotropic total variation sum |x[i,j]-x[i+1,j]| + |x[i,j]-x[i,j+1]|, per image.

    Args:
        images: [batch, H, W, C].
        normalization: "mean" divides by the number of pixel values so the weight does
            not depend on size; "course" is the plain sum.

    Returns:
        Shape [batch].
    """
    tv = _total_variation_sum(tf.cast(images, tf.float32))
    if normalization == "course":
        return tv
    return tv / tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32)


@tf.custom_gradient
def _total_variation_sum(images: tf.Tensor):
    """The plain anisotropic TV sum per image, with its gradient written out.

    The gradient TensorFlow derives goes through its slices' gradient (StridedSliceGrad),
    which took 9 % of a whole 1024 px step on the CPU; with s the signs of the differences,
    d/dx[i] = s[i-1] - s[i] along each axis, which is two pads.
    """
    down = images[:, 1:] - images[:, :-1]
    right = images[:, :, 1:] - images[:, :, :-1]
    tv = tf.reduce_sum(tf.abs(down), axis=[1, 2, 3]) + tf.reduce_sum(tf.abs(right), axis=[1, 2, 3])

    def grad(upstream):
        rows, cols = tf.sign(down), tf.sign(right)
        none = [0, 0]
        pixels = (
            tf.pad(rows, [none, [1, 0], none, none])
            - tf.pad(rows, [none, [0, 1], none, none])
            + tf.pad(cols, [none, none, [1, 0], none])
            - tf.pad(cols, [none, none, [0, 1], none])
        )
        return pixels * upstream[:, None, None, None]

    return tv, grad


def temporal_loss(images: tf.Tensor, warped: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Ruder et al.'s temporal loss: the weighted mean squared distance to a warped frame.

    1/D sum c (x - w)^2 with D the number of pixel values: where the weights c are 1 (the
    optical flow is reliable), the frame is held to the previous stylised frame warped
    along the flow; where they are 0 (occluded or newly visible), it is free.

    Args:
        images: The frame being stylised, [batch, H, W, 3].
        warped: The previous stylised frame warped to this one, [1 or batch, H, W, 3].
        weights: Per-pixel weights in 0..1, [1 or batch, H, W, 1].

    Returns:
        Shape [batch].
    """
    squared = weights * tf.square(tf.cast(images, tf.float32) - warped)
    return tf.reduce_mean(squared, axis=[1, 2, 3])
