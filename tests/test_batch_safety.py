"""nst-tf-batch on hostile or mistaken folders (issue 23), run as a user runs it.

Each case checks the one line the command prints, its exit status, and that every file
of the user's is unchanged (bytes and mtimes). The cases that are refused before Ray
starts run without Ray.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from test_batch import (
    _cmdline,
    _descendants,
    _end,
    _wait_gone,
    processes,  # noqa: F401 - the subreaper fixture
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = [
    "--size=32",
    "--min_size=0",
    "--steps=2",
    "--optimizer=adam",
    "--content_layers=block2_conv1",
    "--style_layers=block1_conv1,block2_conv1",
    "--precision=float32",
    "--xla=off",
]


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("RAY_ADDRESS", None)
    return env


def _batch(inputs, output_dir, *flags, timeout=120):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "nst_tf.commands.batch",
            f"--inputs={inputs}",
            f"--output_dir={output_dir}",
            *SETTINGS,
            *flags,
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
    )


def _state(root):
    """Every entry under `root`: its kind, and for a regular file its sha256 and mtime."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                found[path] = (digest, info.st_mtime_ns)
            else:
                found[path] = (info.st_mode, os.path.islink(path))
    return found


def _photo(path, seed=0):
    """A small PNG at `path`, whatever its extension."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path, "PNG")
    return path


def _refused(tmp_path, *flags, inputs=None, output_dir=None):
    """Runs a batch that must be refused; returns its last line after checking that it
    is the only error line, the status is 1 and nothing under tmp_path changed."""
    before = _state(tmp_path)
    result = _batch(inputs or tmp_path / "in", output_dir or tmp_path / "out", *flags)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert [line for line in lines if "error" in line] == lines[-1:], result.stderr
    assert lines[-1].startswith("nst-tf-batch: error: ")
    assert _state(tmp_path) == before
    return lines


def test_a_fifo_and_dev_zero_are_skipped_and_non_raster_images_are_not_photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe.jpg")
    os.symlink("/dev/zero", folder / "zero.png")
    # Valid PNG bytes under names of formats nst_tf does not read: not photos.
    for name in ("drawing.eps", "layers.psd", "icon.ico"):
        _photo(folder / name)
    lines = _refused(tmp_path)
    assert f"skipping {folder / 'pipe.jpg'}: not a regular file" in lines
    assert f"skipping {folder / 'zero.png'}: not a regular file" in lines
    assert "names no images" in lines[-1]
    assert not (tmp_path / "out").exists()


def test_a_style_inside_output_dir_named_like_a_result_is_refused(tmp_path):
    _photo(tmp_path / "in" / "sunset.jpg")
    style = _photo(tmp_path / "out" / "sunset.png", seed=1)
    lines = _refused(tmp_path, f"--style={style}")
    assert f"{style} is an input of this batch" in lines[-1]


@pytest.mark.parametrize("name", ["photo.json", "photo.png", "photo.error.json"])
def test_a_foreign_file_where_a_result_goes_is_refused(tmp_path, name):
    _photo(tmp_path / "in" / "photo.png")
    (tmp_path / "out").mkdir()
    foreign = tmp_path / "out" / name
    if name.endswith(".png"):
        _photo(foreign, seed=2)
    else:
        foreign.write_text('{"mine": true}\n')
    lines = _refused(tmp_path)
    assert f"{foreign} is in the way and was not written by nst-tf-batch" in lines[-1]


def test_a_logdir_that_is_a_file_is_refused_before_ray_starts(tmp_path):
    _photo(tmp_path / "in" / "photo.png")
    (tmp_path / "runs").write_text("notes")
    lines = _refused(tmp_path, f"--logdir={tmp_path / 'runs'}")
    assert lines[-1].endswith(f"--logdir={tmp_path / 'runs'} is a file; give a directory")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tile", [1, 15])
def test_a_tile_smaller_than_the_halo_is_refused_naming_the_smallest(tmp_path, tile):
    _photo(tmp_path / "in" / "photo.png")
    default_layers = ["--content_layers=block4_conv2", "--style_layers=block1_conv1,block5_conv1"]
    lines = _refused(tmp_path, f"--tile_size={tile}", *default_layers)
    expected = (
        f"--tile_size={tile} is smaller than the 80 px halo that block5_conv1 needs around "
        "each tile; use --tile_size >= 80, or 0 to never tile"
    )
    assert lines[-1] == f"nst-tf-batch: error: {expected}"
    # nst-tf refuses it too, before any work: one line, nothing written.
    output = tmp_path / "single.png"
    result = subprocess.run(
        [sys.executable, "-c", "from nst_tf.commands.cli import main; main()"]
        + [f"--content={tmp_path / 'in' / 'photo.png'}", f"--output={output}"]
        + SETTINGS
        + [f"--tile_size={tile}", *default_layers],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(expected), result.stderr
    assert not output.exists()


def test_a_memory_per_worker_no_photo_fits_is_refused_with_its_digits(tmp_path):
    _photo(tmp_path / "in" / "photo.png")
    lines = _refused(tmp_path, "--memory_per_worker=0.01")
    assert "--memory_per_worker=0.01 GB is less than the" in lines[-1]
    assert "0.0 GB" not in lines[-1]
    assert not (tmp_path / "out").exists()


# --- with a real Ray ------------------------------------------------------------------------


def _start(inputs, output_dir, *flags):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nst_tf.commands.batch",
            f"--inputs={inputs}",
            f"--output_dir={output_dir}",
            *SETTINGS,
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _wait_for_ray_workers(process, before, seconds=120):
    """Waits until the batch has Ray actors running; returns the processes it started."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        pids = _descendants() - before
        if any(_cmdline(pid).startswith("ray::BatchWorker") for pid in pids):
            return pids
        time.sleep(0.2)
    raise AssertionError(f"no Ray worker started: {process.communicate()}")


