"""Measures nst_tf's speed, time-to-quality and memory on this machine; writes docs/benchmarks.md.

    python scripts/benchmark.py            # full run (about 50 min on 2 AVX-512 cores)
    python scripts/benchmark.py --quick    # smoke run: 1.5 min there, 6 min on AVX2
    python scripts/benchmark.py --tiling   # the tiled steps at 1024-4096 px (~30 min)
    python scripts/benchmark.py --profile  # issue 27: step vs floor, L-BFGS, start-up (~15 min)

(a) float32 and bfloat16 matmul peak; (b) s/step and achieved GFLOP/s of our compiled
step (VGG19 conv FLOPs, forward plus input gradient) at 256/512/1024 px; (c) wall time
each method needs to reach the objective value that 1000 single-scale Adam steps with the
TF tutorial's settings reach, all scored with one fixed float32 objective on the full-size
512 px image; (d) peak resident memory of a run per size (a fresh process each); (e) the
time L-BFGS itself adds to each step, ours against SciPy's L-BFGS-B.

--profile measures, in one run, what issue 27 asks of the step and of start-up: our
value-and-gradient against the plain floor at 512 and 1024 px in float32 and bfloat16
(interleaved, so that a shared machine's load falls on both alike), L-BFGS's own work per
iteration against a step, the CPU kind, and the default 512 px run's time outside its
steps part by part (scripts/startup_profile.py, a fresh process). It writes the current
numbers into docs/performance.md and appends them to the lab log, docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from nst_tf.engine.stylizer import (
    Stylizer,
    resize_images,
    scale_sizes,
    stylize_arrays,
)  # noqa: E402
from nst_tf.io import images  # noqa: E402
from nst_tf.model import features  # noqa: E402
from nst_tf.model.features import FeatureExtractor  # noqa: E402
from nst_tf.settings.config import Config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def matmul_gflops(dtype: tf.DType, n: int, repeats: int) -> float:
    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda x: tf.linalg.matmul(x, x))
    matmul(a).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def conv_flops(model: FeatureExtractor, height: int, width: int) -> float:
    """Forward conv FLOPs of the truncated network (2 * MACs), at one image size."""
    total = 0.0
    h, w = height, width
    for layer in model.vgg.layers:
        if layer.__class__.__name__ == "MaxPooling2D":
            h, w = h // 2, w // 2
        elif layer.__class__.__name__ == "Conv2D":
            kernel = layer.kernel.shape
            total += 2.0 * h * w * kernel[0] * kernel[1] * kernel[2] * kernel[3]
    return total


def step_speed(size: int, precision: str, steps: int, xla: bool = False) -> dict:
    """Seconds per compiled value-and-gradient step, as the L-BFGS loop calls it."""
    stylizer = Stylizer(Config(precision=precision, xla="on" if xla else "off"))
    x = np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype(np.float32)
    targets = stylizer.targets(stylizer.prepare(x, x), size)
    seconds = _median_seconds(stylizer.value_and_grad(targets), steps, tf.constant(x[None]))
    flops = 2 * conv_flops(stylizer.model, size, size)  # forward + input gradient
    return {
        "size": size,
        "precision": precision + (" + XLA" if xla else ""),
        "s_per_step": seconds,
        "gflops": flops / seconds / 1e9,
        "step_gflop": flops / 1e9,
    }


def plain_step_speed(size: int, precision: str, steps: int) -> dict:
    """The same convolutions as a bare tf.nn chain (no losses, no Keras): the floor.

    Forward to the deepest layer and back to the image with the weights captured as
    constants, as a hand-written TF step would do it; our step's excess over this is
    the cost of the losses, the Gram matrices and anything else of ours.
    """
    model = FeatureExtractor(Config().layers, "auto", precision)
    seconds = _median_seconds(plain_value_and_grad(model, size, precision), steps)
    flops = 2 * conv_flops(model, size, size)
    return {
        "size": size,
        "precision": f"{precision}, plain tf.nn convs only",
        "s_per_step": seconds,
        "gflops": flops / seconds / 1e9,
        "step_gflop": flops / 1e9,
    }


def plain_value_and_grad(model: FeatureExtractor, size: int, precision: str):
    """The floor's compiled () -> (loss, gradient) on a size x size image, with the
    weights of `model`'s VGG19 layers as constants."""
    dtype = tf.bfloat16 if precision == "bfloat16" else tf.float32
    layers = [
        (layer.__class__.__name__, [tf.constant(w, dtype) for w in layer.get_weights()])
        for layer in model.vgg.layers
    ]
    image = tf.Variable(np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)), tf.float32)

    @tf.function
    def value_and_grad():
        with tf.GradientTape() as tape:
            x = tf.cast(image, dtype)
            for kind, params in layers:
                if kind == "Conv2D":
                    x = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, params[0], 1, "SAME"), params[1]))
                elif kind == "MaxPooling2D":
                    x = tf.nn.max_pool2d(x, 2, 2, "VALID")
            loss = tf.reduce_sum(tf.cast(x, tf.float32))
        return loss, tape.gradient(loss, image)

    return value_and_grad


