"""Clips in and out: probing, reading and writing video files and frame folders through
ffmpeg (the one imageio-ffmpeg ships), with their audio.

A clip is untrusted: ffmpeg describes it before anything is decoded (streams, frame size,
still images refused), frames larger than MAX_PIXELS are refused and the others come out
of ffmpeg already scaled to the size they are used at, and ffmpeg's failures are reported
in one line (its own last line, not its banner).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import secrets
import subprocess
from collections.abc import Iterator

import numpy as np

from nst_tf.errors import ConfigError, ImageError, OutputError
from nst_tf.io import images
from nst_tf.io.paths import check_regular_file, open_regular, shown

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")  # the only Pillow plugins a frame's header is read with
# Containers the output may be (H.264 in each); anything else is refused before any work.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi")
# The pixels a clip's frame may declare: the same bound as a still image's.
MAX_PIXELS = images.MAX_PIXELS


@dataclasses.dataclass
class Clip:
    """An input clip: a video file or a folder of frames.

    Attributes:
        path: The file or folder.
        fps: Its frame rate (24 for a folder).
        frames: Frame files of a folder input; None for a video file.
        size: (width, height) its frames are shown at (a video's rotation applied).
        audio: Whether a video file has an audio track.
        count: How many frames it has (a video file's from its packets, not decoded).
    """

    path: str
    fps: float
    frames: list[str] | None = None
    size: tuple[int, int] = (0, 0)
    audio: bool = False
    count: int | None = None

    def taken(self, start: int, frames: int | None) -> int | None:
        """How many frames `start` and `frames` (None: to the end) take from the clip;
        None when ffmpeg did not give a video's length.

        Raises:
            ConfigError: `start` is past the clip's last frame, or `frames` runs past its end.
        """
        length = len(self.frames) if self.frames is not None else self.count
        if length is None:
            return frames
        if start >= length:
            raise ConfigError(
                f"--start={start}: the clip has no frame there (it has {length} frames, "
                f"0 to {length - 1})"
            )
        if frames is not None and frames > length - start:
            raise ConfigError(
                f"--frames={frames} runs past the clip's end: from --start={start} it has "
                f"{length - start} frames; give --frames={length - start} or fewer, or leave "
                "it out to take them all"
            )
        return frames or length - start

    def read(
        self, start: int = 0, count: int | None = None, longest: int | None = None
    ) -> Iterator[np.ndarray]:
        """Yields frames [H, W, 3] uint8 from index `start`, at most `count` of them.

        Args:
            start: The first frame's index.
            count: How many frames at most; None for all.
            longest: If given, frames are scaled (Lanczos) so their longest side is this.
                A video file's come out of ffmpeg already scaled, so a clip declaring huge
                frames never holds one at full size in memory; a folder's frames larger
                than twice this are downscaled as they are decoded (as nst-tf does for a
                content photo).

        Raises:
            ImageError: ffmpeg fails on the clip part way (a truncated or corrupt file).
        """
        stop = None if count is None else start + count
        if self.frames is not None:
            limit = None if longest is None else 2 * longest
            for path in self.frames[start:stop]:
                frame = images.load_image(path, limit=limit)
                yield _resized(images.to_uint8(frame), longest)
            return
        import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

        output_params = []
        if longest is not None:
            # ffmpeg rotates a phone clip upright before the scale filter: self.size is
            # the upright size, so the scale keeps the shape the viewer sees.
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
                        frame = np.frombuffer(data, np.uint8).reshape(height, width, 3)
                        yield _resized(frame, longest)
            finally:
                reader.close()
        except (OSError, RuntimeError, StopIteration) as err:
            raise ImageError(
                f"--input={shown(self.path)}: ffmpeg failed ({_last_line(err)})"
            ) from None


class _DropScaleNotice(logging.Filter):
    """imageio-ffmpeg warns whenever the frames read differ in size from the clip's;
    they do because we scale them on purpose, and the warning would sit among our lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "different from the source frame size" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_DropScaleNotice())


def _resized(frame: np.ndarray, longest: int | None) -> np.ndarray:
    """`frame` (uint8) with its longest side `longest` (Lanczos), as images.scaled_shape."""
    if longest is None:
        return frame
    height, width = images.scaled_shape(*frame.shape[:2], longest)
    if frame.shape[:2] == (height, width):
        return frame
    from PIL import Image  # pylint: disable=import-outside-toplevel

    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.LANCZOS))


