"""The settings of `nst-tf-train`: what a trained stylizer learns, from what, and how.

The style controls that make sense at training time (the style images and their blend
and scale, the layers and their weights, the loss weights, the style loss, colour
preservation) are the stylisation's own settings: their descriptions and defaults come
from Config's fields, so a network is trained for exactly the objective the optimiser
minimises, and the flags and their help are generated the same way. TF-free.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os

from nst_tf.errors import ConfigError
from nst_tf.settings.config import (
    INPUT,
    OUTPUT,
    RECIPE,
    RUNTIME,
    Config,
    setting,
    split_list,
    validate,
)

_CONFIG_FIELDS = {field.name: field for field in dataclasses.fields(Config)}


def _from_config(name: str):
    """A field described once, in Config: the same default, help and lifetime."""
    field = _CONFIG_FIELDS[name]
    return dataclasses.field(default=field.default, metadata=field.metadata)


# The settings a trained network's objective is made of: a model's recipe holds them, and
# `nst-tf --model` checks the ones given against it (commands/model_run.py).
OBJECTIVE_SETTINGS = (
    "content_weight",
    "style_weight",
    "tv_weight",
    "content_layers",
    "style_layers",
    "style_layer_weights",
    "style_layer_weight_exp",
    "content_layer_weights",
    "style_blend_weights",
    "style_scale",
    "normalization",
    "pooling",
    "style_loss",
    "preserve_color",
    "color_space",
)
# The Config settings a training run takes, with Config's meaning. --size is the side
# the network is trained for: photos are scaled to it before cropping, and the style
# is measured at it (times --style_scale), as the optimiser would.
CONFIG_SETTINGS = ("style", "size", *OBJECTIVE_SETTINGS, "precision", "vgg_weights", "logdir")

# Above this many residual blocks or this width, a network costs more than it can learn
# on a CPU; the bounds also keep a typo (--width=3200) from allocating gigabytes.
MAX_WIDTH = 256
MAX_BLOCKS = 16


@dataclasses.dataclass
class TrainSettings:
    """Everything that defines a training run of nst-tf-train; constructible flat.

    Each setting is described once, in its field (see config.setting); those shared with
    a stylisation are Config's fields (CONFIG_SETTINGS).
    """

    images: str | None = setting(
        None,
        "The training photos: a folder of images (its image files, not its subfolders), or "
        "a video clip whose frames are the set.",
        INPUT,
    )
    output: str | None = setting(
        None,
        "The MODEL_DIR to write (a new folder, or one of our models to replace); "
        "checkpoints go beside it, in MODEL_DIR.ckpt/.",
        OUTPUT,
    )
    steps: int = setting(2000, "Training steps (one batch of crops each).", RECIPE)
    batch_size: int = setting(4, "Crops per step.", RECIPE)
    crop_size: int = setting(
        256, "Side of the square random crops (flipped at random) the network learns on.", RECIPE
    )
    learning_rate: float = setting(
        1e-3,
        "Adam's initial learning rate for the network's weights, cosine-decayed to 5 % of "
        "it over --steps.",
        RECIPE,
    )
    holdout: float = setting(
        0.1,
        "Share of the photos held out, never trained on, whose loss measures how well the "
        "network generalises (at least one photo when > 0; a clip holds out its last "
        "frames); 0: none.",
        RECIPE,
    )
    width: int = setting(
        16, "Channels of the network's first stage (Johnson et al.: 32); then 2x and 4x.", RECIPE
    )
    residual_blocks: int = setting(
        5, "Residual blocks of the network at a quarter of the resolution (Johnson: 5).", RECIPE
    )
    seed: int = setting(0, "Random seed: the network's start, the crops and flips.", RECIPE)
    sample_every: int = setting(
        100,
        "Steps between measuring the held-out photos' loss and logging their stylisations "
        "to TensorBoard (0: only at the end).",
        OUTPUT,
    )
    checkpoint_every: int = setting(
        100, "Steps between checkpoints (0: none; a stopped run cannot be resumed).", RUNTIME
    )
    resume: bool = setting(
        False, "Continue the newest checkpoint of this --output's training.", RUNTIME
    )
    tflite: bool = setting(
        False, "Also write a TFLite conversion (transform.tflite) into MODEL_DIR.", OUTPUT
    )
    style: str | None = _from_config("style")
    size: int = _from_config("size")
    content_weight: float = _from_config("content_weight")
    style_weight: float = _from_config("style_weight")
    tv_weight: float = _from_config("tv_weight")
    content_layers: tuple[str, ...] = _from_config("content_layers")
    style_layers: tuple[str, ...] = _from_config("style_layers")
    style_layer_weights: tuple[float, ...] = _from_config("style_layer_weights")
    style_layer_weight_exp: float = _from_config("style_layer_weight_exp")
    content_layer_weights: tuple[float, ...] = _from_config("content_layer_weights")
    style_blend_weights: tuple[float, ...] = _from_config("style_blend_weights")
    style_scale: tuple[float, ...] = _from_config("style_scale")
    normalization: str = _from_config("normalization")
    pooling: str = _from_config("pooling")
    style_loss: str = _from_config("style_loss")
    preserve_color: str = _from_config("preserve_color")
    color_space: str = _from_config("color_space")
    precision: str = _from_config("precision")
    vgg_weights: str = _from_config("vgg_weights")
    logdir: str | None = _from_config("logdir")

    def __post_init__(self):
        # Flags and notebooks hand in lists or "a,b" strings; keep tuples so that
        # settings compare and hash (Config does the same for its own fields).
        for name in (
            "content_layers",
            "style_layers",
            "style_layer_weights",
            "content_layer_weights",
            "style_blend_weights",
            "style_scale",
        ):
            value = getattr(self, name)
            if isinstance(value, numbers.Real):
                value = (value,)
            elif isinstance(value, str):
                value = split_list(value)
            setattr(self, name, tuple(value))

    def config(self) -> Config:
        """The stylisation settings this training shares: its objective's description."""
        return Config(
            **{name: getattr(self, name) for name in CONFIG_SETTINGS},
            min_size=0,
        )

    def recipe(self) -> dict:
        """What defines the trained network: the settings compared on --resume and kept in
        the MODEL_DIR's description (the objective's settings among them)."""
        values = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.metadata["lifetime"] == RECIPE
        }
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}

    def checkpoint_dir(self) -> str:
        """Where the checkpoints go: beside the MODEL_DIR, as MODEL_DIR.ckpt/."""
        return os.path.abspath(self.output).rstrip(os.sep) + ".ckpt"


