"""Ideas for nst-tf's default against pastiche's objective, measured in one process.

    python scripts/peer_study.py --variant=bf16 --steps=200     # one variant per process

Uses the inputs and the float32 scorer of scripts/peer_benchmark.py (run it once first, or
give --workdir holding content.png and style.png). Every variant runs the default's
coarse scales and then the final scale for --steps steps, and scores the image (rounded to
8 bits, as a delivered file) at the steps listed in --at, together with exponential moving
averages of the final scale's iterates (crowsonkb's --avg-decay) at several decays. Times
are net of the scoring. Variants:

- bf16: the default (bfloat16 network wherever the CPU has it);
- f32_final: bfloat16 at the coarse scales, float32 at the final one;
- f32: float32 throughout.

Prints one JSON line per scored step; the docs quote them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_benchmark import ROOT, Scorer, objective_settings  # noqa: E402

DECAYS = (0.5, 0.8, 0.9)


class Recorder:
    """Scores the final scale's iterates and their moving averages at chosen steps."""

    def __init__(self, scorer: Scorer, size: int, at: set[int], label: str, start: float):
        self.scorer, self.size, self.at, self.label = scorer, size, at, label
        self.start, self.overhead, self.averages, self.count = start, 0.0, {}, 0

    def __call__(self, progress) -> None:
        if progress.size != self.size:
            return
        begin = time.perf_counter()
        self.count += 1
        image = progress.image()
        for decay in DECAYS:
            # The first iterate starts the average, as crowsonkb's EMA (bias-free).
            old = self.averages.get(decay, image)
            self.averages[decay] = decay * old + (1.0 - decay) * image
        if self.count in self.at:
            row = {
                "variant": self.label,
                "final_step": self.count,
                "seconds": round(begin - self.start - self.overhead, 1),
                "in_flight": progress.losses["total"],
                "delivered": self.scorer(delivered(image)),
                "load": round(os.getloadavg()[0], 1),
            }
            for decay, average in self.averages.items():
                row[f"ema_{decay}"] = self.scorer(delivered(average))
            print(json.dumps(row), flush=True)
        self.overhead += time.perf_counter() - begin


def delivered(image: np.ndarray) -> np.ndarray:
    """The image as a file stores it: clipped and rounded to 8 bits."""
    return np.round(np.clip(image, 0.0, 255.0)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--variant", choices=("bf16", "f32_final", "f32"), default="bf16")
    parser.add_argument("--steps", type=int, default=200, help="Steps at the final scale.")
    parser.add_argument("--coarse_steps", type=int, default=60)
    parser.add_argument(
        "--checkpoint_every", type=int, default=0, help="As the CLI's (L-BFGS restarts at each)."
    )
    parser.add_argument("--at", default="60,80,100,120,140,160,180,200")
    parser.add_argument("--workdir", default=os.path.join(ROOT, "build", "peer_benchmark"))
    args = parser.parse_args()

    from nst_tf.engine.stylizer import Stylizer  # pylint: disable=import-outside-toplevel
    from nst_tf.settings.config import Config  # pylint: disable=import-outside-toplevel

    paths = [os.path.join(args.workdir, name) for name in ("content.png", "style.png")]
    content, style = (np.asarray(Image.open(p).convert("RGB"), np.float32) for p in paths)
    size = max(content.shape[:2])
    settings = dict(
        objective_settings(),
        size=size,
        style_scale=(max(style.shape[:2]) / size,),
        coarse_steps=args.coarse_steps,
        steps=args.steps,
        checkpoint_every=args.checkpoint_every,
        checkpoint_dir=os.path.join(args.workdir, "study.ckpt") if args.checkpoint_every else None,
    )
    scorer = Scorer(*paths)
    at = {int(s) for s in args.at.split(",")}
    start = time.perf_counter()
    recorder = Recorder(scorer, size, at, args.variant, start)
    if args.variant == "f32_final":
        # The coarse scales exactly as the default runs them, then the final scale as a
        # single-scale run from their result (resized as the pyramid would).
        coarse = Stylizer(Config(**dict(settings, size=round(size / 2**0.5))))
        image = coarse.stylize(content, style, callbacks=[recorder])
        final = Stylizer(Config(**dict(settings, min_size=0, precision="float32", init="path")))
        final.stylize(content, style, init=image, callbacks=[recorder])
    else:
        precision = "float32" if args.variant == "f32" else "auto"
        Stylizer(Config(**dict(settings, precision=precision))).stylize(
            content, style, callbacks=[recorder]
        )


if __name__ == "__main__":
    main()
