"""Screenshots of nst-tf-studio (idle, running with a preview, done) for docs/images/.

Starts the studio on a free loopback port, drives Debian's headless Chromium with
Playwright, as the tests do, through one run of the built-in samples, and ends the studio
by its pid.

    .venv/bin/python scripts/studio_screenshots.py [--size=192] [--steps=80]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "docs", "images")
SAMPLES = os.path.join(ROOT, "nst_tf", "samples")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise SystemExit(f"studio_screenshots: timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as work:
        studio = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from nst_tf.commands.studio import main; main()",
                "--port=0",
                f"--work_dir={work}",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            url = re.search(r"(http://127\.0\.0\.1:\d+)/", studio.stdout.readline())[1]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1280, "height": 1250})
                page.goto(url)
                page.wait_for_selector("#run")
                page.set_input_files(
                    "#content input[type=file]", os.path.join(SAMPLES, "content.png")
                )
                page.set_input_files(
                    "#style input[type=file]",
                    [os.path.join(SAMPLES, "style.png"), os.path.join(SAMPLES, "style2.png")],
                )
                page.fill("#blend textarea, #blend input", "2,1")
                page.fill("#size input", str(args.size))
                page.click("#advanced button")
                page.fill("#setting-steps input", str(args.steps))
                page.press("#setting-steps input", "Tab")
                page.click("#advanced button")
                time.sleep(1)
                shot = {"type": "jpeg", "quality": 85}
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=os.path.join(IMAGES, "studio_idle.jpg"), **shot)
                page.click("#run")
                _wait(
                    lambda: (m := re.search(r"step (\d+)/", page.inner_text("#progress")))
                    and int(m[1]) >= args.steps // 3,
                    1200,
                    "a third of the run",
                )
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=os.path.join(IMAGES, "studio_running.jpg"), **shot)
                _wait(lambda: "done" in page.inner_text("#progress"), 3600, "the end")
                time.sleep(2)
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=os.path.join(IMAGES, "studio_done.jpg"), **shot)
                browser.close()
        finally:
            os.kill(studio.pid, signal.SIGTERM)
            studio.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