def _median_seconds(fn, steps: int, *args) -> float:
    fn(*args)[1].numpy()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn(*args)[1].numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


class Scorer:
    """Scores any image with one fixed float32 objective at full size (512 px)."""

    def __init__(self, content, style, size):
        self.stylizer = Stylizer(Config(size=size, precision="float32"))
        self.shape = images.scaled_shape(content.shape[0], content.shape[1], size)
        self.targets = self.stylizer.targets(self.stylizer.prepare(content, style), size)

    def __call__(self, image: np.ndarray) -> float:
        x = resize_images(tf.constant(image[None]), *self.shape)
        return self.stylizer.evaluate(x, self.targets)["total"]


class Recorder:
    """A progress callback recording (seconds, full-size objective), net of its own cost."""

    def __init__(self, scorer, every):
        self.scorer, self.every = scorer, every
        self.points = []
        self.overhead = 0.0
        self.start = time.perf_counter()

    def __call__(self, progress):
        if progress.step % self.every:
            return
        begin = time.perf_counter()
        elapsed = begin - self.start - self.overhead
        self.points.append((elapsed, self.scorer(progress.image())))
        self.overhead += time.perf_counter() - begin


def time_to_quality(content, style, quick: bool, image_prefix: str) -> dict:
    """Runs the methods; saves each result as docs/images/<image_prefix>_<method>.jpg.

    Besides the default run as shipped, its schedule runs once more with a longer last
    scale, to measure when the default path reaches the Adam run's objective.
    """
    size = 256 if quick else 512
    scorer = Scorer(content, style, size)
    adam_steps = 40 if quick else 1000
    # 400: enough for single-scale L-BFGS to reach Adam-1000's objective at 512 px.
    lbfgs_steps = 30 if quick else 400
    # At 512 px the default's scales reach Adam-1000's objective after about 235 last-scale
    # steps (about 260 with SciPy's L-BFGS-B; the 2026-11-26 studies in docs/benchmarks.md).
    long_steps = 40 if quick else 300
    default = Config(
        size=size,
        precision="auto",
        **({"min_size": 128, "steps": 10, "coarse_steps": 10} if quick else {}),
    )
    sizes = scale_sizes(default.min_size, default.size)
    scales = "/".join(map(str, sizes))
    schedule = "/".join(
        str(default.coarse_steps if i < len(sizes) - 1 else default.steps)
        for i in range(len(sizes))
    )
    methods = {
        f"Adam, single scale, {adam_steps} steps (TF tutorial: lr 0.02*255, beta1 0.99, "
        "beta2 0.999)": (
            # The tutorial's optimiser on our objective, in 0..255 pixel units: its epsilon
            # of 0.1 in 0..1 units is 0.1/255 here, negligible beside these gradients.
            Config(
                size=size,
                min_size=0,
                steps=adam_steps,
                optimizer="adam",
                learning_rate=0.02 * 255,
                adam_beta1=0.99,
                adam_beta2=0.999,
                precision="float32",
            ),
            20 if not quick else 10,
            "adam",
        ),
        f"L-BFGS, single scale, {lbfgs_steps} steps": (
            # checkpoint_every=0: one uninterrupted L-BFGS-B run, no memory restarts.
            Config(
                size=size,
                min_size=0,
                steps=lbfgs_steps,
                precision="auto",
                checkpoint_every=0,
            ),
            5,
            "l-bfgs",
        ),
        f"default (multi-scale L-BFGS: {scales} px, {schedule} steps)": (default, 5, "default"),
        f"default schedule, last scale continued to {long_steps} steps": (
            dataclasses.replace(default, steps=long_steps),
            5,
            "default-long",
        ),
    }
    results = {}
    for name, (config, every, stem) in methods.items():
        recorder = Recorder(scorer, every)
        recorder.start = time.perf_counter()
        out = stylize_arrays(content, style, config, callbacks=[recorder])
        wall = time.perf_counter() - recorder.start - recorder.overhead
        final = scorer(out)
        recorder.points.append((wall, final))
        results[name] = {"points": recorder.points, "wall": wall, "final": final, "config": config}
        images.save_image(
            out,
            os.path.join(
                ROOT,
                "docs",
                "images",
                f"{image_prefix}_{stem}.jpg",
            ),
        )
    baseline = results[next(iter(results))]
    target = baseline["final"]
    for result in results.values():
        hit = [t for t, v in result["points"] if v <= target]
        result["time_to_target"] = min(hit) if hit else None
        result["share_of_baseline"] = result["time_to_target"] / baseline["wall"] if hit else None
        # And the other way round: how long the baseline needs for this method's result.
        reached = [t for t, v in baseline["points"] if v <= result["final"]]
        result["baseline_time_to_final"] = min(reached) if reached else None
    return {"target": target, "size": size, "methods": results}


