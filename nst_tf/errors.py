"""Typed errors: library code raises these; only the CLI turns them into exit codes."""


class NstError(Exception):
    """Base class for every error caused by the user's input or environment.

    The message is one line that says what is wrong and how to fix it.
    """


class ConfigError(NstError, ValueError):
    """A setting is invalid (unknown layer, non-positive size, negative weight...)."""


class ImageError(NstError):
    """An image file is missing, unreadable, not an image, or too large."""


class OutputError(NstError):
    """An output path cannot be written."""


class WeightsError(NstError):
    """VGG19 weights are missing, corrupt, or refused as unsafe."""
