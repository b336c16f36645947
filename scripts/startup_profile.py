"""Where a default run's time goes outside its steps (issue 27); prints one JSON line.

    python scripts/startup_profile.py [--content=PHOTO] [--style=PAINTING] [--size=512]

Runs nst_tf.commands.run.stylize (what `nst-tf` runs) in this fresh process with timers
wrapped around its parts: the imports, the checks and input loading before TensorFlow,
the weights' decoding, the model's build, each scale's targets, each L-BFGS
minimisation's first evaluation and iterations (traced and compiled on a new shape),
the checkpoint writes and the output's. The time outside the steps is the process's
wall time less, for each scale, its iterations times its steady (median) iteration.
scripts/benchmark.py --profile runs it and writes the numbers to the docs.
"""

from __future__ import annotations

import time

BEGIN = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "..", "shared", "images")

# Exclusive seconds by part (a part's time less that of the parts timed inside it).
SPENT: dict[str, float] = defaultdict(float)
_STACK: list[list[float]] = []


def timed(owner, name: str, part: str) -> None:
    """Wraps owner.name so that its calls add their exclusive time to SPENT[part]."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        return _timing(part, original, *args, **kwargs)

    setattr(owner, name, wrapper)


def _timing(part: str, call, *args, **kwargs):
    _STACK.append([0.0])
    begin = time.perf_counter()
    try:
        return call(*args, **kwargs)
    finally:
        elapsed = time.perf_counter() - begin
        inner = _STACK.pop()[0]
        SPENT[part] += elapsed - inner
        if _STACK:
            _STACK[-1][0] += elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--content", default=os.path.join(IMAGES, "boston.jpg"))
    parser.add_argument("--style", default=os.path.join(IMAGES, "starry_night_google.jpg"))
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    begin = time.perf_counter()
    from nst_tf.commands import run
    from nst_tf.settings.config import Config

    SPENT["import (nst_tf, TF-free part)"] = time.perf_counter() - begin
    begin = time.perf_counter()
    import tensorflow as tf

    from nst_tf.core import lbfgs
    from nst_tf.engine import steps, stylizer  # noqa: F401  (imported here to time it)
    from nst_tf.io import images
    from nst_tf.model import features, weights

    SPENT["import (TensorFlow, Keras, engine)"] = time.perf_counter() - begin

    for owner, name, part in (
        (weights, "find_weights", "weights: find and hash"),
        (weights, "check_vgg19", "weights: find and hash"),
        (weights, "load_weights", "weights: decode"),
        (stylizer.Stylizer, "targets", "targets (content and style, every scale)"),
        (stylizer.Stylizer, "calibrate", "style strength: start balance and pilot"),
        (steps.StepCache, "runner", "optimiser set-up (variables, memory plan)"),
        (tf.train.CheckpointManager, "save", "checkpoint writes"),
        (images, "save_image", "output write"),
    ):
        timed(owner, name, part)
    build = features.FeatureExtractor.__init__

    # Keras reads the constructor's signature: the wrapper spells it out.
    def build_timed(self, layers, vgg_weights="auto", precision="float32", pooling="max", **kw):
        _timing("model build", build, self, layers, vgg_weights, precision, pooling, **kw)

    features.FeatureExtractor.__init__ = build_timed
    iterations: dict[tuple, list[float]] = defaultdict(list)
    evaluations: dict[tuple, list[int]] = defaultdict(list)
    starts: dict[tuple, list[float]] = defaultdict(list)
    original_init = lbfgs.BoxLbfgs.__init__

    def init(self, variable, value_and_grad, *a, **k):
        counter = tf.Variable(0, trainable=False)

        def counted(x):
            counter.assign_add(1)
            return value_and_grad(x)

        original_init(self, variable, counted, *a, **k)
        shape = tuple(variable.shape)
        start, iterate = self._start, self._iterate

        def timed_start():
            begin = time.perf_counter()
            out = start()
            out.numpy()
            starts[shape].append(time.perf_counter() - begin)
            return out

        def timed_iterate(values, first):
            before = int(counter.numpy())
            begin = time.perf_counter()
            out = iterate(values, first)
            out.numpy()
            iterations[shape].append(time.perf_counter() - begin)
            evaluations[shape].append(int(counter.numpy()) - before)
            return out

        self._start, self._iterate = timed_start, timed_iterate

    lbfgs.BoxLbfgs.__init__ = init
    with tempfile.TemporaryDirectory() as folder:
        config = Config(content=args.content, style=args.style, size=args.size)
        config.output = os.path.join(folder, "out.png")
        begin = time.perf_counter()
        run.stylize(config)
        SPENT["run.stylize (all of it)"] = time.perf_counter() - begin
    wall = time.perf_counter() - BEGIN

    scales = []
    for shape, times in iterations.items():
        steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
        steady_evals = statistics.median(evaluations[shape][1:] or evaluations[shape])
        scales.append(
            {
                "shape": list(shape),
                "iterations": len(times),
                "steady_iteration_s": steady,
                "evaluations_per_iteration": steady_evals,
                "first_evaluation_s": starts[shape][0],
                "first_iteration_s": times[0],
                "first_iteration_evaluations": evaluations[shape][0],
                "steady_evaluation_s": steady / max(steady_evals, 1),
                "restarts": len(starts[shape]),
            }
        )
    in_steps = sum(s["iterations"] * s["steady_iteration_s"] for s in scales)
    print(
        json.dumps(
            {
                "wall_s": wall,
                "in_steps_s": in_steps,
                "outside_steps_s": wall - in_steps,
                "spent": dict(SPENT),
                "scales": scales,
                "python": sys.version.split()[0],
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
