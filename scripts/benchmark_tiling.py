"""Per-step time and peak memory of the tiled and the untiled step; a section of docs/benchmarks.md.

    python scripts/benchmark.py --tiling                # 1024, 2048 (all three), 4096
    python scripts/benchmark_tiling.py                  # the same
    python scripts/benchmark_tiling.py --sizes 1024     # a quick look
    python scripts/benchmark_tiling.py --cases 2048:0,2048:1024,2048:1024:split

Three kinds of step: untiled, tiled (the whole network tile by tile, recomputed in the
backward pass) and split (VGG19's head tile by tile, its tail on the whole image).

Each measurement runs in a fresh process (its peak resident memory, VmHWM, is its own):
the style targets at that size, one step to trace, then --steps timed steps of the
value-and-gradient the optimisers call (the fastest: the machine is shared). The parent
watches each child's resident memory and stops it before it passes --max_gb, so an
untiled step too large for the machine is reported as such instead of pushing it into
swap. The cases run interleaved (1024: untiled, tiled, split; 2048: split, tiled, untiled;
4096: tiled, split), so that a machine shared with other work disturbs a ratio's sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from docs_section import write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- tiling:begin -->", "<!-- tiling:end -->"


def probe(size: int, tile: int, steps: int, precision: str, split: bool = False) -> None:
    """In this process: time `steps` steps at size x size px and print a JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nst_tf.core.tiling import TiledStep  # pylint: disable=import-outside-toplevel
    from nst_tf.engine.stylizer import Stylizer  # pylint: disable=import-outside-toplevel
    from nst_tf.settings.config import Config  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(0)
    content = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (512, 512, 3)).astype(np.float32)
    # The step is chosen here, whatever the memory model would pick; the parent's watchdog
    # keeps an untiled step that is too large from harming the machine.
    config = Config(
        size=size, min_size=0, precision=precision, tile_size=str(tile), memory_limit=1e3
    )
    stylizer = Stylizer(config)
    targets = stylizer.targets(stylizer.prepare(content, style), size)
    if tile:
        tiled = TiledStep(stylizer.model, stylizer.objective, tile, split)
        count = len((tiled.head_tiles if split else tiled.tiles)(size, size))
        step = tf.function(tiled.value_and_grad)

        def value_and_grad(image):
            return step(image, targets)

    else:
        count = 1
        value_and_grad = stylizer.value_and_grad(targets)
    image = tf.Variable(content[None])
    start = time.perf_counter()
    value_and_grad(image.read_value())[0].numpy()
    first = time.perf_counter() - start
    times, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        values, grad = value_and_grad(image.read_value())
        values.numpy()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        image.assign(tf.clip_by_value(image - 1e-3 * grad, 0.0, 255.0))
    with open("/proc/self/status", encoding="ascii") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) * 1024
    print(
        json.dumps(
            {
                "size": size,
                "tile": tile,
                "split": split,
                "tiles": count,
                "first_step": first,
                "seconds": min(times),
                # CPU time of this process: on a shared machine, far steadier than wall time.
                "cpu_seconds": min(cpu),
                "peak_bytes": peak,
            }
        )
    )


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) * 1024
    except (OSError, StopIteration):
        return 0


