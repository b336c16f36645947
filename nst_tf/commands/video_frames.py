"""The frame loop every nst-tf-video run shares, optimised or through a trained network:
the work folder beside the output (made, adopted or refused by its result key), each
unfinished frame made and written atomically, the video assembled with the input's audio,
and the progress bar, TensorBoard and Ctrl-C around it.
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

from nst_tf.errors import ConfigError, ImageError, Interrupted, OutputError
from nst_tf.io import images
from nst_tf.io.clips import VIDEO_EXTENSIONS, content_key, open_clip, write_video
from nst_tf.io.paths import read_json_object, shown
from nst_tf.settings.files import OutputFiles
from nst_tf.settings.video import VideoSettings


def work_dir_for(output: str) -> str:
    """Where finished frames wait until the video is assembled: OUT.mp4 -> OUT.mp4.frames/."""
    return os.path.abspath(output).rstrip(os.sep) + ".frames"


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
            f"{shown(work)} holds frames made with other settings (or another --model, or "
            "without one); delete it to start again, or run with the settings that made them"
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


def stylize_frames(
    settings: VideoSettings,
    input_path: str,
    output: str,
    size: int,
    recipe: str,
    make_frame: Callable,
    on_frame: Callable[[FrameProgress], None],
) -> VideoResult:
    """The frame loop of every video: the work folder claimed for `recipe`, each frame not
    yet finished made, written atomically and reported, then the video assembled.

    Args:
        settings: The video settings (which frames, the output's fps).
        input_path: A video file or a folder of frames.
        output: A video file (.mp4...) or a folder for PNG frames.
        size: The frames' long side.
        recipe: The frames' result key (what the work folder is resumed by).
        make_frame: (content, previous) -> (image, losses); previous is None for the
            first frame, else (its content, its stylised frame as written).
        on_frame: Called after every finished frame.
    """
    clip = open_clip(input_path)
    count = clip.taken(settings.start, settings.frames)
    frames_in = clip.read(settings.start, settings.frames, size)
    first = next(frames_in, None)
    if first is None:
        raise ImageError(f"--input={input_path!r} has no frame at --start={settings.start}")
    to_folder = not os.path.splitext(output)[1]
    work = output if to_folder else work_dir_for(output)
    _claim_work_dir(work, recipe, content_key(clip))
    done = _finished_frames(work)
    previous = None
    for index, frame in enumerate(itertools.chain([first], frames_in)):
        content = np.asarray(frame, np.float32)
        path = os.path.join(work, f"frame_{index:06d}.png")
        if index < done:
            previous = content, images.load_image(path)
            continue
        begin = time.perf_counter()
        result, losses = make_frame(content, previous)
        images.save_image(result, path)
        # The next frame follows this one as written (and as a resumed run reads it).
        previous = content, images.load_image(path)
        on_frame(FrameProgress(index, count or 0, losses, time.perf_counter() - begin, result))
    frames = sorted(glob.glob(os.path.join(work, "frame_*.png")))
    if not to_folder:
        fps = settings.fps or clip.fps
        audio = None
        if clip.audio:
            audio = (clip.path, settings.start / clip.fps, len(frames) / clip.fps)
        write_video(frames, output, fps, audio)
        _remove_work(work, frames + [os.path.join(work, MARKER)])
    return VideoResult(output, len(frames), min(done, len(frames)))


def _finished_frames(work: str) -> int:
    """How many frames in a row, from the first, are already in the work directory."""
    count = 0
    while os.path.exists(os.path.join(work, f"frame_{count:06d}.png")):
        count += 1
    return count


def check_video_paths(
    logdir: str | None,
    clip: str,
    output: str,
    reads: list[tuple[str, str]],
    style_folders: list[str],
    recipe: str,
) -> None:
    """A video run's written paths against its read ones, and its work folder, before
    any work.

    Args:
        logdir: The TensorBoard folder, or None.
        clip: The input clip's path.
        output: The video file or frames folder to write.
        reads: (flag, path) of every other file the run reads.
        style_folders: The --style entries that were folders.
        recipe: The frames' result key.

    Raises:
        OutputError: an unknown video format, a written path that overlaps a read one
            or cannot be written, a work folder that is not ours.
        ConfigError: the work folder holds frames made with other settings.
    """
    from nst_tf.io.paths import Written, check_no_overlap, check_writable_directory

    to_folder = not os.path.splitext(output)[1]
    if not to_folder and os.path.splitext(output)[1].lower() not in VIDEO_EXTENSIONS:
        raise OutputError(
            f"--output={shown(output)}: unknown video format; use "
            f"{', '.join(VIDEO_EXTENSIONS)}, or a folder name without an extension for frames"
        )
    work = output if to_folder else work_dir_for(output)
    written = [Written("output", output, directory=to_folder)]
    written.append(Written("logdir", logdir, directory=True))
    if not to_folder:
        written.append(Written("output", work, directory=True))
        if os.path.isdir(output):
            raise OutputError(
                f"--output={shown(output)} is a folder; give a video file, or a folder name "
                "without an extension for PNG frames"
            )
    check_no_overlap(
        written, [("input", clip), *reads], [("style", folder) for folder in style_folders]
    )
    check_work_dir(work, recipe)
    check_writable_directory(work if to_folder else os.path.dirname(work), "output")
    if logdir:
        check_writable_directory(logdir, "logdir")


def load_tensorflow() -> None:
    """Imports TensorFlow once every mistake is reported, its C++ start-up banner
    hidden: it would bury the progress bar."""
    from nst_tf.commands.run import _quiet_stderr  # pylint: disable=C0415

    with _quiet_stderr():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

    tf.get_logger().setLevel("WARNING")


def watch_frames(
    outputs: OutputFiles,
    input_path: str,
    style: str | None,
    output: str,
    total: int | None,
    frames: Callable[[Callable[[FrameProgress], None], Callable], VideoResult],
) -> VideoResult:
    """Runs `frames(on_frame, guard)` under a progress bar over frames, TensorBoard and a
    SignalGuard (a step callback): the frame in flight is dropped on Ctrl-C, the ones
    finished kept and named.

    Args:
        outputs: The run's outputs (its --logdir and --snapshot_every).
        input_path: The clip, and style: the --style (they name the TensorBoard run).
        style: See input_path.
        output: The video file or frames folder.
        total: How many frames the run covers (None: unknown).
        frames: Makes the frames: (on_frame, guard) -> what stylize_frames returns.

    Raises:
        Interrupted: stopped by a signal (`saved` says where the finished frames are).
    """
    from nst_tf.commands.run import SignalGuard  # pylint: disable=import-outside-toplevel
    from nst_tf.engine.monitoring import Monitor, run_name  # pylint: disable=C0415

    monitor = Monitor(outputs.logdir, 0, run_name(input_path, style))
    bar = _progress_bar(total)

    def on_frame(progress: FrameProgress) -> None:
        bar.update(1)
        monitor.frame(progress.index, progress.losses, progress.seconds)
        if outputs.snapshot_every and progress.index % outputs.snapshot_every == 0:
            with monitor.writer.as_default(step=progress.index):
                monitor.snapshot(progress.image)

    try:
        with SignalGuard() as guard:
            made = frames(on_frame, guard)
    except Interrupted as stop:
        work = output if not os.path.splitext(output)[1] else work_dir_for(output)
        stop.saved = (
            f"the frame in flight was dropped; {_finished_frames(work)} finished frames are "
            f"in {shown(work)}; run the same command to continue after them"
        )
        raise
    finally:
        bar.close()
        monitor.close()
    logging.info("wrote %s", made)  # after the bar is closed, on a line of its own
    return made


def _progress_bar(total: int | None):
    import tqdm  # pylint: disable=import-outside-toplevel

    return tqdm.tqdm(total=total, unit="frame", desc="frames", dynamic_ncols=True)
