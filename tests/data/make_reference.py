"""Makes reference_eab8997.npz: results of main at eab8997, kept to check the redesign.

Run once, at commit eab8997 (before the Stylizer redesign), from the repository root:
    .venv/bin/python tests/data/make_reference.py
tests/test_reference.py stylises the same cases with today's code and compares.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference_cases import CASES, load_inputs  # noqa: E402


def main() -> None:
    import tensorflow as tf

    from nst_tf.config import validate
    from nst_tf.features import FeatureExtractor
    from nst_tf.optimize import stylize_arrays

    tf.config.experimental.enable_op_determinism()
    results = {}
    for name, (config, styles) in CASES.items():
        config = validate(config)
        model = FeatureExtractor(config.layers, "auto", "float32", config.pooling)
        content, style_images = load_inputs(styles)
        results[name] = stylize_arrays(content, style_images, config, model=model)
    np.savez(os.path.join(os.path.dirname(__file__), "reference_eab8997.npz"), **results)


if __name__ == "__main__":
    main()
