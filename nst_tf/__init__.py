"""nst_tf: Gatys et al. neural style transfer on a frozen Keras VGG19.

Use from Python::

    from nst_tf import Config, stylize
    result = stylize(Config(content="photo.jpg", style="painting.jpg", output="out.png"))
"""

from nst_tf.config import Config, validate
from nst_tf.errors import ConfigError, ImageError, NstError, OutputError, WeightsError

__version__ = "0.1.0"


def stylize(config: Config):
    """Runs a stylisation; see nst_tf.run.stylize (imported lazily: TensorFlow is slow to load)."""
    from nst_tf.run import stylize as _stylize  # pylint: disable=import-outside-toplevel

    return _stylize(config)


__all__ = [
    "Config",
    "ConfigError",
    "ImageError",
    "NstError",
    "OutputError",
    "WeightsError",
    "stylize",
    "validate",
]
