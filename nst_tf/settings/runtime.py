"""How a result is computed on this machine: precision, compilation, memory, resuming.

Resume does not compare these (a run may continue on another machine); batch keys hold
the ones that change the pixels' last bits (precision, XLA).
"""

from __future__ import annotations

from nst_tf.settings.fields import RUNTIME, part, setting

PRECISIONS = ("auto", "float32", "bfloat16")
XLA_MODES = ("auto", "on", "off")


@part(RUNTIME)
class Runtime:
    """How the run uses this machine."""

    precision: str = setting(
        "auto",
        "float32, bfloat16, or auto: bfloat16 VGG19 where the CPU has AVX512-BF16/AMX (the "
        "image, Gram matrices and losses stay float32).",
        choices=PRECISIONS,
    )
    xla: str = setting(
        "auto",
        "Compile the step with XLA: on, off, or auto (on for CPUs without AVX-512, where it "
        "measured faster; off with --deterministic).",
        choices=XLA_MODES,
    )
    resume: bool = setting(False, "Continue the newest checkpoint in --checkpoint_dir.")
    deterministic: bool = setting(False, "TensorFlow's op determinism: repeatable runs.")
    tile_size: str = setting(
        "auto",
        "auto tiles a scale only when its whole-image step would not fit the memory budget, "
        "with the largest tile that fits; 0 never tiles; N tiles with N px tile interiors. "
        "Tiled steps give the same loss and gradient.",
    )
    memory_limit: float = setting(
        0.0, "The memory budget in GB; 0: 80 % of the memory available when the run starts."
    )
