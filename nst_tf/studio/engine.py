"""The studio's jobs, without any web library: a work folder, one run at a time, a live
preview, Stop and Resume, exports and a flag file per result.

The page (nst_tf.studio.app) and its API both go through a Studio; a script can drive
one directly. A job is one nst-tf run (nst_tf.commands.run.stylize) of uploaded files in
the studio's own work folder, with a step callback that keeps the newest preview and
stops the run at a step boundary when asked: the run then saves its image and a
checkpoint, exactly as nst-tf does on Ctrl-C, and Resume continues that checkpoint.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import secrets
import shutil
import tempfile
import threading
import time

import numpy as np
from absl import logging
from PIL import Image

from nst_tf.commands import run
from nst_tf.commands.preflight import load_inputs
from nst_tf.engine.memory import PlanSettings, check_memory
from nst_tf.errors import ConfigError, ImageError, Interrupted, ModelError, NstError
from nst_tf.io import images
from nst_tf.io.model_dir import is_model_dir, read_model_metadata
from nst_tf.io.paths import shown
from nst_tf.settings.config import RECIPE, Config, validate
from nst_tf.studio.controls import config_values, flag_lines

# A new preview at most this often: often enough to watch, rarely enough that encoding
# it costs nothing next to a step.
PREVIEW_SECONDS = 0.5
# Previews are shown at most this large (the result keeps its full size).
PREVIEW_SIDE = 512
# The file that marks a folder as a studio's work folder: only such a folder is removed.
MARKER = ".nst-tf-studio"
# The settings a flag file records besides the recipe: they decide the arithmetic.
FLAGFILE_RUNTIME = ("precision", "xla", "deterministic")
# The download formats: (label, file name suffix, bit depth).
FORMATS = (("PNG", ".png", 8), ("JPEG", ".jpg", 8), ("16-bit PNG", "-16bit.png", 16))

QUEUED, RUNNING, STOPPED, DONE, FAILED = "queued", "running", "stopped", "done", "failed"
# A trained model's one pass over the whole photo is held to this size (its activations
# grow with the pixels; 2048 px at the default width peaks near 5 GB).
MODEL_MAX_SIZE = 2048
# The control value that means "optimise, no trained model".
NO_MODEL = "(none: optimise)"


def find_models(entries: list[str]) -> dict[str, str]:
    """Trained models (MODEL_DIRs) by name, from folders that are models or hold them.

    Args:
        entries: Paths, each a MODEL_DIR or a folder of MODEL_DIRs.

    Returns:
        {name: path}, the name being the folder's name (made unique with -2, -3...).

    Raises:
        ModelError: an entry is not a folder, holds no model, or a model's description is
            broken (read as data: nothing is loaded or run).
    """
    models = {}
    for entry in entries:
        if is_model_dir(entry):
            found = [entry]
        elif os.path.isdir(entry):
            found = sorted(
                os.path.join(entry, name)
                for name in os.listdir(entry)
                if is_model_dir(os.path.join(entry, name))
            )
        else:
            found = []
        if not found:
            raise ModelError(f"--models: {shown(entry)} is no trained model or folder of them")
        for path in found:
            read_model_metadata(path)
            name = base = os.path.basename(os.path.normpath(path))
            for count in itertools.count(2):
                if name not in models:
                    break
                name = f"{base}-{count}"
            models[name] = path
    return models


class WorkFolder:
    """The studio's own folder: uploads, runs and results, removed on exit.

    Uploads land in `cache` (the web library's upload and download cache), each run in
    `jobs/N`.

    Args:
        parent: Where to make it (None or "": the system's temporary folder). The studio
            never writes beside the user's files: everything goes into a fresh folder
            nst-tf-studio-XXXXXXXX, private to the user, marked as the studio's.
    """

    def __init__(self, parent: str | None = None):
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix="nst-tf-studio-", dir=parent or None)
        with open(os.path.join(self.path, MARKER), "w", encoding="utf-8") as marker:
            marker.write("nst-tf-studio work folder: removed when the studio stops\n")
        self.cache = os.path.join(self.path, "cache")
        self.jobs = os.path.join(self.path, "jobs")
        os.mkdir(self.cache)
        os.mkdir(self.jobs)

    def remove(self) -> None:
        """Deletes the folder (only if it still carries the studio's marker)."""
        if os.path.isfile(os.path.join(self.path, MARKER)):
            shutil.rmtree(self.path, ignore_errors=True)


def original_name(path: str) -> str:
    """The name a file was uploaded under (the upload keeps it as its last part)."""
    return os.path.basename(path)


def check_image(path: str) -> tuple[int, int]:
    """Reads an uploaded image whole, as a run would, and returns its (width, height).

    Raises:
        ImageError: not an image nst_tf reads, corrupt, or more pixels than the decoder
            allows; the message names the file as it was uploaded, not its copy here.
    """
    try:
        image = images.load_image(path, limit=PREVIEW_SIDE)
        with Image.open(path) as opened:
            size = opened.size
    except ImageError as err:
        raise ImageError(str(err).replace(shown(path), original_name(path))) from None
    del image
    return size


def _stem(path: str) -> str:
    return re.sub(r"[^\w.-]+", "_", os.path.splitext(original_name(path))[0])[:40] or "image"


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """An 8-bit copy at most PREVIEW_SIDE px on its longest side."""
    pil = Image.fromarray(images.to_uint8(image))
    if max(pil.size) > PREVIEW_SIDE:
        pil = images.resize_longest(pil, PREVIEW_SIDE)
    return np.asarray(pil)


@dataclasses.dataclass
class Job:
    """One stylisation in the studio, with what a page shows of it.

    Attributes:
        id: 1, 2, ... in the order of submission.
        session: Who started it (the page's session), for stopping it when that page
            goes away.
        config: The run's settings (inputs and outputs in the work folder).
        folder: The job's folder in the work folder.
        scales: How many scales the run has (known once it runs).
        state: queued, running, stopped, done or failed.
        step: Steps done; total: steps of the whole run.
        scale: The current scale (0 = coarsest); size: its long side in px.
        seconds_per_step, eta: The pace and the seconds left (None: not known yet).
        preview: The newest preview (8-bit), or None; preview_count: how many so far.
        image: The result (float32), or the image so far of a stopped run.
        files: Downloads by format label, and "flags": the flag file.
        message: What the page says about the job's end (stopped, failed...).
        stop_reason: Why a stop was asked (None: no stop asked).
        created: When it was submitted (time.time()).
        exports: How many times its result was exported (once per stop or end).
        model: The trained model that made it (None: an optimisation).
        kept: Its PNG's copy in the studio's results_dir (None: not kept).
    """

    id: int
    session: str
    config: Config
    folder: str
    scales: int = 1
    state: str = QUEUED
    step: int = 0
    total: int = 0
    scale: int = 0
    size: int = 0
    seconds_per_step: float = 0.0
    eta: float | None = None
    preview: np.ndarray | None = None
    preview_count: int = 0
    image: np.ndarray | None = None
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    message: str = ""
    stop_reason: str | None = None
    created: float = dataclasses.field(default_factory=time.time)
    exports: int = 0
    model: str | None = None
    kept: str | None = None
    thread: threading.Thread | None = dataclasses.field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        """Whether the job is not (or no longer) queued or running."""
        return self.state in (STOPPED, DONE, FAILED)

    @property
    def name(self) -> str:
        """The downloads' name: content-style-id (content-model-id for a trained model)."""
        other = self.model or _stem(self.config.style_paths()[0])
        return f"{_stem(self.config.content)}-{other}-{self.id}"

    def progress_line(self) -> str:
        """step 12/60 · scale 2/3, 45 px · 0.05 s/step · ETA 0:03 (or the job's state)."""
        if self.state == QUEUED:
            return f"job {self.id}: waiting for the run before it to finish"
        if self.state == FAILED:
            return f"job {self.id} failed: {self.message}"
        if self.state == RUNNING and not self.step:
            return f"job {self.id}: starting (loading the network, compiling the step)"
        if self.model is not None:
            return f"job {self.id} {self.state}: the trained model {self.model}. {self.message}"
        eta = "?" if self.eta is None else _clock(self.eta)
        line = (
            f"step {self.step}/{self.total} · scale {self.scale + 1}/{self.scales}, "
            f"{self.size} px · {self.seconds_per_step:.2f} s/step"
        )
        if self.state == RUNNING:
            return f"job {self.id}: {line} · ETA {eta}"
        return f"job {self.id} {self.state}: {line}. {self.message}".strip()

    def settings_text(self, state: str | None = None) -> str:
        """The flag file's text (what remakes the result with nst-tf --flagfile), for the
        job in `state` (default: its state now)."""
        state = state or self.state
        if self.model is not None:
            return (
                f"# nst-tf-studio job {self.id} ({state}): {original_name(self.config.content)} "
                f"through the trained model {self.model} at --size={self.config.size}\n"
                "# a trained model's result is not an optimisation: nst-tf does not remake it"
            )
        names = tuple(
            name
            for name, value in self.config.of(RECIPE).items()
            if name not in ("resume",) and value is not None
        )
        header = [
            f"# nst-tf-studio job {self.id} ({state}); remake it with "
            "nst-tf --flagfile=THIS_FILE beside the images named below",
        ]
        if state == STOPPED:
            header.append(f"# stopped at step {self.step} of {self.total}: nst-tf runs all")
        inputs = [
            f"--content={original_name(self.config.content)}",
            f"--style={','.join(original_name(p) for p in self.config.style_paths())}",
            f"--output={self.name}.png",
        ]
        values = {name: getattr(self.config, name) for name in names + FLAGFILE_RUNTIME}
        return "\n".join(header + inputs + flag_lines(values))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Watcher:
    """The job's step callback: progress, a preview every PREVIEW_SECONDS, and stops."""

    def __init__(self, job: Job, studio: Studio):
        self.job, self.studio = job, studio
        self.last = 0.0

    def __call__(self, progress) -> None:
        job = self.job
        if progress.step == progress.first_step:
            # TensorFlow is loaded by now (the run loads it, quietly, in this thread).
            from nst_tf.engine.stylizer import scale_sizes  # pylint: disable=C0415

            job.scales = len(scale_sizes(job.config.min_size, job.config.size))
        job.step, job.total = progress.step, progress.total_steps
        job.scale, job.size = progress.scale, progress.size
        job.seconds_per_step, job.eta = progress.seconds_per_step, progress.eta
        now = time.monotonic()
        new_scale = progress.step == 1 or progress.scale != getattr(self, "scale", None)
        if new_scale or now - self.last >= PREVIEW_SECONDS or progress.step == job.total:
            self.scale, self.last = progress.scale, now
            job.preview = _thumbnail(progress.image())
            job.preview_count += 1
        if job.stop_reason is not None:
            raise Interrupted(0, progress.step)


class Studio:
    """Jobs of one studio: submitted, run one at a time, stopped, resumed, exported.

    Args:
        work: The work folder everything is written to.
        defaults: Config arguments every job starts from (before its own values).
        models: Trained models offered for instant results, {name: MODEL_DIR}.
        results_dir: A folder of the user's where every result (finished or stopped) is
            also kept, as NAME-XXXXXX.png/.jpg/-16bit.png/.flags (XXXXXX: this studio's
            tag, so that no file of another session is overwritten); None: none.
    """

    def __init__(
        self,
        work: WorkFolder,
        defaults: dict | None = None,
        models: dict | None = None,
        results_dir: str | None = None,
    ):
        self.work = work
        self.results_dir = results_dir
        self.tag = secrets.token_hex(3)
        self.defaults = dict(defaults or {})
        self.models = dict(models or {})
        self._nets = {}
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._run_lock = threading.Lock()  # one run at a time, whoever asks
        self._jobs_lock = threading.Lock()
        self.closing: str | None = None

    # --- submitting -----------------------------------------------------------------

    def make_config(self, content: str, styles: list[str], values: dict, folder: str) -> Config:
        """The run's Config for these uploads and control values, checked.

        Raises:
            NstError: an input is not an image, a value is invalid, or the run cannot
                fit this machine's memory; the message is one line for the page.
        """
        if not content:
            raise ImageError("no content photo: upload one")
        if not styles:
            raise ImageError("no style image: upload at least one")
        for path in [content, *styles]:
            check_image(path)
        arguments = {**self.defaults, **config_values(values)}
        config = validate(
            Config(
                content=content,
                style=",".join(styles),
                output=os.path.join(folder, "result.png"),
                **arguments,
            )
        )
        content_image, style_images, _ = load_inputs(config)
        check_memory(PlanSettings.of(config), content_image, style_images)
        return config

    def submit(self, content: str, styles: list[str], values: dict, session: str = "") -> Job:
        """Checks a job and starts it (it waits while another job runs).

        Args:
            content: The uploaded content photo.
            styles: The uploaded style images (blended with style_blend_weights).
            values: Control values by setting name (see controls.config_values).
            session: Who asks (stopped with stop_session when that page goes away).

        Returns:
            The job, queued or running.

        Raises:
            NstError: as make_config; nothing is started then.
        """
        if self.closing:
            raise NstError(f"the studio is stopping ({self.closing}); no new runs")
        values = dict(values)
        model = values.pop("model", None) or None
        model = None if model == NO_MODEL else model
        job_id = next(self._ids)
        folder = os.path.join(self.work.jobs, str(job_id))
        os.mkdir(folder)
        try:
            if model is None:
                config = self.make_config(content, styles, values, folder)
            else:
                config = self._model_config(content, model, values, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = Job(job_id, session, config, folder, model=model)
        with self._jobs_lock:
            self.jobs[job_id] = job
        self._start(job, resume=False)
        return job

    def _model_config(self, content: str, model: str, values: dict, folder: str) -> Config:
        """The Config of a trained model's job: the photo and the size (the only values
        a trained model takes)."""
        if model not in self.models:
            offered = ", ".join(self.models) or "none (start the studio with --models)"
            raise ModelError(f"there is no trained model {model!r} here; offered: {offered}")
        if not content:
            raise ImageError("no content photo: upload one")
        check_image(content)
        arguments = config_values({k: v for k, v in values.items() if k == "size"})
        config = validate(
            Config(content=content, output=os.path.join(folder, "result.png"), **arguments)
        )
        if config.size > MODEL_MAX_SIZE:
            raise ConfigError(
                f"--size={config.size}: a trained model runs at most {MODEL_MAX_SIZE} px here; "
                "use a smaller size, or optimise (no model) for larger prints"
            )
        return config

    def resume(self, job_id: int) -> Job:
        """Continues a stopped job from its checkpoint.

        Raises:
            NstError: no such job, or it is not stopped.
        """
        job = self.job(job_id)
        if self.closing:
            raise NstError(f"the studio is stopping ({self.closing}); no new runs")
        if job.state != STOPPED:
            raise NstError(f"job {job_id} is {job.state}: only a stopped job can be resumed")
        self._start(job, resume=True)
        return job

    def _start(self, job: Job, resume: bool) -> None:
        job.state, job.stop_reason, job.message = QUEUED, None, ""
        target, args = (self._work, (job, resume)) if job.model is None else (self._apply, (job,))
        job.thread = threading.Thread(
            target=target, args=args, name=f"studio-job-{job.id}", daemon=True
        )
        job.thread.start()

    # --- running --------------------------------------------------------------------

    def _work(self, job: Job, resume: bool) -> None:
        with self._run_lock:
            if job.stop_reason is not None or self.closing:
                job.state = STOPPED if resume else FAILED
                job.message = f"not started: {job.stop_reason or self.closing}"
                return
            job.state = RUNNING
            config = dataclasses.replace(job.config, resume=resume)
            try:
                result = run.stylize(config, callbacks=[_Watcher(job, self)])
                job.image = result.image
                state, message = DONE, f"finished in {result.seconds:.1f} s"
            except Interrupted as stop:
                job.image = stop.image if stop.image is not None else job.image
                state, message = STOPPED, f"stopped ({job.stop_reason}); Resume continues it"
            except NstError as err:
                state, message = FAILED, str(err)
            except Exception as err:  # noqa: BLE001 - the page must hear of any failure
                logging.exception("job %d failed", job.id)
                state, message = FAILED, f"{type(err).__name__}: {err}"
            self._finish(job, state, message)

    def _apply(self, job: Job) -> None:
        """A trained model's job: one pass of its network over the photo at the size."""
        with self._run_lock:
            if job.stop_reason is not None or self.closing:
                job.message, job.state = f"not started: {job.stop_reason or self.closing}", FAILED
                return
            job.state, job.total = RUNNING, 1
            start = time.perf_counter()
            try:
                # One pass as nst-tf --model makes it (sides reflected to the network's
                # grid, so the studio and the command give the same pixels).
                from nst_tf.engine.feedforward import stylize_with_model  # pylint: disable=C0415

                net = self._net(job.model)
                photo = images.load_image(job.config.content, size=job.config.size)
                job.image = stylize_with_model(net, photo)
                job.step, job.size = 1, job.config.size
                state, message = DONE, f"in {time.perf_counter() - start:.1f} s"
            except NstError as err:
                state, message = FAILED, str(err)
            except Exception as err:  # noqa: BLE001 - the page must hear of any failure
                logging.exception("job %d failed", job.id)
                state, message = FAILED, f"{type(err).__name__}: {err}"
            self._finish(job, state, message)

    def _finish(self, job: Job, state: str, message: str) -> None:
        """Writes the job's result (if it has one) and only then says it has ended."""
        if job.image is not None:
            try:
                self._export(job, state)
            except NstError as err:
                state, message = FAILED, f"the result could not be written: {err}"
        # Last: whoever watches sees the job finished only with its files in place.
        job.message, job.state = message, state

    def _net(self, model: str):
        """The model's network, loaded once (its weights checked against its sha256)."""
        if model not in self._nets:
            from nst_tf.io.model_dir import load_model_dir  # pylint: disable=C0415

            self._nets[model] = load_model_dir(self.models[model])[0]
        return self._nets[model]

    def _export(self, job: Job, state: str) -> None:
        """Writes the result in every download format, and its flag file (of a job that
        ends in `state`)."""
        # A new folder for each export (a resumed run's end is a second one): files are
        # never rewritten under a name a page may already have fetched and cached.
        job.exports += 1
        downloads = os.path.join(job.folder, f"downloads-{job.exports}")
        os.makedirs(downloads)
        files = {}
        for label, suffix, bit_depth in FORMATS:
            path = os.path.join(downloads, job.name + suffix)
            images.save_image(job.image, path, bit_depth)
            files[label] = path
        flags = os.path.join(downloads, job.name + (".txt" if job.model else ".flags"))
        with images.atomic_write(flags, "w") as file:
            file.write(job.settings_text(state) + "\n")
        files["flags"] = flags
        if self.results_dir:
            job.kept = self._keep(job, files)
        job.preview = _thumbnail(job.image)
        job.files = files

    def _keep(self, job: Job, files: dict[str, str]) -> str:
        """Copies a job's files into results_dir (atomically); returns the PNG's path."""
        kept = {}
        stem = f"{job.name}-{self.tag}"
        for label, path in files.items():
            suffix = path[len(os.path.join(os.path.dirname(path), job.name)) :]
            kept[label] = os.path.join(self.results_dir, stem + suffix)
            with open(path, "rb") as source, images.atomic_write(kept[label]) as copy:
                shutil.copyfileobj(source, copy)
        return kept["PNG"]

    # --- stopping -------------------------------------------------------------------

    def job(self, job_id) -> Job:
        """The job of this id.

        Raises:
            NstError: there is none.
        """
        try:
            return self.jobs[int(job_id)]
        except (KeyError, TypeError, ValueError):
            raise NstError(f"there is no job {job_id!r} in this studio") from None

    def stop(self, job_id, reason: str = "Stop was pressed") -> Job:
        """Asks a job to stop after its current step (its image so far is kept)."""
        job = self.job(job_id)
        if not job.finished:
            job.stop_reason = reason
        return job

    def stop_session(self, session: str, reason: str) -> list[Job]:
        """Stops every unfinished job of a session (its page went away)."""
        with self._jobs_lock:
            jobs = [j for j in self.jobs.values() if j.session == session and not j.finished]
        for job in jobs:
            job.stop_reason = reason
        return jobs

    def running(self) -> Job | None:
        """The job that is running, if any."""
        return next((job for job in self.jobs.values() if job.state == RUNNING), None)

    def close(self, reason: str, timeout: float = 60.0) -> list[Job]:
        """Refuses new jobs, stops the unfinished ones, and waits for them.

        Returns:
            The jobs that were stopped (queued or running when asked).
        """
        self.closing = reason
        stopped = [job for job in self.jobs.values() if not job.finished]
        for job in stopped:
            job.stop_reason = reason
        deadline = time.monotonic() + timeout
        for job in stopped:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
        return stopped

    def history(self) -> list[Job]:
        """The jobs with a result (finished or stopped), newest first."""
        return [job for job in reversed(list(self.jobs.values())) if job.files]
