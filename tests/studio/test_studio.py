"""nst-tf-studio in a real browser: headless Chromium (Debian's) driven by Playwright.

One studio serves the whole file, started on a free loopback port in a child process
and ended by its pid at the end. The runs are 64 px and a few dozen steps: the point is
the page's behaviour (preview, Stop, Resume, downloads, queue, mistakes), not the art.
"""

from __future__ import annotations

import re
import signal

import numpy as np
import png as png_reader
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from tests.studio_server import (
    CHROMIUM_ARGS,
    Server,
    chromium_path,
    inputs,
    objective_total,
    wait_for,
)

# The main run: two scales (45, 64 px), Adam (which never stops early, so Stop
# always lands mid-run); 64 px is the size the downloads must have.
MAIN = {"size": "64", "min_size": "45", "coarse_steps": "8", "steps": "40"}
# A quick run, and one (Adam) that outlasts the test's waiting, for the closed browser.
SHORT = {"size": "48", "min_size": "0", "steps": "30"}
LONG = {"size": "48", "min_size": "0", "steps": "1000"}


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studio")
    server = Server(tmp)
    yield server
    if server.process.poll() is None:
        server.end(signal.SIGTERM)


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=path, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return inputs(tmp_path_factory.mktemp("user_files"))


class Page:
    """A tab on the studio that records every request it makes."""

    def __init__(self, browser, studio: Server, downloads=False):
        self.context = browser.new_context(accept_downloads=downloads)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(studio.url)
        self.page.wait_for_selector("#run")

    def text(self, elem_id: str) -> str:
        return self.page.inner_text(f"#{elem_id}")

    def upload(self, content, styles) -> None:
        self.page.set_input_files("#content input[type=file]", str(content))
        self.page.set_input_files("#style input[type=file]", [str(s) for s in styles])

    def settings(self, values: dict) -> None:
        """Fills the size and the advanced panel's number fields and dropdowns."""
        self.page.fill("#size input", values["size"])
        if not self.page.is_visible("#setting-steps"):
            self.page.click("#advanced button")
        for name, value in values.items():
            if name == "size":
                continue
            field = self.page.locator(f"#setting-{name} input").first
            field.fill(value)
            field.press("Enter" if name == "optimizer" else "Tab")

    def choose(self, name: str, option: str) -> None:
        self.page.click(f"#setting-{name} input")
        self.page.get_by_role("option", name=option, exact=True).click()

    def preview_src(self) -> str | None:
        image = self.page.locator("#preview img")
        return image.first.get_attribute("src") if image.count() else None

    def close(self) -> None:
        self.context.close()


def _only_loopback(requests: list[str], studio: Server) -> None:
    outside = [url for url in requests if not url.startswith(studio.url + "/")]
    assert requests and not outside, f"the page fetched from elsewhere: {outside[:5]}"


def test_listens_on_loopback_only(studio):
    listening = studio.listening()
    assert listening, "the studio listens on no socket"
    assert all(address == "127.0.0.1" for address, _ in listening), listening
    assert studio.work.parent == studio.parent and studio.work.is_dir()


def test_run_preview_stop_resume_download(studio, browser, files, tmp_path):
    content, style, style2 = files
    before = sorted(p.name for p in content.parent.iterdir())
    tab = Page(browser, studio, downloads=True)
    tab.upload(content, [style, style2])
    tab.settings(MAIN)
    tab.choose("optimizer", "adam")
    tab.page.click("#run")

    # The preview changes at least twice while the run goes on, with step, scale, ETA.
    seen, lines = [], []

    def previews():
        src, line = tab.preview_src(), tab.text("progress")
        if "step" in line and "ETA" in line:
            lines.append(line)
            if src and (not seen or seen[-1] != src):
                seen.append(src)
        return len(seen) >= 3

    wait_for(previews, 90, "three previews during the run", every=0.1)
    tab.page.click("#stop")
    stopped = wait_for(
        lambda: (line := tab.text("progress")) and "stopped" in line and line, 60, "the stop"
    )
    assert re.search(r"scale [12]/2", " ".join(lines)), lines
    assert any(re.search(r"ETA \d+:\d\d", line) for line in lines), lines
    step, total = map(int, re.search(r"step (\d+)/(\d+)", stopped).groups())
    assert 0 < step < total == 8 + 40, stopped
    wait_for(lambda: tab.page.locator("#result img").count(), 20, "the stopped run's result")

    tab.page.click("#resume")
    done = wait_for(lambda: (line := tab.text("progress")) and "done" in line and line, 90, "done")
    assert f"step {total}/{total}" in done, done

    # Downloads: PNG, JPEG and 16-bit PNG of the chosen size, and the flag file.
    links = tab.page.locator("#downloads a")
    wait_for(lambda: links.count() >= 4, 20, "the four downloads")
    saved = {}
    for index in range(links.count()):
        with tab.page.expect_download() as info:
            links.nth(index).click()
        name = info.value.suggested_filename
        saved[name] = tmp_path / name
        info.value.save_as(saved[name])
    png = saved["content-style-1.png"]
    with Image.open(png) as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.size == (64, 48)
        result = np.asarray(image, np.float32)
    with Image.open(saved["content-style-1.jpg"]) as image:
        assert image.format == "JPEG" and image.size == (64, 48)
    width, height, rows, info = png_reader.Reader(
        filename=saved["content-style-1-16bit.png"]
    ).read()
    deep = np.array(list(rows), np.uint16)
    assert (width, height, info["bitdepth"], info["planes"]) == (64, 48, 16, 3)
    assert np.abs(deep.reshape(48, 64, 3) / 257.0 - result).max() <= 1.0
    flags = saved["content-style-1.flags"].read_text()
    assert "--content=content.png" in flags and "--style=style.png,style2.png" in flags
    assert "--size=64" in flags and "--optimizer=adam" in flags and "--steps=40" in flags

    # It scores better than the content photo on the project's objective.
    settings = {"size": 64, "optimizer": "adam"}
    with Image.open(content) as photo:
        start = np.asarray(photo.convert("RGB").resize((64, 48), Image.BICUBIC), np.float32)
    styles = [style, style2]
    assert objective_total(result, content, styles, **settings) < 0.9 * objective_total(
        start, content, styles, **settings
    )
    _only_loopback(tab.requests, studio)
    tab.close()
    # Nothing was written beside the user's files; the uploads are in the work folder.
    assert sorted(p.name for p in content.parent.iterdir()) == before
    uploaded = list(studio.work.rglob("style2.png"))
    assert uploaded and all(studio.work in path.parents for path in uploaded)


