"""Starting nst-tf-studio in a child process on a free loopback port, and ending it by pid."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

STUDIO = [sys.executable, "-c", "from nst_tf.commands.studio import main; main()"]
SAMPLES = Path(__file__).resolve().parents[1] / "nst_tf" / "samples"
CHROMIUM = "/usr/bin/chromium"
# Chromium quiet on a closed network: no updates, no sync, no background requests.
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
# Small, quick runs: the arithmetic of a 64 px picture is what the tests need.
QUICK = {"size": 64, "min_size": 0, "steps": 12, "optimizer": "adam"}


class Server:
    """A studio in a child process; `url`, `pid` and `work` (its work folder) once up."""

    def __init__(self, tmp: Path, *args: str):
        self.parent = tmp / "work_parent"
        self.parent.mkdir(exist_ok=True)
        self.stderr_path = tmp / "studio.stderr"
        self.process = subprocess.Popen(
            [*STUDIO, "--port=0", f"--work_dir={self.parent}", *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("w"),
            text=True,
            cwd=tmp,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        line = self.process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/ \(pid (\d+), work folder (.+?)\)", line)
        if not match:
            self.process.kill()
            raise AssertionError(f"the studio did not start: {line!r} {self.stderr()}")
        self.url, self.pid, self.work = match[1], int(match[2]), Path(match[3])

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def listening(self) -> list[tuple[str, int]]:
        """The (address, port) of every socket the studio listens on."""
        return [
            (conn.laddr.ip, conn.laddr.port)
            for conn in psutil.Process(self.pid).net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        ]

    def end(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Sends `signum` to the studio's pid and waits; fails if a child outlives it."""
        children = psutil.Process(self.pid).children(recursive=True)
        os.kill(self.pid, signum)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the studio did not stop on {signum}: {self.stderr()}") from None
        alive = [child.pid for child in children if child.is_running()]
        assert not alive, f"the studio left processes {alive}"
        return code


def chromium_path() -> str:
    """Debian's chromium; a missing browser fails the tests with the way to install it."""
    if shutil.which(CHROMIUM) is None:
        raise AssertionError(
            f"{CHROMIUM} is missing: the studio's tests drive a real browser; install it "
            "with `sudo apt-get install -y chromium` (scripts/setup.sh test does)"
        )
    return CHROMIUM


def inputs(folder: Path) -> tuple[Path, Path, Path]:
    """The shipped samples, made small, as a user's files: content and two styles."""
    folder.mkdir(exist_ok=True)
    paths = []
    for name, size in (("content", (96, 72)), ("style", (80, 80)), ("style2", (80, 80))):
        path = folder / f"{name}.png"
        Image.open(SAMPLES / f"{name}.png").convert("RGB").resize(size).save(path)
        paths.append(path)
    return tuple(paths)


def objective_total(image: np.ndarray, content: Path, styles: list[Path], **settings) -> float:
    """The project's objective (weighted total) of an image against the inputs, at the
    image's size, with equal blend weights."""
    from nst_tf.engine.stylizer import Stylizer
    from nst_tf.io.images import load_image
    from nst_tf.settings.config import Config

    config = Config(min_size=0, **settings)
    stylizer = Stylizer(config)
    inputs_ = stylizer.prepare(load_image(str(content)), [load_image(str(s)) for s in styles])
    targets = stylizer.targets(inputs_, max(image.shape[:2]))
    return stylizer.evaluate(image[None].astype(np.float32), targets)["total"]


def wait_for(condition, timeout: float, what: str, every: float = 0.2):
    """Polls `condition` until it returns something true; fails naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
