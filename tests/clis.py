"""Running the two command lines in a child process, as a user would."""

import subprocess
import sys

EXPORT = [sys.executable, "-c", "from nst_tf.commands.export import main; main()"]


def run_cli(*args, cwd=None):
    """`python -m nst_tf ARGS` (the nst-tf command)."""
    return subprocess.run(
        [sys.executable, "-m", "nst_tf", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def run_export(*args, cwd=None):
    """The nst-tf-export command with ARGS."""
    return subprocess.run([*EXPORT, *args], capture_output=True, text=True, cwd=cwd, timeout=600)
