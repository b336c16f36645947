"""Measures flicker, style and speed of nst-tf-video; writes a section of docs/benchmarks.md.

    python scripts/video_benchmark.py [--frames 24] [--size 192] [--photo PATH]

Makes a clip by panning and zooming over one photo (so the true motion is smooth and
known), stylises it with several settings, and reports for each: the flicker measure
(nst_tf.core.flow.flicker: mean absolute difference between each output frame and the
previous one warped along the input's flow, over the pixels the consistency check
keeps), each frame's style loss against the independent frames', and the time of the
first frame against the later ones. A strip of frames goes to docs/images/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from nst_tf.commands import video  # noqa: E402
from nst_tf.core import flow  # noqa: E402
from nst_tf.io import clips, images  # noqa: E402
from nst_tf.model.features import cpu_flags  # noqa: E402
from nst_tf.settings.config import Config  # noqa: E402


def make_clip(photo: str, folder: str, frames: int, width: int, height: int) -> None:
    """Frames of a slow pan to the right with a gentle zoom in over one photo."""
    with Image.open(photo) as image:
        source = image.convert("RGB")
    for t in range(frames):
        zoom = 1.0 + 0.01 * t
        w, h = source.width / (1.6 * zoom), source.height / (1.6 * zoom)
        left = 0.1 * source.width + 3.0 * t * source.width / 640
        top = (source.height - h) / 2
        box = (left, top, left + w, top + h)
        source.resize((width, height), Image.Resampling.LANCZOS, box=box).save(
            os.path.join(folder, f"f{t:03d}.png")
        )


def run(config, settings, clip_dir, out_dir, style):
    """Stylises the clip; returns per-frame (seconds, losses) and the frames."""
    shutil.rmtree(out_dir, ignore_errors=True)
    reports = []
    video.stylize_video(config, settings, clip_dir, out_dir, style, on_frame=reports.append)
    frames = [images.load_image(p) for p in sorted(clips.open_clip(out_dir).frames)]
    return reports, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument(
        "--photo", default=os.path.join(ROOT, "..", "shared", "images", "tubingen.jpg")
    )
    parser.add_argument(
        "--style", default=os.path.join(ROOT, "..", "shared", "images", "starry_night_google.jpg")
    )
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="nst_video_")
    clip_dir = os.path.join(work, "clip")
    os.makedirs(clip_dir)
    width, height = args.size, round(args.size * 2 / 3)
    make_clip(args.photo, clip_dir, args.frames, width, height)
    contents = [images.load_image(p) for p in sorted(clips.open_clip(clip_dir).frames)]
    style = images.load_image(args.style, args.size)
    # One scale: at these small sizes a coarse-to-fine first frame (from half the size)
    # loses the content to the style, and every later frame would inherit that.
    config = Config(size=args.size, min_size=0)
    default = video.VideoSettings()
    variants = {
        "independent (--frame_init=content --temporal_weight=0)": video.VideoSettings(
            temporal_weight=0.0, frame_init="content"
        ),
        "warped start, no temporal loss": video.VideoSettings(temporal_weight=0.0),
        f"default (warped start, --temporal_weight={default.temporal_weight:g})": default,
    }
    rows, strips = [], {}
    independent_style = None
    for name, settings in variants.items():
        begin = time.perf_counter()
        reports, frames = run(config, settings, clip_dir, os.path.join(work, "out"), style)
        total = time.perf_counter() - begin
        styles = np.array([r.losses["style"] for r in reports])
        if independent_style is None:
            independent_style = styles
        later = [r.seconds for r in reports[1:]]
        rows.append(
            {
                "variant": name,
                "flicker": flow.flicker(frames, contents),
                "style_ratio_max": float(np.max(styles[1:] / independent_style[1:])),
                "style_ratio_mean": float(np.mean(styles[1:] / independent_style[1:])),
                "first_frame_s": reports[0].seconds,
                "later_frame_s": float(np.mean(later)),
                "total_s": total,
            }
        )
        strips[name] = np.concatenate([frames[i] for i in (0, 8, 16, 23) if i < len(frames)], 1)
        print(json.dumps(rows[-1]), flush=True)
    strip = np.concatenate(list(strips.values()), axis=0)
    images.save_image(strip, os.path.join(ROOT, "docs", "images", "video_strip.jpg"))
    base = rows[0]["flicker"]
    lines = [
        "",
        f"## Video: flicker and speed ({time.strftime('%Y-%m-%d')}, scripts/video_benchmark.py)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{'AVX-512' if 'avx512f' in cpu_flags() else 'AVX2'}; load average "
        f"{os.getloadavg()[0]:.1f} at the end (the machine was shared). Clip: "
        f"{args.frames} frames, {width}x{height}, panning and zooming over "
        f"{os.path.basename(args.photo)}; style {os.path.basename(args.style)}; the first frame "
        f"{config.steps} L-BFGS steps, later frames --frame_steps={default.frame_steps}, all "
        f"at {args.size} px.",
        "",
        "| variant | flicker (0..255) | vs independent | style loss vs independent (mean / max) "
        "| first frame s | later frames s |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['flicker']:.2f} | {base / row['flicker']:.1f}x less | "
            f"{row['style_ratio_mean']:.2f} / {row['style_ratio_max']:.2f} | "
            f"{row['first_frame_s']:.1f} | {row['later_frame_s']:.1f} |"
        )
    lines += [
        "",
        "![frames 0, 8, 16, 23 of each variant, top to bottom](images/video_strip.jpg)",
        "",
    ]
    with open(args.out, "a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
