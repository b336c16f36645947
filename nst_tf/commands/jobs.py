"""A batch job's logic, free of any engine: which photos, their names and keys, what is
done already, and the work on one photo.

Exactly one output per input, whatever dies, rests on four things here: a key per photo
that hashes everything its result depends on; the image written atomically and then its
sidecar NAME.json, so that a sidecar vouches for a whole output; a rerun that skips a
photo only when its sidecar holds the same key; and a rerun that removes the temporary
files a killed writer left. The engine (nst_tf.commands.raypool) only decides where and when
stylize_photo runs, and may run it twice.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import socket
import stat
import time
from collections.abc import Iterable, Sequence

import numpy as np
from absl import logging
from PIL import Image

from nst_tf.errors import ConfigError, NstError, OutputError
from nst_tf.io import images
from nst_tf.io.paths import open_regular, shown
from nst_tf.settings.config import INIT_KEYWORDS, RECIPE, RUNTIME, Config

FORMATS = ("png", "jpg")

# The key and value every record we write carries: a NAME.json without it is not ours,
# and is refused rather than replaced (see check_ours).
RECORD_MARKER = ("nst_tf_record", "nst-tf-batch/1")

# Settings that do not change the result, and paths whose files' bytes are hashed
# instead of their names (see job_digest).
# Settings of the recipe or the runtime that cannot change a batch's result: a batch writes
# no checkpoints, and tiled steps equal untiled ones.
_NOT_IN_KEY = ("checkpoint_every", "resume", "tile_size", "memory_limit")


@dataclasses.dataclass(frozen=True)
class Photo:
    """One input photo and where its result goes.

    Attributes:
        path: The input file, absolute.
        name: The output's name without extension (see output_names).
        sha256: The input file's sha256.
        key: The settings key: what its sidecar must hold for it to count as done.
        shape: (height, width) of its result, for grouping photos by compiled shape;
            None when the header cannot be read (the photo will fail on loading).
    """

    path: str
    name: str
    sha256: str
    key: str
    shape: tuple[int, int] | None


@dataclasses.dataclass(frozen=True)
class Job:
    """What every photo of a batch shares.

    Attributes:
        config: The stylisation settings (content and output unused).
        output_dir: Where NAME.png/.jpg, NAME.json and NAME.error.json go.
        fmt: "png" or "jpg".
        memory_bytes: The memory a worker may use; photos estimated to need more fail.
        weights_sha256: The sha256 of the VGG19 weights every worker must use.
    """

    config: Config
    output_dir: str
    fmt: str = "png"
    memory_bytes: float = float("inf")
    weights_sha256: str = ""

    def output(self, name: str) -> str:
        """The result image of output name `name`."""
        return os.path.join(self.output_dir, f"{name}.{self.fmt}")

    def sidecar(self, name: str) -> str:
        """The record written after the result: its presence and key mean done."""
        return os.path.join(self.output_dir, f"{name}.json")

    def error(self, name: str) -> str:
        """The record of a photo that failed."""
        return os.path.join(self.output_dir, f"{name}.error.json")


@dataclasses.dataclass
class Outcome:
    """What became of one photo.

    Attributes:
        name: The photo's output name.
        ok: Whether its output and sidecar were written.
        error: The one-line reason when not ok.
        seconds: Wall time spent on it by the worker.
        traces: The worker's step traces so far (one per image shape it has seen).
    """

    name: str
    ok: bool
    error: str = ""
    seconds: float = 0.0
    traces: int = 0


def gigabytes(count: float) -> str:
    """Bytes as GB for messages, with the digits that matter (0.01 GB, not 0.0 GB)."""
    return f"{count / 1e9:.2g} GB" if count < 1e9 else f"{count / 1e9:.1f} GB"


# --- which photos -----------------------------------------------------------------------


def _is_image_name(name: str) -> bool:
    # One rule for "images in a folder": the raster formats nst_tf decodes (images.py).
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in (
        images.input_extensions()
    )


def _regular_only(paths: Iterable[str]) -> list[str]:
    """The paths that are regular files (symlinks followed); the others are skipped with a
    line saying what they are: a FIFO or /dev/zero would hang the driver's hashing."""
    kept = []
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG  # missing or unreadable: it fails, with its reason, later
        if stat.S_ISREG(mode):
            kept.append(path)
        elif not stat.S_ISDIR(mode):
            logging.warning("skipping %s: not a regular file", shown(path))
    return kept


