"""Command lines `nst-tf` (stylise) and `nst-tf-export` (export the feature extractor).

Kept thin: flags are parsed here, turned into a Config and handed to library functions.
Settings are checked before TensorFlow is imported, so mistakes are reported at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging as std_logging
import os
import signal
import sys

from absl import app, flags, logging

from nst_tf.errors import ConfigError, Interrupted, NstError
from nst_tf.io.paths import shown
from nst_tf.settings import presets
from nst_tf.settings.config import Config, validate
from nst_tf.settings.fields import kind_of

# TensorFlow's C++ start-up chatter would bury our one-line messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLAGS = flags.FLAGS

# The settings only nst-tf-export has; every other flag is a Config setting, described
# once in nst_tf/settings/config.py. (name, default, help); a tuple default makes a list flag.
_EXPORT_ONLY = (
    ("export_dir", None, "Directory to write the SavedModel to (must not exist yet)."),
    (
        "describe",
        None,
        "Print the description of the export or trained model (MODEL_DIR) in this directory "
        "(read as data, never run).",
    ),
    ("targets_out", None, "Write the --style image's Gram targets to this .npz."),
    ("layers", Config().layers, "Layers whose activations and Gram matrices to export."),
)
# The Config settings nst-tf-export takes too.
_EXPORT_SHARED = (
    "style",
    "style_layers",
    "size",
    "normalization",
    "pooling",
    "precision",
    "vgg_weights",
)


def _define(name: str, default, help_text: str, kind: type, flag: str | None = None) -> None:
    """One absl flag from one setting's description."""
    if flag == "string" or kind is str:
        text = ",".join(default) if isinstance(default, tuple) else default
        flags.DEFINE_string(name, text, help_text)
    elif kind is bool:
        flags.DEFINE_bool(name, default, help_text)
    elif kind is int:
        flags.DEFINE_integer(name, default, help_text)
    elif kind is float:
        flags.DEFINE_float(name, default, help_text)
    else:  # a tuple: a comma-separated list
        flags.DEFINE_list(name, [str(v) for v in default], help_text)


def define_flags(names: tuple[str, ...] | None = None, settings: type = Config) -> tuple[str, ...]:
    """Defines the absl flags of these settings (all when None) of a settings dataclass
    (Config, or another whose fields are made with config.setting); returns the names."""
    chosen = []
    for field in dataclasses.fields(settings):
        if names is None or field.name in names:
            meta = field.metadata
            _define(field.name, field.default, meta["help"], kind_of(field), meta["flag"])
            chosen.append(field.name)
    return tuple(chosen)


def _define_export_flags() -> tuple[str, ...]:
    for name, default, help_text in _EXPORT_ONLY:
        _define(name, default, help_text, tuple if isinstance(default, tuple) else str)
    return tuple(name for name, *_ in _EXPORT_ONLY) + define_flags(_EXPORT_SHARED)


def _floats(flag: str, values: list[str]) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise ConfigError(
            f"--{flag} takes comma-separated numbers, got {','.join(values)}"
        ) from None


def define_preset_flag() -> tuple[str, ...]:
    """Defines --preset (its help lists the presets); returns its name."""
    flags.DEFINE_string("preset", None, presets.help_text())
    return ("preset",)


def _with_preset(values: dict, settings: type) -> dict:
    """`values` with the --preset's settings in place of the defaults of the flags not
    given explicitly (on the command line or in a flag file).

    Raises:
        ConfigError: the preset is unknown, or sets a setting this command has no flag
            for (a 16-bit print for a video).
    """
    if "preset" not in FLAGS or FLAGS.preset is None or settings is not Config:
        return values
    foreign = [name for name in presets.preset_settings(FLAGS.preset) if name not in values]
    if foreign:
        raise ConfigError(
            f"--preset={FLAGS.preset} is not for this command: it sets --{foreign[0]}, "
            f"which this command does not have; choose another preset"
        )
    given = {name: value for name, value in values.items() if FLAGS[name].present}
    return {**values, **presets.with_overrides(FLAGS.preset, given)}


def config_from_flags(settings: type = Config):
    """Builds a Config (or another settings dataclass) from the parsed flags of the
    settings this command has; the others keep their defaults. With --preset, the
    preset's settings replace the defaults of the flags not given explicitly."""
    values = {}
    for field in dataclasses.fields(settings):
        if field.name not in FLAGS:
            continue
        value = FLAGS[field.name].value
        if str(field.type) == "tuple[float, ...]":
            value = _floats(field.name, value)
        values[field.name] = value
    values = _with_preset(values, settings)
    # Steps given on the command line are what the user wants at every scale.
    steps_given = any(name in FLAGS and FLAGS[name].present for name in ("steps", "coarse_steps"))
    has_schedule = "schedule" in {field.name for field in dataclasses.fields(settings)}
    if has_schedule and "schedule" in FLAGS and not FLAGS["schedule"].present and steps_given:
        values["schedule"] = "fixed"
    return settings(**values)


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


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup_logging() -> None:
    logging.set_verbosity(logging.INFO)
    handler = logging.get_absl_handler().python_handler
    handler.setFormatter(std_logging.Formatter("%(message)s"))
    handler.addFilter(_ours_or_important)