def test_workers_alone_share_the_cpus_and_a_second_batch_on_the_folder_is_refused(
    tmp_path, processes  # noqa: F811
):
    for index in range(4):
        _photo(tmp_path / "in" / f"photo{index}.png", seed=index)
    inputs_before = _state(tmp_path / "in")
    before = _descendants()
    first = _start(tmp_path / "in", tmp_path / "out", "--workers=2")
    ray_pids = _wait_for_ray_workers(first, before)
    second = _batch(tmp_path / "in", tmp_path / "out", "--workers=2")
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 1, second.stderr
    assert lines[-1] == (
        f"nst-tf-batch: error: another nst-tf-batch is writing to --output_dir={tmp_path / 'out'}"
        "; wait for it to end or choose another directory"
    )
    stdout, stderr = first.communicate(timeout=300)
    ray_pids |= _descendants() - before
    assert first.returncode == 0, stderr
    cpus = os.cpu_count()
    assert f"2 workers x {max(1, min(2, cpus // 2))} CPUs" in stderr
    # The second batch deleted none of the first's files: every photo was done once.
    assert "done 4, skipped 0" in stderr, stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"photo{i}.{ext}" for i in range(4) for ext in ("json", "png")
    )
    assert _state(tmp_path / "in") == inputs_before
    assert not _end(ray_pids, grace=15)


def test_sigterm_is_an_interruption_like_ctrl_c(tmp_path, processes):  # noqa: F811
    for index in range(6):
        _photo(tmp_path / "in" / f"photo{index}.png", seed=index)
    inputs_before = _state(tmp_path / "in")
    before = _descendants()
    batch = _start(tmp_path / "in", tmp_path / "out", "--steps=200")
    ray_pids = _wait_for_ray_workers(batch, before)
    batch.send_signal(signal.SIGTERM)
    _, stderr = batch.communicate(timeout=120)
    ray_pids |= _descendants() - before
    assert batch.returncode == 143, stderr
    errors = [line for line in stderr.strip().splitlines() if "error" in line.lower()]
    assert errors == [
        "nst-tf-batch: error: interrupted; finished photos are kept: run the same command "
        "again for the rest"
    ], stderr
    assert "Traceback" not in stderr and "SIGTERM" not in stderr, stderr
    assert _state(tmp_path / "in") == inputs_before
    assert not list(tmp_path.rglob(".nst_tf-*"))  # nothing half-written
    assert not _wait_gone(ray_pids, 20), {pid: _cmdline(pid) for pid in ray_pids}
