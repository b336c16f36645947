"""`nst-tf-batch --model=MODEL_DIR`: a folder of photos through a trained network.

The driver checks the MODEL_DIR as nst-tf --model does (commands.model_run: ours, this
format version, a recipe that agrees with every setting given, --style the model's when
refining), before TensorFlow or Ray load. Each Ray actor (ModelWorker) loads the network
once, and with --refine_steps a Stylizer for the refinement, and stylises each photo with
engine.feedforward's path: the photo read and sized as nst-tf reads a content image, one
forward pass (tiled in the worker's memory when too large), the refinement, then the
result and its sidecar written as for an optimised photo (commands.work.finish_photo).

A photo's key holds the model's identity (its description's and weights' sha256), so a
rerun with another model redoes the photos and the same model skips them.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Collection

from nst_tf.commands import jobs, model_run, preflight, work
from nst_tf.commands.records import write_error
from nst_tf.engine.forward_memory import forward_peak_bytes
from nst_tf.engine.memory import PlanSettings
from nst_tf.errors import NstError, WeightsError
from nst_tf.io import images, model_dir
from nst_tf.model import weights
from nst_tf.settings import keys
from nst_tf.settings.config import Config


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """What a batch with a trained model needs, checked in the driver.

    Attributes:
        config: The batch's settings, the model's recipe filled in when refining.
        meta: The MODEL_DIR's description.
        weights_sha256: The VGG19 weights' sha256 ("" without a refinement).
        style: The style images for the refinement, or None.
        reads: Files the batch reads besides the photos (none may be overwritten).
    """

    config: Config
    meta: dict
    weights_sha256: str
    style: list | None
    reads: tuple[str, ...]


def plan_model(config: Config, given: Collection[str]) -> ModelPlan:
    """The driver's checks of a batch with --model (no TensorFlow, nothing written).

    Args:
        config: The checked settings (preflight.check_settings), config.model set.
        given: The settings given on the command line.

    Raises:
        NstError: the MODEL_DIR is not ours or of another version, a setting given
            disagrees with its recipe, or --style is not its style (one line).
    """
    meta = model_dir.read_model_metadata(config.model)
    config = model_run.check_model_settings(config, meta, given)
    reads = [
        os.path.join(config.model, model_dir.METADATA_FILE),
        os.path.join(config.model, model_dir.WEIGHTS_FILE),
    ]
    if not config.refine_steps:
        return ModelPlan(config, meta, "", None, tuple(reads))
    source = weights.find_weights(config.vgg_weights)
    _, style, _, _ = preflight.read_style(config, source, content=False)
    reads += [source.path, *config.style_paths()]
    return ModelPlan(config, meta, source.sha256, style, tuple(reads))


def memory_estimate(plan: ModelPlan) -> float:
    """The bytes a worker needs for one photo at config.size: the untiled forward pass,
    or the refinement's step when that needs more."""
    from nst_tf.engine import memory  # pylint: disable=import-outside-toplevel

    config = plan.config
    need = forward_peak_bytes(plan.meta["network"]["width"], config.size, config.size)
    if config.refine_steps:
        refined = PlanSettings.of(model_run.refine_config(config))
        need = max(need, memory.estimated_peak_bytes(config.size, config.size, refined))
    return need


def model_digest(plan: ModelPlan, fmt: str) -> str:
    """The job's digest (see jobs.job_digest) with a trained model: the model's
    description and weights by sha256, the output's size, format and bit depth, and
    when refining everything the refinement's result depends on (its recipe, the
    style's bytes, the VGG19 weights)."""
    config = plan.config
    model = model_dir.identity(config.model, plan.meta)
    extra = {"format": fmt, "bit_depth": config.bit_depth, **model}
    if not config.refine_steps:
        # The network's output depends on the photo, the model and the size only.
        record = keys.key_record({"size": config.size, "refine_steps": 0}, {}, "", **extra)
        return keys.result_key(record)
    files = keys.input_files(config)
    inputs = {name: [model_dir.sha256_of(path) for path in paths] for name, paths in files.items()}
    recipe = keys.recipe_of(dataclasses.replace(config, checkpoint_every=0))
    recipe.pop("model", None)  # its path: the model is keyed by its bytes
    record = keys.key_record(recipe, inputs, plan.weights_sha256, **extra)
    return keys.result_key(record)


