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
STYLES = ("starry_night_google.jpg", "the_scream.jpg", "shipwreck.jpg", "sample style.png")
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
    """One single-scale run; the terms at the start (on the photo) and at the end, and
    the CPU and wall seconds of the run and of its --style_strength pilot."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nst_tf.engine.stylizer import Stylizer, resize_images  # pylint: disable=C0415

    config = Config(size=size, min_size=0, steps=STEPS, checkpoint_every=0, **settings)
    stylizer = Stylizer(config, model)
    inputs = stylizer.prepare(content, style)
    targets = stylizer.targets(inputs, size)
    photo = resize_images(inputs.content, *scaled_shape(*content.shape[:2], size))
    start = stylizer.evaluate(photo.numpy(), targets)
    last, pilot = {}, {"cpu": 0.0, "wall": 0.0}
    piloting = stylizer.pilot

    def timed_pilot(*args):
        cpu, wall = time.process_time(), time.time()
        balance_ = piloting(*args)
        pilot.update(cpu=time.process_time() - cpu, wall=time.time() - wall)
        return balance_

    stylizer.pilot = timed_pilot
    cpu, wall = time.process_time(), time.time()
    image = stylizer.stylize(content, style, callbacks=[lambda p: last.update(p.losses)])
    cpu, wall = time.process_time() - cpu, time.time() - wall
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
        "cpu": cpu,
        "wall": wall,
        "pilot_cpu": pilot["cpu"],
        "pilot_wall": pilot["wall"],
        "image": image,
    }


def reference() -> None:
    """Prints weight * S / M of the default style weight on the reference pair."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nst_tf.engine.stylizer import Stylizer, resize_images  # pylint: disable=C0415

    config = Config(style_strength=1.0, style_strength_pilot=0)  # the start weight only
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
    start = balance.calibrated_style_weight(1.0, config.content_weight, gap, scale)
    piloted = stylizer.pilot(photo, targets, start, balance.PILOT_STEPS)
    print(f"start weight {start:.4g}, balance after {balance.PILOT_STEPS} pilot steps")
    print(f"{piloted:.4g}; REFERENCE_PILOT_BALANCE: {balance.REFERENCE_PILOT_BALANCE}")
    del tf


