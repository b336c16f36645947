"""Command line `nst-tf-export`: the feature extractor as a SavedModel, a style's Gram
targets as a .npz, or the description of an export or a trained model."""

from __future__ import annotations

import json
import sys

from absl import logging

from nst_tf.commands import common
from nst_tf.commands.flags import FLAGS, config_from_flags, define_flag, define_flags
from nst_tf.errors import ConfigError
from nst_tf.settings.config import validate
from nst_tf.settings.recipe import Recipe

# The settings only nst-tf-export has; every other flag is an nst-tf setting, described
# once in nst_tf/settings/. (name, default, help); a tuple default makes a list flag.
_EXPORT_ONLY = (
    ("export_dir", None, "Directory to write the SavedModel to (must not exist yet)."),
    (
        "describe",
        None,
        "Print the description of the export or trained model (MODEL_DIR) in this directory "
        "(read as data, never run).",
    ),
    ("targets_out", None, "Write the --style image's Gram targets to this .npz."),
    ("layers", Recipe().layers, "Layers whose activations and Gram matrices to export."),
)
# The nst-tf settings nst-tf-export takes too.
_EXPORT_SHARED = (
    "style",
    "style_layers",
    "size",
    "normalization",
    "pooling",
    "precision",
    "vgg_weights",
)


def define_export_flags() -> tuple[str, ...]:
    """Defines nst-tf-export's flags; returns their names."""
    for name, default, help_text in _EXPORT_ONLY:
        define_flag(name, default, help_text, tuple if isinstance(default, tuple) else str)
    return tuple(name for name, *_ in _EXPORT_ONLY) + define_flags(_EXPORT_SHARED)


def _describe(path: str) -> None:
    from nst_tf.io import model_dir  # pylint: disable=import-outside-toplevel

    if model_dir.is_model_dir(path):  # a trained stylizer (nst-tf-train)
        sys.stdout.write(model_dir.describe(path) + "\n")
        return
    from nst_tf.io.export import read_metadata  # pylint: disable=import-outside-toplevel

    sys.stdout.write(json.dumps(read_metadata(path), indent=2) + "\n")


def _export_targets() -> None:
    if not FLAGS.style:
        raise ConfigError("--targets_out needs --style=IMAGE, the style to measure")
    from nst_tf.io.export import export_style_targets  # pylint: disable=C0415

    validate(config_from_flags())
    export_style_targets(
        FLAGS.style,
        FLAGS.targets_out,
        FLAGS.style_layers,
        FLAGS.size,
        FLAGS.normalization,
        FLAGS.vgg_weights,
        FLAGS.pooling,
    )
    logging.info("wrote style targets of %s to %s", FLAGS.style, FLAGS.targets_out)


def _export_main(argv: list[str]) -> int:
    if len(argv) > 1:
        return common.unexpected_arguments(argv)

    def body():
        if FLAGS.describe:
            _describe(FLAGS.describe)
            return
        if FLAGS.targets_out:
            _export_targets()
            return
        if not FLAGS.export_dir:
            raise ConfigError(
                "--export_dir is required: the directory to write the SavedModel to "
                "(or --describe=DIR to read one)"
            )
        from nst_tf.io.export import export_features  # pylint: disable=import-outside-toplevel

        path = export_features(
            FLAGS.export_dir,
            FLAGS.layers,
            FLAGS.vgg_weights,
            FLAGS.precision,
            FLAGS.pooling,
        )
        logging.info("exported SavedModel to %s", path)

    return common.guarded(body)


def main() -> None:
    """Entry point of `nst-tf-export`."""
    common.run(_export_main, define_export_flags())
