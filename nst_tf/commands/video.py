"""Video without flicker: frames stylised in turn, each held to the previous one along the
optical flow (Ruder, Dosovitskiy & Brox, "Artistic style transfer for videos", 2016).

Each frame after the first starts from the previous stylised frame warped along the flow
(OpenCV's DIS flow, computed on the content frames) and is held to it by a temporal loss
wherever the flow is reliable: where the forward and backward flows agree and no motion
boundary runs. One Stylizer serves the whole clip, so its step is compiled once per frame
size. Finished frames are written atomically to a work directory beside the output; the
same command again continues after the last finished frame, and the video is assembled
at the end (with the input's audio track): commands.video_frames, the loop this path and
the trained network's (commands.model_video) share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection

from nst_tf.commands.video_frames import (  # noqa: F401  (re-exported: the work folder)
    MARKER,
    FrameProgress,
    VideoResult,
    check_video_paths,
    check_work_dir,
    load_tensorflow,
    stylize_frames,
    watch_frames,
    work_dir_for,
)
from nst_tf.core.flow import temporal_target
from nst_tf.errors import ConfigError
from nst_tf.io.clips import open_clip
from nst_tf.io.paths import file_sha256, shown
from nst_tf.model.weights import find_weights
from nst_tf.settings import keys
from nst_tf.settings.config import INIT_KEYWORDS, INPUT, RECIPE, Config, settings_of
from nst_tf.settings.video import VideoSettings


def _recipe_key(config: Config, settings: VideoSettings, weights_sha256: str) -> str:
    """The frames' result key (nst_tf.settings.keys, the one rule for resume, batch and
    video): the recipe, the style files' bytes, the weights, and the video's own settings
    that shape or pick the frames. Frames of other settings never mix; the clip's own
    bytes are recorded beside it (content_key)."""
    files = keys.input_files(config)
    inputs = {name: [file_sha256(path) for path in paths] for name, paths in files.items()}
    record = keys.key_record(
        keys.recipe_of(config),
        inputs,
        weights_sha256,
        video=settings_of(settings, RECIPE, INPUT),
    )
    return keys.result_key(record)


def check_video_config(config: Config) -> None:
    """Refuses the settings nst-tf has that would not do in a video what they do there.

    Raises:
        ConfigError: naming the setting and what to use instead.
    """
    if config.style_mask:
        raise ConfigError(
            "nst-tf-video takes no --style_mask: a mask is drawn for one picture, and the "
            "frames move; stylise the clip once per style region, or drop the mask"
        )
    if config.init not in INIT_KEYWORDS:
        raise ConfigError(
            f"--init={shown(config.init)}: nst-tf-video starts the first frame from content, "
            "noise or style, and the others as --frame_init says; a start image has one "
            "frame's picture, so it is not taken"
        )


def stylize_video(
    config: Config,
    settings: VideoSettings,
    input_path: str,
    output: str,
    style,
    stylizer=None,
    on_frame: Callable[[FrameProgress], None] = lambda progress: None,
    callbacks=(),
) -> VideoResult:
    """Stylises a clip frame by frame, resumably, and assembles the output.

    Args:
        config: The stylisation settings (size, steps, weights, layers...); config.steps and
            config.min_size shape the first frame; settings.frame_steps the others.
        settings: The video settings.
        input_path: A video file or a folder of frames.
        output: A video file (.mp4...) or a folder for PNG frames.
        style: What Stylizer.stylize takes as style (images, or targets).
        stylizer: A Stylizer to use (built from config with the temporal weight if None).
        on_frame: Called after every finished frame.
        callbacks: Passed to each frame's Stylizer.stylize (per-step progress).

    Returns:
        What was written: the output, its frame count, how many were resumed.
    """
    from nst_tf.engine.stylizer import Stylizer  # pylint: disable=import-outside-toplevel

    settings.validate()
    check_video_config(config)
    recipe = _recipe_key(config, settings, find_weights(config.vgg_weights).sha256)
    if stylizer is None:
        stylizer = Stylizer(config, temporal_weight=settings.temporal_weight)

    def make_frame(content, previous):
        history = []
        kwargs = _temporal_kwargs(settings, content, *previous) if previous else {}
        result = stylizer.stylize(content, style, callbacks=[history.append, *callbacks], **kwargs)
        return result, history[-1].losses if history else {}

    return stylize_frames(settings, input_path, output, config.size, recipe, make_frame, on_frame)


def _temporal_kwargs(settings, content, previous_content, previous_output) -> dict:
    """The start image, temporal target and schedule of a frame after the first."""
    warped, weights = temporal_target(previous_output, content, previous_content)
    start = {"warped": warped, "previous": previous_output, "content": None}[settings.frame_init]
    kwargs = {"schedule": [(max(content.shape[:2]), settings.frame_steps)]}
    if start is not None:
        kwargs["start"] = start
    if settings.temporal_weight:
        kwargs["temporal"] = (warped, weights)
    return kwargs


def run_video(
    config: Config,
    settings: VideoSettings,
    input_path: str,
    output: str,
    given: Collection[str] | None = None,
) -> str:
    """The nst-tf-video command's work: checks, loads, stylises every frame, assembles.

    Every mistake in the settings, paths and style is reported before TensorFlow loads.
    A progress bar over frames shows the rate and the time left; with config.logdir,
    TensorBoard gets each frame's final losses and every config.snapshot_every-th frame.
    Ctrl-C abandons the frame in flight: finished frames stay in the work directory, and
    the same command continues after them. With config.model, the frames go through the
    trained network instead (commands.model_video).

    Args:
        config: The stylisation settings.
        settings: The video settings.
        input_path: A video file or a folder of frames.
        output: A video file (.mp4...) or a folder for PNG frames.
        given: The settings given on the command line (with --model, each is checked
            against the model's recipe); None: those that differ from their defaults.

    Returns:
        The output path.

    Raises:
        NstError: a user mistake, in one line.
        Interrupted: stopped by a signal (its `output` names the work directory).
    """
    from nst_tf.commands import preflight  # pylint: disable=import-outside-toplevel

    if not input_path or not output:
        raise ConfigError("give --input=CLIP.mp4|FRAMES_DIR and --output=OUT.mp4|OUT_DIR")
    settings.validate()
    config, style_folders = preflight.check_settings(
        dataclasses.replace(config, checkpoint_every=0)
    )
    if config.model:
        from nst_tf.commands.model_video import run_model_video  # pylint: disable=C0415

        return run_model_video(config, settings, input_path, output, style_folders, given)
    check_video_config(config)
    clip = open_clip(input_path)
    total = clip.taken(settings.start, settings.frames)
    source = find_weights(config.vgg_weights)
    reads = [("vgg_weights", source.path)] + [("style", path) for path in config.style_paths()]
    reads += [("style_targets", config.style_targets)] if config.style_targets else []
    recipe = _recipe_key(config, settings, source.sha256)
    check_video_paths(config.logdir, clip.path, output, reads, style_folders, recipe)
    # The same reading and style-targets check as nst-tf's and nst-tf-batch's.
    _, style, _, _ = preflight.read_style(config, source, content=False)
    style = getattr(style, "grams", style)
    load_tensorflow()
    from nst_tf.engine.stylizer import Stylizer  # pylint: disable=import-outside-toplevel
    from nst_tf.model.features import FeatureExtractor  # pylint: disable=import-outside-toplevel

    model = FeatureExtractor(config.layers, source, config.precision, config.pooling)
    stylizer = Stylizer(config, model, temporal_weight=settings.temporal_weight)

    def frames(on_frame, guard):
        return stylize_video(
            config, settings, input_path, output, style, stylizer, on_frame, [guard]
        )

    watch_frames(config, input_path, config.style, output, total, frames)
    return output
