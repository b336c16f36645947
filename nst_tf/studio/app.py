"""The studio's page and API, built with Gradio over a Studio (nst_tf.studio.engine).

The page: content and style uploads, blend weights, preset, strength, size and an
advanced panel generated from the settings' descriptions; Run, Stop and Resume; a live
preview with step, scale and ETA; the result in three formats with its flag file; and
the session's history. Runs share one queue of concurrency 1 (`stylize`), the page's and
the API's alike, so one job runs at a time and the others see their place in the queue.

The API (the same jobs without the browser; see docs/usage/studio.md): `/stylize`
(content, styles, settings as JSON) streams the job's state and ends with the result,
`/stop` and `/resume` take a job id, `/jobs` lists the session's results.
"""

from __future__ import annotations

import dataclasses
import json
import time

import gradio as gr

from nst_tf.errors import NstError
from nst_tf.settings.config import setting_fields
from nst_tf.studio import controls as studio_controls
from nst_tf.studio.engine import DONE, FORMATS, NO_MODEL, RUNNING, Job, Studio

# How often a page following a job looks at it.
POLL_SECONDS = 0.2
# The queue every run goes through, page and API alike.
QUEUE = "stylize"
# Sizes the size control offers (any value can be typed in).
SIZE_RANGE = (32, 4096)

_CSS = """
#progress { min-height: 2.5em; }
#message { color: var(--error-text-color); }
"""


def _field(name: str) -> dataclasses.Field | None:
    return next((f for f in setting_fields() if f.name == name), None)


def _presets() -> list[str]:
    """The presets shipped with the package (none before nst_tf.settings.presets)."""
    try:
        from nst_tf.settings import presets  # pylint: disable=import-outside-toplevel
    except ImportError:
        return []
    return list(getattr(presets, "PRESETS", {}))


def _control(control: studio_controls.Control):
    """A Gradio component for one setting, labelled and explained by its description."""
    common = {"label": control.name, "info": control.help, "elem_id": f"setting-{control.name}"}
    if control.kind == "choice":
        return gr.Dropdown(list(control.choices), value=control.default, **common)
    if control.kind == "bool":
        return gr.Checkbox(value=control.default, **common)
    if control.kind in ("int", "float"):
        return gr.Number(
            value=control.default, precision=0 if control.kind == "int" else None, **common
        )
    return gr.Textbox(value=str(control.default), **common)


def _job_view(job: Job) -> dict:
    """The JSON an API client gets for a job."""
    return {
        "job": job.id,
        "state": job.state,
        "step": job.step,
        "total": job.total,
        "scale": job.scale + 1,
        "scales": job.scales,
        "size": job.size,
        "eta": job.eta,
        "message": job.message,
        "progress": job.progress_line(),
        "files": {label: path for label, path in job.files.items()},
    }


def _refused(message: str) -> gr.Error:
    """The one-line error an API client gets (not a traceback in the studio's terminal)."""
    return gr.Error(message, print_exception=False)


def _caption(job: Job) -> str:
    height, width = job.image.shape[:2]
    return f"{job.id}: {job.state}, {width}x{height}, step {job.step}/{job.total}"


