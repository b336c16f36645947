"""What every command shares: parsing, logging, one-line errors and exit codes, Ctrl-C.

Library code raises typed errors (nst_tf.errors); only here do they become a line on
stderr and an exit status: 1 for a user mistake, 2 for a malformed command line,
128 + the signal for a run that was stopped.
"""

from __future__ import annotations

import logging as std_logging
import os
import signal
import sys
from collections.abc import Callable

from absl import app, flags, logging

from nst_tf.errors import Interrupted, NstError
from nst_tf.io.paths import shown

# TensorFlow's C++ start-up chatter would bury our one-line messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLAGS = flags.FLAGS

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The extra that installs a module a command needs (TensorFlow's is [cpu] or [gpu]).
_EXTRAS = {"cv2": "video", "imageio_ffmpeg": "video", "imageio": "video", "tqdm": "video"}


def fail(message: str, code: int) -> int:
    """Writes `PROG: error: MESSAGE` to stderr.

    Args:
        message: the one line to say.
        code: the exit status to return.

    Returns:
        `code`.
    """
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "nst-tf"
    if prog in ("__main__.py", "-c"):
        prog = "nst-tf"
    sys.stderr.write(f"{prog}: error: {message}\n")
    return code


def parse(argv: list[str]) -> list[str]:
    """absl's parser, but a bad flag gives one line and exit status 2."""
    try:
        return FLAGS(argv)
    except flags.Error as err:
        sys.exit(fail(f"{err}", 2))


def _ours_or_important(record: std_logging.LogRecord) -> bool:
    # Libraries that also log through absl (TensorFlow's checkpointing, for one) would
    # interleave their INFO chatter with our progress lines; keep their warnings only.
    return record.levelno >= std_logging.WARNING or record.pathname.startswith(_PACKAGE_DIR)


def setup_logging() -> None:
    """Our INFO lines as bare messages; other libraries' only from WARNING up."""
    logging.set_verbosity(logging.INFO)
    handler = logging.get_absl_handler().python_handler
    handler.setFormatter(std_logging.Formatter("%(message)s"))
    handler.addFilter(_ours_or_important)


def guarded(body: Callable[[], None]) -> int:
    """Runs `body`, turning user errors into one line and a non-zero exit status.

    Args:
        body: the command's work.

    Returns:
        The exit status: 0, 1 for an error, 128 + N for a run stopped by signal N.
    """
    setup_logging()
    try:
        body()
    except NstError as err:
        return fail(str(err), 1)
    except ImportError as err:
        extra = _EXTRAS.get((err.name or "").split(".")[0], "cpu")
        return fail(f"{err}; install it with nst_tf: `pip install -e '.[{extra}]'`", 1)
    except Interrupted as stop:
        return fail(_stopped(stop), 128 + stop.signum)
    except KeyboardInterrupt:
        # Before the run started, or a second Ctrl-C during it: files are written whole
        # or not at all, so none is left half-written.
        return fail("stopped at once; nothing more was written and no file is half-written", 130)
    return 0


def _stopped(stop: Interrupted) -> str:
    """What an interrupted run saved, truthfully."""
    said = f"stopped by {signal.Signals(stop.signum).name} at step {stop.step}"
    if stop.saved:
        return f"{said}; {stop.saved}"
    image = f"image saved to {shown(stop.output)}" if stop.output else "no image saved"
    if stop.checkpoint_dir:
        return (
            f"{said}; {image} and a checkpoint to {shown(stop.checkpoint_dir)}; "
            "run the same command with --resume to continue"
        )
    return f"{said}; {image}; no checkpoint (--checkpoint_every=0), so the run cannot be resumed"


def unexpected_arguments(argv: list[str]) -> int:
    """Exit status 2 (a usage error, as for a malformed flag) for stray arguments."""
    words = " ".join(shown(word) for word in argv[1:])
    return fail(f"unexpected arguments {words}; all options are --flags (see --help)", 2)


def run(
    main: Callable[[list[str]], int],
    names: tuple[str, ...],
    parser: Callable[[list[str]], list[str]] = parse,
) -> None:
    """Runs a command's main with absl, its flags (`names`) listed by --help.

    Args:
        main: takes the arguments left after the flags; returns the exit status.
        names: the flags the command defined.
        parser: the flag parser (default: `parse`).
    """
    # Each command defines only its own flags, so --help and --helpfull list just those.
    # absl's --help lists the key flags of the program's main module; ours are defined
    # elsewhere, so they are declared key flags of the program being run.
    for name in names:
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])
    app.run(main, flags_parser=parser)
