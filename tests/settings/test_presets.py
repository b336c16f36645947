"""--preset and Config.from_preset: named sets of settings, overridden by explicit ones.

TF-free: the command lines fail or stop before TensorFlow loads, and the settings a command
line builds are read back from a child process that parses the flags as nst-tf does.
"""

import dataclasses
import json
import subprocess
import sys

import pytest
from clis import run_cli

from nst_tf.errors import ConfigError
from nst_tf.settings import presets
from nst_tf.settings.config import Config, validate

VIDEO = [sys.executable, "-c", "from nst_tf.commands.video_cli import main; main()"]
BATCH = [sys.executable, "-m", "nst_tf.commands.batch"]
# The settings nst-tf builds from ARGS, parsed by its own flag definitions.
SHOW = (
    "import json, sys\n"
    "from nst_tf.commands import common, flags\n"
    "flags.define_preset_flag(); flags.define_flags(); common.parse(sys.argv)\n"
    "print(json.dumps(flags.config_from_flags().to_dict()))\n"
)


def settings_of(*args, cwd=None) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", SHOW, *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _listed(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_names_real_settings_with_valid_values(name):
    fields = {field.name for field in dataclasses.fields(Config)}
    chosen = presets.PRESETS[name].settings
    assert set(chosen) <= fields
    config = validate(Config.from_preset(name))
    for setting, value in chosen.items():
        assert getattr(config, setting) == value
        assert value != getattr(Config(), setting), f"{name} sets {setting} to its default"


def test_balanced_is_todays_defaults_exactly():
    assert Config.from_preset("balanced") == Config()
    assert settings_of("--preset=balanced") == settings_of()


def test_keywords_override_the_preset():
    fast = Config.from_preset("fast", size=100)
    assert fast.size == 100
    for setting, value in presets.PRESETS["fast"].settings.items():
        assert getattr(fast, setting) == value
    assert Config.from_preset("painterly", style_weight=0.01).style_strength is None


def test_explicit_flags_override_the_preset(tmp_path):
    fast = presets.PRESETS["fast"].settings
    given = settings_of("--preset=fast", "--size=100")
    assert given["size"] == 100
    assert all(given[name] == _listed(value) for name, value in fast.items())
    # As flags, fast's steps would also fix the schedule (steps given by hand are meant at
    # every scale); as a preset they are defaults, and --schedule stays auto.
    by_hand = settings_of(*(f"--{k}={v}" for k, v in fast.items()))
    assert given == {**by_hand, "size": 100, "schedule": "auto"}
    flagfile = tmp_path / "run.flags"
    flagfile.write_text(f"--preset=fast\n--size=100\n--steps={fast['steps'] + 7}\n")
    from_file = settings_of(f"--flagfile={flagfile}")
    assert from_file == {**given, "steps": fast["steps"] + 7, "schedule": "fixed"}


def test_an_explicit_style_weight_replaces_the_presets_strength():
    given = settings_of("--preset=painterly", "--style_weight=0.01")
    assert given["style_weight"] == 0.01 and given["style_strength"] is None
    assert given["style_scale"] == [1.5]  # the preset's other settings stay
    assert settings_of("--preset=painterly", "--style_strength=3")["style_strength"] == 3.0


def test_help_lists_every_preset_on_one_line():
    lines = run_cli("--help").stdout.splitlines()
    for name, preset in presets.PRESETS.items():
        assert f"    {name}: {preset.summary}" in lines
    for command in (VIDEO, BATCH):
        out = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
        assert "--preset:" in out.stdout and "    fast: " in out.stdout


def test_an_unknown_preset_is_one_line_listing_the_known_ones(tmp_path):
    result = run_cli("--preset=quick", f"--output={tmp_path}/out.png")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "nst-tf: error: --preset='quick' is unknown; choose " + ", ".join(presets.names())
    ]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="choose balanced, fast"):
        Config.from_preset("quick")


def test_a_preset_goes_through_the_settings_checks(tmp_path):
    """print's 16 bits need a PNG or TIFF: a JPEG output is refused, naming the cause."""
    result = run_cli("--preset=print", f"--output={tmp_path}/out.jpg")
    assert result.returncode == 1
    assert "--bit_depth=16 writes PNG or TIFF" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_a_preset_for_settings_a_command_lacks_is_refused(tmp_path):
    result = subprocess.run(
        [*VIDEO, "--preset=print", "--input=clip.mp4", f"--output={tmp_path}/out.mp4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "--preset=print is not for this command: it sets --bit_depth, which this command "
        "does not have; choose another preset"
    )
    assert len(result.stderr.splitlines()) == 1
