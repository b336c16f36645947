"""Behaviour kept across the Stylizer redesign: today's results against main at eab8997.

tests/data/reference_eab8997_<isa>.npz hold the float32 results of eab8997 (before the
Stylizer) on the real VGG19 weights for four small multi-scale runs (float32,
deterministic ops): L-BFGS, Adam, two blended styles with luminance kept, and the
Wasserstein loss from noise. Today's code must agree within 2/255 of the pixel range.

Such runs amplify rounding: oneDNN's AVX2 and AVX-512 kernels round convolutions
differently, and a few optimiser steps later the images differ by tens of levels. So both
the references and today's run hold oneDNN to one instruction set (ONEDNN_MAX_CPU_ISA):
AVX-512 on machines that have it, AVX2 on the others.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from nst_tf.model.features import cpu_flags

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
sys.path.insert(0, DATA)

from reference_cases import CASES  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """(today's results, eab8997's) under the same oneDNN instruction set."""
    isa = "avx512_core" if "avx512f" in cpu_flags() else "avx2"
    out = tmp_path_factory.mktemp("reference") / "today.npz"
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa.upper(), TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, os.path.join(DATA, "reference_run.py"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with np.load(out) as today, np.load(os.path.join(DATA, f"reference_eab8997_{isa}.npz")) as old:
        return {k: today[k] for k in today.files}, {k: old[k] for k in old.files}


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_match_those_of_eab8997(results, name):
    today, old = results
    assert today[name].shape == old[name].shape == (48, 64, 3)
    np.testing.assert_allclose(today[name], old[name], rtol=0, atol=2.0)
