"""Shared test set-up: quiet TensorFlow, and the small random-weight network."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The layers the small network computes, as Config arguments.
LAYERS = dict(content_layers=("block2_conv1",), style_layers=("block1_conv1", "block2_conv1"))


@pytest.fixture(scope="session")
def model():
    """VGG19 up to block2_conv1 with seeded random weights: fast, and the real weights
    are not the point of the tests that use it."""
    import keras

    from nst_tf.model.features import FeatureExtractor

    keras.utils.set_random_seed(0)
    return FeatureExtractor(["block1_conv1", "block2_conv1"], vgg_weights=None)
