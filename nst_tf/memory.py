"""The memory model: what a run will need, checked before it starts."""

from __future__ import annotations

import os

import numpy as np

from nst_tf import images
from nst_tf.config import Config
from nst_tf.errors import ConfigError
from nst_tf.targets import StyleTargets

# Peak resident memory of a run, measured by scripts/benchmark.py's probe (float32, 2-core
# CPUs): about 0.8 GB for TensorFlow and the weights plus 3.9 KB per output pixel for the
# VGG19 activations kept for the backward pass (4.3 KB with XLA on AVX2, the larger is used),
# plus L-BFGS's history. At 1024x1024 px, 50 pairs took 1.2 GB more than 2 pairs: exactly
# their float32 s and y vectors.
BASE_BYTES = 0.8e9
BYTES_PER_PIXEL = 4.3e3
# The style pass runs VGG19 forward only, once per style image: --size=256
# --style_scale=8 (a 2048x2048 px style) peaked at 5.05 GB in bfloat16 and 6.77 GB in
# float32 (AVX-512 machine), so about 1.5 KB per style pixel over the base.
STYLE_BYTES_PER_PIXEL = 1.5e3


def history_bytes_per_pixel(config: Config) -> float:
    """What the optimiser's own state holds per output pixel (3 channels)."""
    if config.optimizer == "lbfgs":
        return 2 * 3 * 4 * config.lbfgs_memory  # s and y, float32
    if config.optimizer == "lbfgs_scipy":
        return (2 * config.lbfgs_memory + 5) * 3 * 8  # SciPy's float64 work array
    return 0.0  # Adam's two moments are within the activations' margin


def estimated_peak_bytes(height: int, width: int, config: Config | None = None) -> float:
    """Estimated peak memory of a run whose final scale is height x width."""
    per_pixel = BYTES_PER_PIXEL + (history_bytes_per_pixel(config) if config else 0.0)
    return BASE_BYTES + per_pixel * height * width


def style_shapes(config: Config, styles) -> list[tuple[int, int]]:
    """(height, width) of each style image as the final scale measures it: its longest
    side is --size times its --style_scale (the loop resizes it up or down to that)."""
    if isinstance(styles, StyleTargets):
        return []
    return [
        images.scaled_shape(*style.shape[:2], max(1, round(config.size * config.scale_of(i))))
        for i, style in enumerate(styles)
    ]


def check_memory(config: Config, content: np.ndarray, styles=()) -> None:
    """Refuses a size whose run would not fit in this machine's memory.

    The peak is the larger of the optimisation (at the content's final size) and the
    style pass, where VGG19 runs forward on each style image at its --style_scale.

    Raises:
        ConfigError: the estimated peak exceeds the physical memory.
    """
    height, width = images.scaled_shape(content.shape[0], content.shape[1], config.size)
    need = estimated_peak_bytes(height, width, config)
    largest = max(style_shapes(config, styles), key=lambda shape: shape[0] * shape[1], default=None)
    style_need = BASE_BYTES + STYLE_BYTES_PER_PIXEL * largest[0] * largest[1] if largest else 0
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return  # unknown on this platform: let the run try
    if style_need > max(need, have):
        raise ConfigError(
            f"--style_scale={','.join(map(str, config.style_scale))} measures a style at "
            f"{largest[1]}x{largest[0]} px, which needs about {style_need / 1e9:.0f} GB of "
            f"memory, more than this machine's {have / 1e9:.0f} GB; use a smaller "
            "--style_scale or --size"
        )
    if need > have:
        raise ConfigError(
            f"--size={config.size} ({width}x{height} px) needs about {need / 1e9:.0f} GB of "
            f"memory, more than this machine's {have / 1e9:.0f} GB; use a smaller --size"
            + (" or --lbfgs_memory" if history_bytes_per_pixel(config) else "")
        )
