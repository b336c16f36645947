"""How much memory a scale needs, whole or tiled, and how to tile it to fit a budget.

Free of TensorFlow, so that a run that cannot fit is refused before TensorFlow loads.
The tile layout (which pixels each tile holds) is VGG19 geometry, in nst_tf.model.vgg19.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

from absl import logging

from nst_tf.engine.devices import (  # noqa: F401  (re-exported: the planner's devices)
    DEVICE_SHARE,
    DeviceMemory,
    device_budget_bytes,
    gpu_memory,
    visible_gpus,
)
from nst_tf.errors import ConfigError
from nst_tf.io import images
from nst_tf.io.targets import StyleTargets
from nst_tf.machine import precision_for
from nst_tf.model import vgg19
from nst_tf.model.vgg19 import (  # noqa: F401  (re-exported for the planner's callers)
    SPLIT_BEFORE,
    VGG19_CONV_LAYERS,
    Tile,
    halo_and_grid,
    layer_downsampling,
    plan_tiles,
    receptive_field,
    split_halo_and_grid,
)


@dataclasses.dataclass(frozen=True)
class PlanSettings:
    """The settings the memory planner reads: values, not a whole Config.

    Attributes:
        layers: The style and content layers (the deepest sets the tile's halo).
        precision: "auto", "float32" or "bfloat16" (the activations' size).
        optimizer: "lbfgs", "lbfgs_scipy" or "adam" (the history's size).
        lbfgs_memory: Curvature pairs L-BFGS keeps when they fit.
        tile_size: "auto", 0 (never tile) or a tile side in pixels.
        memory_limit: The budget in GB; 0 for a share of the memory available.
        size: The final long side (for messages and the style pass).
        style_scale: Each style image's scale (one value for all).
    """

    layers: tuple[str, ...]
    precision: str
    optimizer: str
    lbfgs_memory: int
    tile_size: int | str
    memory_limit: float
    size: int
    style_scale: tuple[float, ...]

    @classmethod
    def of(cls, settings) -> PlanSettings:
        """The planner's values read from any settings object with these attributes
        (a Config)."""
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})

    def scale_of(self, index: int) -> float:
        """The style scale of style image `index`."""
        return self.style_scale[index if len(self.style_scale) > 1 else 0]


# Peak resident memory of an untiled run, measured by scripts/benchmark.py's probe (float32,
# 2-core CPUs): about 0.8 GB for TensorFlow and the weights plus 3.9 KB per output pixel for
# the VGG19 activations kept for the backward pass (4.3 KB with XLA on AVX2, the larger is
# used), plus L-BFGS's history. At 1024x1024 px, 50 pairs took 1.2 GB more than 2 pairs:
# exactly their float32 s and y vectors.
BASE_BYTES = 0.8e9
BYTES_PER_PIXEL = 4.3e3
# In bfloat16 (--precision=auto on a CPU with native bfloat16) the activations take half
# the room: 1.55 KB per pixel at 2048x2048 and 1.76 KB at 1024x1024 on an AVX-512 machine
# (scripts/benchmark_tiling.py), with a margin.
BFLOAT16_BYTES_PER_PIXEL = 2.0e3
# The split tiled step keeps the tail's activations (blocks 3-5) for the whole image: by
# their channels and resolutions, a third of the network's (104 of 320 floats per pixel
# with the default layers).
TAIL_SHARE = 0.35
# It also holds the head's output for the whole image (block2_pool, 128 channels at a
# sixteenth of the pixels): stitched, its pieces and its gradient.
SPLIT_BYTES_PER_PIXEL = 100.0
# Head tiles below this side would unroll into too many pieces for little saving.
MIN_SPLIT_TILE = 256
# A tiled step also holds whole-image tensors besides one tile's activations: the image,
# its gradient and the sum being built, L-BFGS's current point, gradient, direction and
# trial, and the content layers' targets (block4_conv2: 8 floats per pixel). Measured by
# scripts/benchmark_tiling.py (docs/benchmarks.md).
WHOLE_IMAGE_BYTES_PER_PIXEL = 250.0
# The share of a budget the L-BFGS history may take when the step must be tiled anyway:
# the rest goes to the tile, whose size sets the speed (a 4096x4096 image in 16 GB: 10
# pairs and 1104 px tiles, rather than 19 pairs and 672 px tiles that are 53 % halo).
HISTORY_SHARE = 0.25
# Fewer curvature pairs than this and L-BFGS is hardly better than gradient descent.
MIN_PAIRS = 5
# The default budget: this share of the memory available when the run starts.
AVAILABLE_SHARE = 0.8


def history_bytes_per_pixel(settings: PlanSettings, pairs: int | None = None) -> float:
    """What the optimiser's own state holds per output pixel (3 channels).

    Args:
        settings: The run's settings (the optimiser).
        pairs: L-BFGS curvature pairs; default settings.lbfgs_memory.
    """
    pairs = settings.lbfgs_memory if pairs is None else pairs
    if settings.optimizer == "lbfgs":
        return 2 * 3 * 4 * pairs  # s and y, float32
    if settings.optimizer == "lbfgs_scipy":
        return (2 * pairs + 5) * 3 * 8  # SciPy's float64 work array
    return 0.0  # Adam's two moments are within the activations' margin


def activation_bytes_per_pixel(
    settings: PlanSettings | None, devices: Sequence[DeviceMemory] | None = None
) -> float:
    """What the step's activations take per pixel: less in bfloat16 than in float32.

    Args:
        settings: The run's settings (its precision); None: float32.
        devices: The visible GPUs (default: this machine's, read once); "auto" follows
            the first one's compute capability, or the CPU's (machine.precision_for).
    """
    precision = settings.precision if settings else "float32"
    if precision == "auto":
        devices = visible_gpus() if devices is None else devices
        precision = precision_for(devices[0].compute_capability if devices else None)
    return BFLOAT16_BYTES_PER_PIXEL if precision == "bfloat16" else BYTES_PER_PIXEL


def estimated_peak_bytes(
    height: int,
    width: int,
    settings: PlanSettings | None = None,
    tile: int = 0,
    pairs: int | None = None,
    split: bool = False,
) -> float:
    """Estimated peak memory of a step on a height x width image, whole or tiled.

    Args:
        height: Image height.
        width: Image width.
        settings: The run's settings (optimiser, layers, precision); None: the step alone.
        tile: Tile interior side; 0 for the whole image.
        pairs: L-BFGS pairs; default settings.lbfgs_memory.
        split: The split tiled step: the head in tiles of `tile`, the tail whole.
    """
    pixels = height * width
    history = history_bytes_per_pixel(settings, pairs) * pixels if settings else 0.0
    per_pixel = activation_bytes_per_pixel(settings)
    if not tile or tile >= max(height, width):
        return BASE_BYTES + per_pixel * pixels + history
    layers = settings.layers if settings else ("block5_conv1",)
    halo, _ = split_halo_and_grid(layers) if split else halo_and_grid(layers)
    crop = min(height, tile + 2 * halo) * min(width, tile + 2 * halo)
    if split:
        return (
            BASE_BYTES
            + (1 - TAIL_SHARE) * per_pixel * crop
            + (TAIL_SHARE * per_pixel + WHOLE_IMAGE_BYTES_PER_PIXEL + SPLIT_BYTES_PER_PIXEL)
            * pixels
            + history
        )
    return BASE_BYTES + per_pixel * crop + WHOLE_IMAGE_BYTES_PER_PIXEL * pixels + history


def smallest_tile(settings: PlanSettings) -> int:
    """The smallest tile worth running with the run's layers (see vgg19.smallest_tile)."""
    return vgg19.smallest_tile(settings.layers)


def budget_bytes(
    settings: PlanSettings,
    meminfo: str = "/proc/meminfo",
    devices: Sequence[DeviceMemory] | None = None,
) -> float:
    """The memory a run may use: --memory_limit; on a GPU, DEVICE_SHARE of what other
    processes leave of its memory; else 80 % of the host memory available now.

    Args:
        settings: The run's settings (--memory_limit).
        meminfo: The host's /proc/meminfo.
        devices: The visible GPUs (default: read with gpu_memory()); the run places
            its tensors on the first.

    Returns:
        Bytes; infinity where the available memory cannot be read.
    """
    if settings.memory_limit:
        return settings.memory_limit * 1e9
    devices = gpu_memory() if devices is None else devices
    if devices:
        return device_budget_bytes(devices[0])
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return AVAILABLE_SHARE * int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return AVAILABLE_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return math.inf


@dataclasses.dataclass(frozen=True)
class ScalePlan:
    """How one scale runs: its tile (0: the whole image) and its L-BFGS history.

    Attributes:
        tile: Tile interior side in pixels, or 0 for an untiled step.
        lbfgs_memory: Curvature pairs L-BFGS keeps at this scale.
        peak: The estimated peak in bytes.
        split: Whether the tiles are the head's alone, the tail running whole (the split
            tiled step: faster, where its memory fits).
    """

    tile: int
    lbfgs_memory: int
    peak: float
    split: bool = False


def _requested_tile(settings: PlanSettings) -> int | None:
    """--tile_size as a number of pixels on the grid; None for "auto"."""
    if str(settings.tile_size) == "auto":
        return None
    tile = int(settings.tile_size)
    if tile == 0:
        return 0
    _, grid = halo_and_grid(settings.layers)
    return tile // grid * grid


def _fit_pairs(
    height: int, width: int, settings: PlanSettings, tile: int, budget: float, split: bool = False
) -> int:
    """The most L-BFGS pairs (up to settings.lbfgs_memory) that fit the budget; 0: none."""
    fixed = estimated_peak_bytes(height, width, settings, tile, 0, split)
    if settings.optimizer == "adam":  # no history: the step fits or it does not
        return settings.lbfgs_memory if fixed <= budget else 0
    per_pair = history_bytes_per_pixel(settings, 1) - history_bytes_per_pixel(settings, 0)
    room = (budget - fixed) / (per_pair * height * width)
    return max(0, min(settings.lbfgs_memory, math.floor(room)))


def plan_scale(height: int, width: int, settings: PlanSettings, budget: float) -> ScalePlan:
    """Chooses the tile and the L-BFGS history of a height x width scale.

    --tile_size=0 never tiles and N always uses N px tiles; "auto" tiles only when the
    whole-image step with the full history does not fit, then with the largest tile that
    fits once the history has taken at most HISTORY_SHARE of the budget. The history
    shrinks only when even that is too much, never below MIN_PAIRS.

    A tiled step is the split one (the head in tiles, the tail whole: it recomputes only
    the head) wherever that fits, and otherwise the whole network runs tile by tile.

    Raises:
        ConfigError: the scale cannot fit, naming the setting that would make it fit.
    """
    tile = _requested_tile(settings)
    if tile and tile < smallest_tile(settings):
        raise ConfigError(
            f"--tile_size={settings.tile_size} is smaller than the {smallest_tile(settings)} px "
            f"halo that {settings.layers[-1]} needs around each tile; use --tile_size >= "
            f"{smallest_tile(settings)}, or 0 to never tile"
        )
    least = min(MIN_PAIRS, settings.lbfgs_memory)
    split = _split_plan(height, width, settings, budget, tile)
    if split:
        return split
    candidates = [0 if tile and tile >= max(height, width) else tile]
    if tile is None:
        if _fit_pairs(height, width, settings, 0, budget) == settings.lbfgs_memory:
            candidates = [0]
        else:
            candidates = _tile_sides(height, width, settings, smallest_tile(settings)) + [0]
    # First the largest tile beside the history's share; failing that, the history
    # shrinks beside the smallest candidate.
    cap = _history_cap(height, width, settings, budget) if tile is None else settings.lbfgs_memory
    for candidate in candidates:
        if _fit_pairs(height, width, settings, candidate, budget) >= cap:
            peak = estimated_peak_bytes(height, width, settings, candidate, cap)
            return ScalePlan(candidate, cap, peak)
    smallest = min(candidates, key=lambda t: estimated_peak_bytes(height, width, settings, t, 0))
    pairs = _fit_pairs(height, width, settings, smallest, budget)
    if pairs >= least:
        return ScalePlan(
            smallest, pairs, estimated_peak_bytes(height, width, settings, smallest, pairs)
        )
    raise ConfigError(_too_big(height, width, settings, budget))


def _tile_sides(height: int, width: int, settings: PlanSettings, smallest: int) -> list[int]:
    """Tile sides on the grid to try, largest first: from one grid cell short of the
    whole image down to `smallest`."""
    _, grid = halo_and_grid(settings.layers)
    top = grid * math.ceil(max(height, width) / grid) - grid
    return list(range(top, smallest - 1, -grid))


def _split_plan(
    height: int, width: int, settings: PlanSettings, budget: float, tile: int | None
) -> ScalePlan | None:
    """The split tiled step's plan where it fits (see plan_scale), else None.

    Args:
        tile: The requested tile (None for "auto"; 0 or one covering the image: untiled).
    """
    side = max(height, width)
    if tile == 0 or (tile and tile >= side) or split_halo_and_grid(settings.layers) is None:
        return None
    if tile is None:
        if _fit_pairs(height, width, settings, 0, budget) == settings.lbfgs_memory:
            return None  # it fits untiled
        candidates = _tile_sides(height, width, settings, MIN_SPLIT_TILE)
        pairs = _history_cap(height, width, settings, budget)
    else:
        candidates, pairs = [tile], settings.lbfgs_memory
    for candidate in candidates:
        if _fit_pairs(height, width, settings, candidate, budget, split=True) >= pairs:
            peak = estimated_peak_bytes(height, width, settings, candidate, pairs, split=True)
            return ScalePlan(candidate, pairs, peak, split=True)
    return None


def _history_cap(height: int, width: int, settings: PlanSettings, budget: float) -> int:
    """The pairs that take at most HISTORY_SHARE of the budget (at least MIN_PAIRS)."""
    per_pair = history_bytes_per_pixel(settings, 1) - history_bytes_per_pixel(settings, 0)
    if not per_pair:
        return settings.lbfgs_memory
    room = math.floor(HISTORY_SHARE * budget / (per_pair * height * width))
    return max(MIN_PAIRS, min(settings.lbfgs_memory, room))


def smallest_budget(height: int, width: int, settings: PlanSettings) -> float:
    """The least memory in which a height x width scale can run with these settings:
    the smallest (or the requested) tile and the fewest pairs."""
    pairs = min(MIN_PAIRS, settings.lbfgs_memory)
    tile = _requested_tile(settings)
    whole = estimated_peak_bytes(height, width, settings, 0, pairs)
    if tile == 0:
        return whole
    tiled = estimated_peak_bytes(height, width, settings, tile or smallest_tile(settings), pairs)
    return min(whole, tiled) if tile is None else tiled


def _too_big(height: int, width: int, settings: PlanSettings, budget: float) -> str:
    # Rounded up to 0.1 GB: the value named is one that works.
    need = math.ceil(smallest_budget(height, width, settings) / 1e8) / 10
    where = f"a {width}x{height} px scale needs at least {need:.1f} GB"
    if _requested_tile(settings) == 0:
        tiled = estimated_peak_bytes(
            height, width, settings, smallest_tile(settings), min(MIN_PAIRS, settings.lbfgs_memory)
        )
        return (
            f"--tile_size=0: {where} untiled, more than the {budget / 1e9:.1f} GB budget; "
            f"use --tile_size=auto (tiled it needs {tiled / 1e9:.1f} GB)"
        )
    if settings.memory_limit:
        return (
            f"--memory_limit={settings.memory_limit:g} GB is too small: {where}; "
            f"use --memory_limit >= {need:.1f}"
        )
    return (
        f"--size={settings.size}: {where} even tiled, more than the {budget / 1e9:.1f} GB "
        "budget (80 % of the memory available now); use a smaller --size, or "
        f"--memory_limit >= {need:.1f} if that memory is there"
    )


def check_run(
    height: int, width: int, settings: PlanSettings, budget: float | None = None
) -> ScalePlan:
    """Refuses a run whose final (largest) scale cannot fit, before anything is loaded.

    Args:
        height: Final height.
        width: Final width.
        settings: The run's settings.
        budget: Bytes; default budget_bytes(settings).

    Returns:
        The final scale's plan (logged when it tiles or trims the history).

    Raises:
        ConfigError: it cannot fit even tiled, naming the setting that would make it fit.
    """
    budget = budget_bytes(settings) if budget is None else budget
    plan = plan_scale(height, width, settings, budget)
    log_plan(height, width, settings, plan, budget)
    return plan


def log_plan(
    height: int, width: int, settings: PlanSettings, plan: ScalePlan, budget: float
) -> None:
    """Says in one line when a scale is tiled or its L-BFGS history trimmed."""
    trimmed = plan.lbfgs_memory < settings.lbfgs_memory and settings.optimizer != "adam"
    if plan.tile or trimmed:
        logging.info(
            "%dx%d px: %s, %d L-BFGS pairs%s; estimated peak %.1f GB of a %.1f GB budget",
            width,
            height,
            (
                f"{'split step, head ' if plan.split else ''}tiles of {plan.tile} px"
                if plan.tile
                else "untiled"
            ),
            plan.lbfgs_memory,
            f" (of {settings.lbfgs_memory})" if trimmed else "",
            plan.peak / 1e9,
            budget / 1e9,
        )


# The style pass runs VGG19 forward only, once per style image: --size=256
# --style_scale=8 (a 2048x2048 px style) peaked at 5.05 GB in bfloat16 and 6.77 GB in
# float32 (AVX-512 machine), so about 1.5 KB per style pixel over the base.
STYLE_BYTES_PER_PIXEL = 1.5e3


def style_shapes(settings: PlanSettings, styles) -> list[tuple[int, int]]:
    """(height, width) of each style image as the final scale measures it: its longest
    side is --size times its --style_scale (the loop resizes it up or down to that)."""
    if isinstance(styles, StyleTargets):
        return []
    return [
        images.scaled_shape(*style.shape[:2], max(1, round(settings.size * settings.scale_of(i))))
        for i, style in enumerate(styles)
    ]


def check_memory(settings: PlanSettings, content, styles=()) -> ScalePlan:
    """Refuses a run that cannot fit: the optimisation at the content's final size (whole
    or tiled, see check_run), or the style pass, where VGG19 runs forward on each style
    image at its --style_scale.

    Returns:
        The final scale's plan.

    Raises:
        ConfigError: naming the setting that would make it fit.
    """
    height, width = images.scaled_shape(content.shape[0], content.shape[1], settings.size)
    budget = budget_bytes(settings)
    plan = plan_scale(height, width, settings, budget)
    largest = max(
        style_shapes(settings, styles), key=lambda shape: shape[0] * shape[1], default=None
    )
    if largest:
        style_need = BASE_BYTES + STYLE_BYTES_PER_PIXEL * largest[0] * largest[1]
        try:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            have = math.inf  # unknown on this platform: let the run try
        if style_need > have:
            raise ConfigError(
                f"--style_scale={','.join(map(str, settings.style_scale))} measures a style at "
                f"{largest[1]}x{largest[0]} px, which needs about {style_need / 1e9:.0f} GB of "
                f"memory, more than this machine's {have / 1e9:.0f} GB; use a smaller "
                "--style_scale or --size"
            )
    log_plan(height, width, settings, plan, budget)
    return plan
