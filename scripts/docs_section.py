"""Writes a benchmark's section into a Markdown file, between its begin and end markers."""

from __future__ import annotations

import os


def write_section(path: str, section: str, begin: str, end: str) -> None:
    """Replaces the text from `begin` to `end` in `path` with `section` (which holds both
    markers), or appends `section` when the markers are not there yet."""
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
