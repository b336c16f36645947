"""Measures nst-tf-batch against a plain Stylizer loop; writes a section of docs/benchmarks.md.

    python scripts/benchmark_batch.py              # about 10 min on 2 idle cores
    python scripts/benchmark_batch.py --steps=5    # a smoke run

The same 8 photos (the shared sample photos and their mirror images, 256 px, one
style, one scale) go, in one run of this script, through:
(a) one Stylizer in a plain loop in a fresh process (load, stylize, save each photo), with
    all the machine's cores as TensorFlow threads;
(b) nst-tf-batch with one worker of 2 threads, and (c) with two workers of 1 thread
    (on 2 cores; generally: one worker with all cores against one per core).
Each is timed from its process start to its end. The sidecars tell how often each worker
traced its step, against the shapes it saw. The load average is logged: the machines
here are shared.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ("boston.jpg", "tubingen.jpg", "shipwreck.jpg", "the_scream.jpg")
STYLE = "starry_night_google.jpg"
SECTION = "## Batch: nst-tf-batch on Ray against a plain Stylizer loop"


def settings(steps: int) -> list[str]:
    """The result-changing flags every method uses."""
    return ["--size=256", "--min_size=0", f"--steps={steps}"]


def make_photos(images: str, directory: str) -> list[str]:
    """8 photos of several shapes: the sample photos at 512 px and their mirror images."""
    paths = []
    for name in PHOTOS:
        with Image.open(os.path.join(images, name)) as image:
            image = image.convert("RGB")
            image.thumbnail((512, 512))
            for mirrored in (False, True):
                path = os.path.join(directory, f"{name[:-4]}{'-mirror' if mirrored else ''}.png")
                (ImageOps.mirror(image) if mirrored else image).save(path)
                paths.append(path)
    return paths


def loop(inputs: str, output_dir: str, style: str, steps: int) -> None:
    """The plain loop, run in its own process: one Stylizer, every photo in turn."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from nst_tf.engine.stylizer import Stylizer
    from nst_tf.io import images
    from nst_tf.settings.config import Config

    config = Config(size=256, min_size=0, steps=steps)
    stylizer = Stylizer(config)
    painting = images.load_image(style)
    for name in sorted(os.listdir(inputs)):
        result = stylizer.stylize(images.load_image(os.path.join(inputs, name)), painting)
        images.save_image(result, os.path.join(output_dir, name))
    print(json.dumps({"traces": stylizer.trace_count}))


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def traces_per_worker(output_dir: str) -> list[tuple[int, int, int]]:
    """Per worker: (photos, distinct result shapes, traces) from the sidecars."""
    seen = collections.defaultdict(list)
    for name in os.listdir(output_dir):
        if name.endswith(".json"):
            with open(os.path.join(output_dir, name)) as f:
                record = json.load(f)
            with Image.open(record["output"]) as image:
                seen[record["pid"]].append((image.size, record["traces"]))
    return [
        (len(items), len({size for size, _ in items}), max(t for _, t in items))
        for items in seen.values()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "images"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--loop", nargs=2, metavar=("INPUTS", "OUTPUT_DIR"))
    args = parser.parse_args()
    style = os.path.join(args.images, STYLE)
    if args.loop:
        loop(*args.loop, style, args.steps)
        return
    cores = os.cpu_count() or 1
    work = tempfile.mkdtemp(prefix="nst_batch_bench")
    inputs = os.path.join(work, "in")
    os.makedirs(inputs)
    make_photos(args.images, inputs)
    env_python = [sys.executable]
    batch = env_python + ["-m", "nst_tf.commands.batch", f"--inputs={inputs}", f"--style={style}"]
    runs = {
        "plain Stylizer loop (one process, all cores)": env_python
        + [__file__, "--loop", inputs, os.path.join(work, "loop"), f"--steps={args.steps}"],
        f"nst-tf-batch, 1 worker x {cores} threads": batch
        + [f"--output_dir={work}/one", "--workers=1", f"--cpus_per_worker={cores}"],
        f"nst-tf-batch, {cores} workers x 1 thread": batch
        + [f"--output_dir={work}/many", f"--workers={cores}", "--cpus_per_worker=1"],
    }
    os.makedirs(os.path.join(work, "loop"))
    results = {}
    for name, command in runs.items():
        if "nst_tf.commands.batch" in command:
            command = command + settings(args.steps)
        load = os.getloadavg()[0]
        seconds, output = timed(command)
        results[name] = {"seconds": seconds, "load": (load, os.getloadavg()[0])}
        print(f"{name}: {seconds:.1f} s (load {load:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
        if "loop" in name:
            results[name]["traces"] = json.loads(output.strip().splitlines()[-1])[
                "traces"
            ]  # stdout
    results["one"] = traces_per_worker(os.path.join(work, "one"))
    results["many"] = traces_per_worker(os.path.join(work, "many"))
    write_section(args, cores, results)


def write_section(args, cores, results) -> None:
    names = [n for n in results if n not in ("one", "many")]
    loop_seconds = results[names[0]]["seconds"]
    lines = [
        SECTION,
        "",
        f"Run on {time.strftime('%Y-%m-%d %H:%M')} UTC, {cores} cores, "
        f"command `python scripts/benchmark_batch.py --steps={args.steps}`: 8 photos "
        f"(4 sample photos and their mirror images) at 256 px, The Starry Night, one scale "
        f"of {args.steps} L-BFGS steps, default settings otherwise. Wall time from process "
        "start to end; the 1-minute load average before and after each run (the machine "
        "is shared: other sessions' tests ran beside this one).",
        "",
        "| method | wall time (s) | vs the loop | load average before -> after |",
        "|---|---|---|---|",
    ]
    for name in names:
        r = results[name]
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {r['seconds'] / loop_seconds:.2f}x "
            f"| {r['load'][0]:.1f} -> {r['load'][1]:.1f} |"
        )
    lines += ["", "Traces of the step per worker (photos, distinct shapes, traces):", ""]
    lines.append(f"- the loop: {results[names[0]]['traces']} traces for 8 photos")
    for key, label in (("one", names[1]), ("many", names[2])):
        lines.append(f"- {label}: {results[key]}")
    text = "\n".join(lines) + "\n"
    with open(args.out) as f:
        old = f.read()
    pattern = re.compile(re.escape(SECTION) + r".*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text + "\n", old) if SECTION in old else old + "\n" + text
    with open(args.out, "w") as f:
        f.write(new)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
