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
import hashlib
import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator

import numpy as np
from absl import logging

from nst_tf.errors import ConfigError, ImageError, Interrupted, OutputError
from nst_tf.io import images
from nst_tf.io.paths import open_regular, shown
from nst_tf.settings.config import INPUT, OUTPUT, RECIPE, Config, setting, settings_of

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
# Containers the output may be (H.264 in each); anything else is refused before any work.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi")
FRAME_INITS = ("warped", "previous", "content")
FLOWS = ("dis",)


@dataclasses.dataclass
class VideoSettings:
    """What a video run adds to a Config; each setting is described once, in its field."""

    temporal_weight: float = setting(
        2e4,
        "Weight of the temporal loss holding each frame to the previous stylised frame "
        "warped along the flow, where the flow is reliable; 0 turns it off.",
        RECIPE,
    )
    frame_init: str = setting(
        "warped",
        "How frames after the first start: warped (the previous stylised frame warped "
        "along the flow), previous (unwarped), or content (each frame on its own).",
        RECIPE,
    )
    frame_steps: int = setting(
        30,
        "Iterations for every frame after the first, at the output size (the first frame "
        "gets the whole multi-scale schedule).",
        RECIPE,
    )
    flow: str = setting("dis", "Optical flow: dis (OpenCV's DIS, on the content frames).", RECIPE)
    fps: float | None = setting(
        None, "Frame rate of the output; default: the input's (24 for a frames folder).", OUTPUT
    )
    start: int = setting(0, "First frame to take, counted from 0.", INPUT)
    frames: int | None = setting(None, "How many frames to take; default: to the end.", INPUT)

    def validate(self) -> VideoSettings:
        """Checks the settings; returns them.

        Raises:
            ConfigError: naming the setting and what would work.
        """
        if not np.isfinite(self.temporal_weight) or self.temporal_weight < 0:
            raise ConfigError(
                f"--temporal_weight must be a finite number >= 0, got {self.temporal_weight}"
            )
        if self.frame_init not in FRAME_INITS:
            raise ConfigError(
                f"--frame_init={self.frame_init!r} is unknown; choose {', '.join(FRAME_INITS)}"
            )
        if self.flow not in FLOWS:
            raise ConfigError(f"--flow={self.flow!r} is unknown; choose {', '.join(FLOWS)}")
        if self.frame_steps <= 0:
            raise ConfigError(f"--frame_steps must be positive, got {self.frame_steps}")
        if self.fps is not None and not (np.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise ConfigError(f"--fps must be in (0, 1000], got {self.fps}")
        if self.start < 0:
            raise ConfigError(f"--start must be >= 0 (a frame index from 0), got {self.start}")
        if self.frames is not None and self.frames <= 0:
            raise ConfigError(f"--frames must be positive, got {self.frames}")
        return self


# --- reading and writing ------------------------------------------------------------------


@dataclasses.dataclass
class Clip:
    """An input clip: a video file or a folder of frames.

    Attributes:
        path: The file or folder.
        fps: Its frame rate (24 for a folder).
        frames: Frame files of a folder input; None for a video file.
        size: (width, height) its frames declare.
        audio: Whether a video file has an audio track.
    """

    path: str
    fps: float
    frames: list[str] | None = None
    size: tuple[int, int] = (0, 0)
    audio: bool = False

    def read(
        self, start: int = 0, count: int | None = None, longest: int | None = None
    ) -> Iterator[np.ndarray]:
        """Yields frames [H, W, 3] uint8 from index `start`, at most `count` of them.

        Args:
            start: The first frame's index.
            count: How many frames at most; None for all.
            longest: If given, a video file's frames come out of ffmpeg already scaled so
                their longest side is this, so a clip declaring huge frames never holds
                one at full size in memory.

        Raises:
            ImageError: ffmpeg fails on the clip part way (a truncated or corrupt file).
        """
        stop = None if count is None else start + count
        if self.frames is not None:
            for path in self.frames[start:stop]:
                yield images.to_uint8(images.load_image(path))
            return
        import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

        output_params = []
        if longest is not None:
            height, width = images.scaled_shape(self.size[1], self.size[0], longest)
            output_params = ["-vf", f"scale={width}:{height}:flags=lanczos"]
        try:
            reader = imageio_ffmpeg.read_frames(self.path, output_params=output_params)
            meta = next(reader)
            width, height = meta["size"]
            try:
                for index, data in enumerate(reader):
                    if stop is not None and index >= stop:
                        break
                    if index >= start:
                        yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
            finally:
                reader.close()
        except (OSError, RuntimeError, StopIteration) as err:
            raise ImageError(
                f"--input={shown(self.path)}: ffmpeg failed ({_last_line(err)})"
            ) from None


# The pixels a clip's frame may declare: the same bound as a still image's.
MAX_PIXELS = images.MAX_PIXELS


def _last_line(text) -> str:
    """The last non-empty line of ffmpeg's output (its own summary of what went wrong)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("===")]
    return lines[-1] if lines else "no output"


def probe(path: str) -> Clip:
    """Reads a video file's streams from ffmpeg's description of it, decoding nothing.

    Raises:
        ImageError: ffmpeg cannot read it, it is a still image, it has no video stream, or
            its frames have more than MAX_PIXELS pixels.
    """
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

    with open_regular(path, ImageError, f"--input={shown(path)}"):
        pass
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
        timeout=60,
    )
    label = f"--input={shown(path)}"
    container = re.search(r"^Input #0, (\S+?), from", result.stderr, re.M)
    if container is None:
        raise ImageError(f"{label} is not a video ffmpeg can read ({_last_line(result.stderr)})")
    # ffmpeg reads a lone JPEG or PNG as a one-frame "video" (its image demuxers).
    if container.group(1).endswith("_pipe") or container.group(1).startswith("image2"):
        raise ImageError(f"{label} is a still image ({container.group(1)}), not a video")
    streams = [line for line in result.stderr.splitlines() if line.lstrip().startswith("Stream #")]
    videos = [line for line in streams if "Video:" in line and "attached pic" not in line]
    if not videos:
        raise ImageError(f"{label} is not a video: it has no video stream")
    size = re.search(r", (\d+)x(\d+)", videos[0])
    if size is None:
        raise ImageError(f"{label}: ffmpeg gives no frame size for its video stream")
    width, height = int(size.group(1)), int(size.group(2))
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{label} declares {width}x{height} frames, more than {MAX_PIXELS} pixels; "
            "downscale it before using it"
        )
    fps = re.search(r"([\d.]+) fps", videos[0])
    return Clip(
        path,
        float(fps.group(1)) if fps and float(fps.group(1)) > 0 else 24.0,
        size=(width, height),
        audio=any("Audio:" in line for line in streams),
    )


def open_clip(path: str) -> Clip:
    """Opens a video file or a folder of PNG/JPEG frames (sorted by name).

    Raises:
        ImageError: nothing there, an empty folder, or not a video.
    """
    if os.path.isdir(path):
        frames = sorted(
            os.path.join(path, name)
            for name in os.listdir(path)
            if os.path.splitext(name)[1].lower() in FRAME_EXTENSIONS
        )
        if not frames:
            raise ImageError(f"--input={path!r} holds no PNG or JPEG frames")
        _check_same_size(frames)
        return Clip(path, 24.0, frames)
    if not os.path.isfile(path):
        raise ImageError(f"--input={path!r}: no such file or folder; check the path")
    return probe(path)


def _check_same_size(frames: list[str]) -> None:
    """Refuses a frames folder whose frames differ in size (read from their headers)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    sizes = {}
    for path in frames:
        try:
            with Image.open(path) as image:
                sizes.setdefault(image.size, path)
        except OSError:
            raise ImageError(f"{path!r} is not an image Pillow can read") from None
        if len(sizes) > 1:
            (a, first), (b, other) = sizes.items()
            raise ImageError(
                f"the frames differ in size: {first!r} is {a[0]}x{a[1]}, {other!r} is "
                f"{b[0]}x{b[1]}; give a folder of frames of one size"
            )


def write_video(
    frames: list[str], path: str, fps: float, audio: tuple[str, float, float] | None = None
) -> None:
    """Encodes frame files as H.264 into `path`, atomically, with a stretch of audio.

    Args:
        frames: The frame files in order.
        path: The .mp4 (or other ffmpeg container) to write.
        fps: Frame rate.
        audio: (file, start, seconds): the audio of `file` from `start` seconds, `seconds`
            long, goes with the frames; None for a silent video.

    Raises:
        OutputError: ffmpeg fails (in one line).
    """
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

    first = images.load_image(frames[0])
    height, width = first.shape[:2]
    directory = os.path.dirname(os.path.abspath(path))
    stem, ext = os.path.splitext(os.path.basename(path))
    temp = os.path.join(directory, f".{stem}.{os.getpid()}.tmp{ext}")
    silent = os.path.join(directory, f".{stem}.{os.getpid()}.video{ext}")
    try:
        writer = imageio_ffmpeg.write_frames(
            silent if audio else temp,
            (width, height),
            fps=fps,
            codec="libx264",
            quality=8,
            macro_block_size=2,
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(images.to_uint8(images.load_image(frame))))
        writer.close()
        if audio:
            _mux_audio(silent, audio, temp)
        os.replace(temp, path)
    except (OSError, RuntimeError) as err:
        raise OutputError(
            f"cannot write {shown(path)}: ffmpeg failed ({_last_line(err)})"
        ) from None
    finally:
        for leftover in (silent, temp):
            if os.path.exists(leftover):
                os.remove(leftover)


def _mux_audio(video_path: str, audio: tuple[str, float, float], output: str) -> None:
    """Writes `output`: the one video stream of `video_path` and a stretch of audio.

    The audio is re-encoded (AAC) so it starts on the first frame kept, not on the
    nearest packet before it.
    """
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

    source, start, seconds = audio
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", video_path]
    command += ["-ss", f"{start:.6f}", "-t", f"{seconds:.6f}", "-i", source]
    command += ["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", output]
    result = subprocess.run(
        command, capture_output=True, text=True, errors="replace", check=False, timeout=3600
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)


def has_audio(path: str) -> bool:
    """Whether a video file has an audio stream (as ffmpeg reports it)."""
    return probe(path).audio


# --- optical flow --------------------------------------------------------------------------


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2  # pylint: disable=import-outside-toplevel

    return cv2.cvtColor(images.to_uint8(frame), cv2.COLOR_RGB2GRAY)


def optical_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """DIS optical flow [H, W, 2] (dx, dy): where each pixel of `source` is in `target`."""
    import cv2  # pylint: disable=import-outside-toplevel

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_gray(source), _gray(target), None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Samples `image` at x + flow(x) for every pixel x (bilinear, edges repeated)."""
    import cv2  # pylint: disable=import-outside-toplevel

    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height))
    return cv2.remap(
        np.asarray(image, np.float32),
        grid_x + flow[..., 0],
        grid_y.astype(np.float32) + flow[..., 1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def consistency(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s reliability weights [H, W] in {0, 1} for frame t's pixels.

    `backward` maps frame t to t-1, `forward` maps t-1 to t. A pixel is unreliable where
    following the backward flow and then the forward flow does not come back (it was
    occluded in t-1: disocclusion), or where the backward flow changes sharply (a motion
    boundary).
    """
    forward_back = warp(forward, backward)
    round_trip = np.sum((backward + forward_back) ** 2, axis=-1)
    magnitude = np.sum(backward**2, axis=-1) + np.sum(forward_back**2, axis=-1)
    disoccluded = round_trip > 0.01 * magnitude + 0.5
    du_y, du_x = np.gradient(backward[..., 0])
    dv_y, dv_x = np.gradient(backward[..., 1])
    boundary = du_x**2 + du_y**2 + dv_x**2 + dv_y**2 > 0.01 * np.sum(backward**2, axis=-1) + 0.002
    return (~(disoccluded | boundary)).astype(np.float32)


def flicker(outputs: list[np.ndarray], contents: list[np.ndarray]) -> float:
    """Mean absolute difference (0..255) between each output frame and the previous output
    frame warped along the input's flow, over the pixels the consistency check keeps.

    Args:
        outputs: Stylised frames [H, W, 3], in order.
        contents: The content frames they were made from, same size.
    """
    total, count = 0.0, 0.0
    for t in range(1, len(outputs)):
        backward = optical_flow(contents[t], contents[t - 1])
        forward = optical_flow(contents[t - 1], contents[t])
        weights = consistency(backward, forward)[..., None]
        difference = np.abs(np.asarray(outputs[t], np.float32) - warp(outputs[t - 1], backward))
        total += float(np.sum(weights * difference))
        count += float(np.sum(weights)) * 3
    return total / max(count, 1.0)


# --- the run -------------------------------------------------------------------------------


def work_dir_for(output: str) -> str:
    """Where finished frames wait until the video is assembled: OUT.mp4 -> OUT.mp4.frames/."""
    return os.path.abspath(output).rstrip(os.sep) + ".frames"


def _recipe_key(config: Config, settings: VideoSettings) -> str:
    """A key of every setting that shapes the frames: frames from other settings never mix."""
    values = {"config": config.of(RECIPE, INPUT), "video": settings_of(settings, RECIPE, INPUT)}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def _file_sha256(path: str, digest=None):
    """Feeds a regular file's bytes into `digest` (a new sha256 if None) and returns it.

    Only a regular file is opened, and no more than the size it had when opened is read,
    so neither a FIFO nor a file that keeps growing can hold the run.
    """
    digest = digest or hashlib.sha256()
    with open_regular(path, ImageError) as file:
        left = os.fstat(file.fileno()).st_size
        while left > 0:
            chunk = file.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest


def content_key(clip: Clip) -> str:
    """The sha256 of a clip's bytes (of a folder's frame names and bytes, in order)."""
    if clip.frames is None:
        return _file_sha256(clip.path).hexdigest()
    digest = hashlib.sha256()
    for path in clip.frames:
        digest.update(os.path.basename(path).encode() + b"\0")
        _file_sha256(path, digest)
    return digest.hexdigest()


MARKER = ".nst_tf_video.json"


def check_work_dir(work: str) -> None:
    """Refuses a work folder this program did not make: only an empty one or one holding
    our marker is ever written into or removed.

    Raises:
        OutputError: `work` is a file, or a non-empty folder without our marker.
    """
    if not os.path.lexists(work):
        return
    if not os.path.isdir(work) or os.path.islink(work):
        raise OutputError(f"{shown(work)} is in the way and is not a folder nst_tf made; move it")
    if os.listdir(work) and not os.path.isfile(os.path.join(work, MARKER)):
        raise OutputError(
            f"{shown(work)} holds files nst_tf did not make (no {MARKER}); move them, or "
            "give another --output"
        )


def _claim_work_dir(work: str, recipe: str, content: str) -> None:
    """Makes or adopts the work folder for this recipe and clip.

    Frames of the same recipe but another clip (the file was replaced) are removed, so
    the run starts again instead of mixing two clips; frames of another recipe are refused.
    """
    check_work_dir(work)
    os.makedirs(work, exist_ok=True)
    marker = os.path.join(work, MARKER)
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("key") != recipe:
            raise ConfigError(
                f"{shown(work)} holds frames made with other settings; delete it to start "
                "again, or run with the settings that made them"
            )
        if saved.get("input_sha256") == content:
            return
        stale = glob.glob(os.path.join(work, "frame_*.png"))
        if stale:
            logging.warning("the input changed since %s was started; starting again", shown(work))
        for path in stale:
            os.remove(path)
    with images.atomic_write(marker, "w") as f:
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


def stylize_video(
    config: Config,
    settings: VideoSettings,
    input_path: str,
    output: str,
    style,
    stylizer=None,
    on_frame: Callable[[FrameProgress], None] = lambda progress: None,
    callbacks=(),
) -> str:
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
        The output path.
    """
    from nst_tf.engine.stylizer import Stylizer  # pylint: disable=import-outside-toplevel

    settings.validate()
    clip = open_clip(input_path)
    total = len(clip.frames) if clip.frames is not None else None
    frames_in = clip.read(settings.start, settings.frames, config.size)
    first = next(frames_in, None)
    if first is None:
        raise ImageError(f"--input={input_path!r} has no frame at --start={settings.start}")
    to_folder = not os.path.splitext(output)[1]
    work = output if to_folder else work_dir_for(output)
    _claim_work_dir(work, _recipe_key(config, settings), content_key(clip))
    marker = os.path.join(work, MARKER)
    if stylizer is None:
        stylizer = Stylizer(config, temporal_weight=settings.temporal_weight)
    done = _finished_frames(work)
    previous_content = previous_output = None
    count = settings.frames
    if total is not None:
        count = min(count or total, total - settings.start)
    for index, frame in enumerate(itertools.chain([first], frames_in)):
        content = np.asarray(frame, np.float32)
        height, width = images.scaled_shape(*content.shape[:2], config.size)
        content = _resize(content, height, width)
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
    return output


def _temporal_kwargs(settings, content, previous_content, previous_output) -> dict:
    """The start image, temporal target and schedule of a frame after the first."""
    backward = optical_flow(content, previous_content)
    forward = optical_flow(previous_content, content)
    warped = np.clip(warp(previous_output, backward), 0, 255)
    weights = consistency(backward, forward)
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


def _resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    if frame.shape[:2] == (height, width):
        return frame
    from PIL import Image  # pylint: disable=import-outside-toplevel

    pil = Image.fromarray(images.to_uint8(frame)).resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(pil, np.float32)


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
    from nst_tf.io.inputs import expand_styles, load_inputs  # pylint: disable=C0415
    from nst_tf.io.paths import Written, check_no_overlap, check_writable_directory, shown
    from nst_tf.model.weights import find_weights  # pylint: disable=import-outside-toplevel
    from nst_tf.settings.config import validate  # pylint: disable=import-outside-toplevel

    if not input_path or not output:
        raise ConfigError("give --input=CLIP.mp4|FRAMES_DIR and --output=OUT.mp4|OUT_DIR")
    settings.validate()
    config = expand_styles(validate(dataclasses.replace(config, checkpoint_every=0)))
    clip = open_clip(input_path)
    source = find_weights(config.vgg_weights)
    to_folder = not os.path.splitext(output)[1]
    if not to_folder and os.path.splitext(output)[1].lower() not in VIDEO_EXTENSIONS:
        raise OutputError(
            f"--output={shown(output)}: unknown video format; use "
            f"{', '.join(VIDEO_EXTENSIONS)}, or a folder name without an extension for frames"
        )
    written = [Written("output", output, directory=to_folder)]
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
    check_no_overlap(written, inputs)
    check_work_dir(output if to_folder else work_dir_for(output))
    check_writable_directory(
        output if to_folder else os.path.dirname(os.path.abspath(output)), "output"
    )
    _, style, _ = load_inputs(dataclasses.replace(config, content=None))
    style = getattr(style, "grams", style)
    from nst_tf.commands.run import SignalGuard  # pylint: disable=import-outside-toplevel
    from nst_tf.engine.monitoring import Monitor, run_name  # pylint: disable=C0415
    from nst_tf.engine.stylizer import Stylizer  # pylint: disable=import-outside-toplevel
    from nst_tf.model.features import FeatureExtractor  # pylint: disable=import-outside-toplevel

    model = FeatureExtractor(config.layers, source, config.precision, config.pooling)
    stylizer = Stylizer(config, model, temporal_weight=settings.temporal_weight)
    monitor = Monitor(config.logdir, 0, run_name(input_path, config.style))
    bar = _progress_bar(settings, clip)

    def on_frame(progress: FrameProgress) -> None:
        bar.update(1)
        monitor.frame(progress.index, progress.losses, progress.seconds)
        if config.snapshot_every and progress.index % config.snapshot_every == 0:
            with monitor.writer.as_default(step=progress.index):
                monitor.snapshot(progress.image)

    try:
        with SignalGuard() as guard:
            stylize_video(config, settings, input_path, output, style, stylizer, on_frame, [guard])
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
    logging.info("wrote %s (%d frames)", shown(output), bar.n)
    return output


def _progress_bar(settings: VideoSettings, clip: Clip):
    import tqdm  # pylint: disable=import-outside-toplevel

    total = None
    if clip.frames is not None:
        total = len(clip.frames[settings.start :])
        total = min(total, settings.frames) if settings.frames else total
    elif settings.frames:
        total = settings.frames
    return tqdm.tqdm(total=total, unit="frame", desc="frames", dynamic_ncols=True)
