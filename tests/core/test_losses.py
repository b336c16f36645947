"""Loss terms against the course's worked examples and numpy on random tensors."""

import numpy as np
import pytest
import tensorflow as tf

from nst_tf.core import losses

RNG = np.random.default_rng(0)


def test_content_loss_course_worked_example():
    a_c = np.array([[0.2, 0.5, 0.3], [0.1, 0.4, 0.6]], np.float32).reshape(1, 2, 3, 1)
    a_g = np.array([[0.1, 0.7, 0.2], [0.2, 0.3, 0.5]], np.float32).reshape(1, 2, 3, 1)
    value = losses.content_loss(a_c, a_g, normalization="course").numpy()
    np.testing.assert_allclose(value, [0.045], rtol=1e-5)


def test_gram_matrix_course_worked_example():
    f1, f2, f3 = [[1, 2], [0, 1]], [[2, 1], [1, 0]], [[0, 1], [2, 1]]
    features = np.stack([f1, f2, f3], axis=-1).astype(np.float32)[None]  # [1, 2, 2, 3]
    gram = losses.gram_matrix(features, normalize=False).numpy()[0]
    np.testing.assert_array_equal(gram, [[6, 4, 3], [4, 6, 3], [3, 3, 6]])


def test_gram_matrix_normalised_by_positions_matches_numpy():
    features = RNG.normal(size=(2, 5, 7, 4)).astype(np.float32)
    flat = features.reshape(2, 35, 4)
    expected = np.einsum("bpc,bpd->bcd", flat, flat) / 35
    np.testing.assert_allclose(losses.gram_matrix(features).numpy(), expected, rtol=1e-5)


def test_gram_gradient_matches_the_analytic_one():
    # d/dF sum(W * F^T F / P) = F (W + W^T) / P, with a non-symmetric W so that a
    # gradient assuming a symmetric upstream would fail.
    features = RNG.normal(size=(2, 3, 5, 4)).astype(np.float32)
    weights = RNG.normal(size=(2, 4, 4)).astype(np.float32)
    x = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(weights * losses.gram_matrix(x))
    flat = features.reshape(2, 15, 4)
    expected = np.einsum("bpc,bdc->bpd", flat, weights + weights.transpose(0, 2, 1)) / 15
    np.testing.assert_allclose(
        tape.gradient(loss, x).numpy(), expected.reshape(features.shape), rtol=1e-5, atol=1e-6
    )


def test_gram_of_a_tiled_texture_does_not_depend_on_size():
    tile = RNG.normal(size=(1, 4, 4, 3)).astype(np.float32)
    big = np.tile(tile, (1, 3, 5, 1))
    np.testing.assert_allclose(
        losses.gram_matrix(tile).numpy(), losses.gram_matrix(big).numpy(), rtol=1e-5, atol=1e-5
    )


def test_content_loss_mean_matches_numpy_per_image():
    a, b = RNG.normal(size=(2, 3, 4, 5, 6)).astype(np.float32)
    expected = ((a - b) ** 2).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(losses.content_loss(a, b).numpy(), expected, rtol=1e-5)


def test_style_layer_loss_mean_matches_numpy():
    style = RNG.normal(size=(1, 6, 6, 8)).astype(np.float32)
    generated = RNG.normal(size=(2, 4, 5, 8)).astype(np.float32)

    def gram(x):
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        return np.einsum("bpc,bpd->bcd", flat, flat) / flat.shape[1]

    expected = ((gram(generated) - gram(style)) ** 2).mean(axis=(1, 2))
    value = losses.gram_loss(losses.gram_matrix(style), losses.gram_matrix(generated)).numpy()
    np.testing.assert_allclose(value, expected, rtol=1e-4)


def test_style_layer_loss_course_formula():
    style = RNG.normal(size=(1, 3, 4, 5)).astype(np.float32)
    generated = RNG.normal(size=(1, 3, 4, 5)).astype(np.float32)
    gs = np.einsum("pc,pd->cd", style.reshape(-1, 5), style.reshape(-1, 5))
    gg = np.einsum("pc,pd->cd", generated.reshape(-1, 5), generated.reshape(-1, 5))
    expected = ((gs - gg) ** 2).sum() / (2 * 3 * 4 * 5) ** 2
    target = losses.gram_matrix(style, normalize=False)
    gram = losses.gram_matrix(generated, normalize=False)
    value = losses.gram_loss(target, gram, "course", tf.shape(generated)).numpy()
    np.testing.assert_allclose(value, [expected], rtol=1e-4)


def test_total_variation_course_is_the_plain_sum():
    x = RNG.uniform(0, 255, size=(2, 5, 6, 3)).astype(np.float32)
    expected = np.abs(np.diff(x, axis=1)).sum(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=2)).sum(
        axis=(1, 2, 3)
    )
    np.testing.assert_allclose(
        losses.total_variation_loss(x, "course").numpy(), expected, rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.total_variation_loss(x, "mean").numpy(), expected / (5 * 6 * 3), rtol=1e-5
    )


@pytest.mark.parametrize("normalization", ["mean", "course"])
def test_total_variation_gradient_matches_hand_computed_signs(normalization):
    # Integer pixel values make ties (a zero difference, whose |.| has gradient 0) common.
    x = RNG.integers(0, 3, size=(2, 5, 7, 3)).astype(np.float32)
    weights = np.array([1.0, 2.5], np.float32)
    expected = np.zeros_like(x)
    batch, height, width, channels = x.shape
    for b, i, j, c in np.ndindex(batch, height, width, channels):
        g = 0.0
        if i > 0:
            g += np.sign(x[b, i, j, c] - x[b, i - 1, j, c])
        if i < height - 1:
            g -= np.sign(x[b, i + 1, j, c] - x[b, i, j, c])
        if j > 0:
            g += np.sign(x[b, i, j, c] - x[b, i, j - 1, c])
        if j < width - 1:
            g -= np.sign(x[b, i, j + 1, c] - x[b, i, j, c])
        expected[b, i, j, c] = g * weights[b]
    if normalization == "mean":
        expected /= height * width * channels
    image = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(image)
        value = tf.reduce_sum(losses.total_variation_loss(image, normalization) * weights)
    np.testing.assert_allclose(tape.gradient(value, image).numpy(), expected, rtol=1e-6)


def test_total_variation_of_constant_image_is_zero():
    assert float(losses.total_variation_loss(np.full((1, 4, 4, 3), 7.0, np.float32))[0]) == 0


@pytest.mark.parametrize("normalization", ["mean", "course"])
def test_losses_are_zero_at_the_target(normalization):
    x = tf.constant(RNG.normal(size=(1, 3, 3, 4)).astype(np.float32))
    assert float(losses.content_loss(x, x, normalization)[0]) == 0
    gram = losses.gram_matrix(x, normalize=normalization != "course")
    loss = losses.gram_loss(gram, gram, normalization, tf.shape(x))
    assert float(loss[0]) == pytest.approx(0, abs=1e-6)
