"""Trains the transform network on this machine and compares it with the optimiser; writes
docs/training.md.

    nice python scripts/benchmark_train.py --minutes=10    # per network size, every part
    nice python scripts/benchmark_train.py --parts=refine,batch   # some parts, same model

Training set: tiles of ../shared/images/boston.jpg (a 5176x3464 photo cut into a 4x3 grid,
each tile one "photo"); held out, never trained on: tubingen.jpg and nst_tf's own sample
photo. Style: starry_night_google.jpg. The recipe is nst-tf-train's default (the
stylisation's default objective at --size=512, 256 px crops, batch 4), trained for a fixed
wall-clock budget per network size, so the two sizes are compared at equal training time.

Parts (--parts, each a section of the page; a part not rerun keeps its section):
train: held-out loss against training time for both sizes; every size is written as a
MODEL_DIR (the kept one to --model_dir, each to --model_dir-WxB), which the other parts
load when train is not rerun. speed: seconds per image at 512, 1024 and 4096 px through
nst-tf --model's path (engine.feedforward, tiled when one pass does not fit), and the
compiled pass in training precision. compare: on the held-out photos, the objective of the
network's output against the optimisation default's and against 50 single-scale L-BFGS
steps, all scored by one Stylizer's objective at 512 px, and a picture. refine: nst-tf
--model --refine_steps=N (commands.model_run, in-process) on the held-out photos against
the default optimisation. batch: nst-tf-batch --model against nst-tf-batch optimising, as
processes on the same photos. video: a panned clip's flicker through nst-tf-video --model
(when it has --model) and optimised.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from nst_tf.commands.model_run import stylize_with_model_dir  # noqa: E402
from nst_tf.core import flow  # noqa: E402
from nst_tf.engine.feedforward import plan_tile, stylize_with_model  # noqa: E402
from nst_tf.engine.memory import PlanSettings, budget_bytes  # noqa: E402
from nst_tf.engine.stylizer import Stylizer  # noqa: E402
from nst_tf.engine.training import Trainer, crop_batches  # noqa: E402
from nst_tf.io import clips, images, model_dir, photos  # noqa: E402
from nst_tf.machine import cpu_flags  # noqa: E402
from nst_tf.settings.config import Config  # noqa: E402
from nst_tf.settings.training import TrainSettings, validate_training  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "images")
STYLE = os.path.join(SHARED, "starry_night_google.jpg")
PAGE = os.path.join(ROOT, "docs", "training.md")
PICTURE = os.path.join(ROOT, "docs", "images", "training_heldout.jpg")
SIZES = ((16, 5), (32, 5))
PARTS = ("train", "speed", "compare", "refine", "batch", "video")
# Images of ../shared/images that the batch and the video may use: not the training set's
# (boston.jpg), not the style.
# nst-tf-video as a process of this checkout's code (video_cli has no __main__ block).
VIDEO_CLI = (sys.executable, "-c", "from nst_tf.commands.video_cli import main; main()")
OTHER_IMAGES = ("tubingen.jpg", "shipwreck.jpg", "the_scream.jpg")


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


def size_dir(base: str, key) -> str:
    """Where the network of one size is written (besides the kept one at --model_dir)."""
    return f"{base}-{key[0]}x{key[1]}"


def load_state() -> dict:
    return {"start": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": os.getloadavg()}


def measured_line(state: dict) -> str:
    end = os.getloadavg()
    return (
        f"_Measured {state['start']}; load average {state['load'][0]:.1f} at the part's start, "
        f"{end[0]:.1f} at its end, on {os.cpu_count()} cores._"
    )


# ---------------------------------------------------------------------------------- train


def train_for(settings, style, train, heldout, seconds, every):
    """Trains until `seconds` have passed; the held-out loss curve [(s, step, loss)]."""
    trainer = Trainer(settings, [style])
    curve = [(0.0, 0, trainer.evaluate_set(heldout)[0]["total"])]
    batches = iter(
        crop_batches(
            train, settings.crop_size, settings.batch_size, settings.seed, 1, settings.steps
        )
    )
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
    return trainer, curve


def write_model(path, trainer, curve, train_count) -> None:
    final = curve[-1]
    model_dir.write_model_dir(
        path,
        trainer.net,
        recipe={**trainer.settings.recipe(), "style": os.path.basename(STYLE)},
        styles=[{"name": os.path.basename(STYLE), "sha256": model_dir.sha256_of(STYLE)}],
        training={
            "steps": final[1],
            "seconds": round(final[0], 1),
            "photos": train_count,
            "heldout_photos": list(heldout_photos()),
            "heldout_loss": {"total": final[2]},
        },
    )


def part_train(args, style, run) -> str:
    state = load_state()
    train, heldout = training_photos(), list(heldout_photos().values())
    curves = {}
    for width, blocks in SIZES:
        settings = validate_training(
            TrainSettings(
                images="boston tiles",
                output=args.model_dir,
                style=os.path.basename(STYLE),
                width=width,
                residual_blocks=blocks,
                crop_size=args.crop_size,
                steps=2000,
            )
        )
        print(f"training {width}/{blocks} for {args.minutes} min", flush=True)
        trainer, curve = train_for(settings, style, train, heldout, args.minutes * 60, args.every)
        run["trainers"][width, blocks], curves[width, blocks] = trainer, curve
        write_model(size_dir(args.model_dir, (width, blocks)), trainer, curve, len(train))
    # The size that wins quality per second: the lower held-out loss after equal training
    # time (inference speed is reported beside it).
    best = min(SIZES, key=lambda key: curves[key][-1][2])
    run["best"], run["curves"] = best, curves
    write_model(args.model_dir, run["trainers"][best], curves[best], len(train))
    lines = [
        "## Held-out loss during training",
        "",
        measured_line(state),
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
        + f", trained for {args.minutes:g} minutes of steps per network size, the network in "
        f"{trainers_precision()}.",
        "",
        "| network (width/blocks) | training s | step | held-out objective (mean of 2) |",
        "|---|---|---|---|",
    ]
    for key, curve in curves.items():
        for seconds, step, loss in curve:
            lines.append(f"| {key[0]}/{key[1]} | {seconds:.0f} | {step} | {loss:.4g} |")
    lines += [""]
    for key, curve in curves.items():
        per_step = curve[-1][0] / max(1, curve[-1][1])
        lines.append(f"- {key[0]}/{key[1]}: {per_step:.1f} s per training step.")
    lines += [
        "",
        f"Kept as the default: **{best[0]}/{best[1]}**, the lower held-out objective after equal "
        "training time.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- speed


def seconds_per_image(net, side: int, repeats: int = 3) -> float:
    """The compiled forward pass (the network's own precision) on a 4:3 image."""
    image = tf.random.uniform([1, side * 3 // 4, side, 3], 0, 255)
    run = tf.function(net.call, input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    run(image).numpy()
    tick = time.perf_counter()
    for _ in range(repeats):
        run(image).numpy()
    return (time.perf_counter() - tick) / repeats


def model_path_seconds(net, side: int, budget: float, tile_size, repeats: int):
    """nst-tf --model's forward pass (engine.feedforward.stylize_with_model, eager, tiled
    when one pass would not fit `budget`) on a 4:3 photo of `side` px: (s, tile or None)."""
    photo = images.load_image(os.path.join(SHARED, "tubingen.jpg"))
    height = side * 3 // 4
    content = tf.image.resize(photo, (height, side), method="bicubic").numpy().clip(0, 255)
    tile = plan_tile(net, height, side, budget, tile_size)
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        stylize_with_model(net, content, budget=budget, tile_size=tile_size)
        times.append(time.perf_counter() - tick)
    return min(times), tile


def part_speed(args, run) -> str:
    state = load_state()
    budget = budget_bytes(PlanSettings.of(Config()))  # as nst-tf --model
    keys = [key for key in SIZES if os.path.isdir(size_dir(args.model_dir, key))]
    rows = []
    for key in keys:
        net, _ = model_dir.load_model_dir(size_dir(args.model_dir, key))
        # A warm-up at 512 px: the first eager calls set up TensorFlow's kernels.
        model_path_seconds(net, 512, budget, "auto", 1)
        speeds = {side: model_path_seconds(net, side, budget, "auto", 3) for side in (512, 1024)}
        speeds["large"] = model_path_seconds(net, args.large_side, budget, args.large_tile_size, 1)
        trainer = run["trainers"].get(key)
        compiled = (
            {side: seconds_per_image(trainer.net, side) for side in (512, 1024)}
            if trainer
            else None
        )
        rows.append((key, speeds, compiled))
        print(f"  s/image {key}: {speeds} compiled {compiled}", flush=True)
    large = args.large_side
    lines = [
        "## Seconds per image (forward pass, one image, 4:3)",
        "",
        measured_line(state),
        "",
        f"nst-tf --model's path: the MODEL_DIR loaded as nst-tf loads it (float32), one photo "
        "through `engine.feedforward.stylize_with_model`, eager, tiled with tiles sharing "
        f"whole-image statistics when one pass would not fit the memory budget "
        f"({budget / 1e9:.0f} GB here: 80 % of the available memory). 512 and 1024 px: the "
        f"best of 3 after a warm-up; {large} px: one pass after the warm-up at 512 px"
        + (f", tiles forced to {args.large_tile_size} px" if args.large_tile_size != "auto" else "")
        + ". The compiled columns: the trained network in its training precision, "
        "`tf.function`, mean of 3 after a traced first call (no padding or tiling).",
        "",
        f"| network | 512 px | 1024 px | {large} px | {large} px tiles | compiled 512 px | "
        "compiled 1024 px |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, speeds, compiled in rows:
        tile = speeds["large"][1]
        lines.append(
            f"| {key[0]}/{key[1]} | {speeds[512][0]:.2f} | {speeds[1024][0]:.2f} | "
            f"{speeds['large'][0]:.1f} | {f'{tile} px' if tile else 'one pass'} | "
            + (f"{compiled[512]:.2f} | {compiled[1024]:.2f} |" if compiled else "- | - |")
        )
    if not rows:
        lines.append("| (no MODEL_DIR of a size: run the train part) | | | | | | |")
    lines += ["", "Goal at 512 px: at most 0.5 s."]
    return "\n".join(lines)


# ------------------------------------------------------------------- compare and refine


def scorer_and_default(args, run):
    """The scoring Stylizer (512 px, one scale), the default optimisation's results per
    held-out photo {name: (objective, s, image)}, the targets, computed once per run."""
    if "scorer" in run:
        return run["scorer"]
    config = Config(size=512)
    trainer = run["trainers"].get(run.get("best"))
    scorer = Stylizer(dataclasses.replace(config, min_size=0), trainer.model if trainer else None)
    fast = dict(steps=2, coarse_steps=2) if args.quick else {}
    default = Stylizer(dataclasses.replace(config, **fast), scorer.model)
    style = run["style"]
    targets, results = {}, {}
    for name, photo in heldout_photos().items():
        content = photo.astype(np.float32)
        targets[name] = scorer.targets(scorer.prepare(content, style), 512)
        tick = time.perf_counter()
        optimised = default.stylize(content, style)
        seconds = time.perf_counter() - tick
        results[name] = (score(scorer, targets[name], optimised), seconds, optimised)
        print(f"  default optimisation {name}: {results[name][0]:.4g} in {seconds:.0f} s")
    run["scorer"] = scorer, targets, results
    return run["scorer"]


def score(scorer, targets, image) -> float:
    return float(scorer.evaluate(np.asarray(image, np.float32)[None], targets)["total"])


def part_compare(args, run) -> str:
    state = load_state()
    scorer, targets, defaults = scorer_and_default(args, run)
    style = run["style"]
    lbfgs = Stylizer(
        dataclasses.replace(scorer.config, steps=2 if args.quick else 50), scorer.model
    )
    net, _ = model_dir.load_model_dir(args.model_dir)
    rows = {}
    for index, (name, photo) in enumerate(heldout_photos().items()):
        content = photo.astype(np.float32)
        if index == 0:
            stylize_with_model(net, content)  # the first eager calls' set-up, untimed
        tick = time.perf_counter()
        net_out = stylize_with_model(net, content)
        net_s = time.perf_counter() - tick
        tick = time.perf_counter()
        fifty = lbfgs.stylize(content, style)
        lbfgs_s = time.perf_counter() - tick
        rows[name] = {
            "network": (score(scorer, targets[name], net_out), net_s),
            "default": defaults[name][:2],
            "lbfgs50": (score(scorer, targets[name], fifty), lbfgs_s),
        }
        run.setdefault("images", {})[name] = {
            "photo": content,
            "network": net_out,
            "optimised": defaults[name][2],
        }
        print(
            f"  {name}: {rows[name]['network'][0]:.4g} vs {rows[name]['default'][0]:.4g} "
            f"vs {rows[name]['lbfgs50'][0]:.4g}",
            flush=True,
        )
    lines = [
        "## The network against the optimiser, on the held-out photos",
        "",
        measured_line(state),
        "",
        "All three scored by one objective (nst_tf's default recipe at 512 px, single scale). "
        "The network: the kept MODEL_DIR through nst-tf --model's forward pass (float32). "
        "The default optimisation: nst_tf's Stylizer default (multi-scale L-BFGS)"
        + (" **cut to 2+2 steps (--quick)**" if args.quick else "")
        + "; its time includes its first trace.",
        "",
        "| photo | network | s | default optimisation | s | ratio | 50 L-BFGS steps | s | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        net_r, default, fifty = row["network"], row["default"], row["lbfgs50"]
        lines.append(
            f"| {name} | {net_r[0]:.4g} | {net_r[1]:.2f} | {default[0]:.4g} | {default[1]:.0f} | "
            f"{net_r[0] / default[0]:.2f}x | {fifty[0]:.4g} | {fifty[1]:.0f} | "
            f"{net_r[0] / fifty[0]:.2f}x |"
        )
    lines += [
        "",
        "Ratio: the network's objective over the optimiser's (goal: at most 2x the default's).",
        "",
        "![held-out photos](images/training_heldout.jpg)",
        "",
        "Each row: the held-out photo, the network's output, "
        + (
            "the refined output (the refine section's largest N), "
            if "refine" in args.parts
            else ""
        )
        + "the default optimisation's.",
    ]
    return "\n".join(lines)


def part_refine(args, run) -> str:
    """nst-tf --model --refine_steps=N through commands.model_run, in this process."""
    state = load_state()
    scorer, targets, defaults = scorer_and_default(args, run)
    work = tempfile.mkdtemp(prefix="nst_refine_")
    rows = []
    for name, photo in heldout_photos().items():
        content_path = os.path.join(work, f"{name.replace(' ', '_')}.png")
        Image.fromarray(photo).save(content_path)
        for steps in args.refine_steps:
            config = Config(
                model=args.model_dir,
                content=content_path,
                style=STYLE,
                output=os.path.join(work, f"out_{steps}.png"),
                refine_steps=steps,
            )
            tick = time.perf_counter()
            result = stylize_with_model_dir(config)
            seconds = time.perf_counter() - tick
            objective = score(scorer, targets[name], result.image)
            rows.append((name, steps, objective, seconds, defaults[name]))
            if steps == max(args.refine_steps):
                run.setdefault("refined", {})[name] = result.image
            print(f"  refine {name} N={steps}: {objective:.4g} in {seconds:.0f} s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    lines = [
        "## Refining the network's output (`--refine_steps`)",
        "",
        measured_line(state),
        "",
        "`nst-tf --model=MODEL_DIR --refine_steps=N` run in-process through "
        "`commands.model_run.stylize_with_model_dir` on each held-out photo (written as a "
        "512 px PNG): the network's output as the start, then N L-BFGS steps at the final "
        "scale. Its seconds are the whole call: loading the MODEL_DIR and the VGG19 weights, "
        "the forward pass, the first trace of the step and the N steps, and writing the "
        "result. The default optimisation's are its Stylizer's stylize (first trace "
        "included), on the same photo. All scored by the compare section's objective.",
        "",
        "| photo | N | objective | s | default objective | default s | objective ratio | "
        "time ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, steps, objective, seconds, default in rows:
        lines.append(
            f"| {name} | {steps} | {objective:.4g} | {seconds:.0f} | {default[0]:.4g} | "
            f"{default[1]:.0f} | {objective / default[0]:.2f}x | {seconds / default[1]:.2f} |"
        )
    lines += [
        "",
        "Goal: within 1.1x of the default's objective in at most a third of its time (time "
        "ratio at most 0.33)."
        + (" **--quick: the default cut to 2+2 steps.**" if args.quick else ""),
    ]
    return "\n".join(lines)


def picture(run) -> None:
    strips = []
    for name, row in run.get("images", {}).items():
        parts = [row["photo"], row["network"]]
        if name in run.get("refined", {}):
            parts.append(run["refined"][name])
        parts.append(row["optimised"])
        parts = [images.to_uint8(image) for image in parts]
        height = 256
        parts = [
            np.asarray(Image.fromarray(p).resize((round(p.shape[1] * height / p.shape[0]), height)))
            for p in parts
        ]
        strips.append(np.concatenate(parts, axis=1))
    if not strips:
        return
    width = max(s.shape[1] for s in strips)
    strips = [
        np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips
    ]
    Image.fromarray(np.concatenate(strips, axis=0)).save(PICTURE, quality=88)


# ---------------------------------------------------------------------------------- batch


def batch_photos(count: int, folder: str) -> list[str]:
    """`count` photos none of which is in the training set: the held-out photos, then the
    other images of ../shared/images whole, then their 2x2 tiles."""
    found = [(f"heldout_{name.replace(' ', '_')}", p) for name, p in heldout_photos().items()]
    for n in OTHER_IMAGES[1:]:
        found.append((n[:-4], images.to_uint8(images.load_image(os.path.join(SHARED, n)))))
    for n in OTHER_IMAGES:
        full = images.to_uint8(images.load_image(os.path.join(SHARED, n), limit=1024))
        height, width = full.shape[:2]
        for row in range(2):
            for col in range(2):
                tile = full[
                    row * height // 2 : (row + 1) * height // 2,
                    col * width // 2 : (col + 1) * width // 2,
                ]
                found.append((f"{n[:-4]}_tile{row}{col}", tile))
    if count > len(found):
        raise SystemExit(f"--batch_photos={count}: at most {len(found)} photos here")
    paths = []
    for name, pixels in found[:count]:
        paths.append(os.path.join(folder, f"{name}.png"))
        Image.fromarray(pixels).save(paths[-1])
    return paths


def run_process(command: list[str], label: str) -> float:
    """Runs one nst_tf command as its own process (this checkout's code); its wall time."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"  {label}: {' '.join(command[1:])}", flush=True)
    command = list(command)
    tick = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - tick
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{label} failed ({done.returncode}): " + " | ".join(tail))
    return seconds


def part_batch(args, run) -> str:
    del run
    state = load_state()
    work = tempfile.mkdtemp(prefix="nst_batch_bench_")
    inputs = os.path.join(work, "photos")
    os.makedirs(inputs)
    paths = batch_photos(args.batch_photos, inputs)
    extra = ["--steps=3", "--coarse_steps=2"] if args.quick else []
    size = f"--size={args.batch_size}"
    base = [sys.executable, "-m", "nst_tf.commands.batch", f"--inputs={inputs}"]
    results = {}
    for label, flags in (
        ("model", [f"--model={args.model_dir}", size]),
        ("optimised", [f"--style={STYLE}", size, *extra]),
    ):
        out = os.path.join(work, label)
        seconds = run_process([*base, f"--output_dir={out}", *flags], f"nst-tf-batch {label}")
        records = []
        for sidecar in glob.glob(os.path.join(out, "*.json")):
            with open(sidecar, encoding="utf-8") as f:
                record = json.load(f)
            if "seconds" in record:
                records.append(record)
        if len(records) != len(paths):
            raise RuntimeError(f"nst-tf-batch {label}: {len(records)} of {len(paths)} photos done")
        results[label] = (seconds, sum(r["seconds"] for r in records), flags)
        print(f"  {label}: {seconds:.0f} s for {len(paths)} photos", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    count = len(paths)
    model_rate = count / results["model"][0]
    optimised_rate = count / results["optimised"][0]
    lines = [
        "## A batch: nst-tf-batch with the model against optimising",
        "",
        measured_line(state),
        "",
        f"**{count} photos, not 100** (the script's batch_photos option; optimising 100"
        " photos is hours on 2 cores): the held-out photos, then `shipwreck.jpg` and"
        " `the_scream.jpg` whole, then 2x2 tiles of the `../shared/images` images that are"
        " not in the training set. Both "
        "runs are real `nst-tf-batch` processes (an embedded Ray on 127.0.0.1, the default "
        f"workers), timed from process start to end (Ray's start included), at `{size}`"
        + (
            " (to keep the optimised run short; the model was trained at 512 px)"
            if args.batch_size != 512
            else ""
        )
        + ": `--model=MODEL_DIR`, and the optimisation with its defaults (`--style="
        "starry_night_google.jpg`" + (" " + " ".join(extra) if extra else "") + ").",
        "",
        "| run | wall s | photos/s | sum of per-photo s (sidecars) |",
        "|---|---|---|---|",
        f"| `nst-tf-batch --model` | {results['model'][0]:.0f} | {model_rate:.3f} | "
        f"{results['model'][1]:.1f} |",
        f"| `nst-tf-batch` (optimised) | {results['optimised'][0]:.0f} | {optimised_rate:.4f} | "
        f"{results['optimised'][1]:.0f} |",
        "",
        f"The model's throughput is **{model_rate / optimised_rate:.1f}x** the optimisation's "
        f"over these {count} photos (Ray's start-up is a larger share of the model's time, so "
        "the ratio grows with the batch).",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- video


def video_has_model() -> bool:
    """Whether nst-tf-video on this checkout takes --model (another change adds it)."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(
        [*VIDEO_CLI, "--helpfull"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return re.search(r"--model\b", done.stdout + done.stderr) is not None


def make_clip(path: str, frames: int, width: int) -> None:
    """A slow pan to the right over tubingen.jpg (held out), written with imageio-ffmpeg."""
    import imageio_ffmpeg  # pylint: disable=import-outside-toplevel

    height = width * 3 // 4 // 2 * 2
    with Image.open(os.path.join(SHARED, "tubingen.jpg")) as image:
        source = image.convert("RGB")
    writer = imageio_ffmpeg.write_frames(
        path, (width, height), fps=12, quality=9, macro_block_size=1
    )
    writer.send(None)
    for t in range(frames):
        w, h = source.width / 1.6, source.height / 1.6
        left = 0.1 * source.width + 2.0 * t * source.width / 640
        top = (source.height - h) / 2
        frame = source.resize(
            (width, height), Image.Resampling.LANCZOS, box=(left, top, left + w, top + h)
        )
        writer.send(np.ascontiguousarray(np.asarray(frame)))
    writer.close()


def part_video(args, run) -> str:
    del run
    state = load_state()
    work = tempfile.mkdtemp(prefix="nst_video_bench_")
    clip = os.path.join(work, "clip.mp4")
    make_clip(clip, args.video_frames, args.video_size)
    contents = [np.asarray(f, np.float32) for f in clips.open_clip(clip).read()]
    base = [*VIDEO_CLI, f"--input={clip}"]
    size = [f"--size={args.video_size}", "--min_size=0"]
    quick = ["--steps=3", "--frame_steps=2"] if args.quick else []
    runs = {"optimised": [f"--style={STYLE}", *size, *quick]}
    has_model = video_has_model()
    if has_model:
        runs = {"model": [f"--model={args.model_dir}", f"--size={args.video_size}"], **runs}
    rows = []
    for label, flags in runs.items():
        out = os.path.join(work, label)
        try:
            seconds = run_process([*base, f"--output={out}", *flags], f"nst-tf-video {label}")
        except RuntimeError as err:
            rows.append((label, flags, None, None, str(err)[:300]))
            continue
        frames = [images.load_image(p) for p in sorted(glob.glob(os.path.join(out, "*.png")))]
        if len(frames) != len(contents):
            rows.append((label, flags, None, None, f"{len(frames)} of {len(contents)} frames"))
            continue
        rows.append((label, flags, flow.flicker(frames, contents), seconds, ""))
        print(f"  video {label}: flicker {rows[-1][2]:.2f} in {seconds:.0f} s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    lines = [
        "## Video: flicker with the model against optimising",
        "",
        measured_line(state),
        "",
        f"A clip of {len(contents)} frames at {args.video_size} px (4:3), a slow pan over "
        "`tubingen.jpg` (held out) written as H.264 with imageio-ffmpeg; each run is a real "
        "`nst-tf-video` process writing PNG frames, timed from start to end. Flicker: "
        "`nst_tf.core.flow.flicker` as in scripts/video_benchmark.py (mean absolute "
        "difference, 0..255, between each output frame and the previous one warped along "
        "the input's optical flow, over the pixels the consistency check keeps). The "
        f"optimisation: nst-tf-video's defaults at `--size={args.video_size} --min_size=0`"
        + (" " + " ".join(quick) if quick else "")
        + " (one scale, as scripts/video_benchmark.py; the first frame its --steps, later "
        "frames --frame_steps from the warped previous frame, with the temporal loss).",
        "",
        "| run | flags | flicker (0..255) | s | frames/s |",
        "|---|---|---|---|---|",
    ]
    for label, flags, flicker, seconds, error in rows:
        shown = " ".join(f.replace(STYLE, "starry_night_google.jpg") for f in flags)
        shown = shown.replace(args.model_dir, "MODEL_DIR")
        if flicker is None:
            lines.append(f"| {label} | `{shown}` | failed: {error} | | |")
        else:
            lines.append(
                f"| {label} | `{shown}` | {flicker:.2f} | {seconds:.0f} | "
                f"{len(contents) / seconds:.2f} |"
            )
    lines.append(f"| the input clip itself | | {flow.flicker(contents, contents):.2f} | | |")
    if not has_model:
        lines += [
            "",
            "**`nst-tf-video --model` is not on this commit** (its --helpfull has no --model): "
            "only the optimised video was measured. Rerun the video part once it lands; the "
            "model's row is then added.",
        ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- page


def read_sections(path: str) -> dict[str, str]:
    """The page's sections by part (each starts with a `<!-- part:NAME -->` marker)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return {}
    found = list(re.finditer(r"^<!-- part:(\w+) -->\n", text, flags=re.M))
    return {
        match.group(1): text[
            match.end() : (found[i + 1].start() if i + 1 < len(found) else None)
        ].rstrip()
        for i, match in enumerate(found)
    }


def machine_line() -> str:
    flags = cpu_flags()
    cpu = platform.processor() or "x86-64"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    isa = (
        ", ".join(
            x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if x in flags
        )
        or "no AVX2"
    )
    return f"{cpu} ({os.cpu_count()} cores; {isa}), TensorFlow {tf.__version__}"


def write_page(started, load, args, sections: dict[str, str]) -> None:
    kept = read_sections(PAGE)
    lost = [p for p in PARTS if p not in sections and p not in kept]
    kept.update(sections)
    end = os.getloadavg()
    lines = [
        "# Training a stylizer: time, held-out loss, against the optimiser",
        "",
        f"<!-- Written by scripts/benchmark_train.py; last run {started}, parts "
        f"{','.join(sections)}. Each section below is one part (the script's parts option). -->",
        "",
        f"Last run {started} (parts: {', '.join(sections)}) on {machine_line()}; load average "
        f"{load[0]:.1f} at its start and {end[0]:.1f} at its end on {os.cpu_count()} cores"
        + (
            " (**the machine was shared**: times are longer than an idle machine's; the ratios "
            "within a section were measured under the same load)"
            if max(load[0], end[0]) > 0.5 * (os.cpu_count() or 1) + 0.5
            else ""
        )
        + ". Each section says when it was measured and its own load.",
        "",
    ]
    for part in PARTS:
        if part in kept:
            lines += [f"<!-- part:{part} -->", kept[part], ""]
    if lost:
        print(f"no section yet for {', '.join(lost)} (run --parts={','.join(lost)})")
    with open(PAGE, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def trainers_precision() -> str:
    from nst_tf.model.features import resolve_precision  # pylint: disable=C0415

    return resolve_precision("auto")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"of {','.join(PARTS)}")
    parser.add_argument("--minutes", type=float, default=10.0, help="training per size")
    parser.add_argument("--every", type=int, default=10, help="steps between held-out losses")
    parser.add_argument(
        "--model_dir", default=os.path.join(tempfile.gettempdir(), "nst_tf_bench_model")
    )
    parser.add_argument("--crop_size", type=int, default=256, help="as nst-tf-train's")
    parser.add_argument("--large_side", type=int, default=4096, help="speed: the large image")
    parser.add_argument(
        "--large_tile_size", default="auto", help="speed: --tile_size for the large image"
    )
    parser.add_argument("--refine_steps", default="50,100", help="refine: the N to try")
    parser.add_argument("--batch_photos", type=int, default=6, help="batch: how many photos")
    parser.add_argument("--batch_size", type=int, default=256, help="batch: --size of both")
    parser.add_argument("--video_frames", type=int, default=8)
    parser.add_argument("--video_size", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="smoke run, page to /tmp")
    args = parser.parse_args()
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    args.refine_steps = [int(n) for n in args.refine_steps.split(",") if n.strip()]
    if args.quick:
        global PAGE, PICTURE  # noqa: PLW0603 - a smoke run writes beside, not into the docs
        PAGE, PICTURE = "/tmp/training_quick.md", "/tmp/training_quick.jpg"
        defaults = {
            "minutes": 0.1,
            "crop_size": 128,
            "large_side": 768,
            "large_tile_size": "256",
            "refine_steps": [2, 4],
            "batch_photos": 2,
            "batch_size": 128,
            "video_frames": 3,
            "video_size": 128,
        }
        for name, value in defaults.items():
            if f"--{name}" not in " ".join(sys.argv):
                setattr(args, name, value)
    args.model_dir = os.path.abspath(args.model_dir)
    return args


def main() -> int:
    args = parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    style = images.load_image(STYLE, limit=1024)
    run = {"style": style, "trainers": {}}
    if "train" not in args.parts:
        try:
            meta = model_dir.read_model_metadata(args.model_dir)
        except Exception as err:  # noqa: BLE001 - any reason: say it and stop
            raise SystemExit(f"--model_dir: {err}; run --parts=train first") from None
        del meta
    steps = {
        "train": lambda: part_train(args, style, run),
        "speed": lambda: part_speed(args, run),
        "compare": lambda: part_compare(args, run),
        "refine": lambda: part_refine(args, run),
        "batch": lambda: part_batch(args, run),
        "video": lambda: part_video(args, run),
    }
    sections = {}
    for part in PARTS:
        if part in args.parts:
            print(f"part {part} ({time.strftime('%H:%M:%S')})", flush=True)
            sections[part] = steps[part]()
            # Each part lands on the page as soon as it is done.
            write_page(started, load, args, sections)
    if "compare" in args.parts:
        picture(run)
    write_page(started, load, args, sections)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
