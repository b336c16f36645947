"""Makes docs/gallery/: one image per artist's control, from the built-in samples.

    python scripts/gallery.py [--size 256] [--content PHOTO --style A --style2 B]

Each image is a real nst_tf run with the settings in its caption; gallery.jpg puts them
side by side with the captions, and index.md lists them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
from PIL import Image, ImageDraw

from nst_tf.commands.preflight import load_masks
from nst_tf.engine.stylizer import stylize_arrays
from nst_tf.io import images
from nst_tf.settings.config import Config, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "gallery")


def controls(style: str, style2: str, mask_left: str, mask_right: str) -> dict[str, dict]:
    """Caption -> the settings that differ from the defaults."""
    return {
        "default": {},
        "--style=A,B --style_blend_weights=0.7,0.3": dict(
            style=f"{style},{style2}", style_blend_weights=(0.7, 0.3)
        ),
        "--style_scale=2 (larger strokes)": dict(style_scale=(2.0,)),
        "--style_scale=0.5 (finer strokes)": dict(style_scale=(0.5,)),
        "--preserve_color=luminance --color_space=lab": dict(
            preserve_color="luminance", color_space="lab"
        ),
        "--preserve_color=histogram": dict(preserve_color="histogram"),
        "--style=A,B --style_mask=left,right": dict(
            style=f"{style},{style2}", style_mask=(mask_left, mask_right)
        ),
        "--pooling=avg": dict(pooling="avg"),
        "--style_loss=wasserstein --style_weight=1000": dict(
            style_loss="wasserstein", style_weight=1000.0
        ),
        "--style_layer_weight_exp=0.5 (fine texture)": dict(style_layer_weight_exp=0.5),
        "--style_layer_weight_exp=2 (large patterns)": dict(style_layer_weight_exp=2.0),
        "--init=noise": dict(init="noise"),
        "--init_noise_ratio=0.5": dict(init_noise_ratio=0.5),
    }


def write_masks(content: np.ndarray) -> tuple[str, str]:
    """Left/right halves with a soft edge, as grayscale PNGs in the gallery folder."""
    height, width = content.shape[:2]
    ramp = np.clip((np.arange(width) - 0.45 * width) / (0.1 * width), 0, 1)
    right = np.broadcast_to(ramp, (height, width))
    paths = os.path.join(OUT, "mask_left.png"), os.path.join(OUT, "mask_right.png")
    for path, mask in zip(paths, (1 - right, right), strict=True):
        Image.fromarray(np.round(mask * 255).astype(np.uint8), "L").save(path)
    return paths


def contact_sheet(entries: list[tuple[str, str]], path: str, columns: int = 4) -> None:
    tiles = [Image.open(p) for _, p in entries]
    w, h = tiles[0].size
    caption = 28
    sheet = Image.new("RGB", (columns * w, -(-len(tiles) // columns) * (h + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, ((text, _), tile) in enumerate(zip(entries, tiles, strict=True)):
        x, y = (i % columns) * w, (i // columns) * (h + caption)
        sheet.paste(tile.resize((w, h)), (x, y))
        draw.text((x + 4, y + h + 6), text[:48], fill="black")
    sheet.save(path, quality=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--content", default=images.sample_path("content"))
    parser.add_argument("--style", default=images.sample_path("style"))
    parser.add_argument("--style2", default=images.sample_path("style2"))
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    content = images.load_image(args.content, 2 * args.size)
    mask_left, mask_right = write_masks(content)
    base = Config(
        content=args.content,
        style=args.style,
        size=args.size,
        min_size=args.size // 2,
        checkpoint_every=0,
    )
    entries = []
    for index, (caption, changes) in enumerate(
        controls(args.style, args.style2, mask_left, mask_right).items()
    ):
        config = validate(dataclasses.replace(base, **changes))
        styles = [images.load_image(p, 2 * args.size) for p in config.style_paths()]
        start = time.perf_counter()
        result = stylize_arrays(content, styles, config, masks=load_masks(config))
        path = os.path.join(OUT, f"{index:02d}.jpg")
        images.save_image(result, path)
        entries.append((caption, path))
        print(f"{caption}: {time.perf_counter() - start:.0f} s -> {path}", flush=True)
    contact_sheet(entries, os.path.join(OUT, "gallery.jpg"))
    with open(os.path.join(OUT, "index.md"), "w") as f:
        f.write(
            "# nst_tf gallery\n\nMade by `python scripts/gallery.py` from the built-in samples "
        )
        f.write(f"at {args.size} px; every other setting at its default.\n\n")
        f.write("![all controls](gallery.jpg)\n\n| image | settings |\n|---|---|\n")
        for caption, path in entries:
            f.write(f"| ![]({os.path.basename(path)}) | `{caption}` |\n")


if __name__ == "__main__":
    main()
