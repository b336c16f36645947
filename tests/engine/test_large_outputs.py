"""Issue 15: the memory plan, prints (16-bit, ICC profile, DPI) and the flags' bad values.

The tiled step's exactness is in test_tiling.py. The command-line cases run `python -m
nst_tf` in a child process, as test_bad_inputs.py does.
"""

import io
import os

import numpy as np
import png
import pytest
import test_bad_inputs
import tifffile
from absl import logging
from PIL import Image, ImageCms
from test_bad_inputs import PRECIOUS, cli_args, refuse, run_cli

from nst_tf.engine import memory
from nst_tf.engine.schedule import scale_steps
from nst_tf.errors import ConfigError
from nst_tf.io import images
from nst_tf.settings.config import Config

GB = 1e9
d = test_bad_inputs.d  # the fixture: a folder with good inputs and an output worth keeping


# --- the memory plan ----------------------------------------------------------------------


def _steps_of(config):
    """Each scale's steps of a Config's pyramid."""
    return scale_steps(
        config.min_size, config.size, config.coarse_steps, config.steps, config.schedule
    )


def test_a_scale_that_fits_is_not_tiled():
    plan = memory.plan_scale(512, 512, Config(), 16 * GB)
    assert plan.tile == 0 and plan.lbfgs_memory == 50


def test_auto_picks_the_largest_tile_that_fits():
    config = Config()
    budget = 12 * GB
    plan = memory.plan_scale(4096, 4096, config, budget)
    assert plan.tile and plan.tile % 16 == 0
    assert plan.peak <= budget
    assert memory.estimated_peak_bytes(4096, 4096, config, 0, 1) > budget  # untiled: no
    bigger = memory.estimated_peak_bytes(
        4096, 4096, config, plan.tile + 16, plan.lbfgs_memory, plan.split
    )
    assert bigger > budget
    # The history took no more than its share: 24 B per pixel per pair.
    assert plan.lbfgs_memory * 24 * 4096 * 4096 <= memory.HISTORY_SHARE * budget


def test_auto_prefers_the_split_step_where_the_tail_fits_whole():
    config = Config(precision="float32")  # the same estimate on every CPU
    plan = memory.plan_scale(1938, 2896, config, 20 * GB)
    assert plan.split and plan.tile and plan.peak <= 20 * GB
    assert memory.estimated_peak_bytes(1938, 2896, config, 0, plan.lbfgs_memory) > 20 * GB
    # The split step keeps the tail's activations for the whole image: at 4096x4096 they
    # do not fit in 12 GB, and the whole network runs tile by tile.
    plan = memory.plan_scale(4096, 4096, config, 12 * GB)
    assert plan.tile and not plan.split and plan.peak <= 12 * GB
    tail = memory.TAIL_SHARE * memory.BYTES_PER_PIXEL * 4096 * 4096
    assert tail > 12 * GB
    # A requested tile size is the head's where the split step fits.
    plan = memory.plan_scale(2048, 2048, Config(tile_size="512", precision="float32"), 64 * GB)
    assert plan.split and plan.tile == 512 and plan.lbfgs_memory == 50


def test_bfloat16_activations_are_estimated_at_their_size():
    whole = memory.estimated_peak_bytes(2048, 2048, Config(precision="float32"), 0, 0)
    half = memory.estimated_peak_bytes(2048, 2048, Config(precision="bfloat16"), 0, 0)
    pixels = 2048 * 2048
    assert whole - half == pytest.approx(
        (memory.BYTES_PER_PIXEL - memory.BFLOAT16_BYTES_PER_PIXEL) * pixels
    )


def test_lbfgs_history_is_fitted_and_said_in_one_line():
    config = Config(lbfgs_memory=100000)
    logged = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging, "info", lambda fmt, *args: logged.append(fmt % args))
        plan = memory.check_run(410, 512, config, 8 * GB)
    assert memory.MIN_PAIRS <= plan.lbfgs_memory < 100000
    assert plan.peak <= 8 * GB
    assert len(logged) == 1 and f"{plan.lbfgs_memory} L-BFGS pairs" in logged[0]


def test_adam_is_tiled_too():
    plan = memory.plan_scale(4096, 4096, Config(optimizer="adam"), 12 * GB)
    assert plan.tile and plan.peak <= 12 * GB


