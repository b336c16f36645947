"""The transform network: fully convolutional, instance norm against numpy, shared statistics."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_tf.model.transform import InstanceNormalization, Moments, TransformNet, pooled_moments

RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(0)
    net = TransformNet(width=4, residual_blocks=1)
    net(np.zeros((1, 16, 16, 3), np.float32))
    # Learned-looking norm parameters, so the check of applying them is not of ones and zeros.
    for layer in net.norms:
        channels = layer.gamma.shape[0]
        layer.gamma.assign(RNG.uniform(0.5, 1.5, channels).astype(np.float32))
        layer.beta.assign(RNG.uniform(-0.3, 0.3, channels).astype(np.float32))
    return net


def _photo(*shape):
    return RNG.uniform(0, 255, shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 32, 32), (2, 33, 17), (1, 45, 64), (1, 7, 5), (1, 1, 3)])
def test_any_size_in_gives_the_same_size_out_in_0_255(net, shape):
    out = net(_photo(*shape, 3)).numpy()
    assert out.shape == (*shape, 3)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert np.isfinite(out).all() and out.std() > 0


def test_one_trace_serves_every_size(net):
    traces = []

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def run(images):
        traces.append(1)
        return net(images)

    for shape in [(1, 20, 28), (1, 31, 17), (2, 9, 40)]:
        images = _photo(*shape, 3)
        np.testing.assert_allclose(run(images).numpy(), net(images).numpy(), atol=1e-3)
    assert len(traces) == 1


def test_instance_norm_matches_numpy():
    x = RNG.normal(3.0, 2.0, (2, 5, 7, 4)).astype(np.float32)
    layer = InstanceNormalization(epsilon=1e-3)
    layer.build(x.shape)
    gamma, beta = np.array([1.0, 2.0, 0.5, -1.0]), np.array([0.0, 0.1, -0.2, 3.0])
    layer.gamma.assign(gamma.astype(np.float32))
    layer.beta.assign(beta.astype(np.float32))
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(1, 2), keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=(1, 2), keepdims=True)
    expected = (x64 - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-4)
    # Given statistics are used as given: another image's moments.
    other = Moments(
        tf.constant(np.full((2, 4), 1.0, np.float32)), tf.constant(np.full((2, 4), 4.0, np.float32))
    )
    expected = (x64 - 1.0) / np.sqrt(4.0 + 1e-3) * gamma + beta
    np.testing.assert_allclose(layer(x, other).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_pooled_moments_of_parts_are_the_whole_maps():
    x = RNG.normal(0.0, 3.0, (1, 12, 10, 5)).astype(np.float32)
    parts = [x[:, :5], x[:, 5:9, :4], x[:, 5:9, 4:], x[:, 9:]]
    pooled = pooled_moments(
        [(InstanceNormalization.moments(p), p.shape[1] * p.shape[2]) for p in parts]
    )
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(pooled.mean.numpy(), x64.mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled.variance.numpy(), x64.var(axis=(1, 2)), rtol=1e-4)


def test_own_statistics_given_back_give_the_same_image(net):
    images = _photo(2, 40, 36, 3)
    stats = net.norm_statistics(images)
    assert len(stats) == len(net.norms) == len(net.norm_strides)
    np.testing.assert_allclose(
        net(images, statistics=stats).numpy(), net(images).numpy(), atol=1e-3
    )
    # Another image's statistics change the result: they are really used.
    other = net.norm_statistics(_photo(2, 40, 36, 3) * 0.2)
    assert np.abs(net(images, statistics=other).numpy() - net(images).numpy()).max() > 1.0


def test_statistics_measured_layer_by_layer_in_tiles_are_the_whole_images(net):
    """What a tiled run does: each norm layer's map measured in two halves, pooled."""
    images = _photo(1, 48, 40, 3)
    whole = net.norm_statistics(images)
    measured = []
    for index, stride in enumerate(net.norm_strides):
        full = net.pre_norm(images, index, measured)
        # The map of layer `index` at its resolution, split where a tile seam would be.
        cut = 24 // stride
        parts = [full[:, :cut], full[:, cut:]]
        measured.append(
            pooled_moments(
                [(InstanceNormalization.moments(p), tf.size(p[0, ..., 0])) for p in parts]
            )
        )
        assert full.shape[1] == -(-48 // stride)
    for got, want in zip(measured, whole, strict=True):
        np.testing.assert_allclose(got.mean.numpy(), want.mean.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(
            got.variance.numpy(), want.variance.numpy(), rtol=1e-3, atol=1e-4
        )


def test_a_pixel_reaches_no_further_than_the_halo_with_fixed_statistics(net):
    images = _photo(1, 96, 96, 3)
    stats = net.norm_statistics(images)
    changed = images.copy()
    changed[0, 40, 40] = 255.0 - changed[0, 40, 40]
    diff = np.abs(net(changed, statistics=stats).numpy() - net(images, statistics=stats).numpy())
    reach = np.argwhere(diff.max(axis=(0, 3)) > 1e-4)
    assert len(reach) > 0
    assert np.abs(reach - 40).max() <= net.halo
    # Without fixed statistics the change reaches everywhere: the reason tiles share them.
    assert diff[0, 0, 0].max() == 0.0
    free = np.abs(net(changed).numpy() - net(images).numpy())
    assert free[0, 0, 0].max() > 0.0


def test_config_round_trip_and_bfloat16_variant():
    net = TransformNet(width=8, residual_blocks=2, name="small")
    config = net.get_config()
    again = TransformNet.from_config(config)
    assert (again.width, again.residual_blocks) == (8, 2)
    mixed = TransformNet(width=4, residual_blocks=1, dtype="mixed_bfloat16")
    out = mixed(_photo(1, 20, 24, 3))
    assert out.dtype == tf.float32 and out.shape == (1, 20, 24, 3)
    assert mixed.encoder[0].conv.compute_dtype == "bfloat16"
    assert mixed.norms[0].compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in mixed.trainable_variables)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="width"):
        TransformNet(width=0)
