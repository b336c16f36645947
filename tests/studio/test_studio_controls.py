"""The studio's controls come from the settings' descriptions, and their values and flag
files read back as nst-tf reads them (no browser, no TensorFlow)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from nst_tf.errors import ConfigError
from nst_tf.settings.config import RECIPE, Config
from nst_tf.studio.controls import advanced_controls, config_values, flag_lines

FIELDS = {field.name: field for field in dataclasses.fields(Config)}


def test_the_advanced_panel_is_made_from_the_settings():
    controls = {control.name: control for control in advanced_controls()}
    recipe = {name for name, f in FIELDS.items() if f.metadata["lifetime"] == RECIPE}
    main_panel = {"size", "style_blend_weights", "style_strength", "checkpoint_every"}
    assert recipe - set(controls) <= main_panel
    for name, control in controls.items():
        assert control.help == FIELDS[name].metadata["help"]
    assert controls["optimizer"].kind == "choice"
    assert set(controls["optimizer"].choices) == {"lbfgs", "adam", "lbfgs_scipy"}
    assert controls["init"].choices == ("content", "noise", "style")
    assert controls["steps"].kind == "int" and controls["steps"].default == Config().steps
    assert controls["style_layers"].default == ",".join(Config().style_layers)


def test_values_become_config_arguments_or_one_line_errors():
    values = config_values(
        {"size": "64", "steps": 12.0, "style_blend_weights": "2, 1", "optimizer": "adam"}
    )
    config = Config(style="a.png,b.png", **values)
    assert (config.size, config.steps, config.style_blend_weights) == (64, 12, (2.0, 1.0))
    with pytest.raises(ConfigError, match="steps must be a whole number, got 1.5"):
        config_values({"steps": 1.5})
    with pytest.raises(ConfigError, match="'output' is not a setting the studio takes"):
        config_values({"output": "/etc/passwd"})


def test_flag_lines_read_back_as_the_same_settings():
    config = Config(
        size=96,
        style_layers=("block1_conv1", "block2_conv1"),
        style_blend_weights=(2.0, 1.0),
        deterministic=True,
    )
    names = ("size", "style_layers", "style_blend_weights", "deterministic")
    lines = flag_lines({name: getattr(config, name) for name in names})
    # Read back by nst-tf's own flag definitions, in a fresh process (absl's flags are global).
    code = (
        "import json, sys\n"
        "from nst_tf.commands.flags import FLAGS, config_from_flags, define_flags\n"
        "define_flags()\n"
        "FLAGS(['nst-tf', *sys.argv[1:]])\n"
        "c = config_from_flags()\n"
        f"print(json.dumps([getattr(c, n) for n in {names!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *lines], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == [96, ["block1_conv1", "block2_conv1"], [2.0, 1.0], True]


def test_loopback_is_told_from_other_hosts():
    from nst_tf.commands.studio import is_loopback

    assert all(map(is_loopback, ("127.0.0.1", "127.0.0.2", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "192.168.1.5", "::", "example.org")))
