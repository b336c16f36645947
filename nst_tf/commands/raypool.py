"""The Ray layer of nst-tf-batch: a pool of actors, each keeping one Stylizer.

Everything that decides what a photo's output is lives in nst_tf.commands.jobs, records and
work; this module only keeps one call in flight per actor, and turns a worker that died too
often into a failed photo.

Starting or joining Ray (loopback, authentication, the embedded session's isolation and
watchdog) is nst_tf.commands.raycluster's.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

from nst_tf.commands import jobs, records, work
from nst_tf.commands.raycluster import one_line
from nst_tf.errors import ConfigError, WeightsError


class BatchWorker:
    """A Ray actor's state: one Stylizer, built once, kept for every photo it is given.

    Args:
        job: The batch: its settings, and the sha256 of the weights the driver found (and
            put in the keys).
        threads: CPU threads for TensorFlow's thread pools (the actor's --cpus_per_worker).

    Raises:
        WeightsError: this node's weights are not the driver's.
    """

    def __init__(self, job: jobs.Job, threads: int):
        from nst_tf.commands.run import _quiet_stderr  # pylint: disable=import-outside-toplevel

        config, weights_sha256 = job.config, job.weights_sha256
        # A worker's C++ output reaches the driver's terminal (Ray redirects only
        # Python's streams): keep TensorFlow's start-up banner out of the progress bar.
        with _quiet_stderr():
            import tensorflow as tf  # pylint: disable=import-outside-toplevel

        # Before anything runs: the pools are fixed once TensorFlow starts executing.
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        if config.deterministic:  # as nst-tf does it (the Stylizer only picks XLA by it)
            tf.config.experimental.enable_op_determinism()
        from nst_tf.engine.stylizer import Stylizer  # pylint: disable=import-outside-toplevel

        self.stylizer = Stylizer(config)
        found = self.stylizer.model.weights_source.sha256
        if found != weights_sha256:
            raise WeightsError(
                f"{socket.gethostname()} has other VGG19 weights (sha256 {found[:12]}...) than "
                f"the driver ({weights_sha256[:12]}...); install the same on every node"
            )

    def measure(self, style_images):
        """The style images' statistics at every scale (Stylizer.measure_style)."""
        return self.stylizer.measure_style(style_images)

    def ready(self, style) -> bool:
        """True once `style` (an object reference, resolved by Ray) is ready; raises its
        error otherwise. Lets the driver check a measurement without unpickling it, which
        would import TensorFlow there."""
        del style
        return True

    def run(self, job: jobs.Job, photo: jobs.Photo, style, extras) -> jobs.Outcome:
        """Stylises one photo (work.stylize_photo); extras is (masks, init)."""
        masks, init = extras
        return work.stylize_photo(self.stylizer, job, photo, style, masks, init)


# Measured on 2 cores (docs/benchmarks.md, "Batch"): one worker with 2 threads beat two
# workers with one thread each (each worker loads the network and compiles its shapes
# itself). So by default a worker gets 2 CPUs, and there are as many as the CPUs hold.
DEFAULT_CPUS_PER_WORKER = 2


def pool_size(
    ray, workers: int | None, cpus_per_worker: int | None, memory_bytes: float, photos: int
) -> tuple[int, int]:
    """The pool: (workers, CPUs per worker), as asked or by the default rule; never more
    workers than photos.

    Raises:
        ConfigError: the cluster lacks the CPUs or memory for the workers asked.
    """
    resources = ray.cluster_resources()
    cpus, memory = resources.get("CPU", 0), resources.get("memory", 0)
    if cpus_per_worker is None:
        # --workers alone shares the CPUs out; neither: the measured default.
        share = int(cpus) // workers if workers else int(cpus)
        cpus_per_worker = max(1, min(DEFAULT_CPUS_PER_WORKER, share))
    count = workers or max(1, int(cpus // cpus_per_worker))
    if count * cpus_per_worker > cpus:
        raise ConfigError(
            f"{count} workers x {cpus_per_worker} CPUs need {count * cpus_per_worker} CPUs; "
            f"the cluster has {cpus:g}: lower --workers or --cpus_per_worker"
        )
    if count * memory_bytes > memory:
        raise ConfigError(
            f"{count} workers x {jobs.gigabytes(memory_bytes)} need more memory than Ray "
            f"offers ({jobs.gigabytes(memory)}): lower --workers or --memory_per_worker"
        )
    return min(count, photos), cpus_per_worker


def run(
    ray,
    job: jobs.Job,
    photos: Sequence[jobs.Photo],
    style,
    extras: tuple,
    *,
    measure: bool,
    workers: int,
    cpus_per_worker: int,
    max_retries: int,
    on_outcome: Callable[[jobs.Outcome], None],
    worker_class: type = BatchWorker,
) -> None:
    """Stylises `photos` on a pool of actors, calling on_outcome as each finishes.

    Args:
        ray: The initialised ray module.
        job: The batch.
        photos: The photos to do.
        style: Style images (measured once by the first worker when `measure`), or what
            Stylizer.stylize takes as the style.
        extras: (masks, init) for every photo.
        measure: Whether to measure `style` once and share the statistics.
        workers: The pool's size.
        cpus_per_worker: CPUs each actor reserves (and TensorFlow's threads in it).
        max_retries: How often a photo is retried after its worker died.
        on_outcome: Called in the driver with each photo's Outcome.
        worker_class: The actors' class: BatchWorker, or one with its constructor and
            methods (commands.model_batch.ModelWorker, for a trained network).

    Raises:
        ConfigError: the style cannot be measured (too small, for one).
    """
    actor_class = ray.remote(worker_class).options(
        num_cpus=cpus_per_worker,
        memory=int(job.memory_bytes) if job.memory_bytes != float("inf") else None,
        # A restarted actor keeps serving; a photo that kills it max_retries + 1 times fails.
        max_restarts=-1,
        max_task_retries=max_retries,
    )
    actors = [actor_class.remote(job, cpus_per_worker) for _ in range(workers)]
    try:
        if measure:
            style_ref = actors[0].measure.remote(ray.put(style))
            try:
                ray.get(actors[0].ready.remote(style_ref))
            except ray.exceptions.RayError as err:
                raise ConfigError(f"cannot measure the style: {one_line(err)}") from None
        else:
            style_ref = ray.put(style)
        extras_ref = ray.put(extras)
        queue = jobs.Queue(photos)
        compiled = {id(actor): set() for actor in actors}
        running = {}

        def submit(actor) -> None:
            photo = queue.take(compiled[id(actor)])
            if photo is not None:
                running[actor.run.remote(job, photo, style_ref, extras_ref)] = (actor, photo)

        for actor in actors:
            submit(actor)
        while running:
            (ready,), _ = ray.wait(list(running), num_returns=1)
            actor, photo = running.pop(ready)
            try:
                outcome = ray.get(ready)
            except ray.exceptions.RayActorError:
                reason = f"its worker died {max_retries + 1} times on it (out of memory?)"
                outcome = records.write_error(job, photo, reason, final=False)
            except ray.exceptions.RayError as err:
                reason = f"internal error: {one_line(err)}"
                outcome = records.write_error(job, photo, reason, final=False)
            on_outcome(outcome)
            submit(actor)
    finally:
        for actor in actors:
            ray.kill(actor)
