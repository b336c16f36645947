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


class ModelError(NstError):
    """A trained model's folder (MODEL_DIR) is not nst_tf's, is of another format version,
    or is broken."""


class NumericalError(NstError):
    """A loss or gradient became NaN or infinite; `image` holds the last finite image."""

    def __init__(self, message: str, image=None):
        super().__init__(message)
        self.image = image


class Interrupted(Exception):  # noqa: N818 - an event, not a failure
    """The run was stopped by a signal; `image` holds the image at that moment.

    Attributes:
        signum: The signal.
        step: The last step done.
        image: The image at that step (None until the loop fills it in).
        output: Where the image was saved (None: not saved).
        checkpoint_dir: Where a checkpoint of that step was saved (None: none was).
        saved: What was kept, in words, when it is neither an image nor a checkpoint
            (a video's finished frames); None otherwise.
    """

    def __init__(self, signum: int, step: int = 0, image=None):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        self.step = step
        self.image = image
        self.output = None
        self.checkpoint_dir = None
        self.saved = None
