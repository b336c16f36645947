"""Draws the built-in sample images (nst_tf/samples/) from code, so we own them.

content.png: a small landscape (sky, sun, hills, a house, a lake).
style.png: a swirling, brush-stroked pattern in saturated blues and yellows.
style2.png: warm, angular mosaic tiles (a second style, for blending and masks).

Run once; the PNGs are committed. `python scripts/make_samples.py`
"""

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent.parent / "nst_tf" / "samples"


def content(width=512, height=384) -> Image.Image:
    y = np.linspace(0, 1, height)[:, None, None]
    sky = (1 - y) * np.array([70, 130, 210]) + y * np.array([200, 225, 245])
    img = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.ellipse((370, 40, 440, 110), fill=(255, 220, 120))
    for i, (base, colour) in enumerate([(250, (70, 120, 60)), (280, (50, 100, 45))]):
        points = [(x, base - 40 * math.sin(x / (90 + 40 * i) + i)) for x in range(0, width + 8, 8)]
        draw.polygon(points + [(width, height), (0, height)], fill=colour)
    draw.rectangle((120, 200, 210, 270), fill=(200, 80, 60))
    draw.polygon([(110, 200), (165, 155), (220, 200)], fill=(110, 50, 40))
    draw.rectangle((155, 235, 175, 270), fill=(70, 40, 30))
    draw.rectangle((130, 215, 148, 232), fill=(240, 230, 150))
    draw.rectangle((185, 215, 203, 232), fill=(240, 230, 150))
    draw.rectangle((0, 300, width, height), fill=(60, 110, 170))
    for k in range(12):
        x = 30 + 40 * k
        draw.line((x, 320 + 5 * (k % 3), x + 25, 320 + 5 * (k % 3)), fill=(170, 200, 230), width=2)
    return img.filter(ImageFilter.GaussianBlur(0.8))


def style(size=384, strokes=2500, seed=7) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (20, 40, 90))
    draw = ImageDraw.Draw(img)
    palette = [
        (25, 60, 140),
        (40, 90, 180),
        (90, 150, 220),
        (240, 210, 60),
        (250, 240, 170),
        (20, 30, 60),
    ]
    centres = rng.uniform(0, size, (5, 2))
    for _ in range(strokes):
        x, y = rng.uniform(0, size, 2)
        cx, cy = centres[np.argmin(((centres - (x, y)) ** 2).sum(1))]
        angle = math.atan2(y - cy, x - cx) + math.pi / 2  # swirl around the nearest centre
        length = rng.uniform(8, 22)
        dx, dy = length * math.cos(angle), length * math.sin(angle)
        colour = palette[rng.integers(len(palette))]
        draw.line((x - dx, y - dy, x + dx, y + dy), fill=colour, width=int(rng.integers(2, 6)))
    return img.filter(ImageFilter.SMOOTH)


def mosaic(size=384, tiles=260, seed=3) -> Image.Image:
    """A second style: warm, angular mosaic tiles with dark seams."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (40, 25, 20))
    draw = ImageDraw.Draw(img)
    palette = [(200, 70, 40), (230, 150, 50), (150, 40, 60), (240, 200, 120), (90, 50, 30)]
    for _ in range(tiles):
        cx, cy = rng.uniform(0, size, 2)
        radius = rng.uniform(8, 26)
        corners = rng.integers(3, 6)
        angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
        points = [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles]
        draw.polygon(points, fill=palette[rng.integers(len(palette))], outline=(30, 20, 15))
    return img


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    content().save(OUT / "content.png", optimize=True)
    style().save(OUT / "style.png", optimize=True)
    mosaic().save(OUT / "style2.png", optimize=True)
    print(f"wrote {OUT}/content.png, style.png and style2.png")
