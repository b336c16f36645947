"""Video: flow, warping and consistency against known motion; a killed run resumed; mistakes.

Real mp4 files end to end (streams, audio, fps, sizes) are in test_video_safety."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from nst_tf.core import flow

RNG = np.random.default_rng(18)
VIDEO = [sys.executable, "-c", "from nst_tf.commands.video_cli import main; main()"]


def _texture(height=96, width=128):
    """A smooth random picture: enough structure for optical flow to lock on."""
    small = RNG.uniform(0, 255, (height // 8, width // 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def test_warp_follows_a_known_shift_within_half_a_pixel():
    picture = _texture(120, 160).astype(np.float32)
    dx, dy = 3, 2
    previous = picture[10:90, 10:130]
    current = picture[10 + dy : 90 + dy, 10 + dx : 130 + dx]  # the camera moved by (dx, dy)
    backward = flow.optical_flow(current, previous)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(backward[inner][..., 0] - dx).mean() < 0.5
    assert np.abs(backward[inner][..., 1] - dy).mean() < 0.5
    warped = flow.warp(previous, backward)
    # An exact flow of (dx, dy) reproduces the current frame exactly; the estimated one
    # within a fraction of the picture's contrast.
    exact = flow.warp(previous, np.broadcast_to(np.float32([dx, dy]), backward.shape).copy())
    np.testing.assert_allclose(exact[:-dy, :-dx], current[:-dy, :-dx], atol=1e-3)
    assert np.abs(warped[inner] - current[inner]).mean() < 0.05 * current.std()


def test_consistency_marks_a_region_that_appears():
    """A square slides right over a still background: the strip it uncovers was hidden in
    the previous frame, so the flows disagree there and its weights are 0."""
    background = _texture(64, 96).astype(np.float32)
    square = np.full((20, 20, 3), 250.0, np.float32)
    frames = []
    for left in (30, 36):
        frame = background.copy()
        frame[22:42, left : left + 20] = square
        frames.append(frame)
    forward = np.zeros((64, 96, 2), np.float32)
    forward[22:42, 30:50, 0] = 6  # the square's pixels move 6 px right
    backward = np.zeros((64, 96, 2), np.float32)
    backward[22:42, 36:56, 0] = -6
    weights = flow.consistency(backward, forward)
    uncovered = weights[24:40, 31:35]  # background that the square covered before
    assert uncovered.max() == 0
    assert weights[2:18, 2:90].min() == 1  # still background far from the square
    assert weights[25:39, 39:53].min() == 1  # inside the moving square: consistent


def test_flicker_is_zero_for_outputs_that_follow_the_motion():
    picture = _texture(120, 160).astype(np.float32)
    contents = [picture[10 + t : 90 + t, 10 + 2 * t : 130 + 2 * t] for t in range(4)]
    assert flow.flicker(contents, contents) < 2.0
    noisy = [RNG.uniform(0, 255, c.shape).astype(np.float32) for c in contents]
    assert flow.flicker(noisy, contents) > 40.0


def _run(*args, cwd):
    return subprocess.run([*VIDEO, *args], capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.mark.slow
def test_a_killed_run_continues_where_it_stopped(tmp_path):
    frames_dir = tmp_path / "in"
    frames_dir.mkdir()
    picture = _texture(160, 200)
    for t in range(8):
        Image.fromarray(picture[20 + t : 84 + t, 20 + 2 * t : 116 + 2 * t]).save(
            frames_dir / f"f{t:02d}.png"
        )
    args = ["--input=in", "--output=out", "--size=48", "--steps=3", "--frame_steps=2"]
    child = subprocess.Popen(
        [*VIDEO, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out = tmp_path / "out"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and child.poll() is None:
        if out.is_dir() and len([n for n in os.listdir(out) if n.startswith("frame_")]) >= 3:
            break
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    done = sorted(n for n in os.listdir(out) if n.startswith("frame_"))
    assert 3 <= len(done) < 8
    before = {name: os.stat(out / name).st_mtime_ns for name in done}
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    # The whole result is counted, not only the frames made by this run.
    assert f"wrote out (8 frames, {len(done)} of them from an earlier run)" in result.stderr
    frames = sorted(n for n in os.listdir(out) if n.startswith("frame_"))
    assert frames == [f"frame_{i:06d}.png" for i in range(8)]
    # The frames finished before the kill were kept, not redone.
    assert all(os.stat(out / name).st_mtime_ns == before[name] for name in done)
    assert not [n for n in os.listdir(out) if ".tmp" in n]
    assert sorted(os.listdir(out)) == [".nst_tf_video.json", *frames]


@pytest.mark.parametrize(
    "case, args, expected",
    [
        ("not_a_video", ["--input=notes.mp4", "--output=out.mp4"], "not a video"),
        ("no_frames", ["--input=empty", "--output=out.mp4"], "holds no PNG or JPEG frames"),
        ("sizes_differ", ["--input=mixed", "--output=out.mp4"], "differ in size"),
        ("unknown_format", ["--input=mixed_ok", "--output=out.xyz"], "unknown video format"),
        ("past_the_end", ["--input=mixed_ok", "--output=out.mp4", "--start=50"], "no frame"),
        ("negative_weight", ["--input=mixed_ok", "--output=o.mp4", "--temporal_weight=-1"], ">= 0"),
    ],
)
def test_bad_video_input_gives_one_line_and_writes_nothing(tmp_path, case, args, expected):
    (tmp_path / "notes.mp4").write_text("not a video at all")
    (tmp_path / "empty").mkdir()
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed_ok").mkdir()
    for name, size in (("a.png", (32, 24)), ("b.png", (40, 24))):
        Image.fromarray(_texture(size[1], size[0])).save(tmp_path / "mixed" / name)
    Image.fromarray(_texture(24, 32)).save(tmp_path / "mixed_ok" / "a.png")
    before = sorted(os.listdir(tmp_path))
    result = _run(*args, "--size=32", cwd=tmp_path)
    assert result.returncode == 1, (case, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == before
