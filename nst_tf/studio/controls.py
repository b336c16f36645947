"""The studio's controls, made from the settings' own descriptions (no hand-copied help).

Each setting made with `setting()` carries its default, help text and lifetime; the
studio offers the ones that change the picture (RECIPE) and the few that decide how it is
computed on this machine, as typed controls that a page (or a script) fills in. Values
come back as text, numbers or booleans and are turned into the settings' arguments here, with a
one-line ConfigError naming the control when one cannot be read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from nst_tf.errors import ConfigError
from nst_tf.settings import config as settings
from nst_tf.settings.config import INIT_KEYWORDS, RECIPE, RUNTIME, setting_fields

# On the main panel (or decided by the studio) rather than in the advanced panel.
MAIN = ("size", "style_blend_weights", "style_strength", "preset")
# Decided by the studio: checkpoints make Stop and Resume work; resume is the Resume button.
MANAGED = ("checkpoint_every", "resume")
# The runtime settings worth a control: memory, tiling, precision, repeatability.
RUNTIME_CONTROLS = ("memory_limit", "tile_size", "precision", "xla", "deterministic")


@dataclasses.dataclass(frozen=True)
class Control:
    """One setting as a control.

    Attributes:
        name: The setting's name (also its flag).
        kind: "choice", "bool", "int", "float", "floats" (comma-separated numbers),
            "list" (comma-separated names) or "text".
        default: The setting's default, as the control shows it.
        help: The setting's help text.
        choices: The allowed values of a "choice".
    """

    name: str
    kind: str
    default: object
    help: str
    choices: tuple[str, ...] = ()


def _kind(field: dataclasses.Field) -> tuple[str, tuple[str, ...]]:
    annotation = str(field.type).replace(" | None", "")
    choices = field.metadata.get("choices")
    if field.name == "init":
        choices = INIT_KEYWORDS  # a start image path is a file, not a control
    if choices:
        return "choice", tuple(choices)
    kinds = {
        "bool": "bool",
        "int": "int",
        "float": "float",
        "tuple[float, ...]": "floats",
        "tuple[str, ...]": "list",
    }
    return kinds.get(annotation, "text"), ()


def _shown_default(value) -> object:
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def advanced_controls() -> list[Control]:
    """The advanced panel: every recipe setting, then the runtime ones, in Config's order."""
    controls = []
    for field in setting_fields():
        lifetime = field.metadata["lifetime"]
        wanted = (lifetime == RECIPE and field.name not in MAIN + MANAGED) or (
            lifetime == RUNTIME and field.name in RUNTIME_CONTROLS
        )
        if wanted:
            kind, choices = _kind(field)
            controls.append(
                Control(
                    field.name,
                    kind,
                    _shown_default(field.default),
                    field.metadata["help"],
                    choices,
                )
            )
    return controls


def _number(control: str, value, whole: bool):
    if isinstance(value, str):
        value = value.strip()
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{control} must be a number, got {value!r}") from None
    if whole:
        if not math.isfinite(number) or number != int(number):
            raise ConfigError(f"{control} must be a whole number, got {value!r}")
        return int(number)
    return number


def _floats(control: str, value) -> tuple[float, ...]:
    if isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = settings.split_list(str(value or ""))
    return tuple(_number(control, part, whole=False) for part in parts)


def config_values(values: Mapping[str, object]) -> dict:
    """Settings arguments (for Config) from control values by setting name (absent: the default).

    Args:
        values: Control values as a page or a script gives them: numbers may come as
            text, lists as comma-separated text or as lists.

    Returns:
        Keyword arguments for the settings (a Config).

    Raises:
        ConfigError: a value cannot be read as its setting's type, or names no setting
            the studio offers.
    """
    offered = {control.name: control for control in advanced_controls()}
    fields = {field.name for field in setting_fields()}
    arguments = {}
    for name, value in values.items():
        if name in ("size", "style_blend_weights", "style_strength") and name in fields:
            control = {"size": "int", "style_blend_weights": "floats"}.get(name, "float")
        elif name in offered:
            control = offered[name].kind
        else:
            raise ConfigError(f"{name!r} is not a setting the studio takes")
        if control == "int":
            value = _number(name, value, whole=True)
        elif control == "float":
            value = _number(name, value, whole=False)
        elif control == "floats":
            value = _floats(name, value)
        elif control == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        elif control == "list":
            value = tuple(value) if isinstance(value, (list, tuple)) else str(value or "")
        else:
            value = str(value)
        arguments[name] = value
    return arguments


def flag_lines(values: Mapping[str, object]) -> list[str]:
    """absl flag-file lines (`--name=value`) for settings' values by name, in order.

    Lists are comma-separated, booleans --name / --noname, as nst-tf's flags read them.
    """
    lines = []
    for name, value in values.items():
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, tuple):
            lines.append(f"--{name}={','.join(map(str, value))}")
        elif value is not None:
            lines.append(f"--{name}={value}")
    return lines
