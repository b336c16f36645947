"""One small picture per preset (docs/images/presets.jpg), for docs/presets.md.

Each preset runs as `nst-tf --preset=NAME --size=256` would (the size overridden, as any
flag overrides a preset), on Gatys et al.'s Tübingen photo and The Starry Night from
../shared/images, and the pictures are put side by side with their names.

    python scripts/preset_pictures.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nst_tf.settings import presets  # noqa: E402
from nst_tf.settings.config import Config  # noqa: E402

IMAGES = next(
    p
    for p in (os.path.join(ROOT, "..", "shared", "images"), "/work/shared/images")
    if os.path.isdir(p)
)
SIZE = 256
OUT = os.path.join(ROOT, "docs", "images", "presets.jpg")


def main() -> int:
    from nst_tf.commands.run import stylize  # pylint: disable=import-outside-toplevel

    tiles = []
    with tempfile.TemporaryDirectory() as work:
        for name in presets.names():
            began = time.process_time()
            config = Config.from_preset(
                name,
                size=SIZE,
                content=os.path.join(IMAGES, "tubingen.jpg"),
                style=os.path.join(IMAGES, "starry_night_google.jpg"),
                output=os.path.join(work, f"{name}.png"),
                checkpoint_every=0,
            )
            result = stylize(config)
            print(f"{name}: {result.steps} steps, {time.process_time() - began:.0f} s CPU")
            tile = Image.fromarray(np.clip(result.image, 0, 255).astype(np.uint8))
            ImageDraw.Draw(tile).text((6, 4), name, fill=(255, 255, 255))
            tiles.append(tile)
    strip = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width
    strip.save(OUT, quality=88)
    return 0


if __name__ == "__main__":
    sys.exit(main())