def build(studio: Studio) -> gr.Blocks:
    """The studio's Blocks (page and API) over a Studio.

    Args:
        studio: The jobs every event goes through.

    Returns:
        The Blocks, not launched (the queue is set up).
    """
    presets = _presets()
    advanced = studio_controls.advanced_controls()
    with gr.Blocks(title="nst_tf studio", analytics_enabled=False) as demo:
        job_id = gr.State(None)
        gr.Markdown("## nst_tf studio — neural style transfer")
        with gr.Row():
            with gr.Column(scale=1):
                content = gr.File(label="Content photo", file_types=["image"], elem_id="content")
                styles = gr.File(
                    label="Style images",
                    file_count="multiple",
                    file_types=["image"],
                    elem_id="style",
                )
                blend = gr.Textbox(
                    label="Style blend weights",
                    info=_field("style_blend_weights").metadata["help"],
                    placeholder="equal",
                    elem_id="blend",
                )
                model = gr.Dropdown(
                    [NO_MODEL, *studio.models],
                    value=NO_MODEL,
                    label="Trained model",
                    info="A trained stylizer gives its result at once (one pass over the "
                    "photo); its style is the one it was trained on, so the style images, "
                    "strength and advanced settings do not apply.",
                    elem_id="model",
                    visible=bool(studio.models),
                )
                preset = gr.Dropdown(
                    ["(none)", *presets],
                    value="(none)",
                    label="Preset",
                    elem_id="preset",
                    visible=bool(presets),
                )
                strength_field = _field("style_strength")
                strength = gr.Slider(
                    0.0,
                    3.0,
                    # 1 is the default balance: the run keeps --style_weight (the dial
                    # calibrates only when moved away from 1).
                    value=1.0,
                    step=0.05,
                    label="Style strength",
                    info=(
                        "1 keeps the default style weight; other values set "
                        "--style_strength (0 = the photo, above 1 stronger)"
                    ),
                    elem_id="strength",
                    visible=strength_field is not None,
                )
                size = gr.Number(
                    value=_field("size").default,
                    precision=0,
                    minimum=1,
                    label="Size",
                    info=_field("size").metadata["help"],
                    elem_id="size",
                )
                with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                    settings = {control.name: _control(control) for control in advanced}
                with gr.Row():
                    run = gr.Button("Run", variant="primary", elem_id="run")
                    stop = gr.Button("Stop", variant="stop", elem_id="stop")
                    resume = gr.Button("Resume", elem_id="resume")
            with gr.Column(scale=1):
                message = gr.Markdown(elem_id="message")
                progress = gr.Markdown("Upload a photo and a style, then Run.", elem_id="progress")
                preview = gr.Image(
                    label="Live preview",
                    type="numpy",
                    format="png",
                    interactive=False,
                    height=320,
                    elem_id="preview",
                )
                result = gr.Image(
                    label="Result", type="filepath", interactive=False, height=320, elem_id="result"
                )
                downloads = gr.File(
                    label="Download (PNG, JPEG, 16-bit PNG, flag file)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )
        gr.Markdown("### This session's results")
        history = gr.Gallery(
            label="History",
            columns=6,
            height=220,
            object_fit="contain",
            fit_columns=False,
            allow_preview=False,
            elem_id="history",
        )
        with gr.Row():
            history_settings = gr.Code(
                label="Settings (a flag file for nst-tf --flagfile)", elem_id="history_settings"
            )
            history_files = gr.File(
                label="Its files", file_count="multiple", interactive=False, elem_id="history_files"
            )
        # The API's own inputs and outputs: hidden from the page.
        with gr.Column(visible=False):
            api_content = gr.File(label="content")
            api_styles = gr.File(label="styles", file_count="multiple")
            api_settings = gr.Textbox(label="settings", value="{}")
            api_job = gr.Number(label="job", precision=0)
            api_result = gr.File(label="result")
            api_info = gr.JSON(label="info")
            api_button = gr.Button("api")

        def history_items():
            return [(job.files["PNG"], _caption(job)) for job in studio.history()]

        def follow(job: Job):
            """Yields the page's view of a job until it is finished."""
            seen = None
            while True:
                state = (job.state, job.step, job.preview_count)
                if state != seen:
                    seen = state
                    update = {job_id: job.id, progress: job.progress_line(), message: ""}
                    if job.preview is not None and job.state == RUNNING:
                        update[preview] = job.preview
                    yield update
                if job.finished:
                    break
                time.sleep(POLL_SECONDS)
            end = {job_id: job.id, progress: job.progress_line(), history: history_items()}
            if job.files:
                end[preview] = job.preview
                end[result] = job.files["PNG"]
                end[downloads] = [job.files[label] for label, *_ in FORMATS] + [job.files["flags"]]
            if job.state != DONE:
                end[message] = job.message
            yield end

        def values_of(data: dict) -> dict:
            values = {name: data[component] for name, component in settings.items()}
            values["size"] = data[size]
            if data[model] != NO_MODEL:
                return {"model": data[model], "size": data[size]}
            values["style_blend_weights"] = data[blend]
            if strength_field is not None and data[strength] not in (None, 1.0):
                values["style_strength"] = data[strength]
            return values

        def start(data: dict, request: gr.Request):
            styles_given = data[styles] or []
            try:
                job = studio.submit(
                    data[content], list(styles_given), values_of(data), request.session_hash
                )
            except NstError as err:
                yield {message: f"Cannot run: {err}", progress: "Nothing was started."}
                return
            yield from follow(job)

        def do_resume(current, request: gr.Request):
            del request
            try:
                job = studio.resume(current)
            except NstError as err:
                yield {message: f"Cannot resume: {err}"}
                return
            yield from follow(job)

        def do_stop(current):
            if current is None:
                return "Nothing is running."
            try:
                job = studio.stop(current)
            except NstError as err:
                return f"Cannot stop: {err}"
            return "" if job.finished else "Stopping after this step..."

        def check_upload(file):
            """A bad upload is dropped at once, with the reason in the page."""
            from nst_tf.studio.engine import check_image  # pylint: disable=C0415

            several = isinstance(file, list)
            kept, problems = [], []
            for path in file if several else [file] if file else []:
                try:
                    check_image(path)
                    kept.append(path)
                except NstError as err:
                    problems.append(str(err))
            if not problems:
                return gr.update(), ""
            value = kept if several else None
            return value, "Not usable (removed): " + "; ".join(problems)

        def show_history(current, event: gr.SelectData):
            """A result of the history: its settings and files; Resume now continues it."""
            jobs = studio.history()
            if not 0 <= event.index < len(jobs):
                return current, "", None, ""
            job = jobs[event.index]
            return job.id, job.settings_text(), list(job.files.values()), job.progress_line()

        outputs = [job_id, progress, preview, result, downloads, message, history]
        inputs = {content, styles, blend, model, preset, strength, size, *settings.values()}
        queued = {"concurrency_limit": 1, "concurrency_id": QUEUE}
        # The queue's place and the timer show on the progress line, not over every output.
        page = {"api_visibility": "undocumented", "show_progress_on": progress, **queued}
        run.click(start, inputs, outputs, **page)
        resume.click(do_resume, job_id, outputs, **page)
        stop.click(do_stop, job_id, message, queue=False, api_visibility="undocumented")
        for upload in (content, styles):
            upload.upload(
                check_upload, upload, [upload, message], queue=False, api_visibility="private"
            )
        history.select(
            show_history,
            job_id,
            [job_id, history_settings, history_files, progress],
            api_visibility="private",
        )
        demo.load(history_items, None, history, api_visibility="private")

        def closed(request: gr.Request):
            studio.stop_session(request.session_hash, "the browser was closed")

        demo.unload(closed)

        # --- the API ----------------------------------------------------------------

        def api_stylize(content_file, style_files, settings_json, request: gr.Request):
            """Runs a job and streams its state; the last message carries the result."""
            try:
                values = json.loads(settings_json or "{}")
                if not isinstance(values, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                raise _refused(
                    f"settings must be a JSON object of setting values ({err})"
                ) from None
            try:
                job = studio.submit(
                    content_file, list(style_files or []), values, request.session_hash
                )
            except NstError as err:
                raise _refused(str(err)) from None
            seen = None
            while not job.finished:
                if (job.state, job.step) != seen:
                    seen = (job.state, job.step)
                    yield None, _job_view(job)
                time.sleep(POLL_SECONDS)
            yield job.files.get("PNG"), _job_view(job)

        def api_stop(job):
            try:
                return _job_view(studio.stop(job))
            except NstError as err:
                raise _refused(str(err)) from None

        def api_resume(job):
            try:
                job = studio.resume(job)
            except NstError as err:
                raise _refused(str(err)) from None
            while not job.finished:
                time.sleep(POLL_SECONDS)
            return job.files.get("PNG"), _job_view(job)

        def api_jobs():
            return [_job_view(job) for job in studio.jobs.values()]

        api_button.click(
            api_stylize,
            [api_content, api_styles, api_settings],
            [api_result, api_info],
            api_name="stylize",
            **queued,
        )
        api_button.click(api_stop, api_job, api_info, api_name="stop", queue=False)
        api_button.click(api_resume, api_job, [api_result, api_info], api_name="resume", **queued)
        api_button.click(api_jobs, None, api_info, api_name="jobs", queue=False)
    demo.queue(default_concurrency_limit=1)
    return demo


THEME = gr.themes.Default(
    # System fonts only: the page fetches nothing from outside the studio.
    font=["system-ui", "sans-serif"],
    font_mono=["ui-monospace", "monospace"],
)
CSS = _CSS
