"""nst-tf-batch on hostile or mistaken folders (issue 23), run as a user runs it.

Each case checks the one line the command prints, its exit status, and that every file
of the user's is unchanged (bytes and mtimes). The cases that are refused before Ray
starts run without Ray.
"""

import errno
import hashlib
import os
import signal
import socket
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


def _batch(inputs, output_dir, *flags, timeout=120, env=None):
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
        env=env or _env(),
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
        [sys.executable, "-c", "from nst_tf.commands.stylize import main; main()"]
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
    assert lines[-1].endswith("even tiled; give at least that, or lower --size")
    assert "0.0 GB" not in lines[-1]
    lines = _refused(tmp_path, "--memory_per_worker=0.01", "--tile_size=0")
    assert lines[-1].endswith("untiled (--tile_size=0); give at least that, or lower --size")
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


# --- what a batch takes, and where it writes --------------------------------------------------

# The nst-tf settings a batch refuses (an independent list: the reasons are in batch.py).
REFUSED = {
    "content",
    "output",
    "checkpoint_every",
    "checkpoint_dir",
    "resume",
    "trace",
    "save_every",
    "log_every",
    "memory_limit",
}
# Flags that are not settings: the batch's own, and --preset (shared with nst-tf).
BATCH_ONLY = {
    "preset",
    "inputs",
    "output_dir",
    "workers",
    "cpus_per_worker",
    "memory_per_worker",
    "ray_address",
    "ray_timeout",
    "max_retries",
    "overwrite",
    "format",
}


def _listed_flags(text):
    """The flag names a help text lists (`  --name:` or `  --[no]name:`)."""
    import re

    return set(re.findall(r"^\s+--(?:\[no\])?([a-z0-9_]+):", text, re.MULTILINE))


def test_help_lists_exactly_the_flags_a_batch_takes_and_refused_ones_get_a_line(tmp_path):
    import dataclasses

    from nst_tf.settings.config import Config

    settings = {field.name for field in dataclasses.fields(Config)}
    assert REFUSED <= settings
    command = [sys.executable, "-m", "nst_tf.commands.batch"]
    short = subprocess.run(
        command + ["--help"], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert short.returncode == 1 and not short.stderr, short.stderr  # absl's --help exits 1
    assert _listed_flags(short.stdout) == BATCH_ONLY | (settings - REFUSED)
    full = subprocess.run(
        command + ["--helpfull"], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert full.returncode == 1 and not full.stderr, full.stderr
    listed = _listed_flags(full.stdout)
    assert listed & settings == settings - REFUSED and listed >= BATCH_ONLY
    _photo(tmp_path / "in" / "photo.png")
    for flag in ("--resume", "--noresume", "--log_every=5", "--memory_limit=2", "-trace=t.json"):
        lines = _refused(tmp_path, flag)
        name = flag.lstrip("-").split("=")[0].removeprefix("no")
        assert lines[-1].startswith(f"nst-tf-batch: error: --{name} is not a batch flag: ")


@pytest.mark.parametrize(
    "folder", ["/", "/usr", "/etc", "/bin", "/usr/local/share/nst_out", "/var", "HOME"]
)
def test_a_system_folder_or_the_home_folder_is_refused(tmp_path, folder):
    folder = os.path.expanduser("~") if folder == "HOME" else folder
    existed = os.path.exists(folder)
    _photo(tmp_path / "in" / "photo.png")
    lines = _refused(tmp_path, output_dir=folder)
    assert lines[-1].startswith(f"nst-tf-batch: error: --output_dir={folder} is ")
    assert "system folder" in lines[-1] or "home folder" in lines[-1]
    assert os.path.exists(folder) == existed


def test_a_logdir_in_a_system_folder_is_refused(tmp_path):
    _photo(tmp_path / "in" / "photo.png")
    lines = _refused(tmp_path, "--logdir=/etc/nst_runs")
    assert "--logdir=/etc/nst_runs is a system folder" in lines[-1]
    assert not os.path.exists("/etc/nst_runs")


def test_a_worker_decodes_a_huge_png_as_nst_tf_does_in_bounded_memory(tmp_path):
    """A 9000x9000 PNG (a few hundred KB) at --size=64: the worker's decode keeps to the
    8-bit decode of the file, never a float32 copy at full size (972 MB)."""
    big = tmp_path / "big.png"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from PIL import Image\n"
            "Image.new('RGB', (9000, 9000), (90, 120, 150)).save(sys.argv[1])",
            big,
        ],
        check=True,
        timeout=120,
    )
    measure = (
        "import resource, sys\n"
        "from nst_tf.commands.work import load_photo\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "image = load_photo(sys.argv[1], 64)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) * 1024, *image.shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", measure, big],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    peak, *shape = map(int, result.stdout.split())
    full_float = 9000 * 9000 * 3 * 4
    assert shape == [128, 128, 3]  # twice --size, as nst-tf loads a content image
    assert peak < 0.5 * full_float, peak


def _chunks(path):
    import png

    return dict((kind, data) for kind, data in png.Reader(filename=str(path)).chunks())