def _available() -> float:
    with open("/proc/meminfo", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable")) * 1024


def measure(
    size: int, tile: int, steps: int, precision: str, max_bytes: float, split: bool = False
) -> dict:
    """Runs one probe in a child process, stopping it before it passes max_bytes."""
    free, load = _available(), os.getloadavg()[0]
    child = subprocess.Popen(
        [sys.executable, __file__, "--probe", str(size), str(tile), str(steps), precision]
        + ["split"] * split,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    stopped = False
    while child.poll() is None:
        if _rss(child.pid) > max_bytes:
            child.kill()
            stopped = True
        time.sleep(0.2)
    out = child.stdout.read()
    if stopped or child.returncode:
        result = {
            "size": size,
            "tile": tile,
            "split": split,
            "stopped": f"passed {max_bytes / 1e9:.1f} GB",
        }
        if not stopped:
            result["stopped"] = f"exit {child.returncode}"
    else:
        result = json.loads(out.strip().splitlines()[-1])
    result.update(available_before=free, load_before=load)
    print(json.dumps(result), flush=True)
    return result


def write_report(results: list[dict], args, path: str) -> None:
    from nst_tf.model.features import cpu_flags  # pylint: disable=import-outside-toplevel

    flags = cpu_flags()
    isa = (
        "AVX-512 + AVX512-BF16"
        if "avx512_bf16" in flags
        else "AVX-512" if "avx512f" in flags else "AVX2"
    )
    lines = [
        BEGIN,
        "## Tiled steps (issue 15): per-step time and peak memory",
        "",
        f"`python scripts/benchmark.py --tiling` on {platform.machine()}, {os.cpu_count()} cores "
        f"({isa}), precision {args.precision}, {time.strftime('%Y-%m-%d')}; one fresh process "
        "per row (its peak resident memory, VmHWM, includes TensorFlow and the targets), the "
        f"fastest of {args.steps} steps after a traced one. The machine was shared: free "
        "memory and load average are those when each row started.",
        "",
        "| size | step | tiles | s/step | CPU s/step | CPU s per Mpx | peak GB | free GB | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    per_mpx = {}
    for r in results:
        kind = "untiled"
        if r["tile"]:
            kind = f"{'split' if r.get('split') else 'tiled'} {r['tile']} px"
        if "stopped" in r:
            lines.append(
                f"| {r['size']} | {kind} | | stopped: {r['stopped']} | | | | "
                f"{r['available_before'] / 1e9:.1f} | {r['load_before']:.1f} |"
            )
            continue
        mpx = r["size"] ** 2 / 1e6
        cpu = r.get("cpu_seconds")
        if cpu:  # the fastest row of a kind, as within a row the fastest step
            key = (r["size"], kind.split()[0])
            per_mpx[key] = min(per_mpx.get(key, float("inf")), cpu / mpx)
        lines.append(
            f"| {r['size']} | {kind} | {r['tiles']} | {r['seconds']:.2f} | "
            + (f"{cpu:.1f} | {cpu / mpx:.1f} | " if cpu else "| | ")
            + f"{r['peak_bytes'] / 1e9:.2f} | "
            f"{r['available_before'] / 1e9:.1f} | {r['load_before']:.1f} |"
        )
    lines.append("")
    for size in sorted({size for size, _ in per_mpx}):
        for kind in ("tiled", "split"):
            if (size, kind) in per_mpx and (size, "untiled") in per_mpx:
                ratio = per_mpx[(size, kind)] / per_mpx[(size, "untiled")]
                lines.append(
                    f"- {size} px: the {kind} step costs {ratio:.2f}x the untiled step's "
                    "CPU time per pixel."
                )
    lines += ["", END]
    write_section(path, "\n".join(lines), BEGIN, END)


def _read_log(path: str) -> list[dict]:
    """The results in a --log file (JSON lines)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="1024,2048,4096")
    parser.add_argument("--tile", type=int, default=1024, help="tile side for 2048 and 4096")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--max_gb", type=float, default=0.0, help="default: 90%% of free")
    parser.add_argument(
        "--cases", help="size:tile[:split],... instead of --sizes (tile 0: untiled)"
    )
    parser.add_argument(
        "--log",
        help="also append each result to this JSON-lines file, and " "report every result in it",
    )
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument(
        "--report", action="store_true", help="only write the section from --log's results"
    )
    args = parser.parse_args()
    if args.report:
        write_report(_read_log(args.log), args, args.out)
        return
    if args.probe:
        size, tile, steps, precision, *split = args.probe
        probe(int(size), int(tile), int(steps), precision, split == ["split"])
        return
    cases = []
    for size in (int(s) for s in args.sizes.split(",")):
        tile = min(args.tile, size // 2)
        group = [(size, 0, False), (size, tile, False), (size, tile, True)]
        if size >= 4096:
            group = group[1:]
        cases += group if len(cases) % 2 == 0 else group[::-1]  # interleave the order
    if args.cases:
        cases = []
        for case in args.cases.split(","):
            size, tile, *kind = case.split(":")
            cases.append((int(size), int(tile), kind == ["split"]))
    max_bytes = args.max_gb * 1e9 or 0.9 * _available()
    results = []
    for size, tile, split in cases:
        results.append(measure(size, tile, args.steps, args.precision, max_bytes, split))
        if args.log:
            with open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(results[-1]) + "\n")
    if args.log:
        results = _read_log(args.log)
    write_report(results, args, args.out)


if __name__ == "__main__":
    main()
