"""The paths a run reads and writes: what they really are, and that they never overlap.

Checked before any work starts (and before TensorFlow loads), so that a mistake costs a
fraction of a second and nothing of the user's is ever overwritten or deleted:

- every file we read must be a regular file (a FIFO would hang the run, /dev/zero would
  never end), and a message says what it really is;
- no path we write may be, or lie inside, a path we read, nor inside a --style folder
  (a second run would take the first one's result as a style);
- every place we write can be written, probed by creating and removing a file there.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Iterable

from nst_tf.errors import NstError, OutputError

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(path) -> str:
    """A path as a one-line message shows it: repr when it holds a control character
    (a newline would split the message), the plain text otherwise."""
    text = os.fsdecode(path) if isinstance(path, bytes | os.PathLike) else str(path)
    return repr(text) if _CONTROL.search(text) else text


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    return "not a regular file"


def _not_regular(label: str, mode: int, error: type[NstError]) -> NstError:
    hint = "a file in it" if stat.S_ISDIR(mode) else "a regular file"
    return error(f"{label} is {_kind(mode)}; give {hint}")


def _stat_error(label: str, err: OSError, error: type[NstError]) -> NstError:
    if err.errno == errno.ELOOP:
        return error(f"{label} is a symbolic link loop; point it at a real file")
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return error(f"{label}: no such file; check the path")
    if err.errno == errno.EACCES:
        return error(f"{label} cannot be read (permission denied); check its permissions")
    return error(f"{label} cannot be read ({err.strerror or err})")


def check_regular_file(path: str, error: type[NstError], label: str | None = None) -> None:
    """Refuses anything but an existing regular file, saying what it really is.

    Args:
        path: The file to read.
        error: The error class to raise (ImageError, WeightsError...).
        label: How the message names the file (default: the path as `shown`).

    Raises:
        `error`: missing, a symlink loop, a directory, a FIFO, a device, or unreadable.
    """
    label = label or shown(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise _stat_error(label, err, error) from None
    if not stat.S_ISREG(mode):
        raise _not_regular(label, mode, error)


def open_regular(path: str, error: type[NstError], label: str | None = None):
    """Opens a regular file for binary reading without ever blocking.

    O_NONBLOCK makes opening a FIFO return at once, and the check is made on the opened
    descriptor, so a file swapped for a FIFO after a check cannot hang the run.

    Raises:
        `error`: as check_regular_file.
    """
    label = label or shown(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as err:
        if err.errno == errno.EISDIR:
            raise _not_regular(label, stat.S_IFDIR, error) from None
        raise _stat_error(label, err, error) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(label, mode, error)
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_json_object(path: str, error: type[NstError], limit: int) -> dict | None:
    """A small JSON object from a regular file, read as data and bounded.

    Args:
        path: The file.
        error: What to raise when it cannot be opened (see open_regular).
        limit: The most bytes it may hold.

    Returns:
        The object; None when the file is larger than `limit`, is not UTF-8 JSON, nests
        too deeply, or holds something other than an object.

    Raises:
        `error`: the file is missing, not a regular file, or unreadable.
    """
    with open_regular(path, error) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


@dataclasses.dataclass(frozen=True)
class Written:
    """A path a run writes.

    Attributes:
        flag: The flag that names it (for messages), e.g. "output".
        path: The file or directory.
        directory: True for a directory the run fills (--logdir, --checkpoint_dir...).
        pattern: For a family of files beside `path`, a regular expression their base
            names match (e.g. `NAME\\.step\\d{5}\\.EXT` for numbered snapshots).
    """

    flag: str
    path: str
    directory: bool = False
    pattern: str | None = None


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_no_overlap(
    written: Iterable[Written],
    inputs: Iterable[tuple[str, str]],
    folders: Iterable[tuple[str, str]] = (),
) -> None:
    """Refuses a written path that is, or contains, an input, or lies in an input folder.

    Paths are compared resolved through `..` and symbolic links.

    Args:
        written: What the run writes.
        inputs: (flag, path) of every file it reads.
        folders: (flag, path) of every folder whose listing it reads (--style folders).

    Raises:
        OutputError: naming both flags and how to fix it.
    """
    written = [w for w in written if w.path]
    reads = [(flag, path, _real(path)) for flag, path in inputs if path]
    listed = [(flag, path, _real(path)) for flag, path in folders if path]
    seen: dict[str, str] = {}
    for item in written:
        real = _real(item.path)
        if real in seen and not item.directory:
            raise OutputError(
                f"--{item.flag} and --{seen[real]} name the same file {shown(item.path)}; "
                "give each its own path"
            )
        seen[real] = item.flag
        for flag, path, target in reads:
            if real == target or (item.directory and _inside(target, real)):
                what = "is also" if real == target else "contains"
                raise OutputError(
                    f"--{item.flag}={shown(item.path)} {what} an input (--{flag}={shown(path)}); "
                    "write the result elsewhere"
                )
            if item.pattern and os.path.dirname(target) == os.path.dirname(real):
                if re.fullmatch(item.pattern, os.path.basename(target)):
                    raise OutputError(
                        f"--{flag}={shown(path)} looks like a file --{item.flag} writes; "
                        "rename it or write the result elsewhere"
                    )
        for flag, path, folder in listed:
            if _inside(real, folder):
                raise OutputError(
                    f"--{item.flag}={shown(item.path)} lies in the --{flag} folder "
                    f"{shown(path)}, which is read as styles; write the result elsewhere"
                )


def _probe(directory: str, label: str) -> None:
    """Creates and removes a file in `directory`: os.access alone is wrong for root,
    read-only mounts and some network file systems, so both must agree."""
    message = f"{label}: directory {shown(directory)} is not writable"
    if not os.access(directory, os.W_OK):
        raise OutputError(f"{message}; choose another path")
    probe = os.path.join(directory, f".nst_tf-probe-{secrets.token_hex(6)}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise OutputError(f"{message} ({err.strerror or err}); choose another path") from None
    os.close(fd)
    os.remove(probe)


def _existing_ancestor(path: str, label: str) -> str:
    """The nearest existing directory above `path` (which would be created in it)."""
    parent = os.path.dirname(_real(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(
            f"{label}: {shown(parent)} is a file, not a directory; choose another path"
        )
    return parent


def check_writable_directory(path: str, flag: str, create: bool = True) -> None:
    """Fails early if a directory a run fills cannot be written, without creating it.

    Args:
        path: The directory (it may not exist yet).
        flag: The flag that names it.
        create: The run creates the directory (with its parents) when missing; if False,
            its parent must exist.

    Raises:
        OutputError: the path is a file, lies under a file, or cannot be written.
    """
    label = f"--{flag}={shown(path)}"
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{label} is a file, not a directory; choose another path")
    if os.path.isdir(path):
        _probe(path, label)
        return
    parent = _existing_ancestor(path, label)
    if not create and parent != os.path.dirname(_real(path)):
        raise OutputError(f"{label}: directory {shown(parent)} does not exist; create it first")
    _probe(parent, label)


def check_writable_file(path: str, flag: str) -> None:
    """Fails early if a file cannot be written: a directory, a FIFO or device, a missing
    or unwritable directory.

    Raises:
        OutputError: saying which.
    """
    label = f"--{flag}={shown(path)}"
    if os.path.lexists(path):
        try:
            kind = _kind(os.stat(path).st_mode)
        except OSError as err:
            raise _stat_error(label, err, OutputError) from None
        if kind:
            raise OutputError(f"{label} is {kind}; give a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OutputError(f"--{flag}: directory {shown(directory)} does not exist; create it first")
    _probe(directory, f"--{flag}")


def file_sha256(path: str) -> str:
    """The hex sha256 of a file's bytes ("" when it cannot be read: it fails later)."""
    digest = hashlib.sha256()
    try:
        with open_regular(path, NstError) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except (OSError, NstError):
        return ""
    return digest.hexdigest()
