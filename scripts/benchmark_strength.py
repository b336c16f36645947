"""Measures what --style_strength means: the same balance for every style, loss and size.

For one content photo and several style images, at two sizes and with both style losses,
runs the same short stylisation twice: with each loss's documented style weight (Gram 1e-3,
Wasserstein 1000) and with --style_strength=1. At the end of each run it reads

- the balance: weighted content / weighted style, the ratio of the terms the optimiser
  settled on, and
- the style gap closed: 1 - style term at the end / style term of the photo, and the
  content drift: the content term at the end / the content scale M (see core.balance),
  the two halves of the look, which no weight enters,

and reports their spread over the style images (max / min). Then it makes a strip of one
pair at strengths 0, 0.25, 0.5, 1, 2, 4 (docs/images/strength_strip.jpg) and writes
docs/strength.md.

    python scripts/benchmark_strength.py              # about 20 minutes on 2 cores
    python scripts/benchmark_strength.py --reference  # REFERENCE_BALANCE's measurement

Images from ../shared/images (or /work/shared/images): not part of the repository.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nst_tf.core import balance  # noqa: E402
from nst_tf.io.images import load_image, scaled_shape  # noqa: E402
from nst_tf.settings.config import Config  # noqa: E402

IMAGES = next(
    (
        p
        for p in (os.path.join(ROOT, "..", "shared", "images"), "/work/shared/images")
        if os.path.isdir(p)
    ),
    None,
)
CONTENT = "tubingen.jpg"
STYLES = ("starry_night_google.jpg", "the_scream.jpg", "sample style.png")
SIZES = (128, 192)
STEPS = 30
LOSSES = {"gram": 1e-3, "wasserstein": 1e3}  # each loss's documented style weight
STRIP = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
STRIP_SIZE = 128
PAGE = os.path.join(ROOT, "docs", "strength.md")
STRIP_IMAGE = os.path.join(ROOT, "docs", "images", "strength_strip.jpg")


def _image(name: str, size: int = 1024) -> np.ndarray:
    if name == "sample style.png":
        return load_image(os.path.join(ROOT, "nst_tf", "samples", "style.png"), size)
    return load_image(os.path.join(IMAGES, name), size)


def _run(model, content, style, size, **settings) -> dict:
    """One single-scale run; the terms at the start (on the photo) and at the end."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nst_tf.engine.stylizer import Stylizer, resize_images  # pylint: disable=C0415

    config = Config(size=size, min_size=0, steps=STEPS, checkpoint_every=0, **settings)
    stylizer = Stylizer(config, model)
    inputs = stylizer.prepare(content, style)
    targets = stylizer.targets(inputs, size)
    photo = resize_images(inputs.content, *scaled_shape(*content.shape[:2], size))
    start = stylizer.evaluate(photo.numpy(), targets)
    last = {}
    image = stylizer.stylize(content, style, callbacks=[lambda p: last.update(p.losses)])
    weight = (
        float(targets.style_weight) if targets.style_weight is not None else config.style_weight
    )
    scale = float(stylizer.objective.content_scale(targets))
    del tf
    return {
        "weight": weight,
        "drift": last["content"] / scale,
        "share": last["weighted/content"] / (weight * last["style"]) if weight else math.inf,
        "closed": 1.0 - last["style"] / start["style"],
        "image": image,
    }