def lbfgs_overhead(height: int, width: int, memory: int, iterations: int) -> dict:
    """Seconds per iteration L-BFGS spends outside the objective: ours against SciPy's.

    The objective is a cheap bounded quadratic over an image-sized variable, and the
    time spent evaluating it is subtracted, leaving each optimiser's own bookkeeping.
    """
    import scipy.optimize

    from nst_tf.core.lbfgs import BoxLbfgs

    rng = np.random.default_rng(0)
    shape = (1, height, width, 3)
    start = rng.uniform(0, 255, shape).astype(np.float32)
    centre = rng.uniform(-30, 285, shape).astype(np.float32)  # some pixels end at a bound
    scale = np.exp(rng.uniform(-6, 3, shape)).astype(np.float32)  # ill-conditioned
    spent = {"scipy": 0.0}
    x = tf.Variable(start)
    c, d = tf.constant(centre), tf.constant(scale)
    evaluations = tf.Variable(0)

    @tf.function
    def value_and_grad(point):
        evaluations.assign_add(1)
        r = point - c
        return tf.stack([tf.reduce_sum(d * r * r)]), 2 * d * r

    # The line search runs on the device, so the objective's share is measured apart:
    # the time of as many evaluations as the run made, subtracted from the run's.
    minimizer = BoxLbfgs(x, value_and_grad, memory=memory)
    minimizer.run(2, lambda values: None)  # compile
    x.assign(start)
    evaluations.assign(0)
    begin = time.perf_counter()
    ours_iterations = minimizer.run(iterations, lambda values: None)
    run_seconds = time.perf_counter() - begin
    count = int(evaluations.numpy())
    begin = time.perf_counter()
    for _ in range(count):
        value_and_grad(x)[0].numpy()
    ours = (run_seconds - (time.perf_counter() - begin)) / ours_iterations

    c64, d64 = centre.ravel().astype(np.float64), scale.ravel().astype(np.float64)
    first = []

    def fun(v):
        begin = time.perf_counter()
        first.append(begin)
        r = v - c64
        out = float((d64 * r * r).sum()), 2 * d64 * r
        spent["scipy"] += time.perf_counter() - begin
        return out

    begin = time.perf_counter()
    result = scipy.optimize.minimize(
        fun,
        start.ravel().astype(np.float64),
        jac=True,
        method="L-BFGS-B",
        bounds=scipy.optimize.Bounds(0.0, 255.0),
        options={"maxiter": iterations, "maxcor": memory, "ftol": 0.0, "gtol": 0.0},
    )
    total = time.perf_counter() - begin
    setup = first[0] - begin
    scipy_per = (total - setup - spent["scipy"]) / result.nit
    return {
        "size": f"{width}x{height}",
        "memory": memory,
        "ours": ours,
        "scipy": scipy_per,
        "scipy_setup": setup,
    }


