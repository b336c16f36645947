"""What a result depends on, as one canonical value: the settings that shape it.

A checkpoint records it and --resume compares it; the batch and video commands build
their result keys on it (with the bytes of the inputs and the weights).
"""

from __future__ import annotations

import json

from nst_tf.settings.config import INPUT, RECIPE, Config


def result_settings(config: Config) -> dict:
    """The settings that shape the result: the recipe and the inputs, by name."""
    return config.of(RECIPE, INPUT)


def settings_json(config: Config) -> str:
    """result_settings as canonical JSON (sorted keys): equal settings, equal text."""
    return json.dumps(result_settings(config), sort_keys=True)