# The extra that installs a module a command needs (TensorFlow's is [cpu] or [gpu]).
_EXTRAS = {"cv2": "video", "imageio_ffmpeg": "video", "imageio": "video", "tqdm": "video"}


def _guarded(body) -> int:
    """Runs `body`, turning user errors into one line and a non-zero exit status."""
    _setup_logging()
    try:
        body()
    except NstError as err:
        return _fail(str(err), 1)
    except ImportError as err:
        extra = _EXTRAS.get((err.name or "").split(".")[0], "cpu")
        return _fail(f"{err}; install it with nst_tf: `pip install -e '.[{extra}]'`", 1)
    except Interrupted as stop:
        return _fail(_stopped(stop), 128 + stop.signum)
    except KeyboardInterrupt:
        # Before the run started, or a second Ctrl-C during it: files are written whole
        # or not at all, so none is left half-written.
        return _fail("stopped at once; nothing more was written and no file is half-written", 130)
    return 0


def _stopped(stop: Interrupted) -> str:
    """What an interrupted run saved, truthfully."""
    said = f"stopped by {signal.Signals(stop.signum).name} at step {stop.step}"
    if stop.saved:
        return f"{said}; {stop.saved}"
    image = f"image saved to {shown(stop.output)}" if stop.output else "no image saved"
    if stop.checkpoint_dir:
        return (
            f"{said}; {image} and a checkpoint to {shown(stop.checkpoint_dir)}; "
            "run the same command with --resume to continue"
        )
    return f"{said}; {image}; no checkpoint (--checkpoint_every=0), so the run cannot be resumed"


def _run(main, names: tuple[str, ...]) -> None:
    # Each command defines only its own flags, so --help and --helpfull list just those.
    # absl's --help lists the key flags of the program's main module; ours are defined
    # here, so they are declared key flags of the program being run.
    for name in names:
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])
    app.run(main, flags_parser=_parse)


def _positional(argv: list[str]) -> int:
    """Exit status 2 (a usage error, as for a malformed flag) for stray arguments."""
    words = " ".join(shown(word) for word in argv[1:])
    return _fail(f"unexpected arguments {words}; all options are --flags (see --help)", 2)


def _stylize_main(argv: list[str]) -> int:
    if len(argv) > 1:
        return _positional(argv)

    def body():
        from nst_tf.commands.run import stylize  # pylint: disable=import-outside-toplevel

        ours = FLAGS.get_flags_for_module(sys.modules[__name__])
        flag_text = "\n".join(text for text in (f.serialize() for f in ours) if text)
        given = {f.name for f in ours if f.present}
        stylize(config_from_flags(), flags=flag_text, given=given)

    return _guarded(body)


def _export_main(argv: list[str]) -> int:
    if len(argv) > 1:
        return _positional(argv)

    def body():
        if FLAGS.describe:
            from nst_tf.io import model_dir  # pylint: disable=import-outside-toplevel

            if model_dir.is_model_dir(FLAGS.describe):  # a trained stylizer (nst-tf-train)
                sys.stdout.write(model_dir.describe(FLAGS.describe) + "\n")
                return
            from nst_tf.io.export import read_metadata  # pylint: disable=import-outside-toplevel

            sys.stdout.write(json.dumps(read_metadata(FLAGS.describe), indent=2) + "\n")
            return
        if FLAGS.targets_out:
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

    return _guarded(body)


# nst-tf-video: its input and output, then every Config setting that changes the result
# or how it is computed, then the video settings.
_VIDEO_IO = (
    ("input", None, "The clip (a video file ffmpeg reads) or a folder of PNG/JPEG frames."),
    ("output", None, "The video to write (.mp4...), or a folder (no extension) for PNG frames."),
)
_VIDEO_SHARED = ("style", "style_targets", "vgg_weights", "logdir", "snapshot_every", "log_every")


def _define_video_flags() -> tuple[str, ...]:
    from nst_tf.commands.video import VideoSettings  # pylint: disable=import-outside-toplevel
    from nst_tf.settings.config import RECIPE, RUNTIME  # pylint: disable=import-outside-toplevel

    for name, default, help_text in _VIDEO_IO:
        _define(name, default, help_text, str)
    shared = tuple(Config().of(RECIPE, RUNTIME)) + _VIDEO_SHARED
    # A trained model (--model, --refine_steps) is not yet supported for videos.
    skipped = ("checkpoint_every", "resume", "refine_steps")
    shared = tuple(name for name in shared if name not in skipped)
    return (
        tuple(name for name, *_ in _VIDEO_IO)
        + define_preset_flag()
        + define_flags(shared)
        + define_flags(None, VideoSettings)
    )


def _video_main(argv: list[str]) -> int:
    if len(argv) > 1:
        return _positional(argv)

    def body():
        from nst_tf.commands.video import VideoSettings, run_video  # pylint: disable=C0415

        settings = config_from_flags(VideoSettings)
        run_video(config_from_flags(), settings, FLAGS.input, FLAGS.output)

    return _guarded(body)


def main() -> None:
    """Entry point of `nst-tf`."""
    _run(_stylize_main, define_preset_flag() + define_flags())


def export_main() -> None:
    """Entry point of `nst-tf-export`."""
    _run(_export_main, _define_export_flags())


def video_main() -> None:
    """Entry point of `nst-tf-video`."""
    _run(_video_main, _define_video_flags())
