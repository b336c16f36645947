"""Never destroy a user's file, never lose a finished run.

The quick CLI refusals are in test_bad_inputs.py; here are the cases that need a real run
(damaged checkpoints, stopping, resuming a finished run, exports) and the library pieces
they rest on (the checkpoint manifest, the written-path rules, bounded image decoding).
"""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from clis import run_cli, run_export
from PIL import Image
from pngs import bilevel_png

from nst_tf.commands.run import SignalGuard
from nst_tf.engine import checkpoint_files
from nst_tf.engine.memory import BASE_BYTES, STYLE_BYTES_PER_PIXEL, check_memory
from nst_tf.errors import ConfigError, OutputError
from nst_tf.io import paths
from nst_tf.settings.config import Config, layer_channels, split_paths

TINY = [
    "--size=32",
    "--min_size=0",
    "--steps=2",
    "--checkpoint_every=1",
    "--style_layers=block1_conv1,block2_conv1",
    "--content_layers=block2_conv1",
    "--log_every=1",
]


def one_error_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("nst-tf: error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    return errors[0]


# --- checkpoints: a manifest of our files; nothing else is deleted -------------------------


def test_clear_deletes_only_our_files(tmp_path):
    ckpt = tmp_path / "ckpt"
    checkpoint_files.clear(str(ckpt))  # a new directory becomes ours
    ours = ["checkpoint", "ckpt-5.index", "ckpt-5.data-00000-of-00001"]
    for name in ours + ["notes.txt", "checkpoint.tmp1f2e"]:
        (ckpt / name).write_text(name)
    (ckpt / "ckpt-9_temp").mkdir()  # what a save killed mid-way leaves
    checkpoint_files.clear(str(ckpt))
    assert sorted(os.listdir(ckpt)) == sorted(
        [checkpoint_files.MARKER, "notes.txt", "checkpoint.tmp1f2e"]
    )


def test_foreign_checkpoint_files_block_clear_and_resume(tmp_path):
    ckpt = tmp_path / "ckpt"
    checkpoint_files.clear(str(ckpt))
    (ckpt / "ckpt-best.index").write_text("another project's")
    with pytest.raises(ConfigError, match="ckpt-best.index"):
        checkpoint_files.clear(str(ckpt))
    assert (ckpt / "ckpt-best.index").read_text() == "another project's"
    unmarked = tmp_path / "unmarked"
    unmarked.mkdir()
    (unmarked / "ckpt-1.index").write_text("a TensorFlow program's default name")
    with pytest.raises(ConfigError, match="did not write"):
        checkpoint_files.check_ours(str(unmarked))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run with checkpoints every step: (folder, output, checkpoint dir)."""
    folder = tmp_path_factory.mktemp("finished")
    out = folder / "out.png"
    result = run_cli(*TINY, f"--output={out}")
    assert result.returncode == 0, result.stderr
    return folder, out, folder / "out.ckpt"


def test_resuming_a_finished_run_says_so(finished):
    folder, out, ckpt = finished
    before = out.read_bytes()
    result = run_cli(*TINY, f"--output={out}", "--resume")
    assert result.returncode == 0, result.stderr
    assert "is of a finished run: no step left" in result.stderr
    assert "nan" not in result.stderr and "done: 0 steps" not in result.stderr
    assert out.read_bytes() == before  # the same image, written again


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path):
    path.write_bytes(b"")


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, suffix",
    [
        (_truncate, ".data-00000-of-00001"),
        (_empty, ".data-00000-of-00001"),
        (_flip, ".data-00000-of-00001"),
        (_flip, ".index"),
        (_empty, ".index"),
        (_empty, "checkpoint"),
    ],
    ids=[
        "truncated_data",
        "emptied_data",
        "flipped_data",
        "flipped_index",
        "emptied_index",
        "state",
    ],
)
def test_damaged_checkpoint_on_resume_is_one_line(tmp_path, finished, damage, suffix):
    import shutil

    _, out, ckpt = finished
    copy = tmp_path / "out.ckpt"
    shutil.copytree(ckpt, copy)
    mine = tmp_path / "out.png"
    mine.write_bytes(b"precious")
    newest = max(
        int(n.split("-")[1].split(".")[0]) for n in os.listdir(copy) if n.endswith(".index")
    )
    target = copy / ("checkpoint" if suffix == "checkpoint" else f"ckpt-{newest}{suffix}")
    damage(target)
    result = run_cli(*TINY, f"--output={mine}", "--resume")
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"the checkpoint in {copy} is damaged; run without --resume to start again" in line
    assert mine.read_bytes() == b"precious"


@pytest.mark.slow
def test_first_ctrl_c_is_acknowledged_and_no_checkpoint_is_claimed(tmp_path):
    out = tmp_path / "out.png"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nst_tf",
            *TINY,
            "--steps=100000",
            "--checkpoint_every=0",
            f"--output={out}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in process.stderr:  # wait for the first step
            if line.startswith("step "):
                break
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "SIGINT: stopping after this step... (Ctrl-C again to stop now)" in rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith("nst-tf: error: stopped by SIGINT at step ")
    assert f"image saved to {out}" in last and "no checkpoint" in last
    assert "--resume to continue" not in last
    assert not (tmp_path / "out.ckpt").exists()
    with Image.open(out) as image:
        assert image.size == (32, 24)


def test_second_signal_stops_at_once():
    guard = SignalGuard()
    guard._handle(signal.SIGINT, None)
    assert guard.received == signal.SIGINT  # the first one waits for the step to end
    with pytest.raises(KeyboardInterrupt):
        guard._handle(signal.SIGINT, None)


# --- written paths against read paths ------------------------------------------------------


def test_written_paths_resolve_dotdot_and_symlinks(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "link")
    written = [paths.Written("trace", str(tmp_path / "link" / "sub" / ".." / "photo.jpg"))]
    with pytest.raises(OutputError, match="is also an input"):
        paths.check_no_overlap(written, [("content", str(tmp_path / "photo.jpg"))])


def test_a_family_of_written_files_is_checked_by_its_pattern(tmp_path):
    # How numbered snapshots (out.step00100.png beside out.png) are declared.
    written = [
        paths.Written("save_every", str(tmp_path / "out.png"), pattern=r"out\.step\d{5}\.png")
    ]
    paths.check_no_overlap(written, [("content", str(tmp_path / "out.step1.png"))])
    with pytest.raises(OutputError, match="looks like a file --save_every writes"):
        paths.check_no_overlap(written, [("content", str(tmp_path / "out.step00100.png"))])


def test_targets_out_equal_to_the_style_is_refused(tmp_path):
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "p.jpg")
    before = (tmp_path / "p.jpg").read_bytes()
    result = run_export(
        f"--style={tmp_path}/p.jpg", f"--targets_out={tmp_path}/sub/../p.jpg", cwd=tmp_path
    )
    assert result.returncode == 1
    line = one_error_line(result)
    assert "--targets_out=" in line and "is also an input (--style=" in line
    assert (tmp_path / "p.jpg").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["p.jpg"]


# --- memory: the style pass counts ---------------------------------------------------------


def test_memory_check_counts_the_styles_at_their_scale(monkeypatch):
    content = np.zeros((40, 50, 3), np.float32)
    style = np.zeros((30, 30, 3), np.float32)
    config = Config(size=256, style_scale=(8.0,))
    style_bytes = BASE_BYTES + STYLE_BYTES_PER_PIXEL * 2048 * 2048  # 256 x 8, square
    pages = int(style_bytes / 4096)
    monkeypatch.setattr(os, "sysconf", lambda name: 4096 if name == "SC_PAGE_SIZE" else pages)
    with pytest.raises(ConfigError, match="--style_scale=8.0 measures a style at 2048x2048"):
        check_memory(config, content, [style])
    check_memory(Config(size=256, style_scale=(4.0,)), content, [style])  # a quarter: fits


def test_vgg19_channel_counts():
    assert [layer_channels(f"block{b}_conv1") for b in range(1, 6)] == [64, 128, 256, 512, 512]


# --- images: bounded decoding -----------------------------------------------------------------


def test_huge_png_for_a_small_run_is_decoded_cheaply(tmp_path):
    (tmp_path / "big.png").write_bytes(bilevel_png(9000, 9000))
    # VmHWM is this process's own peak; getrusage's ru_maxrss would carry the parent
    # pytest's peak across fork and exec.
    probe = textwrap.dedent(f"""
        from nst_tf.io import images
        image = images.load_image({str(tmp_path / "big.png")!r}, limit=128)
        assert image.shape == (128, 128, 3), image.shape
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        print(int(status.split()[0]) // 1024)
        """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # Mode "1" decodes to 81 MB and RGB to 243 MB; the float32 copy of the whole image
    # (972 MB) and the rest of the old path (2.9 GB in all) must not happen.
    assert int(result.stdout) < 500, f"peak {result.stdout.strip()} MB"


def test_large_jpeg_is_drafted_at_a_fraction(tmp_path):
    from nst_tf.io import images

    Image.new("RGB", (4000, 3000), (10, 120, 200)).save(tmp_path / "big.jpg", quality=90)
    loaded = images.load_image(str(tmp_path / "big.jpg"), limit=500)
    assert loaded.shape == (375, 500, 3)
    np.testing.assert_allclose(loaded.mean(axis=(0, 1)), [10, 120, 200], atol=3)


# --- everyday paths ------------------------------------------------------------------------


def test_a_whole_existing_name_with_commas_is_one_entry(tmp_path):
    named = tmp_path / "Starry Night, 1889.jpg"
    named.write_bytes(b"x")
    assert split_paths(str(named)) == [str(named)]
    assert split_paths("a.png, b.png") == ["a.png", "b.png"]
    assert Config(style_mask=str(named)).style_mask == (str(named),)
    assert Config(style=str(named)).style_paths() == [str(named)]


@pytest.mark.slow
def test_export_honours_the_umask_and_describes_from_json(tmp_path):
    script = textwrap.dedent(f"""
        import os
        os.umask(0o022)
        from nst_tf.io.export import export_features
        export_features({str(tmp_path / "features")!r}, ["block1_conv1"], None)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    export = tmp_path / "features"
    assert stat.S_IMODE(export.stat().st_mode) == 0o755
    described = run_export(f"--describe={export}")
    assert described.returncode == 0, described.stderr
    meta = json.loads(described.stdout)
    assert meta["layers"] == ["block1_conv1"] and meta["weights"]["kind"] == "random (untrained)"


def test_describe_reads_json_and_never_loads_the_model(tmp_path):
    export = tmp_path / "crafted"
    export.mkdir()
    # Not a loadable SavedModel at all: loading it would fail, describing must not try.
    (export / "saved_model.pb").write_bytes(b"\x08\x01 crafted graph that would run on load")
    (export / "nst_tf.json").write_text(json.dumps({"layers": ["block1_conv1"]}))
    from nst_tf.io.export import read_metadata

    assert read_metadata(str(export)) == {"layers": ["block1_conv1"]}
    (export / "nst_tf.json").unlink()
    with pytest.raises(OutputError, match="without an nst_tf.json"):
        read_metadata(str(export))
    os.mkfifo(export / "nst_tf.json")
    with pytest.raises(OutputError, match="FIFO"):
        read_metadata(str(export))


def test_names_with_commas_survive_blending_and_folders(tmp_path):
    named = tmp_path / "Starry Night, 1889.jpg"
    named.write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    assert split_paths(f"{named}, {tmp_path}/b.png,missing.png") == [
        str(named),
        f"{tmp_path}/b.png",
        "missing.png",
    ]
    folder = tmp_path / "styles"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "Wave, 1831.png")
    Image.new("RGB", (8, 8)).save(folder / "z.png")
    from nst_tf.commands.preflight import expand_styles

    expanded = expand_styles(Config(style=f"{folder},{named}"))
    assert expanded.style_paths() == [
        str(folder / "Wave, 1831.png"),
        str(folder / "z.png"),
        str(named),
    ]
    assert expanded.style_blend_weights == (0.25, 0.25, 0.5)
