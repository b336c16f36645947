"""`nst-tf-batch` (`python -m nst_tf.commands.batch`): one style over a folder of photos, on Ray.

    nst-tf-batch --inputs=photos/ --output_dir=out/ --style=painting.jpg --size=512

Every nst-tf setting that changes the result is taken as by nst-tf (its flags are
made by nst_tf.commands.flags from the settings' descriptions); the nst-tf settings that
name one photo's files or one run's state get no flag, and a line saying why. The flags
below say where the photos are and how to run. The job's logic is in
nst_tf.commands.jobs, the output folder's format in nst_tf.commands.records, the work on
one photo in nst_tf.commands.work, the Ray layer in nst_tf.commands.raypool (the pool)
and nst_tf.commands.raycluster (starting or joining Ray).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Collection

from absl import app, flags, logging

from nst_tf.commands import common, jobs, model_batch, model_run, raycluster, raypool, records
from nst_tf.commands.flags import FLAGS, config_from_flags, define_flags, define_preset_flag
from nst_tf.errors import ConfigError, NstError
from nst_tf.settings.config import INIT_KEYWORDS, Config, setting_fields, validate

flags.DEFINE_string("inputs", None, "Photos: a folder, a glob pattern, or a .txt list of paths.")
flags.DEFINE_string("output_dir", None, "Where NAME.png/.jpg, NAME.json (sidecar) are written.")
flags.DEFINE_integer(
    "workers", None, "Ray actors, each keeping one network; default: CPUs / --cpus_per_worker."
)
flags.DEFINE_integer(
    "cpus_per_worker",
    None,
    "CPUs each worker reserves (and TensorFlow's threads in it); default: "
    f"{raypool.DEFAULT_CPUS_PER_WORKER} (measured), or all of a smaller machine's.",
)
flags.DEFINE_float(
    "memory_per_worker",
    None,
    "GB each worker reserves in Ray's scheduler, and its memory budget (a photo whose "
    "whole-image step does not fit is tiled); default: the untiled estimate for --size.",
)
flags.DEFINE_string(
    "ray_address",
    "",
    "Empty: an embedded Ray on 127.0.0.1; 'auto' or HOST:PORT: join a running cluster.",
)
flags.DEFINE_float(
    "ray_timeout",
    30.0,
    "Seconds to wait for the cluster at --ray_address to answer before giving up.",
)
flags.DEFINE_integer("max_retries", 2, "Retries of a photo whose worker died (crash, OOM kill).")
flags.DEFINE_bool("overwrite", False, "Redo photos whose sidecar says they are done.")
flags.DEFINE_enum("format", "png", list(jobs.FORMATS), "Output image format.")

# nst-tf settings that a batch does not take, and why. They get no flag (so --help and
# --helpfull list only what a batch takes); giving one gets this line.
_NOT_FOR_BATCH = {
    "content": "photos come from --inputs",
    "output": "results go to --output_dir",
    "checkpoint_every": "a photo is the unit of restart: run the same command again",
    "checkpoint_dir": "a photo is the unit of restart: run the same command again",
    "resume": "a photo is the unit of restart: run the same command again",
    "trace": "the sidecar NAME.json holds each photo's final losses, steps and time",
    "save_every": "a batch writes each photo's result once, when it is done",
    "log_every": "workers print no progress lines; the progress bar and the sidecars do",
    "memory_limit": "each worker's memory is --memory_per_worker",
}
BATCH_SETTINGS = tuple(field.name for field in setting_fields() if field.name not in _NOT_FOR_BATCH)


@dataclasses.dataclass
class BatchOptions:
    """How a batch runs (none of these change a result).

    Attributes:
        inputs: A folder, a glob pattern, or a .txt list of photo paths.
        output_dir: Where results and sidecars go (created if missing).
        workers: Actors in the pool; None: as many as the CPUs hold.
        cpus_per_worker: CPUs each actor reserves and TensorFlow's threads in it;
            None: raypool.DEFAULT_CPUS_PER_WORKER, or all of a smaller cluster's.
        memory_per_worker: GB each actor reserves; None: the estimate for config.size.
        ray_address: "" (embedded Ray on 127.0.0.1), "auto" or HOST:PORT.
        ray_timeout: Seconds to wait for the cluster's answer.
        max_retries: Retries of a photo whose worker died.
        overwrite: Redo photos already done.
        fmt: "png" or "jpg".
        progress: Show a progress bar on stderr.
    """

    inputs: str
    output_dir: str
    workers: int | None = None
    cpus_per_worker: int | None = None
    memory_per_worker: float | None = None
    ray_address: str = ""
    ray_timeout: float = 30.0
    max_retries: int = 2
    overwrite: bool = False
    fmt: str = "png"
    progress: bool = True


def check_options(options: BatchOptions) -> None:
    """Refuses options that cannot work, before anything is read or written.

    Raises:
        ConfigError: naming the option and the fix.
    """
    if not options.inputs:
        raise ConfigError("--inputs is required: a folder, a glob pattern or a .txt list")
    if not options.output_dir:
        raise ConfigError("--output_dir is required: the directory for the results")
    if options.workers is not None and options.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {options.workers}")
    if options.cpus_per_worker is not None and options.cpus_per_worker < 1:
        raise ConfigError(f"--cpus_per_worker must be at least 1, got {options.cpus_per_worker}")
    if options.memory_per_worker is not None and not options.memory_per_worker > 0:
        raise ConfigError(f"--memory_per_worker must be > 0 GB, got {options.memory_per_worker}")
    if not options.ray_timeout > 0:
        raise ConfigError(f"--ray_timeout must be > 0 seconds, got {options.ray_timeout}")
    if options.max_retries < 0:
        raise ConfigError(f"--max_retries must be >= 0, got {options.max_retries}")
    if options.fmt not in jobs.FORMATS:
        raise ConfigError(f"--format={options.fmt!r} is unknown; choose {', '.join(jobs.FORMATS)}")


def run_batch(
    config: Config, options: BatchOptions, given: Collection[str] | None = None
) -> jobs.Summary:
    """Stylises every photo of options.inputs that is not done yet, with one style, or
    with the trained network of config.model (commands.model_batch).

    Args:
        config: The stylisation settings (content, output, checkpoints, trace and
            snapshots to files unused; memory_limit is the worker's memory).
        options: Where the photos are and how to run.
        given: The settings given on the command line (with --model, each is checked
            against the model's recipe); None: those that differ from their defaults.

    Returns:
        The tally: done, skipped, failed (with reasons), timing.

    Raises:
        NstError: a setting, the style, the weights, the output directory or the
            cluster is wrong; nothing was written.
    """
    from nst_tf.commands import preflight  # pylint: disable=import-outside-toplevel
    from nst_tf.engine import memory  # pylint: disable=import-outside-toplevel
    from nst_tf.io.targets import StyleTargets  # pylint: disable=import-outside-toplevel
    from nst_tf.model import weights  # pylint: disable=import-outside-toplevel

    check_options(options)
    if given is None:
        given = model_run.given_settings(validate(config))
    config = dataclasses.replace(
        config, content=None, checkpoint_every=0, checkpoint_dir=None, resume=False, trace=None
    )
    config, _ = preflight.check_settings(config)
    if config.bit_depth == 16 and options.fmt != "png":
        raise ConfigError("--bit_depth=16 writes 16-bit PNG: drop --format=jpg (or --bit_depth)")
    # A pattern that reaches the output folder would list our results as photos on a
    # rerun: they are left out, so that every run sees the photos the first one saw.
    paths = [
        path
        for path in jobs.list_inputs(options.inputs)
        if not records.is_our_result(options.output_dir, path)
    ]
    records.check_output_dir(options.output_dir, paths)
    if config.logdir:
        records.check_output_dir(config.logdir, (), flag="logdir")
    per_worker = options.memory_per_worker
    if config.model:
        plan = model_batch.plan_model(config, given)
        config, style, masks, init = plan.config, plan.style, None, None
        weights_sha256, reads = plan.weights_sha256, list(plan.reads)
        memory_bytes = per_worker * 1e9 if per_worker else model_batch.memory_estimate(plan)
        digest = model_batch.model_digest(plan, options.fmt)
    else:
        # Each worker finds the weights as this driver does (every node has the same
        # set-up); their sha256 enters the key.
        source = weights.find_weights(config.vgg_weights)
        weights_sha256 = source.sha256
        _, style, init, masks = preflight.read_style(config, source, content=False)
        if isinstance(style, StyleTargets):
            style = style.grams
        estimate = memory.estimated_peak_bytes(
            config.size, config.size, memory.PlanSettings.of(config)
        )
        memory_bytes = per_worker * 1e9 if per_worker else estimate
        digest = jobs.job_digest(config, options.fmt, weights_sha256)
        init_path = [] if config.init in INIT_KEYWORDS else [config.init]
        reads = [*config.style_paths(), *config.style_mask, config.style_targets, *init_path]
    # A worker plans its scales (whole or tiled) in the memory it reserves, as nst-tf
    # does in --memory_limit; the memory does not change a result, nor the key.
    config = dataclasses.replace(config, memory_limit=memory_bytes / 1e9)
    job = jobs.Job(
        config, os.path.abspath(options.output_dir), options.fmt, memory_bytes, weights_sha256
    )
    photos = jobs.plan(job, paths, digest)
    records.check_ours(job, photos, reads)
    if per_worker and not config.model:
        # No photo would fit, even tiled: say so now rather than fail each one on a worker.
        plan_settings = memory.PlanSettings.of(config)
        needs = [memory.smallest_budget(*p.shape, plan_settings) for p in photos if p.shape]
        if needs and min(needs) > memory_bytes:
            how = "untiled (--tile_size=0)" if str(config.tile_size) == "0" else "even tiled"
            raise ConfigError(
                f"--memory_per_worker={per_worker:g} GB is less than the "
                f"{jobs.gigabytes(min(needs))} the smallest photo needs at --size={config.size} "
                f"{how}; give at least that, or lower --size"
            )
    summary = jobs.Summary()
    todo = []
    for photo in photos:
        if options.overwrite:
            todo.append(photo)
        elif records.is_done(job, photo):
            summary.skipped += 1
        elif reason := records.failed_before(job, photo):
            summary.failed[photo.name] = f"{reason} (an earlier run; see {job.error(photo.name)})"
        else:
            todo.append(photo)
    if not todo and not os.path.isdir(job.output_dir):
        return summary
    created = records.missing_dirs(job.output_dir)
    os.makedirs(job.output_dir, exist_ok=True)
    try:
        with records.exclusive(job.output_dir):  # one batch per output directory
            if not todo:
                records.remove_partials(job.output_dir)
                return summary
            with raycluster.connect(options.ray_address, options.ray_timeout) as ray:
                _run_pool(ray, job, todo, style, (masks, init), options, summary)
    except BaseException:
        for directory in created:  # ours, and left empty when Ray could not start
            try:
                os.rmdir(directory)
            except OSError:
                break
        raise
    return summary


def _run_pool(ray, job, todo, style, extras, options, summary) -> None:
    try:
        from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ConfigError("nst-tf-batch needs tqdm: pip install 'nst_tf[ray]'") from None
    workers, cpus_per_worker = raypool.pool_size(
        ray, options.workers, options.cpus_per_worker, job.memory_bytes, len(todo)
    )
    removed = records.remove_partials(job.output_dir)
    logging.info(
        "%d photos to do, %d done before, %d failed before%s; %d workers x %d CPUs, %s each",
        len(todo),
        summary.skipped,
        len(summary.failed),
        f", {removed} temporary files of a killed run removed" if removed else "",
        workers,
        cpus_per_worker,
        jobs.gigabytes(job.memory_bytes),
    )
    config = job.config
    # The statistics are measured once unless each photo changes them (histogram
    # colour matching) or the style image itself is needed (as the start image).
    measure = not config.style_targets and config.preserve_color != "histogram"
    measure = measure and config.init != "style" and not (config.model and style is None)
    summary.start = time.perf_counter()
    with tqdm(total=len(todo), unit="photo", file=sys.stderr, disable=not options.progress) as bar:

        def on_outcome(outcome: jobs.Outcome) -> None:
            summary.add(outcome)
            bar.update(1)
            bar.set_postfix(failed=len(summary.failed), refresh=False)

        raypool.run(
            ray,
            job,
            todo,
            style,
            extras,
            measure=measure,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            max_retries=options.max_retries,
            on_outcome=on_outcome,
            worker_class=model_batch.ModelWorker if config.model else raypool.BatchWorker,
        )


def options_from_flags() -> BatchOptions:
    """The BatchOptions of the parsed flags."""
    flags_values = FLAGS
    return BatchOptions(
        inputs=flags_values.inputs,
        output_dir=flags_values.output_dir,
        workers=flags_values.workers,
        cpus_per_worker=flags_values.cpus_per_worker,
        memory_per_worker=flags_values.memory_per_worker,
        ray_address=flags_values.ray_address,
        ray_timeout=flags_values.ray_timeout,
        max_retries=flags_values.max_retries,
        overwrite=flags_values.overwrite,
        fmt=flags_values.format,
    )


# The signal that stopped the run. SIGTERM raises KeyboardInterrupt as SIGINT does: Ray
# lets that one through its blocking calls, and wraps any other exception.
_stopped_by = [signal.SIGINT]


def _interrupt(signum, frame) -> None:
    del frame
    _stopped_by[0] = signum
    raise KeyboardInterrupt


def _refused_flag(argv: list[str]) -> str | None:
    """The first nst-tf setting on the command line that a batch does not take."""
    for arg in argv[1:]:
        if arg == "--":
            break
        name = arg.lstrip("-").split("=", 1)[0] if arg.startswith("-") else ""
        if name not in _NOT_FOR_BATCH and name.startswith("no"):
            name = name[2:]  # --noresume
        if name in _NOT_FOR_BATCH:
            return name
    return None


def _parse(argv: list[str]) -> list[str]:
    """nst-tf's parser (one line and exit status 2 for a malformed flag), after a line
    and exit status 1 for an nst-tf setting that a batch does not take."""
    name = _refused_flag(argv)
    if name:
        sys.exit(common.fail(f"--{name} is not a batch flag: {_NOT_FOR_BATCH[name]}", 1))
    return common.parse(argv)


def _batch_main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])}; all options are --flags")
    common.setup_logging()
    # SIGTERM ends the run as Ctrl-C does: Ray is shut down, finished photos are kept.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        given = {name for name in BATCH_SETTINGS if name in FLAGS and FLAGS[name].present}
        summary = run_batch(config_from_flags(), options_from_flags(), given)
    except NstError as err:
        return common.fail(str(err), 1)
    except KeyboardInterrupt:
        return common.fail(
            "interrupted; finished photos are kept: run the same command again for the rest",
            128 + _stopped_by[0],
        )
    for line in summary.lines():
        logging.info("%s", line)
    return 1 if summary.failed else 0


_BATCH_FLAGS = (
    "inputs",
    "output_dir",
    "workers",
    "cpus_per_worker",
    "memory_per_worker",
    "ray_address",
    "ray_timeout",
    "max_retries",
    "overwrite",
    "format",
)


def main() -> None:
    """Entry point of `nst-tf-batch` and `python -m nst_tf.commands.batch`."""
    if os.path.basename(sys.argv[0]) == "batch.py":
        sys.argv[0] = "nst-tf-batch"  # messages name the command, not this file
    # The nst-tf settings a batch takes, described once in nst_tf.settings.config; --help
    # lists them with the batch's own flags.
    names = _BATCH_FLAGS + define_preset_flag() + define_flags(BATCH_SETTINGS)
    common.run(_batch_main, names, parser=_parse)


if __name__ == "__main__":
    main()
