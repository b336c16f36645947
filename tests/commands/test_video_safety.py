"""nst-tf-video on ordinary and hostile clips: real mp4 files written with imageio-ffmpeg,
streams read back with ffmpeg itself (issue 23)."""

import os
import re
import signal
import subprocess
import sys
import time

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from nst_tf.io import clips

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
VIDEO = [sys.executable, "-c", "from nst_tf.commands.video_cli import main; main()"]
SMALL = ["--size=32", "--steps=2", "--frame_steps=1"]
FPS = 12
RATE = 22050


def _picture(seed, height=160, width=200):
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (height // 8, width // 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def _clip(path, frames=8, seed=0, audio=False):
    """A panning picture as an mp4; with audio, a tone whose pitch is 220 Hz * (1 + the
    index of the pair of frames it plays under), so the pitch tells where audio starts."""
    picture = _picture(seed)
    silent = str(path) + (".v.mp4" if audio else "")
    writer = imageio_ffmpeg.write_frames(silent, (96, 64), fps=FPS, macro_block_size=2)
    writer.send(None)
    for t in range(frames):
        writer.send(np.ascontiguousarray(picture[20 + t : 84 + t, 20 + 2 * t : 116 + 2 * t]))
    writer.close()
    if audio:
        tone = f"aevalsrc=sin(2*PI*220*(1+floor(t*{FPS}/2))*t):s={RATE}:d={frames / FPS}"
        subprocess.run(
            [FFMPEG, "-y", "-loglevel", "error", "-i", silent, "-f", "lavfi", "-i", tone]
            + ["-c:v", "copy", "-c:a", "aac", "-shortest", str(path)],
            check=True,
        )
        os.remove(silent)
    return path


def _streams(path):
    """The kinds of the streams ffmpeg lists in a file, in order."""
    probe = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    return re.findall(r"Stream #\d+:\d+.*?: (Video|Audio)", probe.stderr)


def _audio(path):
    """The file's audio decoded to mono float samples at RATE."""
    raw = subprocess.run(
        [FFMPEG, "-loglevel", "error", "-i", str(path), "-map", "0:a:0"]
        + ["-f", "f32le", "-ac", "1", "-ar", str(RATE), "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.float32)


def _frame_count(path):
    return len(list(clips.open_clip(str(path)).read()))


def _run(*args, cwd):
    return subprocess.run([*VIDEO, *args], capture_output=True, text=True, cwd=cwd, timeout=900)


def _one_error_line(result, expected):
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert not [line for line in lines if "ffmpeg version" in line or "libav" in line]


def test_a_clip_without_audio_gives_a_silent_video(tmp_path):
    _clip(tmp_path / "clip.mp4", frames=4)
    assert _streams(tmp_path / "clip.mp4") == ["Video"]
    result = _run("--input=clip.mp4", "--output=out.mp4", *SMALL, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _streams(tmp_path / "out.mp4") == ["Video"]
    assert _frame_count(tmp_path / "out.mp4") == 4
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "out.mp4"]


def test_audio_has_one_stream_and_is_trimmed_to_the_frames_kept(tmp_path):
    _clip(tmp_path / "clip.mp4", frames=10, audio=True)
    assert _streams(tmp_path / "clip.mp4") == ["Video", "Audio"]
    result = _run(
        "--input=clip.mp4", "--output=out.mp4", "--start=4", "--frames=2", *SMALL, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "out.mp4"
    assert _streams(out) == ["Video", "Audio"]
    assert _frame_count(out) == 2
    assert clips.open_clip(str(out)).fps == pytest.approx(FPS)  # the input's, by default
    samples = _audio(out)
    # Two frames at 12 fps: 1/6 s of audio (AAC pads by a frame of 1024 samples at most).
    assert abs(len(samples) / RATE - 2 / FPS) < 1500 / RATE
    # Frames 4 and 5 play under the third pair of frames: 660 Hz, not the clip's start (220).
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak = np.fft.rfftfreq(len(samples), 1 / RATE)[np.argmax(spectrum)]
    assert abs(peak - 660) < 30, peak


def test_a_work_folder_without_our_marker_is_refused_and_kept(tmp_path):
    _clip(tmp_path / "clip.mp4", frames=2)
    work = tmp_path / "out.mp4.frames"
    work.mkdir()
    (work / "holiday.png").write_bytes(b"the user's own file")
    result = _run("--input=clip.mp4", "--output=out.mp4", *SMALL, cwd=tmp_path)
    _one_error_line(result, "did not make")
    assert os.listdir(work) == ["holiday.png"]
    assert (work / "holiday.png").read_bytes() == b"the user's own file"
    assert not (tmp_path / "out.mp4").exists()


def test_a_replaced_clip_restarts_instead_of_resuming(tmp_path):
    args = ["--input=clip.mp4", "--output=out", *SMALL]
    _clip(tmp_path / "clip.mp4", frames=3, seed=1)
    assert _run(*args, cwd=tmp_path).returncode == 0
    first = [np.asarray(Image.open(tmp_path / "out" / f"frame_{i:06d}.png")) for i in range(3)]
    # Same path, same size, other pictures: every frame is made again from the new clip.
    _clip(tmp_path / "clip.mp4", frames=3, seed=2)
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    again = [np.asarray(Image.open(tmp_path / "out" / f"frame_{i:06d}.png")) for i in range(3)]
    assert all(np.abs(a.astype(int) - b).mean() > 5 for a, b in zip(first, again, strict=True))
    assert "input changed" in result.stderr
    # The same clip again resumes: nothing is redone.
    before = {n: os.stat(tmp_path / "out" / n).st_mtime_ns for n in os.listdir(tmp_path / "out")}
    assert _run(*args, cwd=tmp_path).returncode == 0
    after = {n: os.stat(tmp_path / "out" / n).st_mtime_ns for n in os.listdir(tmp_path / "out")}
    assert before == after


@pytest.mark.parametrize("case", ["truncated", "text", "jpeg"])
def test_a_broken_clip_fails_in_one_line_before_any_work(tmp_path, case):
    path = tmp_path / "clip.mp4"
    if case == "truncated":
        _clip(path, frames=8)
        path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    elif case == "text":
        path.write_text("just some notes\n" * 50)
    else:
        buffer = tmp_path / "photo.jpg"
        Image.fromarray(_picture(3)).save(buffer)
        os.replace(buffer, path)
    result = _run("--input=clip.mp4", "--output=out.mp4", *SMALL, cwd=tmp_path)
    _one_error_line(result, "--input=")
    # It failed before TensorFlow loaded and left nothing behind.
    assert "frames:" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]


def _lavfi_clip(path, size):
    subprocess.run(
        [FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc=s={size}:d=0.5:r=4"]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )


def test_huge_frames_are_scaled_down_by_ffmpeg_and_too_many_pixels_refused(tmp_path):
    _lavfi_clip(tmp_path / "big.mp4", "8192x4096")
    clip = clips.open_clip(str(tmp_path / "big.mp4"))
    assert clip.size == (8192, 4096) and not clip.audio
    frames = list(clip.read(0, 2, longest=64))
    assert [frame.shape for frame in frames] == [(32, 64, 3)] * 2
    assert frames[0].dtype == np.uint8
    _lavfi_clip(tmp_path / "huge.mp4", "9500x9500")  # 90.25 Mpx > MAX_PIXELS
    result = _run("--input=huge.mp4", "--output=out.mp4", *SMALL, cwd=tmp_path)
    _one_error_line(result, "pixels")
    assert sorted(os.listdir(tmp_path)) == ["big.mp4", "huge.mp4"]


def _processes_naming(text):
    """Pids of processes whose command line mentions `text` (this test's folder)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def _pitch(samples):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / RATE)[np.argmax(spectrum)]


def _stop_when(args, cwd, ready, signum):
    """Runs nst-tf-video ARGS, sends `signum` once `ready()` holds (or after 300 s), and
    checks the stop: exit 128 + signum, one error line naming the signal and how to go on,
    no traceback. Returns the command's stderr."""
    child = subprocess.Popen(
        [*VIDEO, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        if ready():
            break
        time.sleep(0.05)
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 128 + signum, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if "error:" in line]
    name = signal.Signals(signum).name
    assert len(errors) == 1 and f"stopped by {name}" in errors[0], stderr[-2000:]
    assert "run the same command to continue" in errors[0] and "Traceback" not in stderr
    return stderr


def test_sigterm_keeps_the_finished_frames_and_the_rerun_ends_them_with_audio_at_its_fps(tmp_path):
    """SIGTERM mid-clip: exit 143 in one line, no video and nothing half-written, no process
    left; the same command then finishes, counts every frame, and plays the audio of the
    frames kept (12 fps) in the time the frames take at --fps=24, pitch kept."""
    _clip(tmp_path / "clip.mp4", frames=6, audio=True)
    args = ["--input=clip.mp4", "--output=out.mp4", "--fps=24", *SMALL]
    work = tmp_path / "out.mp4.frames"

    def ready():
        return work.is_dir() and any(name.startswith("frame_") for name in os.listdir(work))

    _stop_when(args, tmp_path, ready, signal.SIGTERM)
    kept = sorted(name for name in os.listdir(work) if name.startswith("frame_"))
    assert 1 <= len(kept) < 6
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "out.mp4.frames"]  # no video, no temp
    assert sorted(os.listdir(work)) == [".nst_tf_video.json", *kept]
    assert _processes_naming(str(tmp_path)) == []

    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote out.mp4 (6 frames, {len(kept)} of them from an earlier run)" in result.stderr
    # TensorFlow's start-up banner stays out: every line is ours or the progress bar's.
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    foreign = [line for line in lines if not line.startswith(("frames:", "VGG19", "wrote"))]
    assert foreign == [], foreign
    out = tmp_path / "out.mp4"
    assert _streams(out) == ["Video", "Audio"] and _frame_count(out) == 6
    # 32x21 px frames; H.264's 4:2:0 colour needs even sides, so the video is 32x22.
    assert next(clips.open_clip(str(out)).read()).shape == (22, 32, 3)
    assert clips.open_clip(str(out)).fps == pytest.approx(24.0)
    samples = _audio(out)
    # Six frames at 24 fps: 1/4 s (AAC's last packet may add under 1024 samples of padding).
    assert abs(len(samples) - RATE * 6 / 24) < 1024, len(samples) / RATE
    # Frames 0-1 played under 220 Hz and frames 4-5 under 660 Hz: so they do here.
    pair = RATE * 2 // 24
    assert abs(_pitch(samples[:pair]) - 220) < 40
    assert abs(_pitch(samples[2 * pair : 3 * pair]) - 660) < 40
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "out.mp4"]
