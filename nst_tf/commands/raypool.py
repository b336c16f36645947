"""The Ray layer of nst-tf-batch: a pool of actors, each keeping one Stylizer.

Everything that decides what a photo's output is lives in nst_tf.commands.jobs; this module only
starts or joins Ray, keeps one call in flight per actor, and turns a worker that died
too often into a failed photo.

Loopback. On Linux, Ray 2.60 replaces 127.0.0.1 (given as the node address) by the
machine's own address and listens on every interface, as a cluster node must. Its
single-machine mode, the default on macOS and Windows and chosen on Linux by the
environment variable RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 set before Ray is imported,
keeps the node address at 127.0.0.1, and every Ray process (GCS, raylet, agents,
workers) then binds 127.0.0.1 only. An embedded Ray, and a driver that joins a cluster
on a loopback address, use it; a driver joining a cluster at another address does not,
since the cluster's other machines must reach it.

Authentication. Ray 2.60 turns on token authentication for a cluster when a token
exists (~/.ray/auth_token, which any local ray.init() creates). A driver that joins an
explicit HOST:PORT presents a token only with RAY_AUTH_MODE=token; so when the user has
not chosen a mode and a token is at hand, that is set. A cluster without authentication
accepts such a driver too.
"""

from __future__ import annotations

import logging as std_logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence

from nst_tf.commands import jobs
from nst_tf.errors import ConfigError, WeightsError
from nst_tf.settings.config import Config

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# The style statistics, masks and start image are all the object store holds.
OBJECT_STORE_BYTES = 256 * 2**20


class BatchWorker:
    """A Ray actor's state: one Stylizer, built once, kept for every photo it is given.

    Args:
        config: The stylisation settings.
        threads: CPU threads for TensorFlow's thread pools (the actor's --cpus_per_worker).
        weights_sha256: The sha256 of the weights the driver found (and put in the keys).

    Raises:
        WeightsError: this node's weights are not the driver's.
    """

    def __init__(self, config: Config, threads: int, weights_sha256: str):
        from nst_tf.commands.run import _quiet_stderr  # pylint: disable=import-outside-toplevel

        # A worker's C++ output reaches the driver's terminal (Ray redirects only
        # Python's streams): keep TensorFlow's start-up banner out of the progress bar.
        with _quiet_stderr():
            import tensorflow as tf  # pylint: disable=import-outside-toplevel

        # Before anything runs: the pools are fixed once TensorFlow starts executing.
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
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
        """Stylises one photo (jobs.stylize_photo); extras is (masks, init)."""
        masks, init = extras
        return jobs.stylize_photo(self.stylizer, job, photo, style, masks, init)


def import_ray(address: str):
    """Imports Ray configured for `address` (see the module docstring).

    Raises:
        ConfigError: Ray is not installed.
    """
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if not address or _is_loopback(address):
        os.environ[LOOPBACK_ENV] = "0"
    if address and address != "auto" and "RAY_AUTH_MODE" not in os.environ and _has_token():
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ConfigError(
            "nst-tf-batch needs Ray: pip install 'nst_tf[ray]' (or pip install 'ray>=2.60')"
        ) from None
    return ray


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0]
    return host == "localhost" or host.startswith("127.")


def _has_token() -> bool:
    return bool(
        os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or os.path.exists(os.path.expanduser("~/.ray/auth_token"))
    )


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray_address={address} is not HOST:PORT, 'auto' or empty")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as err:
        raise ConfigError(
            f"--ray_address={address}: nothing answers there ({err.strerror or err}); "
            "start the cluster with `ray start --head` or fix the address"
        ) from None


def connect(address: str):
    """Starts an embedded Ray on 127.0.0.1 (address empty) or joins a cluster.

    Returns:
        The ray module, initialised; call ray.shutdown() when done.

    Raises:
        ConfigError: Ray is missing, or the cluster cannot be reached or joined.
    """
    ray = import_ray(address)
    options = {"logging_level": std_logging.ERROR, "log_to_driver": False}
    if not address:
        options.update(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
        )
    elif address != "auto":
        _check_reachable(address)
    # ray.init makes SIGTERM call sys.exit; the caller's handler is put back after it.
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address or None, **options)
    except Exception as err:  # noqa: BLE001 - Ray raises many kinds; all mean "cannot join"
        raise ConfigError(
            f"--ray_address={address or '(embedded)'}: cannot start or join Ray "
            f"({_one_line(err)}); a cluster with token authentication needs its token: "
            "see `ray get-auth-token`"
        ) from None
    finally:
        if threading.current_thread() is threading.main_thread() and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    return ray


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


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

    Raises:
        ConfigError: the style cannot be measured (too small, for one).
    """
    actor_class = ray.remote(BatchWorker).options(
        num_cpus=cpus_per_worker,
        memory=int(job.memory_bytes) if job.memory_bytes != float("inf") else None,
        # A restarted actor keeps serving; a photo that kills it max_retries + 1 times fails.
        max_restarts=-1,
        max_task_retries=max_retries,
    )
    actors = [
        actor_class.remote(job.config, cpus_per_worker, job.weights_sha256) for _ in range(workers)
    ]
    try:
        if measure:
            style_ref = actors[0].measure.remote(ray.put(style))
            try:
                ray.get(actors[0].ready.remote(style_ref))
            except ray.exceptions.RayError as err:
                raise ConfigError(f"cannot measure the style: {_one_line(err)}") from None
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
                outcome = jobs.write_error(job, photo, reason, final=False)
            except ray.exceptions.RayError as err:
                reason = f"internal error: {_one_line(err)}"
                outcome = jobs.write_error(job, photo, reason, final=False)
            on_outcome(outcome)
            submit(actor)
    finally:
        for actor in actors:
            ray.kill(actor)
