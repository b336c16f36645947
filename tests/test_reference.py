"""Behaviour kept across the Stylizer redesign: today's results against main at eab8997.

tests/data/reference_eab8997.npz holds float32 results that tests/data/make_reference.py
made at commit eab8997 on the real VGG19 weights (float32, deterministic ops, small
multi-scale runs). Today's code must agree within 2/255 of the pixel range everywhere.
"""

import os
import sys

import numpy as np
import pytest

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
sys.path.insert(0, DATA)

from reference_cases import CASES, load_inputs  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference():
    with np.load(os.path.join(DATA, "reference_eab8997.npz"), allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_match_those_of_eab8997(reference, name):
    import tensorflow as tf

    from nst_tf.optimize import stylize_arrays

    tf.config.experimental.enable_op_determinism()
    config, styles = CASES[name]
    content, style_images = load_inputs(styles)
    result = stylize_arrays(content, style_images, config)
    assert result.shape == reference[name].shape
    np.testing.assert_allclose(result, reference[name], rtol=0, atol=2.0)