def test_a_fixed_tile_size_is_used_and_zero_never_tiles():
    assert memory.plan_scale(2048, 2048, Config(tile_size="500"), 64 * GB).tile == 496
    assert memory.plan_scale(400, 300, Config(tile_size="512"), 64 * GB).tile == 0
    with pytest.raises(ConfigError, match="--tile_size=0.*--tile_size=auto"):
        memory.plan_scale(8192, 8192, Config(tile_size="0"), 12 * GB)


def test_the_smallest_budget_is_what_the_message_promises():
    config = Config(memory_limit=0.5)
    with pytest.raises(ConfigError, match=r"--memory_limit >= (\d+\.\d)") as err:
        memory.plan_scale(4096, 2731, config, 0.5 * GB)
    enough = float(err.value.args[0].rsplit(">= ", 1)[1])
    plan = memory.plan_scale(4096, 2731, config, enough * GB)
    assert plan.tile and plan.peak <= enough * GB


def test_the_auto_schedule_runs_fewer_steps_only_above_1024_px():
    config = Config(size=4096, min_size=256)
    steps = _steps_of(config)
    assert steps[:5] == [60] * 5  # 256 ... 1024 px
    assert steps[5:] == [42, 30, 21, 35]  # 1448, 2048, 2896 px, then the final 140 / 4
    assert _steps_of(Config(size=4096, schedule="fixed")) == [60] * 8 + [140]
    assert _steps_of(Config()) == [60, 60, 140]


# --- prints -------------------------------------------------------------------------------


def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_16_bit_tiff_keeps_the_float_precision_the_profile_and_the_dpi(tmp_path):
    image = np.random.default_rng(0).uniform(0, 255, (30, 40, 3)).astype(np.float32)
    info = images.PrintInfo(_srgb_profile(), (300.0, 300.0))
    images.save_image(image, str(tmp_path / "out.tif"), 16, info)
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        page = tif.pages[0]
        assert page.dtype == np.uint16 and page.shape == (30, 40, 3)
        assert page.iccprofile == info.icc_profile
        assert page.tags["XResolution"].value == (300, 1)
        read = page.asarray() / 257.0
    # 16 bits hold the float result to 1/514 of a level, 8 bits only to half a level.
    assert np.abs(read - image).max() <= 0.5 / 257 + 1e-9


def _read_png16(path) -> tuple[np.ndarray, dict, bytes | None]:
    """A PNG's pixels, pypng's metadata and its iCCP profile, read independently of ours."""
    reader = png.Reader(filename=str(path))
    width, height, rows, meta = reader.asDirect()
    pixels = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, -1)
    with Image.open(path) as img:  # Pillow decodes the iCCP chunk itself
        return pixels, meta, img.info.get("icc_profile")


def test_16_bit_png_keeps_the_float_precision_the_profile_and_the_dpi(tmp_path):
    image = np.random.default_rng(1).uniform(0, 255, (30, 40, 3)).astype(np.float32)
    info = images.PrintInfo(_srgb_profile(), (300.0, 300.0))
    images.save_image(image, str(tmp_path / "out.png"), 16, info)
    pixels, meta, profile = _read_png16(tmp_path / "out.png")
    assert meta["bitdepth"] == 16 and pixels.shape == (30, 40, 3)
    assert profile == info.icc_profile
    # pHYs holds pixels per metre: 300 dpi is 11811 px/m.
    assert tuple(meta["physical"]) == (11811, 11811, True)
    assert np.abs(pixels / 257.0 - image).max() <= 0.5 / 257 + 1e-9


