"""The output folder of nst-tf-batch on disk: its records, what in it is ours, its lock.

For a photo NAME the folder holds NAME.png (or .jpg), the sidecar NAME.json written after
it, and NAME.error.json when it failed. Every record carries RECORD_MARKER: a file in the
way without it is not ours, and is refused, never replaced. Temporary files are named
.nst_tf-batch-*.part (images.atomic_write with TEMP_TAG), so that a rerun removes only
what a killed writer of ours left, never the temporary file of an nst-tf run writing
into the same folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import socket
import sys
from collections.abc import Iterable, Sequence

from absl import logging

from nst_tf.commands.jobs import Job, Outcome, Photo
from nst_tf.errors import NstError, OutputError
from nst_tf.io import images
from nst_tf.io.paths import read_json_object, shown

# The key and value every record we write carries: a NAME.json without it is not ours,
# and is refused rather than replaced (see check_ours).
RECORD_MARKER = ("nst_tf_record", "nst-tf-batch/1")
# What the batch's temporary files have in their names (see the module docstring).
TEMP_TAG = "batch-"


def read_record(path: str) -> dict | None:
    """A sidecar or error record of ours, or None if missing, unreadable or foreign."""
    try:
        record = read_json_object(path, NstError, 1 << 20)
    except (OSError, NstError):
        return None
    if record is None or record.get(RECORD_MARKER[0]) != RECORD_MARKER[1]:
        return None
    return record


def write_record(path: str, record: dict) -> None:
    """Writes a JSON record atomically.

    Raises:
        OSError: it could not be written (nothing of it is left then).
    """
    record = {RECORD_MARKER[0]: RECORD_MARKER[1], **record}
    with images.atomic_write(path, "w", tag=TEMP_TAG) as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.write("\n")


def is_our_result(output_dir: str, path: str) -> bool:
    """Whether `path` is a result an earlier batch wrote to `output_dir`: it lies there
    and the sidecar of its name is ours. A glob over the inputs that reaches the output
    folder leaves these out, so that a rerun sees the photos the first run saw."""
    if os.path.dirname(os.path.realpath(path)) != os.path.realpath(output_dir):
        return False
    stem = os.path.splitext(os.path.basename(path))[0]
    return read_record(os.path.join(output_dir, f"{stem}.json")) is not None


def check_ours(job: Job, photos: Sequence[Photo], read: Iterable[str]) -> None:
    """Refuses to start when a file the batch would write is not one it wrote.

    A result is ours when a sidecar of ours names it (the sidecar is written, marked as
    pending, before its result); a sidecar or error record is ours when it carries
    RECORD_MARKER. A foreign file in the way is refused, never replaced.

    Args:
        job: The batch.
        photos: Its photos.
        read: Every file the batch reads besides the photos (styles, masks, start image).

    Raises:
        OutputError: a file we read is one we would write, or a foreign file is in the way.
    """
    reads = {os.path.realpath(path) for path in read if path}
    for photo in photos:
        paths = (job.output(photo.name), job.sidecar(photo.name), job.error(photo.name))
        for path in paths:
            if os.path.realpath(path) in reads:
                raise OutputError(
                    f"{path} is an input of this batch and the result of {photo.path} would "
                    "overwrite it; move it out of --output_dir or write the results elsewhere"
                )
        output, sidecar, error = paths
        for record in (sidecar, error):
            if os.path.lexists(record) and read_record(record) is None:
                raise OutputError(
                    f"{record} is in the way and was not written by nst-tf-batch; "
                    "move it or choose another --output_dir"
                )
        if os.path.lexists(output) and read_record(sidecar) is None:
            raise OutputError(
                f"{output} is in the way and was not written by nst-tf-batch; "
                "move it or choose another --output_dir"
            )


def is_done(job: Job, photo: Photo) -> bool:
    """Whether the photo's output exists and its sidecar holds the photo's key."""
    record = read_record(job.sidecar(photo.name))
    return (
        bool(record) and record.get("key") == photo.key and os.path.isfile(job.output(photo.name))
    )


def failed_before(job: Job, photo: Photo) -> str | None:
    """The reason of an earlier run's final failure of this photo with this key, if any."""
    record = read_record(job.error(photo.name))
    if record and record.get("key") == photo.key and record.get("final"):
        return str(record.get("error", "failed"))
    return None


