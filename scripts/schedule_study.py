"""How many steps the large scales need: --schedule=auto against fixed, on one objective.

    python scripts/schedule_study.py --schedule=fixed --log=/tmp/schedule.jsonl &
    python scripts/schedule_study.py --schedule=auto --log=/tmp/schedule.jsonl
    python scripts/schedule_study.py --report --log=/tmp/schedule.jsonl

Each run stylises the same photo with the same style to --size (default 2048 px, so that
two scales lie above LARGE_SCALE) with the default settings but the schedule, and logs
the final scale's loss after every step. The final scale's objective is the same function
in every run (same targets at the same size), so the runs compare directly: the report
gives each schedule's steps, time and final loss, and where the fixed schedule's loss
curve stood after as many final-scale steps as the auto schedule runs. Schedules:

- fixed: --coarse_steps at every scale and --steps at the last (the pre-issue-15 rule);
- auto: the default, fewer steps above LARGE_SCALE px in proportion to LARGE_SCALE / size;
- lean: half of auto's steps above LARGE_SCALE px.

Times are of runs that may share the machine (run two at once on 2 cores and each gets
one); compare steps and pixels, and the per-step times within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
IMAGES = os.path.join(ROOT, "..", "shared", "images")

from docs_section import write_section  # noqa: E402

BEGIN, END = "<!-- schedule:begin -->", "<!-- schedule:end -->"


def schedule_of(name: str, size: int) -> list[tuple[int, int]]:
    """(size, steps) per scale of a named schedule at the default settings."""
    from nst_tf.engine.schedule import scale_sizes, scale_steps  # pylint: disable=C0415
    from nst_tf.settings.config import (
        LARGE_SCALE,
        Config,
    )  # pylint: disable=import-outside-toplevel

    config = Config(size=size, schedule="fixed" if name == "fixed" else "auto")
    sizes, steps = scale_sizes(config.min_size, size), scale_steps(
        config.min_size, size, config.coarse_steps, config.steps, config.schedule
    )
    if name == "lean":
        steps = [
            max(1, n // 2) if s > LARGE_SCALE else n for s, n in zip(sizes, steps, strict=True)
        ]
    return list(zip(sizes, steps, strict=True))


def checkpoint_image(path: str):
    """The image held by a run's checkpoint (a file prefix such as run.ckpt/ckpt-393)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.train.load_checkpoint(path).get_tensor("image/.ATTRIBUTES/VARIABLE_VALUE")[0]


