"""Which files in a checkpoint directory are ours, so that nothing else is ever deleted.

A directory becomes ours when a run first checkpoints into it: a marker file records it.
In a marked directory, only the names tf.train.CheckpointManager gives our checkpoints
(`checkpoint`, `ckpt-<step>.index`, `ckpt-<step>.data-<i>-of-<n>`, and the `ckpt-<step>_temp`
folder a killed save leaves) are ours; any other `checkpoint`/`ckpt-*` file is foreign, and
a directory holding foreign files (another program's, or ours from before the marker, which
we cannot tell apart) is refused rather than cleared or resumed. No TensorFlow here: the
check runs before it loads.
"""

from __future__ import annotations

import json
import os
import re
import shutil

from nst_tf.errors import ConfigError
from nst_tf.io.paths import shown

MARKER = ".nst_tf-checkpoints"
_OURS = re.compile(r"checkpoint|ckpt-\d+(\.index|\.data-\d{5}-of-\d{5}|_temp)")


def _checkpoint_like(name: str) -> bool:
    return name == "checkpoint" or name.startswith("ckpt-")


def _names(directory: str) -> list[str]:
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def foreign_files(directory: str) -> list[str]:
    """The checkpoint-like files in `directory` that this program did not write."""
    names = [name for name in _names(directory) if _checkpoint_like(name)]
    if not os.path.isfile(os.path.join(directory, MARKER)):
        return names
    return [name for name in names if not _OURS.fullmatch(name)]


def our_files(directory: str) -> list[str]:
    """The checkpoint files of ours in `directory` (none in an unmarked directory)."""
    if not os.path.isfile(os.path.join(directory, MARKER)):
        return []
    return [name for name in _names(directory) if _OURS.fullmatch(name)]


def check_ours(directory: str) -> None:
    """Refuses a checkpoint directory that holds checkpoint files we did not write.

    Raises:
        ConfigError: naming a few of them and what to do.
    """
    foreign = foreign_files(directory)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise ConfigError(
            f"--checkpoint_dir={shown(directory)} holds checkpoint files nst_tf did not "
            f"write ({', '.join(foreign[:3])}{more}); choose another --checkpoint_dir "
            "(nst_tf never deletes files it did not write)"
        )


def clear(directory: str) -> None:
    """Makes `directory` ours (creating it) and removes our previous checkpoints there.

    Raises:
        ConfigError: the directory holds foreign checkpoint files (nothing is deleted).
    """
    check_ours(directory)
    os.makedirs(directory, exist_ok=True)
    marker = os.path.join(directory, MARKER)
    if not os.path.isfile(marker):
        with open(marker, "w", encoding="utf-8") as f:
            json.dump({"writer": "nst_tf", "files": _OURS.pattern}, f)
            f.write("\n")
    for name in our_files(directory):
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def discard_if_unused(directory: str) -> None:
    """Removes a directory that clear() created and no checkpoint was written to, so a
    run refused part-way leaves nothing behind."""
    if _names(directory) == [MARKER]:
        os.remove(os.path.join(directory, MARKER))
        os.rmdir(directory)