def test_16_bit_prints_tiled_photos_a_glob_over_the_output_and_stale_ray_state(
    tmp_path, processes  # noqa: F811
):
    """One embedded run for four rules: --bit_depth=16 writes what nst-tf writes (16-bit
    PNG, the photo's ICC profile and DPI); a photo whose untiled estimate exceeds
    --memory_per_worker but that fits tiled is done (the engine's tiled plan); a `**`
    glob reaching the output folder gives the same photos on the rerun; and a stale
    ray_current_cluster, a dangling session_latest and a stale RAY_ADDRESS are ignored."""
    import zlib

    from PIL import ImageCms

    from nst_tf.engine import memory
    from nst_tf.settings.config import Config

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rng = np.random.default_rng(5)
    (tmp_path / "in").mkdir()
    pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in" / "print.png", icc_profile=profile, dpi=(300, 300))
    Image.fromarray(pixels[::-1]).save(tmp_path / "in" / "plain.jpg", quality=95)
    # What another Ray session left: an address file and a session link to nothing.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    stale = tmp_path.parent / f"{tmp_path.name}-raytmp"
    (stale / "ray").mkdir(parents=True)
    (stale / "ray" / "ray_current_cluster").write_text(dead)
    os.symlink(stale / "ray" / "session_gone", stale / "ray" / "session_latest")
    stale_before = _state(stale)
    # Less than the untiled step needs, enough for 32 px tiles (the engine's estimates).
    config = Config(
        size=64,
        min_size=0,
        optimizer="adam",
        precision="float32",
        content_layers=("block2_conv1",),
        style_layers=("block1_conv1", "block2_conv1"),
    )
    tiled = memory.estimated_peak_bytes(48, 64, config, tile=32)
    assert tiled < memory.estimated_peak_bytes(48, 64, config)
    flags = ["--size=64", "--bit_depth=16", f"--memory_per_worker={tiled / 1e9 + 1e-4:.4f}"]
    inputs, output_dir = f"{tmp_path}/**/*", tmp_path / "out"
    inputs_before = _state(tmp_path / "in")
    env = dict(_env(), RAY_TMPDIR=str(stale), RAY_ADDRESS=dead)
    run = _batch(inputs, output_dir, *flags, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "done 2, skipped 0" in run.stderr, run.stderr
    assert _state(stale) == stale_before and _state(tmp_path / "in") == inputs_before
    chunks = _chunks(output_dir / "print.png")
    assert chunks[b"IHDR"][8] == 16  # bits per channel
    assert zlib.decompress(chunks[b"iCCP"].split(b"\0", 1)[1][1:]) == profile
    ppm = round(300 / 0.0254)
    assert chunks[b"pHYs"] == ppm.to_bytes(4, "big") * 2 + b"\x01"
    plain = _chunks(output_dir / "plain.png")
    assert plain[b"IHDR"][8] == 16 and b"iCCP" not in plain and b"pHYs" not in plain
    # The rerun, whose glob now also matches the results: the same two photos, done.
    stamps = _state(output_dir)
    rerun = _batch(inputs, output_dir, *flags)
    assert rerun.returncode == 0, rerun.stderr
    assert "done 0, skipped 2" in rerun.stderr, rerun.stderr
    assert _state(output_dir) == stamps
    # Below the tiled minimum, refused up front, naming it.
    least = memory.smallest_budget(48, 64, config)
    lines = _refused(
        tmp_path,
        "--size=64",
        f"--memory_per_worker={least / 1e9 - 1e-3:.4f}",
        inputs=tmp_path / "in",
        output_dir=tmp_path / "out2",
    )
    assert f"less than the {least / 1e9:.3g} GB the smallest photo needs" in lines[-1]
    # 16 bits are PNG's: a JPEG batch is refused.
    assert (
        "--bit_depth=16 writes 16-bit PNG"
        in _refused(
            tmp_path,
            "--bit_depth=16",
            "--format=jpg",
            inputs=tmp_path / "in",
            output_dir=tmp_path / "out2",
        )[-1]
    )


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KB tmpfs, filled up but for its folder `out`; unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the tests as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", disk], check=True)
    try:
        (disk / "out").mkdir()
        try:
            with open(disk / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
        yield disk
    finally:
        subprocess.run(["umount", "-l", disk], check=True)


def test_a_full_disk_fails_each_photo_with_its_reason_and_the_batch_ends_with_a_summary(
    tmp_path, full_disk, processes  # noqa: F811
):
    for index in range(2):
        _photo(tmp_path / "in" / f"photo{index}.png", seed=index)
    inputs_before, disk_before = _state(tmp_path / "in"), _state(full_disk)
    before = _descendants()
    result = _batch(tmp_path / "in", full_disk / "out")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "done 0, skipped 0 (already done), failed 2" in lines[-3], result.stderr
    for index, line in enumerate(lines[-2:]):
        assert line.startswith(f"failed photo{index}: cannot write its result: "), line
        assert "No space left on device" in line
        assert line.endswith(
            "its error record could not be written either (No space left on device)"
        )
    assert _state(full_disk) == disk_before  # nothing half-written, the filler untouched
    assert _state(tmp_path / "in") == inputs_before
    assert not _wait_gone(_descendants() - before, 20)
