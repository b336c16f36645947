"""nst-tf-video's checks before any work: every setting, path and file it is given is
refused in one line, before TensorFlow loads, with nothing of the user's changed (issue 23).

Each case runs the command as a user would, on real mp4 files and real FIFOs."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_video_safety import FFMPEG, SMALL, _clip, _one_error_line, _picture, _run

from nst_tf.commands import video
from nst_tf.io import clips
from nst_tf.io.targets import StyleTargets
from nst_tf.model.weights import find_weights
from nst_tf.settings.config import Config, layer_channels


def _state(folder):
    """Every file under `folder` (FIFOs by name) with its sha256 and mtime."""
    state = {}
    for path in sorted(folder.rglob("*")):
        if path.is_fifo():
            state[path] = "fifo"
        elif path.is_file():
            state[path] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        else:
            state[path] = "folder"
    return state


def _refused(tmp_path, args, expected):
    """Runs the command, expects one error line with `expected` before TensorFlow loaded,
    and nothing under tmp_path created, changed or removed."""
    before = _state(tmp_path)
    result = _run(*SMALL, *args, cwd=tmp_path)  # args last: they override SMALL's
    _one_error_line(result, expected)
    assert "frames:" not in result.stderr  # the progress bar: the work had started
    assert _state(tmp_path) == before
    return result


@pytest.fixture(name="scene")
def _scene(tmp_path):
    """An 8-frame clip with audio, a frames folder, a style image and a file."""
    _clip(tmp_path / "clip.mp4", frames=8, audio=True)
    (tmp_path / "frames").mkdir()
    for t in range(3):
        Image.fromarray(_picture(t, 24, 32)).save(tmp_path / "frames" / f"f{t}.png")
    Image.fromarray(_picture(9, 24, 32)).save(tmp_path / "style.png")
    (tmp_path / "notes.txt").write_text("the user's notes\n")
    return tmp_path


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--start=-1"], "--start must be >= 0"),
        (["--start=8"], "--start=8: the clip has no frame there (it has 8 frames"),
        (["--frames=0"], "--frames must be positive"),
        (["--start=4", "--frames=5"], "--frames=5 runs past the clip's end"),
        (["--temporal_weight=nan"], "--temporal_weight must be a finite number"),
        (["--temporal_weight=-1"], "--temporal_weight must be a finite number"),
        (["--frame_steps=0"], "--frame_steps must be positive"),
        (["--fps=0"], "--fps must be in (0, 1000]"),
        (["--fps=1e6"], "--fps must be in (0, 1000]"),
        (["--flow=farneback"], "--flow='farneback' is unknown"),
        (["--frame_init=noise"], "--frame_init='noise' is unknown"),
        (["--init=style.png"], "--init=style.png: nst-tf-video starts the first frame"),
        (["--logdir=notes.txt"], "--logdir=notes.txt is a file"),
        (["--logdir=."], "--logdir=. contains an input"),
        (["--style=."], "lies in the --style folder"),
    ],
)
def test_a_setting_out_of_range_is_refused_before_any_work(scene, args, expected):
    style = [] if any(a.startswith("--style=") for a in args) else ["--style=style.png"]
    _refused(scene, ["--input=clip.mp4", "--output=out/clip.mp4", *style, *args], expected)


def test_a_frames_folder_past_its_end_is_refused_before_any_work(scene):
    _refused(scene, ["--input=frames", "--output=out", "--frames=4"], "--frames=4 runs past")


def test_the_output_never_replaces_the_input(scene):
    _refused(scene, ["--input=clip.mp4", "--output=clip.mp4"], "is also an input")
    _refused(scene, ["--input=frames", "--output=frames"], "is also an input")


def test_a_frames_output_folder_with_the_users_files_is_refused(scene):
    (scene / "out").mkdir()
    Image.fromarray(_picture(4, 24, 32)).save(scene / "out" / "frame_000000.png")
    _refused(scene, ["--input=frames", "--output=out"], "holds files nst_tf did not make")


def _marker(work, text):
    work.mkdir()
    (work / video.MARKER).write_text(text)
    Image.fromarray(_picture(5, 24, 32)).save(work / "frame_000000.png")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("not json", "is not the marker nst_tf writes"),
        ('["key"]', "is not the marker nst_tf writes"),
        ('{"key": 1, "input_sha256": "x"}', "is not the marker nst_tf writes"),
        (" " * 5000 + "{}", "is not the marker nst_tf writes"),
        (json.dumps({"key": "0" * 64, "input_sha256": "x"}), "made with other settings"),
    ],
)
def test_a_work_folder_not_ours_or_of_other_settings_is_refused_and_kept(scene, text, expected):
    _marker(scene / "out.mp4.frames", text)
    _refused(scene, ["--input=clip.mp4", "--output=out.mp4"], expected)


def test_a_fifo_named_like_a_clip_or_a_frame_is_refused_without_hanging(scene):
    os.mkfifo(scene / "pipe.mp4")
    _refused(scene, ["--input=pipe.mp4", "--output=out.mp4"], "FIFO")
    os.mkfifo(scene / "frames" / "f3.png")
    _refused(scene, ["--input=frames", "--output=out.mp4"], "FIFO")


def test_a_style_mask_is_not_a_video_flag(scene):
    before = _state(scene)
    result = _run("--input=frames", "--output=out", "--style_mask=style.png", cwd=scene)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "style_mask" in lines[0], lines
    assert _state(scene) == before


def _targets(path, **changes):
    """Style targets that match the video command's defaults, except for `changes`."""
    config = Config()
    fields = {
        "grams": {
            name: np.eye(layer_channels(name), dtype=np.float32)[None]
            for name in config.style_layers
        },
        "size": 32,
        "normalization": config.normalization,
        "weights_sha256": find_weights(config.vgg_weights).sha256,
        "pooling": config.pooling,
    }
    fields.update(changes)
    StyleTargets(**fields).save(str(path))