def _last_line(text) -> str:
    """The last non-empty line of ffmpeg's output (its own summary of what went wrong)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("===")]
    return lines[-1] if lines else "no output"


# Seconds ffmpeg may take to describe a clip and count its packets (it decodes nothing).
PROBE_SECONDS = 600


def probe(path: str) -> Clip:
    """Reads a video file's streams from ffmpeg's description of it, and counts its video
    packets (one per frame) by copying them to nowhere, decoding nothing.

    Raises:
        ImageError: ffmpeg cannot read it, it is a still image, it has no video stream, its
            frames have more than MAX_PIXELS pixels, or ffmpeg takes longer than
            PROBE_SECONDS.
    """
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

    label = f"--input={shown(path)}"
    with open_regular(path, ImageError, label):
        pass
    # 0:V:0 is the first video stream that is not a cover picture.
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path]
    command += ["-map", "0:V:0", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-nostats", "-"]
    result = _ffmpeg(command, label, PROBE_SECONDS)
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
    # A phone clip shot upright is stored sideways with a display matrix; ffmpeg turns
    # its frames upright when it decodes them.
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", result.stderr)
    if rotation and round(float(rotation.group(1))) % 180 == 90:
        width, height = height, width
    if result.returncode != 0:
        raise ImageError(f"{label}: ffmpeg failed ({_last_line(result.stderr)})")
    counted = re.findall(r"^frame=(\d+)", result.stdout, re.M)
    fps = re.search(r"([\d.]+) fps", videos[0])
    return Clip(
        path,
        float(fps.group(1)) if fps and float(fps.group(1)) > 0 else 24.0,
        size=(width, height),
        audio=any("Audio:" in line for line in streams),
        count=int(counted[-1]) if counted else None,
    )


def _ffmpeg(command: list[str], label: str, seconds: float) -> subprocess.CompletedProcess:
    """Runs ffmpeg to its end, or stops it after `seconds` with one line."""
    try:
        return subprocess.run(
            command, capture_output=True, text=True, errors="replace", check=False, timeout=seconds
        )
    except subprocess.TimeoutExpired:
        raise ImageError(f"{label}: ffmpeg took more than {seconds:g} s to read it") from None


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
        for frame in frames:  # a FIFO or a device named like a frame would hang or never end
            check_regular_file(frame, ImageError, f"--input frame {shown(frame)}")
        _check_same_size(frames)
        return Clip(path, 24.0, frames)
    if not os.path.lexists(path):
        raise ImageError(f"--input={path!r}: no such file or folder; check the path")
    return probe(path)  # which refuses a FIFO, a device or a symlink loop, saying which


def _check_same_size(frames: list[str]) -> None:
    """Refuses a frames folder whose frames differ in size (read from their headers)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    sizes = {}
    for path in frames:
        try:
            with open_regular(path, ImageError) as file, Image.open(file, formats=FORMATS) as image:
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
            long, goes with the frames, sped up or slowed down (pitch kept) to last as
            long as they do at `fps`; None for a silent video.

    Raises:
        OutputError: ffmpeg fails (in one line).
    """
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

    first = images.load_image(frames[0])
    height, width = first.shape[:2]
    temp = _new_temp(path, "tmp")
    silent = _new_temp(path, "video") if audio else temp
    writer = None
    try:
        writer = imageio_ffmpeg.write_frames(
            silent, (width, height), fps=fps, codec="libx264", quality=8, macro_block_size=2
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(images.to_uint8(images.load_image(frame))))
        writer.close()
        writer = None
        if audio:
            source, start, seconds = audio
            _mux_audio(silent, (source, start, seconds), seconds * fps / len(frames), temp)
        os.replace(temp, path)
    except (OSError, RuntimeError) as err:
        raise OutputError(
            f"cannot write {shown(path)}: ffmpeg failed ({_last_line(err)})"
        ) from None
    finally:
        if writer is not None:  # stopped part way: closing the generator ends its ffmpeg
            writer.close()
        for leftover in {silent, temp}:
            if os.path.exists(leftover):
                os.remove(leftover)


def _new_temp(path: str, kind: str) -> str:
    """Creates an empty file of our own beside `path` (never one that is already there),
    named .STEM.RANDOM.KIND.EXT so ffmpeg still knows the container by the extension."""
    directory = os.path.dirname(os.path.abspath(path))
    stem, ext = os.path.splitext(os.path.basename(path))
    while True:
        temp = os.path.join(directory, f".{stem}.{secrets.token_hex(6)}.{kind}{ext}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        except OSError as err:
            raise OutputError(f"cannot write {shown(path)}: {err.strerror}") from None
        return temp


def _atempo(ratio: float) -> str:
    """An ffmpeg filter changing the audio's speed by `ratio`, pitch kept (atempo takes
    0.5..2 per stage, so larger changes are chained)."""
    stages = []
    while ratio > 2.0:
        stages.append(2.0)
        ratio /= 2.0
    while ratio < 0.5:
        stages.append(0.5)
        ratio /= 0.5
    return ",".join(f"atempo={stage:.9f}" for stage in [*stages, ratio])


def _mux_audio(video_path: str, audio: tuple[str, float, float], tempo: float, output: str) -> None:
    """Writes `output`: the one video stream of `video_path` and a stretch of audio played
    `tempo` times as fast (an output --fps other than the clip's).

    The audio is re-encoded (AAC) so it starts on the first frame kept, not on the
    nearest packet before it.
    """
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

    source, start, seconds = audio
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error"]
    command += ["-i", video_path, "-ss", f"{start:.6f}", "-t", f"{seconds:.6f}", "-i", source]
    command += ["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac"]
    if abs(tempo - 1.0) > 1e-9:
        command += ["-af", _atempo(tempo)]
    result = subprocess.run(
        [*command, output],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
        timeout=3600,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)


def has_audio(path: str) -> bool:
    """Whether a video file has an audio stream (as ffmpeg reports it)."""
    return probe(path).audio


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