class ModelWorker:
    """A Ray actor's state with a trained model: the network, loaded once, and with
    --refine_steps a Stylizer for the refinement (BatchWorker's interface).

    Args:
        job: The batch (job.config.model set; job.weights_sha256: the VGG19 weights' sha256
            the driver found, "" without a refinement).
        threads: CPU threads for TensorFlow's thread pools.

    Raises:
        ModelError: the MODEL_DIR cannot be loaded on this node.
        WeightsError: this node's VGG19 weights are not the driver's.
    """

    def __init__(self, job: jobs.Job, threads: int):
        from nst_tf.commands.run import _quiet_stderr  # pylint: disable=import-outside-toplevel

        config, weights_sha256 = job.config, job.weights_sha256
        with _quiet_stderr():
            import tensorflow as tf  # pylint: disable=import-outside-toplevel

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        tf.get_logger().setLevel("WARNING")
        self.net, _ = model_dir.load_model_dir(config.model)
        self.stylizer = None
        if config.refine_steps:
            from nst_tf.engine.stylizer import Stylizer  # pylint: disable=C0415

            self.stylizer = Stylizer(model_run.refine_config(config))
            found = self.stylizer.model.weights_source.sha256
            if found != weights_sha256:
                raise WeightsError(
                    f"{socket.gethostname()} has other VGG19 weights (sha256 {found[:12]}...) "
                    f"than the driver ({weights_sha256[:12]}...); install the same on every node"
                )

    def measure(self, style_images):
        """The style images' statistics for the refinement (Stylizer.measure_style)."""
        return self.stylizer.measure_style(style_images)

    def ready(self, style) -> bool:
        """True once `style` (an object reference, resolved by Ray) is ready."""
        del style
        return True

    def run(self, job: jobs.Job, photo: jobs.Photo, style, extras) -> jobs.Outcome:
        """Stylises one photo with the network (and refines it); writes its result."""
        del extras  # no masks nor start image with a model
        return stylize_photo_with_model(self.net, self.stylizer, job, photo, style)


def stylize_photo_with_model(net, stylizer, job: jobs.Job, photo: jobs.Photo, style):
    """One photo through the network as nst-tf --model makes it, then refined.

    Args:
        net: The loaded TransformNet.
        stylizer: The refinement's Stylizer (model_run.refine_config), or None.
        job: The batch (job.memory_bytes is the forward pass's budget).
        photo: The photo.
        style: The refinement's style (images or measured statistics), or None.

    Returns:
        Its Outcome (a failure that belongs to the photo is written to NAME.error.json).
    """
    from nst_tf.engine.feedforward import stylize_with_model  # pylint: disable=C0415
    from nst_tf.engine.monitoring import ProgressLogger  # pylint: disable=C0415

    start = time.perf_counter()
    config = job.config
    try:
        content = images.load_image(photo.path, size=config.size)
    except NstError as err:
        return write_error(job, photo, str(err), final=True)
    if stylizer is not None:
        too_big = work.check_fits(
            *content.shape[:2], PlanSettings.of(stylizer.config), job.memory_bytes
        )
        if too_big:
            return write_error(job, photo, too_big, final=False)
    result = stylize_with_model(net, content, budget=job.memory_bytes, tile_size=config.tile_size)
    steps, losses, traces = 0, {}, 0
    if stylizer is not None:
        last = ProgressLogger(0)
        try:
            result = stylizer.stylize(content, style, start=result, callbacks=[last])
        except NstError as err:  # too small for the layers, or a loss gone NaN
            return write_error(job, photo, str(err), final=True)
        steps, losses = (last.last.step, last.last.losses) if last.last else (0, {})
        traces = stylizer.trace_count
    return work.finish_photo(job, photo, result, start, losses, steps, traces)
