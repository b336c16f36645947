"""One rule for what a result depends on: its recipe, its inputs' bytes and the weights.

A result's key record is flat: the settings that shape the pixels by name, one
"NAME bytes" entry per input (the sha256 of the file, or of the array the Python API was
given), the VGG19 weights' sha256, and what a command adds (the output format, the
video's own settings). Resume compares a checkpoint's record with the run's, entry by
entry (so the message names what changed); the batch and video commands key their
results by the record's sha256.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from nst_tf.settings.fields import RECIPE, RUNTIME
from nst_tf.settings.recipe import INIT_KEYWORDS

KEY_FORMAT = "nst-tf-key/1"
# Settings that never change the pixels: a tiled step gives the untiled step's loss and
# gradient, the budget only picks the tiles, and resuming is how a run continues.
NOT_IN_KEY = ("resume", "tile_size", "memory_limit")


def recipe_of(settings) -> dict:
    """The settings of a Config (or any settings dataclass made with settings.fields)
    that shape the pixels: the recipe and the runtime choices that change rounding."""
    return {k: v for k, v in settings.of(RECIPE, RUNTIME).items() if k not in NOT_IN_KEY}


def input_files(settings, default_style: str | None = None) -> dict[str, list[str]]:
    """The files a result reads besides its content, by input name, for the commands to
    hash: the style images (or targets file), the masks, and the start image.

    Args:
        settings: A Config (its --style folders expanded).
        default_style: The style used when none is given (the built-in sample).
    """
    styles = settings.style_paths()
    if not styles and not settings.style_targets and default_style:
        styles = [default_style]
    files = {
        "style": styles,
        "style_targets": [settings.style_targets] if settings.style_targets else [],
        "style_mask": list(settings.style_mask),
        "init": [] if settings.init in INIT_KEYWORDS else [settings.init],
    }
    return {name: paths for name, paths in files.items() if paths}


def key_record(recipe: dict, inputs: dict, weights_sha256: str, **extra) -> dict:
    """A result's key record (see the module docstring).

    Args:
        recipe: recipe_of(the settings).
        inputs: The sha256 of each input by name ("content", "style", ...): a string,
            or a list for several files.
        weights_sha256: The VGG19 weights' sha256.
        **extra: What else the result depends on (JSON values).
    """
    record = {"key_format": KEY_FORMAT, **recipe, "weights": weights_sha256}
    record.update({f"{name} bytes": digest for name, digest in inputs.items()})
    record.update(extra)
    return record


def result_key(record: dict) -> str:
    """The hex sha256 of a key record's canonical JSON: equal records, equal keys."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def changes(saved: dict, current: dict) -> str:
    """What differs between two key records, as "name: old -> new, ..." ("" if nothing).

    Digests are shortened to 12 hex digits, so the line stays readable.
    """

    def shown(value):
        if isinstance(value, str) and len(value) == 64:
            return value[:12] + "..."
        if isinstance(value, list):
            return [shown(v) for v in value]
        return value

    names = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    return ", ".join(f"{k}: {shown(saved.get(k))!r} -> {shown(current.get(k))!r}" for k in names)


def array_sha256(array) -> str:
    """The sha256 of an array's dtype, shape and bytes (an input given as pixels)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