def run(
    name: str,
    size: int,
    content: str,
    style: str,
    log: str,
    start_checkpoint: str | None = None,
    steps: int = 0,
) -> None:
    """Stylises once with schedule `name`, appending one JSON line per final-scale step.

    With `start_checkpoint` (a checkpoint of a finished scale below `size`), only the final scale
    runs, for `steps` steps, from that checkpoint's image handed up as a run hands it up:
    the curve of the final scale alone, without the hour of scales before it.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from nst_tf.engine.stylizer import Stylizer  # pylint: disable=import-outside-toplevel
    from nst_tf.io import images  # pylint: disable=import-outside-toplevel
    from nst_tf.settings.config import Config  # pylint: disable=import-outside-toplevel

    schedule = [(size, steps)] if start_checkpoint else schedule_of(name, size)
    stylizer = Stylizer(Config(size=size))
    rows = []

    def record(progress) -> None:
        if progress.size == size:
            rows.append(
                {
                    "schedule": name,
                    "final_step": len(rows) + 1,
                    "loss": progress.losses["total"],
                    "elapsed": round(progress.elapsed, 1),
                    "seconds_per_step": round(progress.seconds_per_step, 2),
                }
            )

    start = time.perf_counter()
    result = stylizer.stylize(
        images.load_image(content),
        images.load_image(style),
        callbacks=[record],
        schedule=schedule,
        start=checkpoint_image(start_checkpoint) if start_checkpoint else None,
    )
    seconds = time.perf_counter() - start
    images.save_image(result, os.path.join(os.path.dirname(log), f"schedule_{name}.png"))
    with open(log, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        summary = {
            "schedule": name,
            "summary": True,
            "steps": [n for _, n in schedule],
            "sizes": [s for s, _ in schedule],
            "seconds": round(seconds, 1),
            "final_loss": rows[-1]["loss"],
            "load": round(os.getloadavg()[0], 1),
        }
        f.write(json.dumps(summary) + "\n")
    print(json.dumps(summary))


def report(log: str, out: str) -> None:
    """Writes the study's section of docs/benchmarks.md from the log."""
    with open(log, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    summaries = {r["schedule"]: r for r in rows if r.get("summary")}
    curves: dict[str, list[float]] = {}
    for r in rows:
        if not r.get("summary"):
            curves.setdefault(r["schedule"], []).append(r["loss"])
    fixed = curves.get("fixed", [])
    any_summary = next(iter(summaries.values()))
    lines = [
        BEGIN,
        "## The large-scale schedule (issue 15): how many steps above 1024 px",
        "",
        f"`python scripts/schedule_study.py` at --size={any_summary['sizes'][-1]} "
        f"(scales {', '.join(map(str, any_summary['sizes']))} px), the Boston photo with "
        f"Starry Night, default settings but the schedule, {time.strftime('%Y-%m-%d')}. "
        "The final scale's loss is the same objective in every run.",
        "",
        "| schedule | steps per scale | steps | final loss | vs fixed | wall s | load |",
        "|---|---|---|---|---|---|---|",
    ]
    base = summaries.get("fixed", {}).get("final_loss")
    for name in ("fixed", "auto", "lean"):
        if name not in summaries:
            continue
        s = summaries[name]
        ratio = f"{s['final_loss'] / base:.3f}x" if base else ""
        lines.append(
            f"| {name} | {'/'.join(map(str, s['steps']))} | {sum(s['steps'])} | "
            f"{s['final_loss']:.4g} | {ratio} | {s['seconds']:.0f} | {s['load']} |"
        )
    lines.append("")
    for name in ("auto", "lean"):
        if name in summaries and fixed:
            k = summaries[name]["steps"][-1]
            if k <= len(fixed):
                lines.append(
                    f"- The fixed schedule's final scale after {k} steps (as many as {name} "
                    f"runs there): loss {fixed[k - 1]:.4g} ({fixed[k - 1] / fixed[-1]:.3f}x "
                    f"its end after {len(fixed)}); {name}'s end: "
                    f"{summaries[name]['final_loss']:.4g}."
                )
    if fixed:
        marks = [m for m in (10, 20, 35, 50, 70, 100, 140) if m <= len(fixed)]
        lines.append(
            "- The fixed schedule's final-scale loss by step: "
            + ", ".join(f"{m}: {fixed[m - 1] / fixed[-1]:.3f}x" for m in marks)
            + " of its end."
        )
    lines += ["", END]
    section = "\n".join(lines)
    write_section(out, section, BEGIN, END)
    print(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", choices=("fixed", "auto", "lean"))
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--content", default=os.path.join(IMAGES, "boston.jpg"))
    parser.add_argument("--style", default=os.path.join(IMAGES, "starry_night_google.jpg"))
    parser.add_argument("--log", default="/tmp/schedule_study.jsonl")
    parser.add_argument(
        "--start_checkpoint",
        help="run only the final scale, from this checkpoint's image (with --final_steps)",
    )
    parser.add_argument("--final_steps", type=int, default=140)
    parser.add_argument("--report", action="store_true", help="write the docs section")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = parser.parse_args()
    if args.report:
        report(args.log, args.out)
    elif args.schedule:
        run(
            args.schedule,
            args.size,
            args.content,
            args.style,
            args.log,
            args.start_checkpoint,
            args.final_steps,
        )
    else:
        parser.error("give --schedule or --report")


if __name__ == "__main__":
    main()