@pytest.mark.parametrize("extension", [".tif", ".png"])
def test_the_command_line_writes_a_16_bit_print_upright_with_the_contents_profile(d, extension):
    profile = _srgb_profile()
    photo = Image.fromarray(np.random.default_rng(4).integers(0, 256, (40, 56, 3), np.uint8))
    exif = Image.Exif()
    exif[274] = 6  # "rotate 90 degrees clockwise to view": the photo is portrait
    photo.save(d / "photo.jpg", icc_profile=profile, dpi=(240, 240), exif=exif.tobytes())
    args = cli_args(d, content=d / "photo.jpg", output=d / f"print{extension}")
    args += ["--size=64", "--min_size=0", "--steps=2", "--bit_depth=16", "--checkpoint_every=0"]
    result = run_cli(*args, cwd=d)
    assert result.returncode == 0, result.stderr
    if extension == ".png":
        pixels, meta, icc = _read_png16(d / "print.png")
        assert meta["bitdepth"] == 16 and pixels.shape == (64, 46, 3)  # upright, portrait
        assert icc == profile
        assert tuple(meta["physical"]) == (round(240 / 0.0254), round(240 / 0.0254), True)
        kinds = [kind for kind, _ in png.Reader(filename=str(d / "print.png")).chunks()]
        assert b"eXIf" not in kinds and kinds.index(b"iCCP") < kinds.index(b"IDAT")
        return
    with tifffile.TiffFile(d / "print.tif") as tif:
        page = tif.pages[0]
        assert page.dtype == np.uint16 and page.shape == (64, 46, 3)  # upright, portrait
        assert page.iccprofile == profile
        assert page.tags["XResolution"].value == (240, 1)
        assert "Orientation" not in page.tags and "ExifTag" not in page.tags


def test_an_8_bit_png_carries_the_profile_and_dpi(tmp_path):
    info = images.PrintInfo(_srgb_profile(), (300.0, 300.0))
    images.save_image(np.zeros((8, 8, 3)), str(tmp_path / "out.png"), 8, info)
    with Image.open(tmp_path / "out.png") as img:
        assert img.info["icc_profile"] == info.icc_profile
        assert tuple(round(v) for v in img.info["dpi"]) == (300, 300)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    (tmp_path / "plain.png").write_bytes(buffer.getvalue())
    assert images.read_print_info(str(tmp_path / "plain.png")) == images.PrintInfo()


@pytest.mark.parametrize(
    "content, extension, bit_depth, dropped",
    [
        ("scan.tif", ".png", 8, "DPI"),
        ("scan.tif", ".png", 16, "DPI"),
        ("photo.jpg", ".png", 8, "profile"),
        ("photo.jpg", ".png", 16, "profile"),
    ],
)
def test_a_corrupt_dpi_or_profile_in_the_content_is_dropped_not_fatal(
    d, content, extension, bit_depth, dropped
):
    """Issue 23: a 4e9 DPI TIFF failed at save time after every step; a 2.85 MB garbage
    profile was copied into a PNG that nst_tf then refused to read."""
    photo = Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 56, 3), np.uint8))
    if content == "scan.tif":
        photo.save(d / content, dpi=(4e9, 4e9))
    else:
        photo.save(d / content, icc_profile=np.random.default_rng(6).bytes(2_850_000))
    output = d / f"print{extension}"
    args = cli_args(d, content=d / content, output=output)
    args += ["--size=32", "--min_size=0", "--steps=2", f"--bit_depth={bit_depth}"]
    result = run_cli(*args, "--checkpoint_every=0", cwd=d)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warning = [line for line in result.stderr.splitlines() if content in line]
    assert len(warning) == 1 and f"the output gets no {dropped}" in warning[0], result.stderr
    assert images.load_image(str(output)).shape == (23, 32, 3)
    with Image.open(output) as img:
        assert "icc_profile" not in img.info and "dpi" not in img.info
    assert (d / "out.png").read_bytes() == PRECIOUS


# --- bad values through the command line ------------------------------------------------------


def test_tile_size_smaller_than_the_halo(d):
    refuse(d, "--tile_size=32", "halo", "--tile_size >= 80", tile_size=32)


def test_memory_limit_below_any_tiling(d):
    # The default 512 px run of a 40x50 photo (512x410) needs about 1.1 GB even tiled.
    message = refuse(d, "--memory_limit=0.5", "--memory_limit >= 1.", memory_limit=0.5)
    assert float(message.rsplit(">= ", 1)[1]) <= 1.5


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("tile_size", -16, "--tile_size=-16"),
        ("tile_size", "big", "--tile_size=big"),
        ("memory_limit", -1, "--memory_limit=-1"),
        ("bit_depth", 12, "--bit_depth=12"),
    ],
)
def test_bad_values(d, flag, value, expected):
    refuse(d, expected, **{flag: value})


def test_16_bits_needs_a_png_or_a_tiff(d):
    refuse(d, "--bit_depth=16", ".png or .tif", bit_depth=16, output=d / "print.jpg")
    assert not os.path.exists(d / "print.jpg")
    assert (d / "out.png").read_bytes() == PRECIOUS
