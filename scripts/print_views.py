"""The README's views of a large result: a downsized view and a 1:1 crop at a tile corner.

    python scripts/print_views.py RESULT.png --tile=1216 --halo=8 --grid=4 \
        --name=print_4096

Writes docs/images/NAME_view.jpg (the whole image, --view px wide) and NAME_crop.jpg: a
--crop px square of the result at full resolution around the tile corner nearest the
image's centre, twice side by side, plain and with the tile interiors' edges dashed in red.
The tiles are the ones nst_tf.engine.memory.plan_tiles lays out for the result's size with the
given tile side, halo and grid (the run's log names its tile side).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nst_tf.engine.memory import plan_tiles  # noqa: E402


def dashed(draw: ImageDraw.ImageDraw, start, end, dash: int = 8) -> None:
    """A red dashed straight line from start to end (horizontal or vertical)."""
    (x0, y0), (x1, y1) = start, end
    length = max(abs(x1 - x0), abs(y1 - y0))
    for offset in range(0, length, 2 * dash):
        a, b = offset, min(offset + dash, length)
        if x0 == x1:
            draw.line([(x0, y0 + a), (x0, y0 + b)], fill=(255, 0, 0), width=2)
        else:
            draw.line([(x0 + a, y0), (x0 + b, y0)], fill=(255, 0, 0), width=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result")
    parser.add_argument("--tile", type=int, required=True)
    parser.add_argument("--halo", type=int, default=8)
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--name", default="print_4096")
    parser.add_argument("--view", type=int, default=1200)
    parser.add_argument("--crop", type=int, default=480)
    args = parser.parse_args()
    with Image.open(args.result) as img:
        image = img.convert("RGB")
    width, height = image.size
    out = os.path.join(ROOT, "docs", "images")
    view = image.resize((args.view, round(height * args.view / width)), Image.Resampling.LANCZOS)
    view.save(os.path.join(out, f"{args.name}_view.jpg"), quality=88)

    tiles = plan_tiles(height, width, args.tile, args.halo, args.grid)
    rows = sorted({t.interior[0] for t in tiles} - {0})
    cols = sorted({t.interior[2] for t in tiles} - {0})
    cy = min(rows, key=lambda y: abs(y - height / 2))
    cx = min(cols, key=lambda x: abs(x - width / 2))
    half = args.crop // 2
    box = (cx - half, cy - half, cx + half, cy + half)
    plain = image.crop(box)
    marked = plain.copy()
    draw = ImageDraw.Draw(marked)
    for x in cols:
        if box[0] <= x < box[2]:
            dashed(draw, (x - box[0], 0), (x - box[0], args.crop))
    for y in rows:
        if box[1] <= y < box[3]:
            dashed(draw, (0, y - box[1]), (args.crop, y - box[1]))
    both = Image.new("RGB", (2 * args.crop + 8, args.crop), (255, 255, 255))
    both.paste(plain, (0, 0))
    both.paste(marked, (args.crop + 8, 0))
    both.save(os.path.join(out, f"{args.name}_crop.jpg"), quality=92)
    print(
        f"{len(tiles)} tiles; crop {box} around the corner at x={cx}, y={cy}; "
        f"view {view.size[0]}x{view.size[1]}; mean level {np.asarray(plain).mean():.1f}"
    )


if __name__ == "__main__":
    main()
