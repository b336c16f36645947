"""A training set of photos: read defensively, scaled for training, split into a held-out part.

Every photo is decoded by nst_tf.io.images' rules (the raster allow-list, MAX_PIXELS,
regular files only); a file that fails them is skipped and counted, never trusted. TF-free.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

import numpy as np
from absl import logging
from PIL import Image

from nst_tf.errors import ConfigError, ImageError
from nst_tf.io import images
from nst_tf.io.inputs import images_in_folder
from nst_tf.io.paths import shown


@dataclasses.dataclass
class PhotoSet:
    """The photos a network trains on and the ones held out.

    Attributes:
        train: uint8 [H, W, 3] arrays, each at least crop x crop.
        heldout: uint8 [H, W, 3] arrays, never trained on.
        train_names: A name per training photo.
        heldout_names: A name per held-out photo.
        skipped: Files that could not be read (corrupt, not an image, not a regular file).
        too_small: Photos whose shorter side is under the crop.
    """

    train: list[np.ndarray]
    heldout: list[np.ndarray]
    train_names: list[str]
    heldout_names: list[str]
    skipped: int = 0
    too_small: int = 0


def list_photos(folder: str) -> list[str]:
    """The image files of a folder (not its subfolders, not hidden files), sorted.

    Raises:
        ConfigError: not a folder.
    """
    if not os.path.isdir(folder):
        raise ConfigError(f"--images={shown(folder)} is not a folder or a video clip")
    return [path for path in images_in_folder(folder) if not os.path.basename(path).startswith(".")]


def fit_photo(image: np.ndarray, size: int, crop: int) -> np.ndarray | None:
    """A photo as the network sees it: scaled so its longer side is `size` (never enlarged
    past its own size), its shorter side at least `crop`; None when it is smaller than
    the crop itself.

    Args:
        image: [H, W, 3] RGB, float in 0..255 or uint8.
        size: The side the network is trained for.
        crop: The crop side.
    """
    height, width = image.shape[:2]
    if min(height, width) < crop:
        return None
    factor = min(1.0, size / max(height, width))
    factor = max(factor, crop / min(height, width))
    pixels = images.to_uint8(image) if image.dtype != np.uint8 else image
    if abs(factor - 1.0) < 1e-6:
        return np.ascontiguousarray(pixels)
    shape = (max(crop, round(width * factor)), max(crop, round(height * factor)))
    resized = Image.fromarray(pixels).resize(shape, Image.Resampling.LANCZOS)
    return np.asarray(resized)


def split(count: int, holdout: float, seed: int, contiguous: bool) -> tuple[list, list]:
    """Indices of the training and the held-out items.

    Args:
        count: How many items.
        holdout: The share held out (at least one item when > 0 and count > 1).
        seed: Which photos are held out (a seeded shuffle).
        contiguous: Hold out the last items (a clip's frames: a neighbour of a held-out
            frame is almost the same picture, so scattered frames would not be unseen).
    """
    held = 0 if holdout <= 0 or count < 2 else max(1, round(count * holdout))
    order = (
        list(range(count)) if contiguous else list(np.random.default_rng(seed).permutation(count))
    )
    heldout = sorted(int(i) for i in order[count - held :])
    train = sorted(int(i) for i in order[: count - held])
    return train, heldout


def build_photo_set(
    items: Iterable[tuple[str, np.ndarray | None]],
    *,
    size: int,
    crop: int,
    batch: int,
    holdout: float,
    seed: int,
    contiguous: bool = False,
    source: str = "--images",
) -> PhotoSet:
    """Fits photos for training and holds some out.

    Args:
        items: (name, image or None when it could not be read) per photo or frame.
        size: As fit_photo.
        crop: As fit_photo.
        batch: Crops per step: the training part must hold at least this many photos.
        holdout: As split.
        seed: As split.
        contiguous: As split.
        source: How messages name the set.

    Raises:
        ConfigError: no usable photos, only one, or fewer training photos than a batch.
    """
    names, fitted = [], []
    skipped = too_small = 0
    for name, image in items:
        if image is None:
            skipped += 1
            continue
        fit = fit_photo(image, size, crop)
        if fit is None:
            too_small += 1
            continue
        names.append(name)
        fitted.append(fit)
    unusable = []
    if skipped:
        unusable.append(f"{skipped} unreadable")
    if too_small:
        unusable.append(f"{too_small} smaller than the {crop} px crop")
    also = f" ({', '.join(unusable)} skipped)" if unusable else ""
    if not fitted:
        raise ConfigError(
            f"{source} holds no usable photos{also}; add photos of at least {crop} px"
        )
    if len(fitted) == 1:
        raise ConfigError(
            f"{source} holds one usable photo{also}: a network learns from many; add more "
            "photos (a few dozen or more)"
        )
    train, heldout = split(len(fitted), holdout, seed, contiguous)
    if len(train) < batch:
        raise ConfigError(
            f"{source} has {len(train)} usable photos to train on after holding out "
            f"{len(heldout)}{also}, fewer than --batch_size={batch}; add photos or lower "
            "--batch_size or --holdout"
        )
    return PhotoSet(
        [fitted[i] for i in train],
        [fitted[i] for i in heldout],
        [names[i] for i in train],
        [names[i] for i in heldout],
        skipped,
        too_small,
    )


def read_photos(paths: Sequence[str], limit: int) -> Iterable[tuple[str, np.ndarray | None]]:
    """(name, float32 image) per path, or (name, None) with a warning for a file that
    breaks the image rules (corrupt, not an image, too many pixels, not a regular file).

    Args:
        paths: The files.
        limit: Larger photos are downscaled on decode to at most twice this (cheaply).
    """
    for path in paths:
        try:
            yield os.path.basename(path), images.load_image(path, limit=2 * limit)
        except ImageError as err:
            logging.warning("skipping %s", err)
            yield os.path.basename(path), None
