"""Trains the transform network on this machine and compares it with the optimiser; writes
docs/training.md.

    nice python scripts/benchmark_train.py --minutes=10    # per network size

Training set: tiles of ../shared/images/boston.jpg (a 5176x3464 photo cut into a 4x3 grid,
each tile one "photo"); held out, never trained on: tubingen.jpg and nst_tf's own sample
photo. Style: starry_night_google.jpg. The recipe is nst-tf-train's default (the
stylisation's default objective at --size=512, 256 px crops, batch 4), trained for a fixed
wall-clock budget per network size, so the two sizes are compared at equal training time.

(a) held-out loss against training time for both sizes; (b) seconds per image at 512 and
1024 px for both; (c) on the held-out photos, the objective of the network's output against
the optimisation default's (nst_tf's Stylizer default) and against 50 single-scale L-BFGS
steps, all scored by one Stylizer's objective at 512 px; (d) a picture of the held-out
photos: network | optimised. The trained default model is written to --model_dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from nst_tf.engine.stylizer import Stylizer  # noqa: E402
from nst_tf.engine.training import Trainer, crop_batches  # noqa: E402
from nst_tf.io import images, model_dir, photos  # noqa: E402
from nst_tf.machine import cpu_flags  # noqa: E402
from nst_tf.settings.config import Config  # noqa: E402
from nst_tf.settings.training import TrainSettings, validate_training  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "images")
PAGE = os.path.join(ROOT, "docs", "training.md")
PICTURE = os.path.join(ROOT, "docs", "images", "training_heldout.jpg")
SIZES = ((16, 5), (32, 5))


def training_photos() -> list[np.ndarray]:
    """Boston cut into a 4x3 grid of tiles, each fitted as nst-tf-train fits a photo."""
    boston = images.load_image(os.path.join(SHARED, "boston.jpg"))
    height, width = boston.shape[:2]
    tiles = []
    for row in range(3):
        for col in range(4):
            tile = boston[
                row * height // 3 : (row + 1) * height // 3,
                col * width // 4 : (col + 1) * width // 4,
            ]
            tiles.append(photos.fit_photo(tile, 512, 256))
    return tiles


def heldout_photos() -> dict[str, np.ndarray]:
    return {
        "tubingen": photos.fit_photo(
            images.load_image(os.path.join(SHARED, "tubingen.jpg")), 512, 256
        ),
        "nst_tf sample": photos.fit_photo(
            images.load_image(images.sample_path("content")), 512, 256
        ),
    }


def train_for(settings, style, train, heldout, seconds, every):
    """Trains until `seconds` have passed; the held-out loss curve [(s, step, loss)]."""
    trainer = Trainer(settings, [style])
    curve = [(0.0, 0, trainer.evaluate_set(heldout)[0]["total"])]
    batches = iter(
        crop_batches(
            train, settings.crop_size, settings.batch_size, settings.seed, 1, settings.steps
        )
    )
    start = time.perf_counter()
    step = 0
    training_seconds = 0.0
    while training_seconds < seconds and step < settings.steps:
        tick = time.perf_counter()
        trainer.train_step(next(batches))
        training_seconds += time.perf_counter() - tick
        step += 1
        if step % every == 0:
            curve.append((training_seconds, step, trainer.evaluate_set(heldout)[0]["total"]))
            print(
                f"  {settings.width}/{settings.residual_blocks}: step {step} "
                f"{training_seconds:.0f} s held-out {curve[-1][2]:.4g}",
                flush=True,
            )
    if curve[-1][1] != step:
        curve.append((training_seconds, step, trainer.evaluate_set(heldout)[0]["total"]))
    trainer.step.assign(step)
    del start
    return trainer, curve


def seconds_per_image(net, side: int, repeats: int = 3) -> float:
    image = tf.random.uniform([1, side * 3 // 4, side, 3], 0, 255)
    run = tf.function(net.call, input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    run(image).numpy()
    tick = time.perf_counter()
    for _ in range(repeats):
        run(image).numpy()
    return (time.perf_counter() - tick) / repeats


def objectives(trainer, style, heldout, quick=False):
    """Per held-out photo: (network, default optimisation, 50 L-BFGS steps) objectives at
    512 px, each with its seconds, and the images."""
    config = Config(size=512)
    scorer = Stylizer(dataclasses.replace(config, min_size=0), trainer.model)
    fast = dict(steps=2, coarse_steps=2) if quick else {}
    default = Stylizer(dataclasses.replace(config, **fast), trainer.model)
    lbfgs = Stylizer(
        dataclasses.replace(config, min_size=0, steps=2 if quick else 50), trainer.model
    )
    rows = {}
    for name, photo in heldout.items():
        content = photo.astype(np.float32)
        inputs = scorer.prepare(content, style)
        targets = scorer.targets(inputs, 512)
        tick = time.perf_counter()
        net_out = trainer.evaluate(content)[1]
        net_s = time.perf_counter() - tick
        tick = time.perf_counter()
        optimised = default.stylize(content, style)
        default_s = time.perf_counter() - tick
        tick = time.perf_counter()
        fifty = lbfgs.stylize(content, style)
        lbfgs_s = time.perf_counter() - tick

        def score(image, targets=targets):
            return scorer.evaluate(np.asarray(image, np.float32)[None], targets)["total"]

        rows[name] = {
            "network": (score(net_out), net_s),
            "default": (score(optimised), default_s),
            "lbfgs50": (score(fifty), lbfgs_s),
            "images": (content, net_out, optimised),
        }
        print(
            f"  {name}: {rows[name]['network'][0]:.4g} vs {rows[name]['default'][0]:.4g} "
            f"vs {rows[name]['lbfgs50'][0]:.4g}",
            flush=True,
        )
    return rows


def picture(rows) -> None:
    strips = []
    for row in rows.values():
        parts = [images.to_uint8(image) for image in row["images"]]
        height = 256
        parts = [
            np.asarray(Image.fromarray(p).resize((round(p.shape[1] * height / p.shape[0]), height)))
            for p in parts
        ]
        strips.append(np.concatenate(parts, axis=1))
    width = max(s.shape[1] for s in strips)
    strips = [
        np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips
    ]
    Image.fromarray(np.concatenate(strips, axis=0)).save(PICTURE, quality=88)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training per size")
    parser.add_argument("--every", type=int, default=10, help="steps between held-out losses")
    parser.add_argument(
        "--model_dir", default=os.path.join(tempfile.gettempdir(), "nst_tf_bench_model")
    )
    parser.add_argument("--crop_size", type=int, default=256, help="as nst-tf-train's")
    parser.add_argument("--quick", action="store_true", help="smoke run, page to /tmp")
    args = parser.parse_args()
    if args.quick:
        global PAGE, PICTURE  # noqa: PLW0603 - a smoke run writes beside, not into the docs
        PAGE, PICTURE = "/tmp/training_quick.md", "/tmp/training_quick.jpg"
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    style = images.load_image(os.path.join(SHARED, "starry_night_google.jpg"), limit=1024)
    train, heldout = training_photos(), list(heldout_photos().values())
    curves, trainers, speeds = {}, {}, {}
    for width, blocks in SIZES:
        settings = validate_training(
            TrainSettings(
                images="boston tiles",
                output=args.model_dir,
                style="starry_night_google.jpg",
                width=width,
                residual_blocks=blocks,
                crop_size=args.crop_size,
                steps=2000,
            )
        )
        print(f"training {width}/{blocks} for {args.minutes} min", flush=True)
        trainer, curve = train_for(settings, style, train, heldout, args.minutes * 60, args.every)
        trainers[width, blocks], curves[width, blocks] = trainer, curve
        speeds[width, blocks] = {side: seconds_per_image(trainer.net, side) for side in (512, 1024)}
        print(f"  s/image {speeds[width, blocks]}", flush=True)
    # The size that wins quality per second: the lower held-out loss after equal training
    # time (inference speed is reported beside it).
    best = min(SIZES, key=lambda key: curves[key][-1][2])
    trainer = trainers[best]
    rows = objectives(trainer, style, heldout_photos(), args.quick)
    picture(rows)
    final = curves[best][-1]
    meta = model_dir.write_model_dir(
        args.model_dir,
        trainer.net,
        recipe={**trainer.settings.recipe(), "style": "starry_night_google.jpg"},
        styles=[
            {
                "name": "starry_night_google.jpg",
                "sha256": model_dir.sha256_of(os.path.join(SHARED, "starry_night_google.jpg")),
            }
        ],
        training={
            "steps": final[1],
            "seconds": round(final[0], 1),
            "photos": len(train),
            "heldout_photos": list(heldout_photos()),
            "heldout_loss": {"total": final[2]},
        },
    )
    del meta
    write_page(started, load, args, curves, speeds, rows, best)
    return 0


def write_page(started, load, args, curves, speeds, rows, best) -> None:
    flags = cpu_flags()
    cpu = platform.processor() or "x86-64"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    isa = ", ".join(x for x in ("avx512f", "avx512_bf16", "amx_bf16") if x in flags) or "AVX2"
    lines = [
        "# Training a stylizer: time, held-out loss, against the optimiser",
        "",
        f"<!-- Written by scripts/benchmark_train.py on {started}. -->",
        "",
        f"Measured {started} on {cpu} ({os.cpu_count()} cores; {isa}), TensorFlow "
        f"{tf.__version__}, the transform net in {trainers_precision(curves)}. **The machine "
        f"was shared** with other jobs (load average {load[0]:.1f} at the start on "
        f"{os.cpu_count()} cores), so the times are several times what an idle machine gives; "
        "the ratios between rows were measured under the same load.",
        "",
        "Training set: 12 tiles of `boston.jpg` (a 5176x3464 photo cut into a 4x3 grid, each "
        "fitted to 512 px); held out, never trained on: `tubingen.jpg` and nst_tf's sample "
        "photo. Style: `starry_night_google.jpg`. Recipe: nst-tf-train's defaults (the "
        "stylisation's default objective at `--size=512`, batch 4, Adam at 1e-3)"
        + (
            ""
            if args.crop_size == 256
            else f" but {args.crop_size} px crops (the default is 256; fewer pixels per "
            "step, so that the short budget holds more steps)"
        )
        + ", trained for "
        f"{args.minutes:g} minutes of steps per network size.",
        "",
        "## Held-out loss during training",
        "",
        "| network (width/blocks) | training s | step | held-out objective (mean of 2) |",
        "|---|---|---|---|",
    ]
    for key, curve in curves.items():
        for seconds, step, loss in curve:
            lines.append(f"| {key[0]}/{key[1]} | {seconds:.0f} | {step} | {loss:.4g} |")
    lines += [
        "",
        "## Seconds per image (forward pass, one image, 4:3)",
        "",
        "| network | 512 px | 1024 px | s/training step |",
        "|---|---|---|---|",
    ]
    for key, speed in speeds.items():
        curve = curves[key]
        per_step = curve[-1][0] / max(1, curve[-1][1])
        lines.append(
            f"| {key[0]}/{key[1]} | {speed[512]:.2f} | {speed[1024]:.2f} | {per_step:.1f} |"
        )
    lines += [
        "",
        f"Kept as the default: **{best[0]}/{best[1]}**, the lower held-out objective after equal "
        "training time.",
        "",
        "## The network against the optimiser, on the held-out photos",
        "",
        "All three scored by one objective (nst_tf's default recipe at 512 px, single scale).",
        "",
        "| photo | network | s | default optimisation | s | ratio | 50 L-BFGS steps | s | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        net, default, fifty = row["network"], row["default"], row["lbfgs50"]
        lines.append(
            f"| {name} | {net[0]:.4g} | {net[1]:.2f} | {default[0]:.4g} | {default[1]:.0f} | "
            f"{net[0] / default[0]:.2f}x | {fifty[0]:.4g} | {fifty[1]:.0f} | "
            f"{net[0] / fifty[0]:.2f}x |"
        )
    lines += [
        "",
        "Ratio: the network's objective over the optimiser's (goal: at most 2x the default's).",
        "",
        "![held-out photos: photo, network, optimised](images/training_heldout.jpg)",
        "",
        "Each row: the held-out photo, the network's output, the default optimisation's.",
        "",
    ]
    with open(PAGE, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def trainers_precision(curves) -> str:
    del curves
    from nst_tf.model.features import resolve_precision  # pylint: disable=C0415

    return resolve_precision("auto")


if __name__ == "__main__":
    sys.exit(main())