def memory_probe(size: int, precision: str) -> None:
    """Runs 3 steps at one size in this process and prints peak RSS (MiB) as JSON."""
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
    config = Config(size=size, min_size=0, steps=3, precision=precision)
    stylize_arrays(content, content, config)
    # VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts from its parent's peak.
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    print(json.dumps({"size": size, "precision": precision, "peak_mib": peak}))


def peak_memory(size: int, precision: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory_probe", str(size), "--precision", precision],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def cpu_features() -> str:
    """What the CPU offers the convolutions, and what the default run picks for it."""
    flags = features.cpu_flags()
    if not flags:
        return "CPU flags unknown"
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    native = features.cpu_has_bfloat16()
    return (
        f"{vector}, bfloat16 {'native (AVX512-BF16/AMX)' if native else 'emulated (slow)'}; "
        f"the default run uses {features.resolve_precision('auto')}, "
        f"{'with' if features.resolve_xla('auto') else 'without'} XLA"
    )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- issue 27: the step against its floor, L-BFGS's share, start-up ----------------------

PERF_BEGIN = "<!-- benchmark --profile: begin (written by scripts/benchmark.py --profile) -->"
PERF_END = "<!-- benchmark --profile: end -->"


def cpu_kind(flags: set[str] | None = None) -> str:
    """The CPU kind the numbers belong to, from /proc/cpuinfo's flags."""
    flags = features.cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX (bfloat16 matrix tiles)"
    if "avx512_bf16" in flags:
        return "AVX-512 with AVX512-BF16, no AMX"
    if "avx512f" in flags:
        return "AVX-512 without bfloat16"
    if "avx2" in flags:
        return "AVX2"
    return "no AVX2" if flags else "unknown (no /proc/cpuinfo)"


def step_against_floor(size: int, precision: str, pairs: int) -> dict:
    """Our compiled value-and-gradient and the plain floor, called in turn `pairs` times.

    Interleaved, so that a shared machine's load falls on both alike: the ratio is the
    median of the pairs' ratios; the times are each one's fastest call.
    """
    stylizer = Stylizer(Config(precision=precision))
    x = np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype(np.float32)
    targets = stylizer.targets(stylizer.prepare(x, x), size)
    ours = stylizer.value_and_grad(targets)
    image = tf.constant(x[None])
    floor = plain_value_and_grad(stylizer.model, size, precision)
    ours(image)[1].numpy()
    floor()[1].numpy()
    times = {"ours": [], "floor": []}
    for _ in range(pairs):
        for name, call in (("ours", lambda: ours(image)), ("floor", floor)):
            begin = time.perf_counter()
            call()[1].numpy()
            times[name].append(time.perf_counter() - begin)
    ratios = [a / b for a, b in zip(times["ours"], times["floor"], strict=True)]
    return {
        "size": size,
        "precision": precision,
        "ours_s": min(times["ours"]),
        "floor_s": min(times["floor"]),
        "ratio": float(np.median(ratios)),
        "ratios": ratios,
    }


def startup_profile(images_dir: str) -> dict:
    """scripts/startup_profile.py's numbers for the default 512 px run (a fresh process)."""
    script = os.path.join(ROOT, "scripts", "startup_profile.py")
    done = subprocess.run(
        [
            sys.executable,
            script,
            f"--content={os.path.join(images_dir, 'boston.jpg')}",
            f"--style={os.path.join(images_dir, 'starry_night_google.jpg')}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def profile(args) -> None:
    """Issue 27's measurements in one run; writes docs/performance.md and the lab log."""
    started = time.time()
    loads = [load_average()]
    n = 4096
    peaks = {
        name: matmul_gflops(dtype, n, 5)
        for name, dtype in [("float32", tf.float32), ("bfloat16", tf.bfloat16)]
    }
    print("matmul GFLOP/s", peaks, flush=True)
    steps = []
    for size, pairs in ((512, 5), (1024, 3)):
        for precision in ("float32", "bfloat16"):
            steps.append(step_against_floor(size, precision, pairs))
            print(steps[-1], flush=True)
    loads.append(load_average())
    own = lbfgs_overhead(342, 512, Config().lbfgs_memory, 30)
    print("L-BFGS own work", own, flush=True)
    start = startup_profile(args.images)
    loads.append(load_average())
    print(json.dumps(start), flush=True)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {cpu_kind()}",
        "loads": loads,
        "peaks": peaks,
        "steps": steps,
        "lbfgs_own_s": own["ours"],
        "startup": start,
        "minutes": (time.time() - started) / 60,
        "tensorflow": tf.__version__,
    }
    with open(os.path.join(ROOT, "docs", "profile_runs.jsonl"), "a") as f:
        f.write(json.dumps(result) + "\n")
    write_profile(result, args.performance, args.out)


def _profile_tables(r: dict) -> list[str]:
    final = r["startup"]["scales"][-1]
    steady = final["steady_iteration_s"]
    lines = [
        f"{r['date']}, {r['machine']}; TensorFlow {r['tensorflow']}; shared with other "
        f"work (load average {', then '.join(r['loads'])}): ratios are taken within the run, "
        "the times are the fastest of the run (`python scripts/benchmark.py --profile`).",
        "",
        "| value-and-gradient | ours (s) | plain floor (s) | ours / floor (median of pairs) |",
        "|---|---|---|---|",
    ]
    for s in r["steps"]:
        lines.append(
            f"| {s['size']}x{s['size']}, {s['precision']} | {s['ours_s']:.3f} | "
            f"{s['floor_s']:.3f} | {s['ratio']:.3f}x |"
        )
    lines += [
        "",
        f"Matmul peak (4096x4096): float32 {r['peaks']['float32']:.0f} GFLOP/s, bfloat16 "
        f"{r['peaks']['bfloat16']:.0f} GFLOP/s. The plain floor is the same convolutions as a "
        "bare `tf.nn` chain with no losses.",
        "",
        f"L-BFGS's own work per iteration at 512x342 ({Config().lbfgs_memory} pairs, the "
        f"objective's time subtracted): {1000 * r['lbfgs_own_s']:.0f} ms, "
        f"{100 * r['lbfgs_own_s'] / steady:.1f} % of the default run's steady iteration "
        f"({steady:.2f} s, {final['evaluations_per_iteration']:g} evaluation per iteration).",
        "",
        "The default 512 px run (Boston photo + The Starry Night, `nst-tf` defaults, in a fresh "
        f"process): {r['startup']['wall_s']:.1f} s, of which {r['startup']['in_steps_s']:.1f} s "
        f"are its iterations at their steady pace and **{r['startup']['outside_steps_s']:.1f} s "
        "outside them**:",
        "",
        "| part | seconds |",
        "|---|---|",
    ]
    spent = dict(r["startup"]["spent"])
    whole = spent.pop("run.stylize (all of it)")
    for part, seconds in spent.items():
        lines.append(f"| {part} | {seconds:.2f} |")
    first = 0.0
    for scale in r["startup"]["scales"]:
        extra = (
            scale["first_evaluation_s"]
            + scale["first_iteration_s"]
            - (1 + scale["first_iteration_evaluations"]) * scale["steady_evaluation_s"]
        )
        first += extra
        lines.append(
            f"| scale {scale['shape'][2]}x{scale['shape'][1]}: trace and compile (first "
            f"evaluation and iteration less their steady cost) | {extra:.2f} |"
        )
    lines.append(f"| (the whole run.stylize call: {whole:.1f} s) | |")
    lines += [
        "",
        "| scale | iterations | steady iteration (s) | first evaluation (s) | first iteration (s) "
        "| new shape's first step / steady step |",
        "|---|---|---|---|---|---|",
    ]
    for scale in r["startup"]["scales"]:
        first_step = scale["first_evaluation_s"] + scale["first_iteration_s"]
        lines.append(
            f"| {scale['shape'][2]}x{scale['shape'][1]} | {scale['iterations']} | "
            f"{scale['steady_iteration_s']:.3f} | {scale['first_evaluation_s']:.2f} | "
            f"{scale['first_iteration_s']:.2f} | {first_step / scale['steady_iteration_s']:.2f}x |"
        )
    return lines


def write_profile(result: dict, performance: str, log: str) -> None:
    """The current numbers between markers in performance.md; a dated entry in the log."""
    text = "\n".join(_profile_tables(result))
    with open(performance) as f:
        page = f.read()
    if PERF_BEGIN in page and PERF_END in page:
        head, rest = page.split(PERF_BEGIN, 1)
        page = f"{head}{PERF_BEGIN}\n{text}\n{PERF_END}{rest.split(PERF_END, 1)[1]}"
    else:
        page = (
            page.rstrip("\n")
            + f"\n\n## Step, L-BFGS and start-up\n\n{PERF_BEGIN}\n{text}\n{PERF_END}\n"
        )
    with open(performance, "w") as f:
        f.write(page)
    with open(log, "a") as f:
        f.write(f"\n## Issue 27 profile, {result['date']} (scripts/benchmark.py --profile)\n\n")
        f.write(text + "\n")
    print(f"wrote {performance} and appended to {log}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "images"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--memory_probe", type=int)
    parser.add_argument("--precision", default="float32")
    parser.add_argument(
        "--tiling",
        action="store_true",
        help="only the tiled steps' section (issue 15): runs scripts/benchmark_tiling.py, "
        "which takes the options that follow (--sizes, --tile, --steps, --cases, --log)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="issue 27's step, L-BFGS and start-up profile into --performance and --out",
    )
    parser.add_argument("--performance", default=os.path.join(ROOT, "docs", "performance.md"))
    args, rest = parser.parse_known_args()
    if args.tiling:
        script = os.path.join(ROOT, "scripts", "benchmark_tiling.py")
        sys.exit(subprocess.call([sys.executable, script, "--out", args.out, *rest]))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.memory_probe:
        memory_probe(args.memory_probe, args.precision)
        return
    if args.profile:
        profile(args)
        return
    quick = args.quick
    started = time.time()
    n = 4096  # smaller matrices do not reach the bfloat16 peak
    peaks = {
        name: matmul_gflops(dtype, n, 3 if quick else 10)
        for name, dtype in [("float32", tf.float32), ("bfloat16", tf.bfloat16)]
    }
    print("matmul GFLOP/s", peaks, flush=True)
    sizes = [256] if quick else [256, 512, 1024]
    speeds = [step_speed(s, p, 2 if quick else 5) for s in sizes for p in ("float32", "bfloat16")]
    xla_size = sizes[min(1, len(sizes) - 1)]
    speeds += [
        step_speed(xla_size, p, 2 if quick else 5, xla=True) for p in ("float32", "bfloat16")
    ]
    speeds += [plain_step_speed(xla_size, "float32", 2 if quick else 5)]
    for s in speeds:
        print(s, flush=True)
    overhead = [
        lbfgs_overhead(*((171, 256) if quick else (342, 512)), memory, 10 if quick else 40)
        for memory in (20, 50)
    ]
    for o in overhead:
        print(o, flush=True)
    content = images.load_image(os.path.join(args.images, "boston.jpg"), 1024)
    style = images.load_image(os.path.join(args.images, "starry_night_google.jpg"), 1024)
    # The full run's images are referenced by docs/benchmarks.md; other runs get their own.
    stem = os.path.splitext(os.path.basename(args.out))[0]
    prefix = "bench" if stem == "benchmarks" else stem
    quality = time_to_quality(content, style, quick, prefix)
    print(
        {k: (v["wall"], v["final"], v["time_to_target"]) for k, v in quality["methods"].items()},
        flush=True,
    )
    memory = {
        s: {p: peak_memory(s, p) for p in ("float32", "bfloat16")}
        for s in ([256] if quick else [256, 512, 1024])
    }
    write_report(args, peaks, speeds, overhead, quality, memory, time.time() - started)


def write_report(args, peaks, speeds, overhead, quality, memory, seconds):
    lines = [
        "# nst_tf benchmarks",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {cpu_features()}; "
        f"Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, NumPy {np.__version__}. "
        f"Run {'--quick ' if args.quick else ''}on {time.strftime('%Y-%m-%d')}, "
        f"{seconds / 60:.1f} min.",
        "",
        f"Command: `python scripts/benchmark.py{' --quick' if args.quick else ''}`",
        "",
        "## Matmul peak",
        "",
        "| dtype | GFLOP/s |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.0f} |" for k, v in peaks.items()]
    lines += [
        "",
        "## Step speed (compiled value-and-gradient step, default layers up to block5_conv1)",
        "",
        "| size | precision | GFLOP/step | s/step | GFLOP/s | % of matmul peak "
        "| speed-up vs float32 |",
        "|---|---|---|---|---|---|---|",
    ]
    base = {s["size"]: s["s_per_step"] for s in speeds if s["precision"] == "float32"}
    for s in speeds:
        dtype = s["precision"].split()[0].rstrip(",")
        lines.append(
            f"| {s['size']} | {s['precision']} | {s['step_gflop']:.0f} | {s['s_per_step']:.3f} | "
            f"{s['gflops']:.0f} | {100 * s['gflops'] / peaks[dtype]:.0f}% | "
            f"{base[s['size']] / s['s_per_step']:.2f}x |"
        )
    lines += [
        "",
        "## L-BFGS's own time per iteration (outside the objective)",
        "",
        "A cheap bounded quadratic over an image-sized variable, its evaluation time "
        "subtracted: what each optimiser adds to every step.",
        "",
        "| image | pairs kept | ours (TensorFlow, XLA) ms | SciPy L-BFGS-B ms "
        "| SciPy set-up per minimisation (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {o['size']} | {o['memory']} | {1000 * o['ours']:.0f} | {1000 * o['scipy']:.0f} "
        f"| {o['scipy_setup']:.1f} |"
        for o in overhead
    ]
    lines += [
        "",
        f"## Time to quality ({quality['size']} px, Boston photo + Starry Night)",
        "",
        f"Target: the objective the Adam run ends with, {quality['target']:.4g}, every image "
        "scored with the same float32 objective (default weights and layers) at full size.",
        "",
        "| method | wall time (s) | final objective | time to target (s) "
        "| share of Adam's time (target: at most 20%) | Adam's time to this objective (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in quality["methods"].items():
        ttt, share = "not reached", "-"
        if r["time_to_target"] is not None:
            ttt = f"{r['time_to_target']:.1f}"
            share = f"{100 * r['share_of_baseline']:.0f}%"
        back = r["baseline_time_to_final"]
        back = f"{back:.1f}" if back is not None else "not reached"
        lines.append(f"| {name} | {r['wall']:.1f} | {r['final']:.4g} | {ttt} | {share} | {back} |")
    lines += [
        "",
        "## Peak memory (resident, whole process, 3 steps single scale)",
        "",
        "| size | float32 MiB | bfloat16 MiB |",
        "|---|---|---|",
    ]
    for size, m in memory.items():
        lines.append(f"| {size} | {m['float32']:.0f} | {m['bfloat16']:.0f} |")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
