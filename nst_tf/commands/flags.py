"""The commands' flags, made from the settings' descriptions, and the settings read back.

Every flag of a setting is defined here from its one description (`setting(...)` in
nst_tf.settings), so its default, help and type are never copied; each command picks the
settings it takes, and reads them back as a Config (or another settings dataclass).
"""

from __future__ import annotations

import dataclasses
import sys

from absl import flags

from nst_tf.errors import ConfigError
from nst_tf.settings import presets
from nst_tf.settings.config import Config
from nst_tf.settings.fields import kind_of

FLAGS = flags.FLAGS


def define_flag(name: str, default, help_text: str, kind: type, flag: str | None = None) -> None:
    """Defines one absl flag.

    Args:
        name: the flag's name.
        default: its default; a tuple makes a comma-separated list flag.
        help_text: its help line.
        kind: the value's type (str, bool, int, float, or tuple for a list).
        flag: "string" to take a tuple setting as one string (a setting's `flag`).
    """
    if flag == "string" or kind is str:
        text = ",".join(default) if isinstance(default, tuple) else default
        flags.DEFINE_string(name, text, help_text)
    elif kind is bool:
        flags.DEFINE_bool(name, default, help_text)
    elif kind is int:
        flags.DEFINE_integer(name, default, help_text)
    elif kind is float:
        flags.DEFINE_float(name, default, help_text)
    else:  # a tuple: a comma-separated list
        flags.DEFINE_list(name, [str(v) for v in default], help_text)


def define_flags(names: tuple[str, ...] | None = None, settings: type = Config) -> tuple[str, ...]:
    """Defines the absl flags of some settings of a settings dataclass.

    Args:
        names: the settings to define flags for; None: all of them.
        settings: Config, or another dataclass whose fields are made with `setting(...)`.

    Returns:
        The names of the flags defined, in the dataclass's order.
    """
    chosen = []
    for field in dataclasses.fields(settings):
        if names is None or field.name in names:
            meta = field.metadata
            define_flag(field.name, field.default, meta["help"], kind_of(field), meta["flag"])
            chosen.append(field.name)
    return tuple(chosen)


def define_preset_flag() -> tuple[str, ...]:
    """Defines --preset (its help lists the presets); returns its name."""
    flags.DEFINE_string("preset", None, presets.help_text())
    return ("preset",)


def _floats(flag: str, values: list[str]) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise ConfigError(
            f"--{flag} takes comma-separated numbers, got {','.join(values)}"
        ) from None


def _with_preset(values: dict, settings: type) -> dict:
    """`values` with the --preset's settings in place of the defaults of the flags not
    given explicitly (on the command line or in a flag file).

    Raises:
        ConfigError: the preset is unknown, or sets a setting this command has no flag
            for (a 16-bit print for a video).
    """
    if "preset" not in FLAGS or FLAGS.preset is None or settings is not Config:
        return values
    foreign = [name for name in presets.preset_settings(FLAGS.preset) if name not in values]
    if foreign:
        raise ConfigError(
            f"--preset={FLAGS.preset} is not for this command: it sets --{foreign[0]}, "
            f"which this command does not have; choose another preset"
        )
    given = {name: value for name, value in values.items() if FLAGS[name].present}
    return {**values, **presets.with_overrides(FLAGS.preset, given)}


def config_from_flags(settings: type = Config):
    """Builds a Config (or another settings dataclass) from the parsed flags.

    The settings this command has no flag for keep their defaults. With --preset, the
    preset's settings replace the defaults of the flags not given explicitly.

    Args:
        settings: the settings dataclass to build.

    Returns:
        An instance of `settings`.

    Raises:
        ConfigError: a list of numbers that is not one, or a preset not for this command.
    """
    values = {}
    for field in dataclasses.fields(settings):
        if field.name not in FLAGS:
            continue
        value = FLAGS[field.name].value
        if str(field.type) == "tuple[float, ...]":
            value = _floats(field.name, value)
        values[field.name] = value
    values = _with_preset(values, settings)
    # Steps given on the command line are what the user wants at every scale.
    steps_given = any(name in FLAGS and FLAGS[name].present for name in ("steps", "coarse_steps"))
    has_schedule = "schedule" in {field.name for field in dataclasses.fields(settings)}
    if has_schedule and "schedule" in FLAGS and not FLAGS["schedule"].present and steps_given:
        values["schedule"] = "fixed"
    return settings(**values)


def settings_flag_file() -> tuple[str, set[str]]:
    """The settings' flags as parsed, for the record a run leaves beside its result.

    Returns:
        (flag-file text of the flags defined here, names of those given explicitly).
    """
    ours = FLAGS.get_flags_for_module(sys.modules[__name__])
    text = "\n".join(line for line in (flag.serialize() for flag in ours) if line)
    return text, {flag.name for flag in ours if flag.present}
