"""Runs that survive: SIGKILL then --resume, SIGTERM, NaN guard — real processes, real weights."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

RUN = [
    "--size=64",
    "--min_size=32",
    "--coarse_steps=10",
    "--steps=30",
    "--checkpoint_every=5",
    "--deterministic",
    "--log_every=0",
]


def cli(*args):
    return [sys.executable, "-m", "nst_tf", *RUN, *args]


def newest_checkpoint_step(directory):
    try:
        with open(os.path.join(directory, "checkpoint")) as f:
            steps = [int(m) for m in re.findall(r'ckpt-(\d+)"', f.read())]
    except OSError:
        return 0
    return max(steps, default=0)


def wait_for_checkpoint(process, directory, step, timeout=1200):
    deadline = time.monotonic() + timeout
    while newest_checkpoint_step(directory) < step:
        assert process.poll() is None, "the run ended before the checkpoint"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.int16)


# The tiled case: 2x2 tiles of 96 px at the last scale (192 px), whole at the coarser ones
# (issue 15: resume keeps working at sizes that need tiles).
TILED = ("--size=192", "--min_size=96", "--tile_size=96")


@pytest.mark.parametrize("extra", [(), TILED], ids=["whole", "tiled"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, extra):
    def cli(*args):
        return [sys.executable, "-m", "nst_tf", *RUN, *extra, *args]

    whole = subprocess.run(
        cli(f"--output={tmp_path}/whole.png"), capture_output=True, text=True, timeout=600
    )
    assert whole.returncode == 0, whole.stderr

    killed_out, ckpt = tmp_path / "killed.png", tmp_path / "killed.ckpt"
    process = subprocess.Popen(
        cli(f"--output={killed_out}"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_checkpoint(process, ckpt, 30)  # part-way through the last scale
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        process.kill()
    killed_at = newest_checkpoint_step(ckpt)
    assert 30 <= killed_at < 50
    assert not killed_out.exists()

    resumed = subprocess.run(
        cli(f"--output={killed_out}", "--resume"), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {killed_at}" in resumed.stderr
    difference = np.abs(pixels(tmp_path / "whole.png") - pixels(killed_out)).max()
    print(f"resume test: killed at step {killed_at}, max pixel difference {difference}")
    assert difference <= 1


def test_resume_refuses_other_settings(tmp_path):
    out = tmp_path / "out.png"
    first = subprocess.run(
        cli(f"--output={out}", "--steps=5"), capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stderr
    again = subprocess.run(
        cli(f"--output={out}", "--steps=5", "--style_weight=1", "--resume"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 1
    last = again.stderr.strip().splitlines()[-1]
    assert "made with other settings (style_weight: 0.001 -> 1.0)" in last


def test_resume_without_a_checkpoint_says_so(tmp_path):
    result = subprocess.run(
        cli(f"--output={tmp_path}/out.png", "--resume"), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 1
    assert "no checkpoint to resume" in result.stderr.strip().splitlines()[-1]


def test_sigterm_saves_image_and_checkpoint_and_exits_143(tmp_path):
    out, ckpt = tmp_path / "out.png", tmp_path / "out.ckpt"
    process = subprocess.Popen(
        cli(f"--output={out}", "--steps=100000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_checkpoint(process, ckpt, 25)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("nst-tf: error: stopped by SIGTERM at step ") and "--resume" in last
    stopped_at = int(re.search(r"at step (\d+)", last).group(1))
    assert newest_checkpoint_step(ckpt) == stopped_at
    with Image.open(out) as image:
        assert image.size == (64, 48)


def test_ctrl_c_during_a_tiled_scale_finishes_the_step_and_resumes(tmp_path):
    # Issue 15: Ctrl-C in a tiled step ends that step, saves a whole image and a
    # checkpoint of it, and --resume goes on from there.
    out, ckpt = tmp_path / "out.png", tmp_path / "out.ckpt"
    process = subprocess.Popen(
        cli(*TILED, f"--output={out}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_checkpoint(process, ckpt, 25)  # in the last scale, which is tiled
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "tiles of 96 px" in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("nst-tf: error: stopped by SIGINT at step ") and "--resume" in last
    stopped_at = int(re.search(r"at step (\d+)", last).group(1))
    assert 25 <= stopped_at < 50
    assert newest_checkpoint_step(ckpt) == stopped_at
    with Image.open(out) as image:
        assert image.size == (192, 144)
    resumed = subprocess.run(
        cli(*TILED, f"--output={out}", "--resume"), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {stopped_at}" in resumed.stderr
    with Image.open(out) as image:
        assert image.size == (192, 144)


def test_nan_guard_names_the_term_and_keeps_a_finite_image(tmp_path):
    out = tmp_path / "out.png"
    result = subprocess.run(
        cli(f"--output={out}", "--style_weight=1e38"), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "the weighted total overflowed to inf" in last and "lower" in last
    assert "Traceback" not in result.stderr
    assert pixels(out).std() > 0  # the last finite image, written whole
