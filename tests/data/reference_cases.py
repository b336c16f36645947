"""The cases of reference_eab8997.npz: small multi-scale runs on the built-in samples."""

import numpy as np
from PIL import Image

from nst_tf.io.images import sample_path
from nst_tf.settings.config import Config

_COMMON = dict(
    size=64,
    min_size=32,
    steps=8,
    coarse_steps=6,
    precision="float32",
    xla="off",
    deterministic=True,
    checkpoint_every=0,
)

# name -> (Config, the sample style images it uses)
CASES = {
    "lbfgs": (Config(**_COMMON), ("style",)),
    "adam": (Config(optimizer="adam", **_COMMON), ("style",)),
    "blend_luminance": (
        Config(
            style="a,b",
            style_blend_weights=(0.7, 0.3),
            preserve_color="luminance",
            **_COMMON,
        ),
        ("style", "style2"),
    ),
    "wasserstein_noise": (
        Config(style_loss="wasserstein", init="noise", style_weight=1000.0, **_COMMON),
        ("style",),
    ),
}


def load_inputs(styles):
    """The content sample and the named style samples as float32 arrays."""

    def load(name):
        with Image.open(sample_path(name)) as image:
            return np.asarray(image.convert("RGB"), np.float32)

    return load("content"), [load(name) for name in styles]
