"""Command line `nst-tf` (`python -m nst_tf`): stylise one photo.

Kept thin: the flags become a Config, which nst_tf.commands.run checks (before
TensorFlow is imported, so mistakes are reported at once) and runs.
"""

from __future__ import annotations

from nst_tf.commands import common
from nst_tf.commands.flags import (
    config_from_flags,
    define_flags,
    define_preset_flag,
    settings_flag_file,
)


def _stylize_main(argv: list[str]) -> int:
    if len(argv) > 1:
        return common.unexpected_arguments(argv)

    def body():
        from nst_tf.commands.run import stylize  # pylint: disable=import-outside-toplevel

        flag_text, given = settings_flag_file()
        stylize(config_from_flags(), flags=flag_text, given=given)

    return common.guarded(body)


def main() -> None:
    """Entry point of `nst-tf`."""
    common.run(_stylize_main, define_preset_flag() + define_flags())
