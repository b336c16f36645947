"""How a setting is described once: its default, help text, lifetime, choices and kind.

The absl flags, `--help`, the flag reference, Config's docstring and the type and choice
checks are all made from these descriptions.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import types

from nst_tf.errors import ConfigError

# What each setting is to a run (the parts of Config group them by this):
RECIPE = "recipe"  # changes the result: compared on resume, part of batch keys
INPUT = "input"  # what is read
OUTPUT = "output"  # what is written, and how the run is watched
RUNTIME = "runtime"  # how the result is computed on this machine
LIFETIMES = (RECIPE, INPUT, OUTPUT, RUNTIME)


def setting(
    default,
    help: str,  # noqa: A002
    lifetime: str | None = None,
    flag: str | None = None,
    *,
    choices: tuple | None = None,
    path: bool = False,
):
    """A settings field with its one description.

    Args:
        default: The default value.
        help: What the setting does, in one or two sentences.
        lifetime: RECIPE, INPUT, OUTPUT or RUNTIME; inside a class made with `part`,
            the part's lifetime.
        flag: The absl flag kind when it differs from the field's type ("string" for a
            comma-separated list of paths, whose names may hold commas themselves).
        choices: The values allowed, when there is a fixed set (checked by check_fields).
        path: Whether the value is a file or folder path (checked to be one).
    """
    metadata = {
        "help": help,
        "lifetime": lifetime,
        "flag": flag,
        "choices": choices,
        "path": path,
    }
    return dataclasses.field(default=default, metadata=metadata)


def part(lifetime: str):
    """Makes a dataclass of settings of one lifetime (its fields made with `setting`)."""

    def make(cls):
        for value in vars(cls).values():
            if isinstance(value, dataclasses.Field):
                value.metadata = types.MappingProxyType({**value.metadata, "lifetime": lifetime})
        return dataclasses.dataclass(cls)

    return make


def settings_of(settings, *lifetimes: str) -> dict:
    """The fields of a settings dataclass (made with `setting`) of the given lifetimes."""
    return {
        field.name: getattr(settings, field.name)
        for field in dataclasses.fields(settings)
        if field.metadata["lifetime"] in lifetimes
    }


def kind_of(field: dataclasses.Field) -> type:
    """The Python type a settings field holds: bool, int, float, str or tuple (a list)."""
    annotation = str(field.type).replace(" | None", "")
    for kind in (bool, int, float):
        if annotation == kind.__name__:
            return kind
    return tuple if annotation.startswith("tuple") else str


def _optional(field: dataclasses.Field) -> bool:
    return "None" in str(field.type)


def check_fields(settings) -> None:
    """Refuses values of the wrong kind, outside their choices, or paths that are not.

    Notebook callers can hand in anything: this runs before any value is compared.

    Raises:
        ConfigError: one line naming the setting.
    """
    for field in dataclasses.fields(settings):
        name, value, meta = field.name, getattr(settings, field.name), field.metadata
        if value is None and _optional(field):
            continue
        if meta.get("path"):
            _check_path(name, value)
            continue
        kind = kind_of(field)
        if kind is int and (not isinstance(value, numbers.Integral) or isinstance(value, bool)):
            raise ConfigError(f"--{name} must be a whole number, got {value!r}")
        if kind is float and not isinstance(value, numbers.Real):
            raise ConfigError(f"--{name} must be a number, got {value!r}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"--{name}={value!r} is unknown; choose {', '.join(choices)}")


def _check_path(name: str, value) -> None:
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"--{name} must be a file path, got {value!r}")
    try:
        encoded = os.fsencode(value)
    except (TypeError, UnicodeError):
        raise ConfigError(f"--{name}={value!r} cannot be encoded as a file name") from None
    if b"\0" in encoded:
        raise ConfigError(f"--{name}={value!r} contains a NUL character; check the path")
