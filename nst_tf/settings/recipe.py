"""The recipe: the settings that change the result given the inputs (compared on resume,
part of every result key)."""

from __future__ import annotations

from nst_tf.core.color import COLOR_SPACES
from nst_tf.model.vgg19 import VGG19_CONV_LAYERS
from nst_tf.settings.fields import RECIPE, part, setting

OPTIMIZERS = ("lbfgs", "adam", "lbfgs_scipy")
NORMALIZATIONS = ("mean", "course")
POOLINGS = ("max", "avg")
PRESERVE_COLOR = ("none", "luminance", "histogram")
STYLE_LOSSES = ("gram", "wasserstein")
SCHEDULES = ("auto", "fixed")
INIT_KEYWORDS = ("content", "noise", "style")
# Scales with a longer side than this run fewer steps under --schedule=auto.
LARGE_SCALE = 1024

_STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


@part(RECIPE)
class Recipe:
    """What the picture will be: sizes, steps, optimiser, losses, layers and controls."""

    size: int = setting(512, "Longest side of the output, in pixels.")
    min_size: int = setting(
        256,
        "Longest side of the first scale; each later scale is sqrt(2) larger up to --size; "
        "0 runs a single scale.",
    )
    steps: int = setting(140, "Optimiser iterations at the final scale.")
    coarse_steps: int = setting(60, "Optimiser iterations at each earlier scale.")
    optimizer: str = setting(
        "lbfgs",
        "lbfgs (L-BFGS bounded to 0..255, run in TensorFlow), adam, or lbfgs_scipy (SciPy's "
        "L-BFGS-B: the same method with slower bookkeeping, kept as the reference).",
        choices=OPTIMIZERS,
    )
    lbfgs_memory: int = setting(
        50,
        "Curvature pairs L-BFGS keeps; each holds 24 bytes per output pixel (840 MB for 50 "
        "at 1024x683).",
    )
    learning_rate: float = setting(2.0, "Adam step size in pixel units (0..255).")
    adam_beta1: float = setting(0.9, "Adam's first-moment decay.")
    adam_beta2: float = setting(
        0.99, "Adam's second-moment decay (the TF tutorial's Keras default is 0.999)."
    )
    content_weight: float = setting(1.0, "Weight of the content loss.")
    style_weight: float = setting(1e-3, "Weight of the (layer-weighted) style loss.")
    style_strength: float | None = setting(
        None,
        "How strong the style is, the same look whatever the style image, loss, layers or "
        "size: 0 the photo, 1 the default balance, 2 stronger; sets the style weight from "
        "the terms measured on the photo and short pilots at the first scale (instead of "
        "--style_weight).",
    )
    style_strength_pilot: bool = setting(
        True,
        "With --style_strength: correct the weight by a 10-step L-BFGS pilot from the photo "
        "at the first scale (about 1.5 % of a default run); off: the start balance only.",
    )
    tv_weight: float = setting(0.0, "Weight of the total-variation loss.")
    content_layers: tuple[str, ...] = setting(
        ("block4_conv2",), "VGG19 layers whose activations carry the content."
    )
    style_layers: tuple[str, ...] = setting(
        _STYLE_LAYERS, "VGG19 layers whose Gram matrices carry the style."
    )
    style_layer_weights: tuple[float, ...] = setting(
        (),
        "One weight per style layer, used as given (not normalised); empty: "
        "--style_layer_weight_exp decides.",
    )
    normalization: str = setting(
        "mean",
        "mean (Gram / HW and mean squared differences: weights independent of size) or "
        "course (the course's formulas).",
        choices=NORMALIZATIONS,
    )
    init: str = setting(
        "content",
        "content, noise (seeded), style (the first style image), or the path of an image "
        "to start from.",
        path=True,
    )
    seed: int = setting(0, "Random seed (noise initialisation).")
    checkpoint_every: int = setting(
        200,
        "Steps between checkpoints (0: none); L-BFGS restarts its memory at each, which "
        "makes a resumed run exact.",
    )
    pooling: str = setting("max", "max (VGG19 as trained) or avg.", choices=POOLINGS)
    content_layer_weights: tuple[float, ...] = setting(
        (), "One weight per content layer; empty: equal weights."
    )
    style_layer_weight_exp: float = setting(
        1.0,
        "With no --style_layer_weights, style layer l weighs exp**l, normalised (< 1 favours "
        "fine texture, > 1 large patterns).",
    )
    style_blend_weights: tuple[float, ...] = setting(
        (), "One weight per --style entry, normalised; empty: equal."
    )
    style_scale: tuple[float, ...] = setting(
        (1.0,),
        "Each style image's size relative to the output's (one value, or one per style): "
        "> 1 gives larger strokes.",
    )
    init_noise_ratio: float = setting(0.0, "Seeded noise blended into the start image (0..1).")
    preserve_color: str = setting(
        "none",
        "none; luminance (the result's luminance with the content's chroma); histogram (the "
        "content's colour statistics given to the styles before optimising).",
        choices=PRESERVE_COLOR,
    )
    color_space: str = setting("yuv", "yuv, ycbcr or lab (for luminance).", choices=COLOR_SPACES)
    style_loss: str = setting(
        "gram",
        "gram (Gatys) or wasserstein (2-Wasserstein distance between Gaussians fitted to the "
        "features, crowsonkb's; use a style weight around 1000).",
        choices=STYLE_LOSSES,
    )
    schedule: str = setting(
        "auto",
        "auto runs fewer steps at scales above LARGE_SCALE px (the small scales have laid out "
        "the picture); fixed runs --steps/--coarse_steps at every scale.",
        choices=SCHEDULES,
    )
    refine_steps: int = setting(
        0,
        "With --model: optimiser steps at the final scale from the network's output "
        "(needs --style, the model's); 0: the network's output as it is.",
    )

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

    def blend_weights(self, count: int) -> list[float]:
        """Normalised blend weights for `count` style images (equal by default)."""
        raw = list(self.style_blend_weights) or [1.0] * count
        return [w / sum(raw) for w in raw]

    def scale_of(self, index: int) -> float:
        """The style scale of style image `index`."""
        return self.style_scale[index if len(self.style_scale) > 1 else 0]
