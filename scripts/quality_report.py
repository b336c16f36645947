"""A quality report that is not our objective (issue 27), as a Markdown table.

    python scripts/quality_report.py --content=PHOTO --style=PAINTING RESULT [RESULT ...]
    python scripts/quality_report.py --study      # the docs' table: 3 photos x 2 styles

The first form scores each result file against its content and style with
nst_tf.metrics (colour distance to the style, SSIM of the luminance against the content,
sliced Wasserstein distance of VGG19 features to the style, and nst_tf's objective), with
the content itself as the first row, and prints the table (or writes it to --out).

The second runs the default recipe on each content x style pair at --size px (one
Stylizer, so each shape is traced once), adds the results of other programs found as
files (--extra NAME=DIR, DIR/<content>_<style>.png), and writes the tables between
markers in docs/quality.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from nst_tf import metrics  # noqa: E402
from nst_tf.io import images  # noqa: E402
from nst_tf.settings.config import Config  # noqa: E402
from nst_tf.settings.recipe import Recipe  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "..", "shared", "images")
CONTENTS = {
    "Boston": os.path.join(IMAGES, "boston.jpg"),
    "Tübingen": os.path.join(IMAGES, "tubingen.jpg"),
    "sample landscape": os.path.join(ROOT, "nst_tf", "samples", "content.png"),
}
STYLES = {
    "Starry Night": os.path.join(IMAGES, "starry_night_google.jpg"),
    "The Scream": os.path.join(IMAGES, "the_scream.jpg"),
}
MARK_BEGIN = "<!-- quality_report: begin (written by scripts/quality_report.py --study) -->"
MARK_END = "<!-- quality_report: end -->"


def _stem(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def report_files(args) -> str:
    """The table for result files against one content and style."""
    content = images.load_image(args.content)
    first = images.load_image(args.results[0])
    size = max(first.shape[:2])
    style = images.load_image(args.style, size)
    scorer = metrics.QualityScorer(Recipe(size=size))
    at = metrics.resized(content, first.shape)
    rows = {"the content itself": scorer.report(at, content, style)}
    for path in args.results:
        rows[os.path.basename(path)] = scorer.report(images.load_image(path), content, style)
    return metrics.markdown_table(rows)


def study(args) -> str:
    """Stylises each pair with the defaults at args.size px and scores every result."""
    from nst_tf.engine.stylizer import Stylizer

    config = Config(size=args.size)
    stylizer = Stylizer(config)
    scorer = metrics.QualityScorer(config)
    extras = dict(item.split("=", 1) for item in args.extra)
    os.makedirs(args.results_dir, exist_ok=True)
    sections, means = [], {}
    for content_name, content_path in CONTENTS.items():
        content = images.load_image(content_path, args.size)
        for style_name, style_path in STYLES.items():
            style = images.load_image(style_path, args.size)
            pair = f"{_stem(content_name)}_{_stem(style_name)}"
            begin = time.perf_counter()
            output = stylizer.stylize(content, style)
            seconds = time.perf_counter() - begin
            images.save_image(output, os.path.join(args.results_dir, pair + ".png"))
            rows = {
                "the content itself": scorer.report(content, content, style),
                f"nst_tf default ({seconds:.0f} s)": scorer.report(
                    np.clip(np.round(output), 0, 255), content, style
                ),
            }
            for name, folder in extras.items():
                path = os.path.join(folder, pair + ".png")
                if os.path.exists(path):
                    rows[name] = scorer.report(images.load_image(path), content, style)
            for name, row in rows.items():
                key = name.split(" (")[0]
                means.setdefault(key, []).append(row)
            print(pair, {k: round(v["style_swd"], 2) for k, v in rows.items()}, flush=True)
            sections.append(f"### {content_name} x {style_name}\n\n{metrics.markdown_table(rows)}")
            if args.out:  # the pairs done so far, in case the study is stopped
                write_between_markers(args.out, _page(args, sections, means))
    return _page(args, sections, means)


def _page(args, sections: list[str], means: dict) -> str:
    averaged = {
        name: {key: float(np.mean([r[key] for r in rows])) for key, _, _ in metrics.COLUMNS}
        for name, rows in means.items()
    }
    header = (
        f"{time.strftime('%Y-%m-%d')}, {args.size} px, default settings "
        f"(`python scripts/quality_report.py --study --size={args.size}`), "
        f"{_machine()}."
    )
    mean_table = metrics.markdown_table(averaged)
    return "\n\n".join([header, f"### Mean over the {len(sections)} pairs", mean_table, *sections])


def _machine() -> str:
    from nst_tf.machine import cpu_flags

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    flags = cpu_flags()
    kind = "AMX" if "amx_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2"
    return f"{model} ({kind}), {os.cpu_count()} cores"


def write_between_markers(path: str, text: str) -> None:
    """Replaces what lies between the markers in `path` (the rest is written by hand)."""
    with open(path) as f:
        page = f.read()
    if MARK_BEGIN not in page or MARK_END not in page:
        raise SystemExit(f"{path} has no {MARK_BEGIN!r} ... {MARK_END!r} markers")
    head, rest = page.split(MARK_BEGIN, 1)
    tail = rest.split(MARK_END, 1)[1]
    with open(path, "w") as f:
        f.write(f"{head}{MARK_BEGIN}\n{text}\n{MARK_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="*", help="result images to score")
    parser.add_argument("--content", help="the content photo of the results")
    parser.add_argument("--style", help="the style image of the results")
    parser.add_argument("--out", help="write the table here (default: print it)")
    parser.add_argument("--study", action="store_true", help="the docs' content x style table")
    parser.add_argument("--size", type=int, default=320, help="--study: long side in px")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        help="--study: NAME=DIR, another program's results as DIR/<content>_<style>.png",
    )
    parser.add_argument(
        "--results_dir",
        default=os.path.join("/tmp", "nst_tf_quality"),
        help="--study: where nst_tf's results are written",
    )
    args = parser.parse_args()
    if args.study:
        out = args.out = args.out or os.path.join(ROOT, "docs", "quality.md")
        write_between_markers(out, study(args))
        print(f"wrote {out}")
        return
    if not (args.results and args.content and args.style):
        parser.error("give --content, --style and at least one result image (or --study)")
    table = report_files(args)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    else:
        sys.stdout.write(table + "\n")


if __name__ == "__main__":
    main()