def write_error(job: Job, photo: Photo, reason: str, final: bool) -> Outcome:
    """Records why a photo failed in NAME.error.json (its one-line reason).

    A record that cannot be written (a full disk) is said in the reason; it never stops
    the batch.

    Args:
        job: The batch.
        photo: The photo.
        reason: One line.
        final: Whether the same photo with the same key would fail again (not an
            image, too small, a loss gone NaN): reruns skip it. A failure that more
            memory might cure is tried again by the next run.

    Returns:
        The photo's failed Outcome.
    """
    logging.warning("%s failed: %s", photo.path, reason)
    record = {
        "input": photo.path,
        "sha256": photo.sha256,
        "key": photo.key,
        "error": reason,
        "final": final,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    try:
        write_record(job.error(photo.name), record)
    except OSError as err:
        unwritten = f"its error record could not be written either ({err.strerror or err})"
        logging.warning("%s: %s", shown(job.error(photo.name)), unwritten)
        reason = f"{reason}; {unwritten}"
    return Outcome(photo.name, False, reason)


# --- the folder -----------------------------------------------------------------------------

# Folders that are the system's: a batch writes into none of them, nor anywhere under the
# trees, which hold programs, libraries, devices and settings.
_SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc")
_SYSTEM_TREES += ("/sbin", "/sys", "/usr")
_SYSTEM_FOLDERS = ("/", "/home", "/media", "/mnt", "/opt", "/root", "/run", "/srv", "/tmp")
_SYSTEM_FOLDERS += ("/var", "/var/tmp", "/var/lib", "/var/log", "/var/cache")


def _system_folder(real: str) -> str | None:
    """What makes the resolved folder `real` a system folder, or None if it is not one."""
    if real in _SYSTEM_FOLDERS:
        return "a system folder"
    if any(real == tree or real.startswith(tree + os.sep) for tree in _SYSTEM_TREES):
        return "a system folder"
    if real == os.path.realpath(os.path.expanduser("~")):
        return "the home folder"
    if real in {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}:
        return "the Python installation"
    return None


def check_output_dir(path: str, inputs: Iterable[str], flag: str = "output_dir") -> None:
    """Fails early if results cannot be written to `path`, without writing anything.

    Args:
        path: The directory (created later if missing).
        inputs: The photos, none of which may be in it.
        flag: The flag that names `path`, for messages (--logdir is checked the same way).

    Raises:
        OutputError: `path` is a file, lies under a file, or is not writable; it is a
            system folder, the home folder itself or the Python installation; or it
            holds an input (its outputs would become inputs of the next run).
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"--{flag}={path} is a file; give a directory")
    real = os.path.realpath(path)
    kind = _system_folder(real)
    if kind:
        raise OutputError(
            f"--{flag}={path} is {kind} ({real}); give a folder of its own, such as "
            f"{os.path.join(real, 'stylized') if kind != 'a system folder' else './stylized'}"
        )
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError(f"--{flag}={path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK) or _read_only_fs(existing):
        raise OutputError(f"--{flag}={path} is not writable; choose another directory")
    for photo in inputs:
        if os.path.dirname(os.path.realpath(photo)) == real:
            raise OutputError(
                f"--{flag}={path} holds the input {photo}; write the results elsewhere"
            )


def missing_dirs(path: str) -> list[str]:
    """The directories that os.makedirs(path) would create, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _read_only_fs(path: str) -> bool:
    # os.access is true for root everywhere; a read-only or pseudo file system refuses
    # even root, so ask statvfs, and refuse /proc and /sys outright.
    if os.path.realpath(path).split(os.sep)[1:2] in (["proc"], ["sys"]):
        return True
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


@contextlib.contextmanager
def exclusive(output_dir: str):
    """Holds the batch lock of `output_dir` (an flock on the directory itself, so no file
    is left and a killed run's lock ends with it) while the block runs.

    Raises:
        OutputError: another batch holds it.
    """
    fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"another nst-tf-batch is writing to --output_dir={shown(output_dir)}; "
                "wait for it to end or choose another directory"
            ) from None
        yield
    finally:
        os.close(fd)


def remove_partials(output_dir: str) -> int:
    """Removes the temporary files that a killed writer of ours left in `output_dir`.

    Call it only while holding the folder's lock (see exclusive). Another program's
    temporary files, an nst-tf run's among them, are left alone.
    """
    pattern = images.TEMP_GLOB.replace("*", TEMP_TAG + "*")
    leftovers = glob.glob(os.path.join(glob.escape(output_dir), pattern))
    for path in leftovers:
        os.unlink(path)
    return len(leftovers)
