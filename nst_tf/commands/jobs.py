"""A batch job's logic, free of any engine: which photos, their names and keys, the order
of the work and the tally.

Exactly one output per input, whatever dies, rests on four things: a key per photo that
hashes everything its result depends on (here); the image written atomically and then its
sidecar NAME.json, so that a sidecar vouches for a whole output (nst_tf.commands.work); a
rerun that skips a photo only when its sidecar holds the same key, and that removes the
temporary files a killed writer of ours left (nst_tf.commands.records, the output folder's
format). The engine (nst_tf.commands.raypool) only decides where and when a photo is
stylised, and may do it twice.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Sequence

from absl import logging
from PIL import Image

from nst_tf.errors import ConfigError, NstError
from nst_tf.io import images
from nst_tf.io.paths import file_sha256, open_regular, shown
from nst_tf.settings import keys
from nst_tf.settings.config import Config

FORMATS = ("png", "jpg")


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
    """Bytes as GB for messages, with the digits that matter (0.01 GB, not 0.0 GB; 0.801
    GB, not 0.8 GB beside a 0.8 GB that is too little)."""
    return f"{count / 1e9:.3g} GB" if count < 1e10 else f"{count / 1e9:.0f} GB"


# --- which photos -----------------------------------------------------------------------


def _is_image_name(path: str) -> bool:
    # One rule for "images in a folder": the raster formats nst_tf decodes (images.py).
    name = os.path.basename(path)
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
        # The folder's rule for what is a photo holds for what a pattern matches too:
        # 'photos/**' lists the photos, not the notes or the sidecars beside them.
        matches = glob.glob(spec, recursive=True)
        paths = sorted(p for p in matches if not os.path.isdir(p) and _is_image_name(p))
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
    """A hash of everything but the photo that its result depends on: the key record of
    nst_tf.settings.keys (the one rule for resume, batch and video) with the output
    format and bit depth.

    The settings that change the result, the VGG19 weights' sha256, and the bytes of the
    style images (or style targets), masks and start image. The
    style's statistics are a function of those bytes and the settings, so they are
    covered without being measured first: a rerun decides what is done without loading
    TensorFlow, and float round-off in a measurement cannot make a finished photo look
    undone.

    Args:
        config: The settings, with --style folders expanded (run.expand_styles).
        fmt: The output format.
        weights_sha256: The sha256 of the VGG19 weights file.
    """
    files = keys.input_files(config, default_style=images.sample_path("style"))
    inputs = {name: [file_sha256(path) for path in paths] for name, paths in files.items()}
    # A batch never checkpoints (its workers run with --checkpoint_every=0), so the
    # setting cannot change its results.
    recipe = keys.recipe_of(dataclasses.replace(config, checkpoint_every=0))
    record = keys.key_record(recipe, inputs, weights_sha256, format=fmt, bit_depth=config.bit_depth)
    return keys.result_key(record)


def photo_key(digest: str, photo_sha256: str) -> str:
    """The result key of one photo: the job's digest (its key record without the
    content) and the photo's bytes."""
    return hashlib.sha256(f"{digest}:{photo_sha256}".encode()).hexdigest()


def plan(job: Job, paths: Sequence[str], digest: str) -> list[Photo]:
    """The photos of a batch with their names, keys and result shapes."""
    return [
        Photo(path, name, sha, photo_key(digest, sha), result_shape(path, job.config.size))
        for path, name, sha in zip(
            paths, output_names(paths), (file_sha256(p) for p in paths), strict=True
        )
    ]


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