def reference() -> None:
    """Prints weight * S / M of the default style weight on the reference pair."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nst_tf.engine.stylizer import Stylizer, resize_images  # pylint: disable=C0415

    config = Config(style_strength=1.0)
    stylizer = Stylizer(config)
    content, style = _image(CONTENT), _image(STYLES[0])
    inputs = stylizer.prepare(content, style)
    size = config.min_size
    targets = stylizer.targets(inputs, size)
    photo = resize_images(inputs.content, *scaled_shape(*content.shape[:2], size))
    gap = stylizer.evaluate(photo.numpy(), targets)["style"]
    scale = float(stylizer.objective.content_scale(targets))
    print(f"S = {gap:.4g}, M = {scale:.4g}, 1e-3 * S / M = {1e-3 * gap / scale:.4g}")
    print(f"REFERENCE_BALANCE in nst_tf/core/balance.py: {balance.REFERENCE_BALANCE}")
    del tf


def _measured() -> list:
    with open(os.path.join(ROOT, "docs", "strength.json"), encoding="utf-8") as f:
        return [tuple(row) for row in json.load(f)["rows"]]


def _spread(values) -> str:
    return f"{max(values) / min(values):.2f}x" if min(values) > 0 else "—"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", action="store_true")
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs docs/strength.json holds"
    )
    args = parser.parse_args()
    if IMAGES is None:
        sys.exit("the shared images are missing (../shared/images)")
    if args.reference:
        reference()
        return 0
    from PIL import Image  # pylint: disable=import-outside-toplevel

    from nst_tf.model.features import FeatureExtractor  # pylint: disable=C0415

    began = time.time()
    model = FeatureExtractor(Config().layers, "auto", "auto", "max")
    content = _image(CONTENT)
    rows = _measured() if args.resume else []
    done = {tuple(r[:3]) for r in rows}
    for loss, weight in LOSSES.items():
        for size in SIZES:
            for name in STYLES:
                if (loss, size, name) in done:
                    continue
                style = _image(name)
                fixed = _run(model, content, style, size, style_loss=loss, style_weight=weight)
                dial = _run(model, content, style, size, style_loss=loss, style_strength=1.0)
                rows.append((loss, size, name, fixed, dial))
                print(loss, size, name, {k: v for k, v in dial.items() if k != "image"}, flush=True)
                _write_page(rows, [], time.time() - began)
    strip = []
    for strength in STRIP:
        result = _run(model, content, _image(STYLES[0]), STRIP_SIZE, style_strength=strength)
        strip.append((strength, result))
        print("strip", strength, result["share"], result["closed"], flush=True)
        _write_page(rows, strip, time.time() - began)
    os.makedirs(os.path.dirname(STRIP_IMAGE), exist_ok=True)
    Image.fromarray(
        np.concatenate([np.clip(r["image"], 0, 255).astype(np.uint8) for _, r in strip], axis=1)
    ).save(STRIP_IMAGE, quality=90)
    _write_page(rows, strip, time.time() - began)
    return 0


def _write_page(rows, strip, seconds) -> None:
    measured = {
        "rows": [
            [*r[:3], *({k: v for k, v in x.items() if k != "image"} for x in r[3:])] for r in rows
        ],
        "strip": [[s, {k: v for k, v in r.items() if k != "image"}] for s, r in strip],
    }
    with open(os.path.join(ROOT, "docs", "strength.json"), "w", encoding="utf-8") as f:
        json.dump(measured, f, indent=1)
    lines = [
        "# What --style_strength measures",
        "",
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, 2 cores "
        f"(AMD EPYC, AVX-512 and AVX512-BF16, no AMX), shared; {seconds / 60:.0f} min "
        "(`python scripts/benchmark_strength.py`).",
        "",
        f"Content: {CONTENT}; single-scale runs of {STEPS} L-BFGS steps at "
        f"{' and '.join(map(str, SIZES))} px. *Default weight*: each loss's documented style "
        "weight (Gram 1e-3, Wasserstein 1000). *Strength 1*: `--style_strength=1`. "
        "*Balance*: weighted content / weighted style at the end. "
        "*Closed*: 1 - style term at the end / style term of the photo. *Drift*: content "
        "term at the end / content scale M (the mean square of the photo's content "
        "activations).",
        "",
        "| loss | size | style | default weight: balance | closed | drift | "
        "strength 1: weight | balance | closed | drift |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for loss, size, name, fixed, dial in rows:
        lines.append(
            f"| {loss} | {size} | {name} | {fixed['share']:.3g} | {fixed['closed']:.3f} | "
            f"{fixed['drift']:.3f} | {dial['weight']:.3g} | {dial['share']:.3g} | "
            f"{dial['closed']:.3f} | {dial['drift']:.3f} |"
        )
    lines += ["", "Spread over the style images (max / min):", ""]
    lines += [
        "| loss | size | default: balance | closed | drift | strength 1: balance | closed "
        "| drift |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|"]
    groups = sorted({(loss, size) for loss, size, *_ in rows})
    for key in groups + [("all", "both")]:
        chosen = [r for r in rows if key == ("all", "both") or r[:2] == key]
        cells = [
            _spread([r[i][field] for r in chosen])
            for i in (3, 4)
            for field in ("share", "closed", "drift")
        ]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"The strip (docs/images/strength_strip.jpg): The Starry Night at {STRIP_SIZE} px, "
        "strengths " + ", ".join(f"{s:g}" for s, _ in strip) + ":",
        "",
        "| strength | " + " | ".join(f"{s:g}" for s, _ in strip) + " |",
        "|---|" + "---|" * len(strip),
        "| balance | "
        + " | ".join(f"{r['share']:.3g}" if r["share"] < math.inf else "—" for _, r in strip)
        + " |",
        "| closed | " + " | ".join(f"{r['closed']:.3f}" for _, r in strip) + " |",
        "| drift | " + " | ".join(f"{r['drift']:.3f}" for _, r in strip) + " |",
        "",
        "![strengths 0 to 4](images/strength_strip.jpg)",
        "",
    ]
    with open(PAGE, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