@pytest.mark.parametrize(
    "changes, args, expected",
    [
        ({"pooling": "avg"}, [], "--pooling=avg"),
        ({"normalization": "course"}, [], "--normalization=course"),
        ({"weights_sha256": "ab" * 32}, [], "other VGG19 weights"),
        ({}, ["--style_layers=block1_conv2"], "lack layers block1_conv2"),
        ({}, ["--init=style"], "--init=style needs a style image"),
    ],
)
def test_style_targets_of_other_settings_are_refused_before_any_work(
    scene, changes, args, expected
):
    _targets(scene / "targets.npz", **changes)
    _refused(
        scene,
        ["--input=clip.mp4", "--output=out.mp4", "--style_targets=targets.npz", *args],
        expected,
    )


def test_a_phone_clip_stored_sideways_is_read_upright(tmp_path):
    """A display matrix (rotation 90) on a 96x64 clip: the viewer sees 64x96 frames, and
    so must the stylisation (ffmpeg turns them upright, the scale must follow)."""
    _clip(tmp_path / "flat.mp4", frames=2)
    subprocess.run(
        [FFMPEG, "-y", "-loglevel", "error", "-display_rotation", "90"]
        + ["-i", str(tmp_path / "flat.mp4"), "-c", "copy", str(tmp_path / "upright.mp4")],
        check=True,
    )
    clip = clips.open_clip(str(tmp_path / "upright.mp4"))
    assert clip.size == (64, 96) and clip.count == 2
    frames = list(clip.read(0, 2, longest=48))
    assert [frame.shape for frame in frames] == [(48, 32, 3)] * 2
    # Upright: the stored frame turned a quarter, not squashed into a landscape.
    flat = next(clips.open_clip(str(tmp_path / "flat.mp4")).read(0, 1, longest=48))
    turned = np.asarray(Image.fromarray(flat).transpose(Image.Transpose.ROTATE_90))
    assert (
        min(
            np.abs(frames[0].astype(int) - turned).mean(),
            np.abs(frames[0].astype(int) - turned[::-1, ::-1]).mean(),
        )
        < 12
    )


def test_a_huge_frame_in_a_folder_is_decoded_small(tmp_path):
    """A 6000x6000 PNG frame (small on disk) at --size 32 costs its 8-bit decode (108 MB),
    not the 1.3 GB its float32 copies took before it was scaled (measured on main)."""
    (tmp_path / "frames").mkdir()
    big = np.zeros((6000, 6000, 3), np.uint8)
    big[::7] = 200
    Image.fromarray(big).save(tmp_path / "frames" / "f0.png", compress_level=1)
    del big
    # VmHWM, the peak of this process's own memory: ru_maxrss would count the parent's
    # (pytest's, after other tests loaded TensorFlow) from before the exec.
    code = (
        "import re, sys\n"
        "from nst_tf.io import clips\n"
        "frame = next(clips.open_clip(sys.argv[1]).read(0, 1, longest=32))\n"
        "status = open('/proc/self/status').read()\n"
        "print(frame.shape, re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "frames")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    shape, peak_kb = done.stdout.strip().splitlines()[-1].rsplit(")", 1)
    assert shape + ")" == "(32, 32, 3)", done.stdout
    assert int(peak_kb) < 400_000, peak_kb  # 180 MB measured, 1.3 GB before
