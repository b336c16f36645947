"""Named sets of settings shipped with nst_tf: `--preset=NAME`, `Config.from_preset(NAME)`.

A preset is a starting point, not a mode: it is a mapping of setting names to values, and
every setting given explicitly (a flag, a flag file, a keyword) wins over the preset's.
The values were chosen by measuring small runs (docs/presets.md says what was measured).
This module is TF-free and holds data only; the settings' checks apply to its values as to
any other (tests/settings/test_presets.py validates every preset).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from nst_tf.errors import ConfigError


class Preset(NamedTuple):
    """One preset.

    Attributes:
        summary: What it is for, in one line (shown by --help).
        settings: Setting name -> value; the settings it does not name keep their defaults.
    """

    summary: str
    settings: Mapping[str, object]


PRESETS: dict[str, Preset] = {
    "balanced": Preset("today's defaults: 512 px, 3 scales, 60/60/140 steps", {}),
    "fast": Preset(
        "512 px in 40 % of balanced's CPU time (30/30/40 steps)",
        {"coarse_steps": 30, "steps": 40},
    ),
    "painterly": Preset(
        "stronger style, larger strokes (strength 2, style scale 1.5)",
        {"style_strength": 2.0, "style_scale": (1.5,), "style_layer_weight_exp": 1.5},
    ),
    "photo": Preset(
        "the photo's colours kept, a lighter touch (strength 0.5)",
        {"preserve_color": "luminance", "style_strength": 0.5},
    ),
    "converged": Preset(
        "750 final-scale steps, closer to the optimum (3.4x balanced)",
        {"steps": 750},
    ),
    "print": Preset(
        "a 2048 px 16-bit PNG for printing (output .png or .tif)",
        {"size": 2048, "bit_depth": 16},
    ),
}


def names() -> tuple[str, ...]:
    """The presets' names, in the order --help lists them."""
    return tuple(PRESETS)


def preset_settings(name: str) -> dict[str, object]:
    """The settings of preset `name`.

    Raises:
        ConfigError: no preset has that name (the message lists the known ones).
    """
    if name not in PRESETS:
        shown = repr(name) if isinstance(name, str) and name.isprintable() else "?"
        raise ConfigError(f"--preset={shown} is unknown; choose {', '.join(PRESETS)}")
    return dict(PRESETS[name].settings)


# Settings that are one control: one given explicitly replaces the preset's other.
_ONE_CONTROL = (("style_weight", "style_strength"),)


def with_overrides(name: str, overrides: Mapping[str, object]) -> dict[str, object]:
    """The preset's settings with `overrides` (the explicitly given settings) on top.

    An explicit --style_weight also drops the preset's --style_strength (the dial sets the
    style weight), and the other way round.
    """
    chosen = preset_settings(name)
    for pair in _ONE_CONTROL:
        for given, other in (pair, pair[::-1]):
            if given in overrides:
                chosen.pop(other, None)
    return {**chosen, **overrides}


def help_text() -> str:
    """The --preset flag's help: one line per preset."""
    lines = ["A named set of settings; flags given explicitly override it. Presets:"]
    lines += [f"{name}: {preset.summary}" for name, preset in PRESETS.items()]
    return "\n".join(lines)
