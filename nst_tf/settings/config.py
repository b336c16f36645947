"""Config: every setting of a run, the union of its parts by lifetime, and its checks.

The parts (settings.recipe.Recipe, settings.files.InputFiles and OutputFiles,
settings.runtime.Runtime) describe each setting once; Config joins them so that
`Config(size=384)`, the flags and the Python API see one flat object. Only the commands
and the Stylizer's constructor hold a whole Config; below them, values.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Sequence

from nst_tf.core.color import COLOR_SPACES  # noqa: F401  (re-exported: a setting's choices)
from nst_tf.errors import ConfigError
from nst_tf.model.vgg19 import (  # noqa: F401  (re-exported: the settings' layer names)
    SPLIT_BEFORE,
    VGG19_CONV_LAYERS,
    layer_channels,
    layer_downsampling,
    smallest_tile,
)
from nst_tf.settings.fields import (  # noqa: F401  (re-exported for the commands' settings)
    INPUT,
    LIFETIMES,
    OUTPUT,
    RECIPE,
    RUNTIME,
    check_fields,
    kind_of,
    setting,
    settings_of,
)
from nst_tf.settings.files import InputFiles, OutputFiles, split_paths
from nst_tf.settings.presets import with_overrides
from nst_tf.settings.recipe import (  # noqa: F401  (re-exported)
    INIT_KEYWORDS,
    LARGE_SCALE,
    NORMALIZATIONS,
    OPTIMIZERS,
    POOLINGS,
    PRESERVE_COLOR,
    SCHEDULES,
    STYLE_LOSSES,
    Recipe,
)
from nst_tf.settings.runtime import PRECISIONS, XLA_MODES, Runtime  # noqa: F401

# The extensions --bit_depth=16 writes: TIFF (tifffile) and PNG (pypng).
SIXTEEN_BIT_EXTENSIONS = (".tif", ".tiff", ".png")


def split_list(value: str) -> list[str]:
    """A comma-separated flag value as its non-empty, stripped parts."""
    return [part.strip() for part in value.split(",") if part.strip()]


# Fields are gathered base last to first: the recipe's first, the runtime's last.
@dataclasses.dataclass
class Config(Runtime, OutputFiles, InputFiles, Recipe):
    """Everything that defines a stylisation run; constructible flat: Config(size=384).

    Each setting is described once, in its part's field (see settings.fields.setting);
    the attributes below are generated from those descriptions.
    """

    def __post_init__(self):
        # Flags and notebooks hand in lists (or "a,b" strings); keep tuples so configs
        # compare and hash.
        if self.vgg_weights is None:  # the Python API's old spelling of "search"
            self.vgg_weights = "auto"
        if isinstance(self.style_scale, numbers.Real):
            self.style_scale = (self.style_scale,)
        for field in dataclasses.fields(self):
            if kind_of(field) is not tuple:
                continue
            value = getattr(self, field.name)
            if isinstance(value, str):
                value = split_paths(value) if field.name == "style_mask" else split_list(value)
            setattr(self, field.name, tuple(value))

    @classmethod
    def from_preset(cls, name: str, **settings) -> Config:
        """The settings of preset `name` (see nst_tf.settings.presets), with `settings`
        given explicitly on top: Config.from_preset("fast", size=100)."""
        return cls(**with_overrides(name, settings))

    def to_dict(self) -> dict:
        """A JSON-friendly copy of the settings."""
        return dataclasses.asdict(self)

    def of(self, *lifetimes: str) -> dict:
        """The settings of the given lifetimes (RECIPE, INPUT, OUTPUT, RUNTIME) by name."""
        return settings_of(self, *lifetimes)


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


def setting_fields() -> tuple[dataclasses.Field, ...]:
    """Every setting's field (its default, help, lifetime and choices), in Config's order:
    the recipe's first, the runtime's last."""
    return dataclasses.fields(Config)


def default_settings() -> dict:
    """Every setting's default value by name (what Config() holds)."""
    defaults = Config()
    return {field.name: getattr(defaults, field.name) for field in setting_fields()}


def joined(
    recipe: Recipe,
    inputs: InputFiles | None = None,
    outputs: OutputFiles | None = None,
    runtime: Runtime | None = None,
) -> Config:
    """The whole settings of a run made of one of each part (a part not given: its
    defaults); each part gives only its own settings, even when it is a Config."""
    values = {}
    parts = (recipe, inputs or InputFiles(), outputs or OutputFiles(), runtime or Runtime())
    for part, kind in zip(parts, (Recipe, InputFiles, OutputFiles, Runtime), strict=True):
        values.update({field.name: getattr(part, field.name) for field in dataclasses.fields(kind)})
    return Config(**values)


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


def _check_strength(config: Config) -> None:
    """--style_strength: in 0..100, and not together with --style_weight."""
    strength = config.style_strength
    if strength is None:
        return
    if isinstance(strength, bool) or not math.isfinite(strength) or not 0 <= strength <= 100:
        raise ConfigError(f"--style_strength must be in 0..100, got {_shown(strength)}")
    if config.style_weight != Config.style_weight:
        raise ConfigError(
            "--style_strength sets the style weight itself: give --style_strength or "
            "--style_weight, not both"
        )


def validate(config: Config) -> Config:
    """Checks settings that need no file access and returns the config unchanged.

    Args:
        config: The settings to check.

    Returns:
        The same config, for chaining.

    Raises:
        ConfigError: with a one-line message naming the bad setting and the fix.
    """
    check_fields(config)
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
    _check_strength(config)
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
    if config.init == "style" and config.style_targets:
        raise ConfigError("--init=style needs a style image, not --style_targets statistics")
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
    for flag in ("snapshot_every", "log_every", "save_every", "checkpoint_every", "refine_steps"):
        if getattr(config, flag) < 0:
            raise ConfigError(f"--{flag} must be >= 0, got {getattr(config, flag)}")
    if config.refine_steps and not config.model:
        raise ConfigError("--refine_steps refines a trained network's output: give --model too")
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
