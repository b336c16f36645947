"""Writes docs/reference/flags.md, the flag reference, from the settings' descriptions.

Each command's flags are defined in a fresh process exactly as its entry point defines them
(nst_tf.commands.flags makes them from the `setting(...)` descriptions in
nst_tf/settings/), then read back from absl: the page
says what `--help` says. TensorFlow is never imported.

    python scripts/flag_reference.py           # rewrite the page
    python scripts/flag_reference.py --check   # exit 1 when the page is stale
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "reference", "flags.md")

# (command, the page that explains it, what it does)
COMMANDS = (
    ("nst-tf", "../usage/stylize.md", "stylize one photo"),
    ("nst-tf-video", "../usage/video.md", "stylize a clip"),
    ("nst-tf-batch", "../usage/batch.md", "stylize a folder of photos on Ray"),
    ("nst-tf-export", "../usage/export.md", "export the feature extractor or a style's targets"),
    ("nst-tf-studio", "../usage/studio.md", "run the web studio on this machine"),
    ("nst-tf-train", "../usage/train.md", "train a network for one style on your photos"),
)
LIFETIMES = (
    ("input", "Inputs: what is read"),
    ("recipe", "Recipe: what changes the result"),
    ("output", "Outputs: what is written, and how the run is watched"),
    ("runtime", "Runtime: how the result is computed on this machine"),
)


def _define(command: str) -> list[str]:
    """Defines `command`'s flags as its entry point does; returns their names in order."""
    from nst_tf.commands import flags  # pylint: disable=import-outside-toplevel

    if command == "nst-tf":
        return list(flags.define_preset_flag() + flags.define_flags())
    if command == "nst-tf-export":
        from nst_tf.commands import export  # pylint: disable=import-outside-toplevel

        return list(export.define_export_flags())
    if command == "nst-tf-video":
        from nst_tf.commands import video_cli  # pylint: disable=import-outside-toplevel

        return list(video_cli.define_video_flags())
    if command == "nst-tf-studio":
        from nst_tf.commands import studio  # pylint: disable=import-outside-toplevel

        return list(studio._define_flags())  # pylint: disable=protected-access
    if command == "nst-tf-train":
        from nst_tf.commands import train  # pylint: disable=import-outside-toplevel

        return list(train.define_flags())
    from nst_tf.commands import batch  # pylint: disable=import-outside-toplevel

    own = [flag.name for flag in flags.FLAGS.get_flags_for_module(batch)]
    return own + list(flags.define_preset_flag() + flags.define_flags(batch.BATCH_SETTINGS))


def _dump(command: str) -> None:
    """Prints `command`'s flags as JSON: name, default, help, type."""
    from absl import flags  # pylint: disable=import-outside-toplevel

    refused = ()
    if command == "nst-tf-batch":
        from nst_tf.commands import batch  # pylint: disable=import-outside-toplevel

        refused = batch._NOT_FOR_BATCH  # pylint: disable=protected-access
    rows = []
    for name in _define(command):
        flag = flags.FLAGS[name]
        rows.append({"name": name, "default": flag.default, "help": flag.help, "refused": False})
    # A refused setting has no flag in the command; its description is nst-tf's.
    from nst_tf.settings.config import Config  # pylint: disable=import-outside-toplevel

    described = {field.name: field for field in dataclasses.fields(Config)}
    for name in refused:
        field = described[name]
        rows.append(
            {
                "name": name,
                "default": field.default,
                "help": field.metadata["help"],
                "refused": True,
            }
        )
    json.dump(rows, sys.stdout)


def _flags_of(command: str) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--dump", command],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    ).stdout
    return json.loads(out)


def _lifetimes() -> dict[str, str]:
    from nst_tf.commands.video import VideoSettings  # pylint: disable=import-outside-toplevel
    from nst_tf.settings.config import Config  # pylint: disable=import-outside-toplevel
    from nst_tf.settings.training import TrainSettings  # pylint: disable=C0415

    return {
        field.name: field.metadata["lifetime"]
        for settings in (Config, VideoSettings, TrainSettings)
        for field in dataclasses.fields(settings)
    }


def _default(value) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`" + ",".join(str(v) for v in value) + "`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    """A help text as a table cell; its line breaks (--preset's list) kept as <br>."""
    return "<br>".join(
        " ".join(line.split()).replace("|", "\\|").replace("*", "\\*").replace("<", "&lt;")
        for line in text.splitlines()
    )


def _table(rows: list[dict]) -> list[str]:
    lines = ["| flag | default | meaning |", "|---|---|---|"]
    for row in rows:
        lines.append(f"| `--{row['name']}` | {_default(row['default'])} | {_cell(row['help'])} |")
    return lines + [""]


def render() -> str:
    """The page's text."""
    lifetimes = _lifetimes()
    lines = [
        "# Flag reference",
        "",
        "<!-- Generated by scripts/flag_reference.py from the settings' descriptions "
        "(nst_tf/settings/, nst_tf/commands/export.py, nst_tf/commands/video_cli.py, "
        "nst_tf/commands/batch.py, nst_tf/commands/studio.py). "
        "Do not edit: run the script. -->",
        "",
        "Every flag of every command, with its default and its `--help` text. This page is "
        "generated from the one description each setting has, so it says what `--help` says; "
        "`scripts/flag_reference.py --check` (run by the tests) fails when it is stale.",
        "",
        "A flag file (`--flagfile=run.flags`) holds one flag per line, as on the command line; "
        "list flags take comma-separated values.",
        "",
    ]
    stylize = {(row["name"], row["help"]) for row in _flags_of("nst-tf")}
    for command, page, what in COMMANDS:
        rows = _flags_of(command)
        lines += [f"## {command}", "", f"To {what} ([usage]({page})).", ""]
        if command == "nst-tf":
            lines += ["### Presets", ""]
            lines += _table([r for r in rows if r["name"] not in lifetimes])
            for lifetime, title in LIFETIMES:
                lines += [f"### {title}", ""]
                lines += _table([r for r in rows if lifetimes.get(r["name"]) == lifetime])
            continue
        own = [r for r in rows if (r["name"], r["help"]) not in stylize]
        shared = [r["name"] for r in rows if (r["name"], r["help"]) in stylize]
        refused = [name for name in shared if next(r for r in rows if r["name"] == name)["refused"]]
        lines += ["Its own flags:", ""] + _table(own)
        if not shared:
            continue
        lines += [
            "The [nst-tf](#nst-tf) flags it takes too, with the same meaning: "
            + ", ".join(f"`--{name}`" for name in shared if name not in refused)
            + ".",
            "",
        ]
        if refused:
            lines += [
                "Refused with a one-line message saying why (not listed by its --help): "
                + ", ".join(f"`--{name}`" for name in refused)
                + ".",
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--dump"]:
        _dump(argv[2])
        return 0
    text = render()
    if "--check" in argv[1:]:
        current = open(PAGE, encoding="utf-8").read() if os.path.exists(PAGE) else ""
        if current != text:
            sys.stderr.write(
                "docs/reference/flags.md is stale: run python scripts/flag_reference.py\n"
            )
            return 1
        return 0
    os.makedirs(os.path.dirname(PAGE), exist_ok=True)
    with open(PAGE, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main(sys.argv))