def _measured() -> dict:
    """The runs docs/strength.json holds, by (loss, size, style) and kind."""
    path = os.path.join(ROOT, "docs", "strength.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    return {tuple(row["key"]): row["runs"] for row in rows}


def _spread(values) -> str:
    return f"{max(values) / min(values):.2f}x" if min(values) > 0 else "—"


# The three ways of setting the style weight that the page compares.
KINDS = {
    "fixed": "default weight",
    "start": "start balance",
    "pilot": "start + pilot",
}


def _settings(kind: str, loss: str) -> dict:
    if kind == "fixed":
        return {"style_loss": loss, "style_weight": LOSSES[loss]}
    return {"style_loss": loss, "style_strength": 1.0, "style_strength_pilot": kind == "pilot"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", action="store_true")
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs docs/strength.json holds"
    )
    parser.add_argument("--no-strip", action="store_true", help="leave the strip as it is")
    args = parser.parse_args()
    if IMAGES is None:
        sys.exit("the shared images are missing (../shared/images)")
    if args.reference:
        reference()
        return 0
    from PIL import Image  # pylint: disable=import-outside-toplevel

    from nst_tf.model.features import FeatureExtractor  # pylint: disable=C0415

    began = time.time()
    loads = [os.getloadavg()[0]]
    model = FeatureExtractor(Config().layers, "auto", "auto", "max")
    content = _image(CONTENT)
    measured = _measured() if args.resume else {}
    for loss in LOSSES:
        for size in SIZES:
            for name in STYLES:
                runs = measured.setdefault((loss, size, name), {})
                style = _image(name)
                for kind in KINDS:
                    if kind not in runs:
                        result = _run(model, content, style, size, **_settings(kind, loss))
                        runs[kind] = {k: v for k, v in result.items() if k != "image"}
                        loads.append(os.getloadavg()[0])
                        print(loss, size, name, kind, runs[kind], flush=True)
                        _write_page(measured, [], time.time() - began, loads)
    strip = []
    if not args.no_strip:
        for strength in STRIP:
            result = _run(model, content, _image(STYLES[0]), STRIP_SIZE, style_strength=strength)
            strip.append((strength, result))
            loads.append(os.getloadavg()[0])
            print("strip", strength, result["share"], result["closed"], flush=True)
        os.makedirs(os.path.dirname(STRIP_IMAGE), exist_ok=True)
        Image.fromarray(
            np.concatenate([np.clip(r["image"], 0, 255).astype(np.uint8) for _, r in strip], 1)
        ).save(STRIP_IMAGE, quality=90)
    _write_page(measured, strip, time.time() - began, loads)
    return 0


def _write_page(measured, strip, seconds, loads) -> None:
    path = os.path.join(ROOT, "docs", "strength.json")
    if not strip and os.path.exists(path):  # keep the strip's numbers of an earlier run
        with open(path, encoding="utf-8") as f:
            kept = json.load(f).get("strip", [])
    else:
        kept = [[s, {k: v for k, v in r.items() if k != "image"}] for s, r in strip]
    with open(path, "w", encoding="utf-8") as f:
        rows = [{"key": list(key), "runs": runs} for key, runs in measured.items()]
        json.dump({"rows": rows, "strip": kept}, f, indent=1)
    strip = [(s, r) for s, r in kept]
    done = [(key, runs) for key, runs in measured.items() if len(runs) == len(KINDS)]
    lines = [
        "# What --style_strength measures",
        "",
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, 2 cores "
        "(AMD EPYC, AVX-512 and AVX512-BF16, no AMX), shared with 4 other agents' work "
        f"(load average {min(loads):.1f} to {max(loads):.1f}); {seconds / 60:.0f} min in the "
        "last invocation (`python scripts/benchmark_strength.py`, about 40 min for all runs; "
        "`--resume` keeps the runs docs/strength.json holds).",
        "",
        f"Content: {CONTENT}; single-scale runs of {STEPS} L-BFGS steps at "
        f"{' and '.join(map(str, SIZES))} px. *Default weight*: each loss's documented style "
        "weight (Gram 1e-3, Wasserstein 1000). *Start balance*: `--style_strength=1 "
        "--style_strength_pilot=false`, the weight from the terms on the photo alone (the rule "
        "before the pilot). *Start + pilot*: `--style_strength=1`, the start weight corrected "
        f"by a {balance.PILOT_STEPS}-step pilot (see nst_tf/core/balance.py). "
        "*Balance*: weighted content / weighted style at the end of the run, the number the "
        "dial should hold the same. *Closed*: 1 - style term at the end / style term of the "
        "photo. *Drift*: content term at the end / content scale M (the mean square of the "
        "photo's content activations).",
        "",
        "| loss | size | style | default weight: balance | start balance: weight | balance "
        "| start + pilot: weight | balance | closed | drift | pilot's share of the CPU time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (loss, size, name), runs in done:
        fixed, start, pilot = (runs[k] for k in KINDS)
        lines.append(
            f"| {loss} | {size} | {name} | {fixed['share']:.3g} | {start['weight']:.3g} | "
            f"{start['share']:.3g} | {pilot['weight']:.3g} | {pilot['share']:.3g} | "
            f"{pilot['closed']:.3f} | {pilot['drift']:.3f} | "
            f"{pilot['pilot_cpu'] / pilot['cpu']:.0%} |"
        )
    lines += ["", "Spread of the end balance over the style images (max / min):", ""]
    lines += ["| loss | size | default weight | start balance | start + pilot |"]
    lines += ["|---|---|---|---|---|"]
    groups = sorted({(loss, size) for (loss, size, _), _ in done})
    groups += [(loss, "both") for loss in sorted({g[0] for g in groups})] + [("all", "both")]
    for group in groups:
        chosen = [
            runs
            for (loss, size, _), runs in done
            if group[0] in ("all", loss) and group[1] in ("both", size)
        ]
        cells = [_spread([runs[kind]["share"] for runs in chosen]) for kind in KINDS]
        lines.append(f"| {group[0]} | {group[1]} | " + " | ".join(cells) + " |")
    if done:
        share = [runs["pilot"]["pilot_cpu"] / runs["pilot"]["cpu"] for _, runs in done]
        lines += [
            "",
            f"The pilot's cost: {min(share):.0%} to {max(share):.0%} of these {STEPS}-step "
            f"runs' CPU time ({balance.PILOT_STEPS} steps at the run's only scale, whose "
            "compiled step it shares). In a default run (256, 362, 512 px; 60, 60, 140 "
            f"steps) the pilot's {balance.PILOT_STEPS} steps at 256 px are "
            f"{balance.PILOT_STEPS / (60 + 60 * 2 + 140 * 4):.1%} of the step work "
            "(steps x pixels).",
        ]
    if strip:
        lines += [
            "",
            f"The strip (docs/images/strength_strip.jpg): The Starry Night at {STRIP_SIZE} "
            "px, strengths " + ", ".join(f"{s:g}" for s, _ in strip) + ":",
            "",
            "| strength | " + " | ".join(f"{s:g}" for s, _ in strip) + " |",
            "|---|" + "---|" * len(strip),
            "| weight | " + " | ".join(f"{r['weight']:.3g}" for _, r in strip) + " |",
            "| balance | "
            + " | ".join(f"{r['share']:.3g}" if r["share"] < math.inf else "—" for _, r in strip)
            + " |",
            "| closed | " + " | ".join(f"{r['closed']:.3f}" for _, r in strip) + " |",
            "| drift | " + " | ".join(f"{r['drift']:.3f}" for _, r in strip) + " |",
            "",
            "![strengths 0 to 4](images/strength_strip.jpg)",
        ]
    lines.append("")
    with open(PAGE, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