_POSITIVE = ("steps", "batch_size", "crop_size", "width")


def validate_training(settings: TrainSettings) -> TrainSettings:
    """Checks the settings that need no file access; returns them unchanged.

    Raises:
        ConfigError: one line naming the setting and what would work.
    """
    config = validate(settings.config())  # the shared settings, checked as for a run
    for name in (*_POSITIVE, "residual_blocks", "seed", "sample_every", "checkpoint_every"):
        value = getattr(settings, name)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise ConfigError(f"--{name} must be a whole number, got {value!r}")
        if value < (1 if name in _POSITIVE else 0):
            least = "positive" if name in _POSITIVE else ">= 0"
            raise ConfigError(f"--{name} must be {least}, got {value}")
    if settings.width > MAX_WIDTH or settings.residual_blocks > MAX_BLOCKS:
        raise ConfigError(
            f"--width={settings.width} --residual_blocks={settings.residual_blocks} is larger "
            f"than nst-tf-train builds (width <= {MAX_WIDTH}, blocks <= {MAX_BLOCKS})"
        )
    rate = settings.learning_rate
    if not isinstance(rate, numbers.Real) or not math.isfinite(rate) or not 0 < rate <= 1:
        raise ConfigError(f"--learning_rate must be in (0, 1], got {rate!r}")
    holdout = settings.holdout
    if not isinstance(holdout, numbers.Real) or not 0 <= holdout < 1:
        raise ConfigError(f"--holdout is a share of the photos in [0, 1), got {holdout!r}")
    if settings.crop_size < 16:
        raise ConfigError(f"--crop_size={settings.crop_size} is too small; use at least 16 px")
    if settings.crop_size > config.size:
        raise ConfigError(
            f"--crop_size={settings.crop_size} is larger than --size={config.size}, the side "
            "photos are scaled to; use a smaller crop or a larger --size"
        )
    if settings.preserve_color == "histogram":
        raise ConfigError(
            "--preserve_color=histogram recolours the style for each photo, which a network "
            "trained once cannot do; use --preserve_color=luminance or none"
        )
    if not settings.images:
        raise ConfigError("--images is required: a folder of training photos, or a video clip")
    if not settings.output:
        raise ConfigError("--output is required: the MODEL_DIR to write the trained model to")
    return settings
