"""nst_tf: Gatys et al. neural style transfer on a frozen Keras VGG19.

Use from Python::

    from nst_tf import Config, Stylizer, stylize
    result = stylize(Config(content="photo.jpg", style="painting.jpg", output="out.png"))

    stylizer = Stylizer(Config(size=512))           # the network and step, built once
    image = stylizer.stylize(photo, painting)       # numpy [H, W, 3] float32 in 0..255
"""

from nst_tf.errors import ConfigError, ImageError, NstError, OutputError, WeightsError
from nst_tf.settings.config import Config, validate
from nst_tf.version import __version__  # noqa: F401  (the public version)


def stylize(config: Config):
    """Runs a stylisation; see nst_tf.commands.run.stylize (imported lazily: TensorFlow is slow)."""
    from nst_tf.commands.run import stylize as _stylize  # pylint: disable=import-outside-toplevel

    return _stylize(config)


def __getattr__(name: str):
    # Stylizer and stylize_arrays need TensorFlow: imported on first use, so that
    # `import nst_tf` (and the command lines' checks of the settings) stay fast.
    if name in ("Stylizer", "stylize_arrays"):
        from nst_tf.engine import stylizer  # pylint: disable=import-outside-toplevel

        return getattr(stylizer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Config",
    "ConfigError",
    "ImageError",
    "NstError",
    "OutputError",
    "Stylizer",
    "WeightsError",
    "stylize",
    "stylize_arrays",
    "validate",
]
