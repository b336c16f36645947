"""Command line `nst-tf-video`: its flags and main; the run itself is nst_tf.commands.video."""

from __future__ import annotations

from nst_tf.commands import common
from nst_tf.commands.flags import (
    FLAGS,
    config_from_flags,
    define_flag,
    define_flags,
    define_preset_flag,
)
from nst_tf.settings.config import RECIPE, RUNTIME, setting_fields
from nst_tf.settings.video import VideoSettings

# nst-tf-video: its input and output, then every nst-tf setting that changes the result
# or how it is computed, then the video settings.
_VIDEO_IO = (
    ("input", None, "The clip (a video file ffmpeg reads) or a folder of PNG/JPEG frames."),
    ("output", None, "The video to write (.mp4...), or a folder (no extension) for PNG frames."),
)
_VIDEO_SHARED = (
    "style",
    "style_targets",
    "model",
    "vgg_weights",
    "logdir",
    "snapshot_every",
    "log_every",
)


def define_video_flags() -> tuple[str, ...]:
    """Defines nst-tf-video's flags; returns their names."""
    for name, default, help_text in _VIDEO_IO:
        define_flag(name, default, help_text, str)
    shared = tuple(
        field.name for field in setting_fields() if field.metadata["lifetime"] in (RECIPE, RUNTIME)
    )
    shared += _VIDEO_SHARED
    # A frame's run is short and the work folder is what resumes a video.
    skipped = ("checkpoint_every", "resume")
    shared = tuple(name for name in shared if name not in skipped)
    return (
        tuple(name for name, *_ in _VIDEO_IO)
        + define_preset_flag()
        + define_flags(shared)
        + define_flags(None, VideoSettings)
    )


def _video_main(argv: list[str]) -> int:
    if len(argv) > 1:
        return common.unexpected_arguments(argv)

    def body():
        # Imported here: a missing video extra (OpenCV, ffmpeg) is then one line, not a
        # traceback (common.guarded names the extra to install).
        from nst_tf.commands.video import run_video  # pylint: disable=C0415

        settings = config_from_flags(VideoSettings)
        given = {name for name in FLAGS if FLAGS[name].present}
        run_video(config_from_flags(), settings, FLAGS.input, FLAGS.output, given)

    return common.guarded(body)


def main() -> None:
    """Entry point of `nst-tf-video`."""
    common.run(_video_main, define_video_flags())
