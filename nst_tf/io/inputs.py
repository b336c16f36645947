"""Images in a folder: the one rule for which files of a folder are images to read."""

from __future__ import annotations

import os

from nst_tf.io import images


def images_in_folder(folder: str) -> list[str]:
    """The image files directly in `folder` (by the raster extensions the reader takes),
    sorted by name."""
    return sorted(
        os.path.join(folder, name)
        for name in os.listdir(folder)
        if os.path.splitext(name)[1].lower() in images.input_extensions()
    )
