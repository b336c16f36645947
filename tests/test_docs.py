"""The documentation site builds offline and strictly, covers every page, and stays current."""

from __future__ import annotations

import dataclasses
import html.parser
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from nst_tf.commands.video import VideoSettings
from nst_tf.settings.config import Config
from nst_tf.settings.training import TrainSettings

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# The README's quick start: one command sets up and runs the main job on the built-in
# samples, the other sets up and runs the tests.
QUICK_START = (
    "scripts/demo.sh    # sets up .venv on first use, stylises the built-in samples into "
    "demo/stylized.png",
    "scripts/test.sh    # sets up .venv with the test extras on first use, runs the test suite",
)


def _mkdocs_config() -> dict:
    # mkdocs.yml may hold Python tags (!!python/name:...) for Markdown extensions.
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.Loader)  # noqa: S506


def _nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


class _Fetches(html.parser.HTMLParser):
    """Collects every URL a browser would fetch to show a page (not the links it shows)."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source") and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href") and attrs.get("rel") != "canonical":
            self.urls.append(attrs["href"])


def _offline() -> list[str]:
    """A command prefix that cuts the network (a new, empty network namespace), where the
    machine allows one (root, as here and in CI); else none."""
    if shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return ["unshare", "-n"] if probe.returncode == 0 else []


def test_site_builds_strictly_and_fetches_nothing_from_the_network(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    done = subprocess.run(
        _offline() + build,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    pages = list(site.rglob("*.html"))
    assert (site / "reference" / "flags" / "index.html").is_file()
    assert (site / "gallery" / "index.html").is_file()
    remote = []
    for page in pages:
        parser = _Fetches()
        parser.feed(page.read_text(encoding="utf-8"))
        remote += [(page.name, url) for url in parser.urls if "://" in url or url.startswith("//")]
    assert not remote, remote
    for css in site.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        assert "fonts.googleapis" not in text and "@import url(http" not in text, css


def test_flag_reference_is_current():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "flag_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_flag_reference_names_every_setting_with_its_help():
    page = (DOCS / "reference" / "flags.md").read_text()
    for settings in (Config, VideoSettings, TrainSettings):
        for field in dataclasses.fields(settings):
            assert f"| `--{field.name}` |" in page, field.name
            first_words = " ".join(field.metadata["help"].split()[:4])
            assert first_words in page, field.name


def test_flag_reference_check_fails_when_stale(tmp_path):
    # A copy of the tree whose page lost a line: --check must say so and exit non-zero.
    copy = tmp_path / "repo"
    for part in ("nst_tf", "scripts", "docs/reference"):
        (copy / part).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", str(ROOT / part), str(copy / part)], check=True)
    page = copy / "docs" / "reference" / "flags.md"
    lines = page.read_text().splitlines(keepends=True)
    page.write_text("".join(line for line in lines if "`--size`" not in line))
    done = subprocess.run(
        [sys.executable, str(copy / "scripts" / "flag_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(copy)),
    )
    assert done.returncode == 1
    assert "stale" in done.stderr


def test_readme_is_short_and_keeps_the_quick_start():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for command in QUICK_START:
        assert command in readme, command


@pytest.mark.parametrize("page", sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")))
def test_every_docs_page_is_in_the_nav(page):
    assert page in _nav_pages(_mkdocs_config()["nav"])


# Flags of other programs the pages quote (absl's own, ray start, saved_model_cli, pip, the
# benchmark scripts, scripts/quality_report.py and scripts/flag_reference.py), and "--flags"
# as a word.
_OTHER_PROGRAMS_FLAGS = {
    "--flagfile",
    "--help",
    "--helpfull",
    "--flags",
    "--head",
    "--port",
    "--address",
    "--dir",
    "--all",
    "--no-deps",
    "--tiling",
    "--profile",
    "--study",
    "--check",
}


def test_every_flag_the_pages_name_exists():
    # The usage pages explain flags in prose and tables of their own; a renamed or removed
    # flag must not live on there. (The lab log is history and keeps old names.)
    known = set(re.findall(r"`(--[a-z0-9_]+)`", (DOCS / "reference" / "flags.md").read_text()))
    pages = [ROOT / "README.md"] + [
        page for page in DOCS.rglob("*.md") if not page.name.startswith("benchmarks")
    ]
    unknown = {
        (page.name, flag)
        for page in pages
        for flag in re.findall(r"--[a-z][a-z0-9_-]*", page.read_text())
        if flag not in known | _OTHER_PROGRAMS_FLAGS
    }
    assert not unknown, sorted(unknown)


def test_readme_links_and_picture_point_at_files():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [t.split("#")[0] for t in targets if "://" not in t]
    assert any(t.endswith((".jpg", ".png")) for t in local)
    missing = [t for t in local if not (ROOT / t).is_file()]
    assert not missing, missing


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def test_defaults_in_the_usage_tables_agree_with_the_flags():
    # The usage pages' tables say a flag's default in a column of their own; where it is a
    # literal (a number or `word`) it must be the flag's default in the generated reference
    # (which leaves computed defaults, shown as —, unchecked).
    reference = {}
    for name, default in re.findall(
        r"^\| `(--[a-z0-9_]+)` \| (.*?) \|", (DOCS / "reference" / "flags.md").read_text(), re.M
    ):
        reference.setdefault(name, set()).add(default.strip("`"))
    checked, wrong = 0, []
    for page in DOCS.rglob("*.md"):
        in_defaults_table = False
        for line in page.read_text().splitlines():
            if not line.startswith("|"):
                in_defaults_table = False
                continue
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if cells[:2] == ["flag", "default"]:
                in_defaults_table = True
                continue
            flag = re.fullmatch(r"`(--[a-z0-9_]+)`", cells[0])
            if not (in_defaults_table and flag and len(cells) > 2):
                continue
            said = cells[1].strip("`") if re.fullmatch(r"`[^`=]+`|[0-9.e+-]+", cells[1]) else None
            known = reference.get(flag.group(1), set()) - {"—"}
            if said is None or not known:
                continue
            checked += 1
            if not any(said == d or _number(said) == _number(d) is not None for d in known):
                wrong.append((page.name, flag.group(1), said, sorted(known)))
    assert not wrong, wrong
    assert checked >= 8  # the tables of prints, video and batch


def _architecture_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Architecture")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_architecture_names_every_module_over_400_lines():
    section = _architecture_section()
    long_modules = sorted(
        path.relative_to(ROOT / "nst_tf").as_posix()
        for path in (ROOT / "nst_tf").rglob("*.py")
        if len(path.read_text().splitlines()) > 400
    )
    unnamed = [name for name in long_modules if f"`{name}`" not in section]
    assert not unnamed, f"name these modules and why they are long in the README: {unnamed}"
    named = set(re.findall(r"`([a-z_]+/[a-z_]+\.py)`", section))
    assert named <= set(long_modules) | {
        p.relative_to(ROOT / "nst_tf").as_posix() for p in (ROOT / "nst_tf").rglob("*.py")
    }, "the architecture section names a module that does not exist"