def test_bad_inputs_say_so_in_the_page(studio, browser, files, tmp_path):
    content, style, _ = files
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a picture")
    huge = tmp_path / "huge.png"
    Image.new("L", (10000, 9000)).save(huge)  # 90 Mpx: more than the decoder allows
    tab = Page(browser, studio)

    # A non-image is refused at once and dropped; a run without a photo says so.
    tab.page.set_input_files("#content input[type=file]", str(not_image))
    wait_for(lambda: "notes.png is not an image" in tab.text("message"), 20, "non-image")
    tab.page.set_input_files("#style input[type=file]", [str(style), str(not_image)])
    wait_for(lambda: "removed): notes.png" in tab.text("message"), 20, "the style refused")
    tab.page.click("#run")
    wait_for(lambda: "Cannot run: no content photo" in tab.text("message"), 30, "the refusal")
    listed = re.sub(r"\s+", "", tab.text("style"))
    assert "notes.png" not in listed and "style.png" in listed, listed

    tab.page.set_input_files("#content input[type=file]", str(huge))
    wait_for(lambda: "huge.png has more than" in tab.text("message"), 30, "too many pixels")

    tab.page.set_input_files("#content input[type=file]", str(content))
    wait_for(lambda: tab.text("message").strip() == "", 20, "the message cleared")
    tab.page.fill("#size input", "16000")
    tab.page.click("#run")
    wait_for(
        lambda: re.search(
            r"Cannot run: --size=16000: .* needs at least [\d.]+ GB", tab.text("message")
        ),
        30,
        "the machine's limit",
    )
    assert "Nothing was started" in tab.text("progress")
    tab.close()


def test_two_tabs_queue_then_a_closed_tab_stops_its_run(studio, browser, files):
    content, style, _ = files
    first, second = Page(browser, studio), Page(browser, studio)
    for tab, settings in ((first, SHORT), (second, LONG)):
        tab.upload(content, [style])
        tab.settings(settings)
    second.choose("optimizer", "adam")
    first.page.click("#run")
    wait_for(lambda: "job" in first.text("progress"), 30, "the first job")
    second.page.click("#run")
    # The second waits in the queue, and says where it stands, until the first is done.
    wait_for(lambda: re.search(r"queue: ?\d+/\d+", second.text("progress")), 30, "its place")
    wait_for(lambda: "done" in first.text("progress"), 90, "the first job's end")
    first_id = int(re.search(r"job (\d+)", first.text("progress"))[1])

    # The second tab is closed during its run: the run stops (its image so far is kept
    # in the history) and nothing is left running.
    wait_for(lambda: "ETA" in second.text("progress"), 60, "the second job running")
    assert f"job {first_id + 1}:" in second.text("progress")
    second.close()
    reopened = Page(browser, studio)
    caption = f"{first_id + 1}: stopped"

    def kept():
        reopened.page.reload()
        reopened.page.wait_for_selector("#history")
        return caption in reopened.text("history")

    try:
        wait_for(kept, 60, "the closed tab's run stopped and kept", every=2)
    except AssertionError as err:
        shown = f"{reopened.text('history')!r} {studio.stderr()[-800:]}"
        raise AssertionError(f"{err}: {shown}") from None
    # Chosen from the history, it resumes from where it stopped (and stops again).
    reopened.page.locator("#history .thumbnail-item").first.click()
    chosen = re.compile(rf"job {first_id + 1} stopped: step (\d+)/1000")
    try:
        found = wait_for(lambda: chosen.search(reopened.text("progress")), 20, "it")
    except AssertionError as err:
        raise AssertionError(f"{err}: {reopened.text('progress')!r}") from None
    stopped_at = int(found[1])
    reopened.page.click("#resume")

    def beyond():
        found = re.search(r"step (\d+)/1000 .* ETA", reopened.text("progress"))
        return found and int(found[1]) > stopped_at

    wait_for(beyond, 90, "the resumed run past its stop")
    reopened.page.click("#stop")
    wait_for(lambda: "stopped" in reopened.text("progress"), 60, "the second stop")
    first.close()
    reopened.close()


def test_ended_by_pid_leaves_nothing(studio):
    code = studio.end(signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert not studio.work.exists(), "the work folder outlived the studio"
    assert list(studio.parent.iterdir()) == []
    last = studio.stderr().strip().splitlines()[-1]
    assert last.startswith("nst-tf-studio: stopped by SIGTERM"), last
    assert "Traceback" not in studio.stderr()