def list_inputs(spec: str) -> list[str]:
    """The photos `--inputs` names, as absolute paths.

    Args:
        spec: A folder (its image files, not its subfolders), a .txt file with one path
            per line (relative to the file; blank lines and # comments skipped), a glob
            pattern (** descends), or one image file.

    Returns:
        The paths, sorted (a list file keeps its order), without repeats.

    Raises:
        ConfigError: nothing matches.
    """
    if os.path.isdir(spec):
        paths = sorted(os.path.join(spec, n) for n in os.listdir(spec) if _is_image_name(n))
    elif os.path.isfile(spec) and spec.lower().endswith(".txt"):
        base = os.path.dirname(os.path.abspath(spec))
        with open(spec, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        paths = [os.path.join(base, line) for line in lines if line and not line.startswith("#")]
    elif os.path.isfile(spec):
        paths = [spec]
    else:
        paths = sorted(p for p in glob.glob(spec, recursive=True) if not os.path.isdir(p))
    paths = _regular_only(dict.fromkeys(os.path.abspath(p) for p in paths))
    if not paths:
        raise ConfigError(f"--inputs={spec} names no images; give a folder, a glob or a .txt list")
    return paths


def output_names(paths: Sequence[str]) -> list[str]:
    """Each input's output name: its file name without the extension.

    Names that would collide (equal but for case, as on macOS and Windows file systems,
    or one being another's NAME.error) are all made unique as NAME-XXXXXXXX, the first 8
    hex digits of the sha256 of the input's absolute path: no output overwrites another,
    and a photo keeps its name from one run to the next while the set of inputs stays.
    """
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    clash = collections.Counter(_clash_key(stem) for stem in stems)
    return [
        (
            f"{stem}-{hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:8]}"
            if clash[_clash_key(stem)] > 1
            else stem
        )
        for stem, path in zip(stems, paths, strict=True)
    ]


def _clash_key(stem: str) -> str:
    stem = stem.lower()
    return stem[: -len(".error")] if stem.endswith(".error") else stem


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


def result_shape(path: str, size: int) -> tuple[int, int] | None:
    """(height, width) of a photo's result at `size`, from its header (EXIF rotation
    included), or None if the header cannot be read."""
    try:
        with open_regular(path, NstError) as f, Image.open(f, formats=images.INPUT_FORMATS) as img:
            width, height = img.size
            if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated a quarter turn
                width, height = height, width
    except Exception:  # noqa: BLE001 - any unreadable file is reported when it is loaded
        return None
    return images.scaled_shape(height, width, size)


# --- keys -------------------------------------------------------------------------------


def job_digest(config: Config, fmt: str, weights_sha256: str) -> str:
    """A hash of everything but the photo that its result depends on.

    The settings that change the result, the output format, the VGG19 weights' sha256,
    and the bytes of the style images (or style targets), masks and start image. The
    style's statistics are a function of those bytes and the settings, so they are
    covered without being measured first: a rerun decides what is done without loading
    TensorFlow, and float round-off in a measurement cannot make a finished photo look
    undone.

    Args:
        config: The settings, with --style folders expanded (run.expand_styles).
        fmt: The output format.
        weights_sha256: The sha256 of the VGG19 weights file.
    """
    settings = {k: v for k, v in config.of(RECIPE, RUNTIME).items() if k not in _NOT_IN_KEY}
    styles = config.style_paths() or ([] if config.style_targets else [images.sample_path("style")])
    files = {
        "style": [file_sha256(path) for path in styles],
        "style_targets": file_sha256(config.style_targets) if config.style_targets else "",
        "style_mask": [file_sha256(path) for path in config.style_mask],
        "init": config.init if config.init in INIT_KEYWORDS else file_sha256(config.init),
    }
    record = {"settings": settings, "files": files, "format": fmt, "weights": weights_sha256}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def photo_key(digest: str, photo_sha256: str) -> str:
    """The settings key of one photo: the job's digest and the photo's bytes."""
    return hashlib.sha256(f"{digest}:{photo_sha256}".encode()).hexdigest()


def plan(job: Job, paths: Sequence[str], digest: str) -> list[Photo]:
    """The photos of a batch with their names, keys and result shapes."""
    return [
        Photo(path, name, sha, photo_key(digest, sha), result_shape(path, job.config.size))
        for path, name, sha in zip(
            paths, output_names(paths), (file_sha256(p) for p in paths), strict=True
        )
    ]


def read_record(path: str) -> dict | None:
    """A sidecar or error record of ours, or None if missing, unreadable or foreign."""
    try:
        with open_regular(path, NstError) as f:
            record = json.loads(f.read(1 << 20).decode("utf-8"))
    except (OSError, ValueError, NstError):
        return None
    if not isinstance(record, dict) or record.get(RECORD_MARKER[0]) != RECORD_MARKER[1]:
        return None
    return record


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


def check_output_dir(path: str, inputs: Iterable[str], flag: str = "output_dir") -> None:
    """Fails early if results cannot be written to `path`, without writing anything.

    Args:
        path: The directory (created later if missing).
        inputs: The photos, none of which may be in it.
        flag: The flag that names `path`, for messages (--logdir is checked the same way).

    Raises:
        OutputError: `path` is a file, lies under a file, or is not writable; or it
            holds an input (its outputs would become inputs of the next run).
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"--{flag}={path} is a file; give a directory")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError(f"--{flag}={path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK) or _read_only_fs(existing):
        raise OutputError(f"--{flag}={path} is not writable; choose another directory")
    real = os.path.realpath(path)
    for photo in inputs:
        if os.path.dirname(os.path.realpath(photo)) == real:
            raise OutputError(
                f"--{flag}={path} holds the input {photo}; write the results elsewhere"
            )


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
    """Removes the temporary files that a killed writer left in `output_dir`.

    Call it only while no other batch writes there (one run per output directory).
    """
    leftovers = glob.glob(os.path.join(glob.escape(output_dir), images.TEMP_GLOB))
    for path in leftovers:
        os.unlink(path)
    return len(leftovers)


# --- the work on one photo ------------------------------------------------------------------


def load_photo(path: str, size: int) -> np.ndarray:
    """The photo as float32 RGB, downscaled on load when larger than twice `size`
    (the limit nst-tf applies): a camera's 40 Mpx cost memory for nothing."""
    image = images.load_image(path)
    if max(image.shape[:2]) > 2 * size:
        image = images.load_image(path, 2 * size)
    return image


def write_record(path: str, record: dict) -> None:
    """Writes a JSON record atomically."""
    record = {RECORD_MARKER[0]: RECORD_MARKER[1], **record}
    with images.atomic_write(path, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.write("\n")


def write_error(job: Job, photo: Photo, reason: str, final: bool) -> Outcome:
    """Records why a photo failed in NAME.error.json (its one-line reason).

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
    write_record(
        job.error(photo.name),
        {
            "input": photo.path,
            "sha256": photo.sha256,
            "key": photo.key,
            "error": reason,
            "final": final,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
    )
    return Outcome(photo.name, False, reason)


def failed_before(job: Job, photo: Photo) -> str | None:
    """The reason of an earlier run's final failure of this photo with this key, if any."""
    record = read_record(job.error(photo.name))
    if record and record.get("key") == photo.key and record.get("final"):
        return str(record.get("error", "failed"))
    return None


def stylize_photo(stylizer, job: Job, photo: Photo, style, masks=None, init=None) -> Outcome:
    """Stylises one photo with a ready Stylizer and writes its output, then its sidecar.

    A failure that belongs to the photo (not an image, too small, too large for the
    worker's memory, a loss gone NaN) is written to NAME.error.json and returned;
    running this twice for a photo leaves one output and one sidecar.

    Args:
        stylizer: The worker's nst_tf.engine.stylizer.Stylizer, built from job.config.
        job: The batch.
        photo: The photo.
        style: What Stylizer.stylize takes as the style (images, Gram targets or a
            MeasuredStyle).
        masks: The style masks, or None.
        init: The start image when config.init is a path, or None.
    """
    from nst_tf.engine.memory import estimated_peak_bytes  # pylint: disable=C0415
    from nst_tf.engine.monitoring import ProgressLogger  # pylint: disable=C0415

    start = time.perf_counter()
    config = job.config
    try:
        content = load_photo(photo.path, config.size)
    except NstError as err:
        return write_error(job, photo, str(err), final=True)
    height, width = images.scaled_shape(*content.shape[:2], config.size)
    need = estimated_peak_bytes(height, width, config)
    if need > job.memory_bytes:
        return write_error(
            job,
            photo,
            f"at {width}x{height} px it needs about {gigabytes(need)}, more than the "
            f"{gigabytes(job.memory_bytes)} a worker has; raise --memory_per_worker "
            "or lower --size",
            final=False,
        )
    last = ProgressLogger(0)
    monitor = _monitor(config, photo, content)
    callbacks = [last] if monitor is None else [last, monitor]
    try:
        result = stylizer.stylize(content, style, init=init, masks=masks, callbacks=callbacks)
    except NstError as err:  # too small for the layers, or a loss gone NaN
        return write_error(job, photo, str(err), final=True)
    losses = last.last.losses if last.last else {}
    steps = last.last.step if last.last else 0
    if monitor is not None:
        monitor.finish(steps, result, losses)
    # A pending sidecar first, so that the result is known as ours even if we die now.
    write_record(job.sidecar(photo.name), {"input": photo.path, "pending": True})
    images.save_image(result, job.output(photo.name))
    seconds = time.perf_counter() - start
    # The sidecar goes last: it vouches for the whole output written before it.
    write_record(
        job.sidecar(photo.name),
        {
            "input": photo.path,
            "sha256": photo.sha256,
            "key": photo.key,
            "output": job.output(photo.name),
            "losses": losses,
            "steps": steps,
            "seconds": round(seconds, 3),
            "traces": stylizer.trace_count,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
    )
    if os.path.exists(job.error(photo.name)):
        os.unlink(job.error(photo.name))  # an earlier run's failure, now superseded
    return Outcome(photo.name, True, "", seconds, stylizer.trace_count)


def _monitor(config: Config, photo: Photo, content):
    """A TensorBoard run for this photo under config.logdir, or None without one."""
    if not config.logdir:
        return None
    from nst_tf.engine.monitoring import Monitor  # pylint: disable=import-outside-toplevel

    monitor = Monitor(config.logdir, config.snapshot_every, photo.name)
    monitor.start(config.to_dict(), content, None)
    return monitor


# --- the order of the work and the tally ----------------------------------------------------


class Queue:
    """The photos still to do, grouped by result shape.

    A worker gets another photo of a shape it has compiled while one is left; else one
    of a shape no worker has compiled yet; else one of the largest group left. So each
    shape is compiled by as few workers as keep them all busy.
    """

    def __init__(self, photos: Iterable[Photo]):
        groups: dict = collections.defaultdict(collections.deque)
        for photo in photos:
            groups[photo.shape].append(photo)
        self.groups = dict(sorted(groups.items(), key=lambda item: -len(item[1])))
        self.claimed = set()

    def __len__(self) -> int:
        return sum(len(group) for group in self.groups.values())

    def take(self, compiled: set) -> Photo | None:
        """The next photo for a worker that has compiled the shapes in `compiled` (the
        photo's shape is added to it)."""
        if not self.groups:
            return None
        shape = next(
            (s for s in self.groups if s in compiled),
            next((s for s in self.groups if s not in self.claimed), None),
        )
        if shape is None:
            shape = max(self.groups, key=lambda s: len(self.groups[s]))
        photo = self.groups[shape].popleft()
        if not self.groups[shape]:
            del self.groups[shape]
        compiled.add(shape)
        self.claimed.add(shape)
        return photo


@dataclasses.dataclass
class Summary:
    """The tally of a batch, for the closing lines."""

    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    photo_seconds: float = 0.0
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def add(self, outcome: Outcome) -> None:
        """Counts one photo's outcome."""
        if outcome.ok:
            self.done += 1
            self.photo_seconds += outcome.seconds
        else:
            self.failed[outcome.name] = outcome.error

    def lines(self) -> list[str]:
        """The closing summary: counts, rate, time per photo, and each failure."""
        hours = (time.perf_counter() - self.start) / 3600
        rate = f"{self.done / hours:.0f} photos/hour" if self.done and hours else "-"
        per = f"{self.photo_seconds / self.done:.1f} s/photo" if self.done else "-"
        lines = [
            f"done {self.done}, skipped {self.skipped} (already done), "
            f"failed {len(self.failed)} | {rate} | {per}"
        ]
        lines += [f"failed {name}: {reason}" for name, reason in sorted(self.failed.items())]
        return lines
