"""Runs the reference cases and writes their float32 results to an .npz.

    ONEDNN_MAX_CPU_ISA=AVX2 python tests/data/reference_run.py OUT.npz

The results of these small runs depend on the CPU's instruction set: a rounding
difference in a convolution grows over a few optimiser steps (Adam's first steps move a
pixel by about the learning rate whatever the size of its gradient). So the references
are made, and compared, with oneDNN held to one instruction set (see
tests/engine/test_reference.py). reference_eab8997_<isa>.npz were made with this script at
commit eab8997, before the Stylizer, from a `git archive eab8997` on PYTHONPATH.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from reference_cases import CASES, load_inputs  # noqa: E402


def main(out: str) -> None:
    import tensorflow as tf

    try:
        from nst_tf.engine.stylizer import stylize_arrays
    except ImportError:  # eab8997, where the references were made
        from nst_tf.engine.optimize import stylize_arrays

    tf.config.experimental.enable_op_determinism()
    results = {}
    for name, (config, styles) in CASES.items():
        content, style_images = load_inputs(styles)
        results[name] = stylize_arrays(content, style_images, config)
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1])
