"""Video without flicker: frames stylised in turn, each held to the previous one along the
optical flow (Ruder, Dosovitskiy & Brox, "Artistic style transfer for videos", 2016).

Each frame after the first starts from the previous stylised frame warped along the flow
(OpenCV's DIS flow, computed on the content frames) and is held to it by a temporal loss
wherever the flow is reliable: where the forward and backward flows agree and no motion
boundary runs. One Stylizer serves the whole clip, so its step is compiled once per frame
size. Finished frames are written atomically to a work directory beside the output; the
same command again continues after the last finished frame, and the video is assembled
at the end (with the input's audio track).
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import os
import time
from collections.abc import Callable

import numpy as np
from absl import logging

from nst_tf.core.flow import temporal_target
from nst_tf.errors import ConfigError, ImageError, Interrupted, OutputError
from nst_tf.io import images
from nst_tf.io.clips import VIDEO_EXTENSIONS, content_key, open_clip, write_video
from nst_tf.io.paths import file_sha256, read_json_object, shown
from nst_tf.model.weights import find_weights
from nst_tf.settings import keys
from nst_tf.settings.config import INIT_KEYWORDS, INPUT, RECIPE, Config, settings_of
from nst_tf.settings.video import VideoSettings


def work_dir_for(output: str) -> str:
    """Where finished frames wait until the video is assembled: OUT.mp4 -> OUT.mp4.frames/."""
    return os.path.abspath(output).rstrip(os.sep) + ".frames"


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


MARKER = ".nst_tf_video.json"


_MAX_MARKER_BYTES = 4096


def check_work_dir(work: str, recipe: str | None = None) -> dict:
    """Refuses a work folder this program did not make, or made with other settings: only
    an empty one or one holding our marker is ever written into or removed.

    Args:
        work: The work folder (it may not exist).
        recipe: The run's recipe key; None to check only that the folder is ours.

    Returns:
        The marker's contents ({} for a new or empty folder).

    Raises:
        OutputError: `work` is a file, or a non-empty folder without our marker, or a
            marker that is not ours (read as untrusted: a regular file, small, JSON).
        ConfigError: the frames in it were made with other settings.
    """
    if not os.path.lexists(work):
        return {}
    if not os.path.isdir(work) or os.path.islink(work):
        raise OutputError(f"{shown(work)} is in the way and is not a folder nst_tf made; move it")
    marker = os.path.join(work, MARKER)
    if not os.path.lexists(marker):
        if os.listdir(work):
            raise OutputError(
                f"{shown(work)} holds files nst_tf did not make (no {MARKER}); move them, or "
                "give another --output"
            )
        return {}
    saved = read_json_object(marker, OutputError, _MAX_MARKER_BYTES)
    if saved is None or not all(isinstance(saved.get(key), str) for key in ("key", "input_sha256")):
        raise OutputError(
            f"{shown(marker)} is not the marker nst_tf writes; move {shown(work)} away, or "
            "give another --output"
        )
    if recipe is not None and saved["key"] != recipe:
        raise ConfigError(
            f"{shown(work)} holds frames made with other settings; delete it to start "
            "again, or run with the settings that made them"
        )
    return saved


def _claim_work_dir(work: str, recipe: str, content: str) -> None:
    """Makes or adopts the work folder for this recipe and clip.

    Frames of the same recipe but another clip (the file was replaced) are removed, so
    the run starts again instead of mixing two clips; frames of another recipe are refused.
    """
    saved = check_work_dir(work, recipe)
    os.makedirs(work, exist_ok=True)
    if saved.get("input_sha256") == content:
        return
    stale = glob.glob(os.path.join(work, "frame_*.png"))
    if stale:
        logging.warning("the input changed since %s was started; starting again", shown(work))
    for path in stale:
        os.remove(path)
    with images.atomic_write(os.path.join(work, MARKER), "w") as f:
        json.dump({"key": recipe, "input_sha256": content}, f)


def _remove_work(work: str, ours: list[str]) -> None:
    """Removes the files we wrote in the work folder, then the folder if nothing else is."""
    for path in ours:
        if os.path.exists(path):
            os.remove(path)
    try:
        os.rmdir(work)
    except OSError:
        logging.warning("left %s: it holds files nst_tf did not write", shown(work))


@dataclasses.dataclass
class FrameProgress:
    """What stylize_video reports after each frame.

    Attributes:
        index: The frame's index in the clip's selection (0 = the first frame taken).
        total: How many frames the run covers.
        losses: The frame's final loss terms.
        seconds: Wall time of this frame.
        image: The stylised frame [H, W, 3] float32.
    """

    index: int
    total: int
    losses: dict[str, float]
    seconds: float
    image: np.ndarray


@dataclasses.dataclass
class VideoResult:
    """What stylize_video made.

    Attributes:
        output: The video file or frames folder written.
        frames: How many frames it holds.
        earlier: How many of them an earlier, interrupted run had made.
    """

    output: str
    frames: int
    earlier: int

    def __str__(self) -> str:
        earlier = f", {self.earlier} of them from an earlier run" if self.earlier else ""
        return f"{shown(self.output)} ({self.frames} frames{earlier})"


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
    clip = open_clip(input_path)
    count = clip.taken(settings.start, settings.frames)
    frames_in = clip.read(settings.start, settings.frames, config.size)
    first = next(frames_in, None)
    if first is None:
        raise ImageError(f"--input={input_path!r} has no frame at --start={settings.start}")
    to_folder = not os.path.splitext(output)[1]
    work = output if to_folder else work_dir_for(output)
    recipe = _recipe_key(config, settings, find_weights(config.vgg_weights).sha256)
    _claim_work_dir(work, recipe, content_key(clip))
    marker = os.path.join(work, MARKER)
    if stylizer is None:
        stylizer = Stylizer(config, temporal_weight=settings.temporal_weight)
    done = _finished_frames(work)
    previous_content = previous_output = None
    for index, frame in enumerate(itertools.chain([first], frames_in)):
        content = np.asarray(frame, np.float32)
        path = os.path.join(work, f"frame_{index:06d}.png")
        if index < done:
            previous_content, previous_output = content, images.load_image(path)
            continue
        begin = time.perf_counter()
        history = []
        kwargs = {}
        if previous_output is not None:
            kwargs = _temporal_kwargs(settings, content, previous_content, previous_output)
        result = stylizer.stylize(content, style, callbacks=[history.append, *callbacks], **kwargs)
        images.save_image(result, path)
        previous_content, previous_output = content, images.load_image(path)
        on_frame(
            FrameProgress(
                index,
                count or 0,
                history[-1].losses if history else {},
                time.perf_counter() - begin,
                result,
            )
        )
    frames = sorted(glob.glob(os.path.join(work, "frame_*.png")))
    if not to_folder:
        fps = settings.fps or clip.fps
        audio = None
        if clip.audio:
            audio = (clip.path, settings.start / clip.fps, len(frames) / clip.fps)
        write_video(frames, output, fps, audio)
        _remove_work(work, frames + [marker])
    return VideoResult(output, len(frames), min(done, len(frames)))


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


def _finished_frames(work: str) -> int:
    """How many frames in a row, from the first, are already in the work directory."""
    count = 0
    while os.path.exists(os.path.join(work, f"frame_{count:06d}.png")):
        count += 1
    return count


def run_video(config: Config, settings: VideoSettings, input_path: str, output: str) -> str:
    """The nst-tf-video command's work: checks, loads, stylises every frame, assembles.

    Every mistake in the settings, paths and style is reported before TensorFlow loads.
    A progress bar over frames shows the rate and the time left; with config.logdir,
    TensorBoard gets each frame's final losses and every config.snapshot_every-th frame.
    Ctrl-C abandons the frame in flight: finished frames stay in the work directory, and
    the same command continues after them.

    Returns:
        The output path.

    Raises:
        NstError: a user mistake, in one line.
        Interrupted: stopped by a signal (its `output` names the work directory).
    """
    from nst_tf.commands import preflight  # pylint: disable=import-outside-toplevel
    from nst_tf.io.paths import Written, check_no_overlap, check_writable_directory

    if not input_path or not output:
        raise ConfigError("give --input=CLIP.mp4|FRAMES_DIR and --output=OUT.mp4|OUT_DIR")
    settings.validate()
    config, style_folders = preflight.check_settings(
        dataclasses.replace(config, checkpoint_every=0)
    )
    check_video_config(config)
    clip = open_clip(input_path)
    total = clip.taken(settings.start, settings.frames)
    source = find_weights(config.vgg_weights)
    to_folder = not os.path.splitext(output)[1]
    if not to_folder and os.path.splitext(output)[1].lower() not in VIDEO_EXTENSIONS:
        raise OutputError(
            f"--output={shown(output)}: unknown video format; use "
            f"{', '.join(VIDEO_EXTENSIONS)}, or a folder name without an extension for frames"
        )
    written = [Written("output", output, directory=to_folder)]
    written.append(Written("logdir", config.logdir, directory=True))
    if not to_folder:
        written.append(Written("output", work_dir_for(output), directory=True))
        if os.path.isdir(output):
            raise OutputError(
                f"--output={shown(output)} is a folder; give a video file, or a folder name "
                "without an extension for PNG frames"
            )
    inputs = [("input", clip.path), ("vgg_weights", source.path)]
    inputs += [("style", path) for path in config.style_paths()]
    inputs += [("style_targets", config.style_targets)] if config.style_targets else []
    check_no_overlap(written, inputs, [("style", folder) for folder in style_folders])
    check_work_dir(
        output if to_folder else work_dir_for(output),
        _recipe_key(config, settings, source.sha256),
    )
    check_writable_directory(
        output if to_folder else os.path.dirname(os.path.abspath(output)), "output"
    )
    if config.logdir:
        check_writable_directory(config.logdir, "logdir")
    # The same reading and style-targets check as nst-tf's and nst-tf-batch's.
    _, style, _, _ = preflight.read_style(config, source, content=False)
    style = getattr(style, "grams", style)
    from nst_tf.commands.run import SignalGuard, _quiet_stderr  # pylint: disable=C0415

    # TensorFlow loads only now, every mistake reported first; its C++ start-up banner
    # would bury the progress bar.
    with _quiet_stderr():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

    tf.get_logger().setLevel("WARNING")
    from nst_tf.engine.monitoring import Monitor, run_name  # pylint: disable=C0415
    from nst_tf.engine.stylizer import Stylizer  # pylint: disable=import-outside-toplevel
    from nst_tf.model.features import FeatureExtractor  # pylint: disable=import-outside-toplevel

    model = FeatureExtractor(config.layers, source, config.precision, config.pooling)
    stylizer = Stylizer(config, model, temporal_weight=settings.temporal_weight)
    monitor = Monitor(config.logdir, 0, run_name(input_path, config.style))
    bar = _progress_bar(total)

    def on_frame(progress: FrameProgress) -> None:
        bar.update(1)
        monitor.frame(progress.index, progress.losses, progress.seconds)
        if config.snapshot_every and progress.index % config.snapshot_every == 0:
            with monitor.writer.as_default(step=progress.index):
                monitor.snapshot(progress.image)

    try:
        with SignalGuard() as guard:
            made = stylize_video(
                config, settings, input_path, output, style, stylizer, on_frame, [guard]
            )
    except Interrupted as stop:
        work = output if to_folder else work_dir_for(output)
        stop.saved = (
            f"the frame in flight was dropped; {_finished_frames(work)} finished frames are "
            f"in {shown(work)}; run the same command to continue after them"
        )
        raise
    finally:
        bar.close()
        monitor.close()
    logging.info("wrote %s", made)  # after the bar is closed, on a line of its own
    return output


def _progress_bar(total: int | None):
    import tqdm  # pylint: disable=import-outside-toplevel

    return tqdm.tqdm(total=total, unit="frame", desc="frames", dynamic_ncols=True)
