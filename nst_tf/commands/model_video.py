"""`nst-tf-video --model=MODEL_DIR`: a clip's frames through a trained network.

The pre-flight runs before TensorFlow loads: nst-tf --model's checks of the MODEL_DIR
(commands.model_run.check_model_settings: ours, this format version, a recipe that agrees
with every setting given, --style the model's when refining), then the video's paths and
work folder (commands.video_frames). Each frame is one forward pass, tiled when too large
(engine.feedforward). With --refine_steps=N the network's output is the start of N
optimiser steps at the final scale, held by the temporal loss to the previous stylised
frame warped along the flow, as an optimised video's frames are (commands.video); the
output stays on the device for them, so the one read per frame is the finished frame.

The work folder's key holds the model's identity (io.model_dir.identity): a folder made
with another model, or by an optimised run, is refused, not resumed into.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection

from nst_tf.commands import model_run, preflight
from nst_tf.commands.video_frames import (
    check_video_paths,
    load_tensorflow,
    stylize_frames,
    watch_frames,
)
from nst_tf.engine.memory import PlanSettings, budget_bytes
from nst_tf.errors import ConfigError, Interrupted
from nst_tf.io import model_dir
from nst_tf.io.clips import open_clip
from nst_tf.io.paths import file_sha256
from nst_tf.model import weights
from nst_tf.settings import keys
from nst_tf.settings.config import INPUT, Config, settings_of
from nst_tf.settings.video import VideoSettings

# Video settings a trained network has no use for, and why.
_NOT_WITH_MODEL = {
    "frame_init": "every frame starts from the network's output",
    "frame_steps": "--refine_steps is every frame's steps",
}
# Video settings that act only in a refinement.
_REFINE_ONLY = ("temporal_weight", "flow")


def check_model_video(
    config: Config, settings: VideoSettings, given: Collection[str]
) -> tuple[Config, dict]:
    """Refuses video and model settings a trained network cannot honour (no TensorFlow).

    Args:
        config: The checked settings (preflight.check_settings), config.model set.
        settings: The video settings.
        given: The settings given on the command line.

    Returns:
        (the run's settings, the model's recipe filled in when refining; its description).

    Raises:
        ConfigError: a setting does not apply, or disagrees with the model's recipe.
        ModelError: the MODEL_DIR is not ours or of another version; --style is not its.
    """
    for name, why in _NOT_WITH_MODEL.items():
        if name in given:
            raise ConfigError(f"--{name} does not apply with --model ({why}); drop it")
    if not config.refine_steps:
        for name in _REFINE_ONLY:
            if name in given:
                raise ConfigError(
                    f"--{name} acts only in a refinement: add --refine_steps=N (and the "
                    "model's --style), or drop it"
                )
    meta = model_dir.read_model_metadata(config.model)
    return model_run.check_model_settings(config, meta, given), meta


def model_video_key(
    config: Config, settings: VideoSettings, meta: dict, weights_sha256: str
) -> str:
    """The frames' result key with a trained model: the model's identity (its bytes,
    wherever the folder is), the size and which frames; when refining also the
    refinement's recipe, the style's bytes, the VGG19 weights and the temporal loss.

    Args:
        config: The run's settings (check_model_video's).
        settings: The video settings.
        meta: The MODEL_DIR's description.
        weights_sha256: The VGG19 weights' sha256 ("" without a refinement).
    """
    model = model_dir.identity(config.model, meta)
    video = settings_of(settings, INPUT)
    if not config.refine_steps:
        # The network's frames depend on the frames, the model and the size only.
        recipe, inputs = {"size": config.size, "refine_steps": 0}, {}
    else:
        recipe = keys.recipe_of(model_run.refine_config(config))
        recipe.pop("model", None)  # its path: the model is keyed by its bytes
        files = keys.input_files(config)
        inputs = {name: [file_sha256(path) for path in paths] for name, paths in files.items()}
        video.update(temporal_weight=settings.temporal_weight, flow=settings.flow)
    record = keys.key_record(recipe, inputs, weights_sha256, video=video, **model)
    return keys.result_key(record)


def _given(config: Config, settings: VideoSettings) -> set[str]:
    """What a Python caller asked for: the settings that differ from their defaults."""
    default = VideoSettings()
    video = {
        field.name
        for field in dataclasses.fields(VideoSettings)
        if getattr(settings, field.name) != getattr(default, field.name)
    }
    return model_run.given_settings(config) | video


def run_model_video(
    config: Config,
    settings: VideoSettings,
    input_path: str,
    output: str,
    style_folders: list[str],
    given: Collection[str] | None = None,
) -> str:
    """nst-tf-video with --model: checks, loads the network, stylises every frame with it
    (refined with --refine_steps), assembles; resumable as an optimised video is.

    Args:
        config: The checked settings (preflight.check_settings), config.model set.
        settings: The video settings (validated).
        input_path: A video file or a folder of frames.
        output: A video file (.mp4...) or a folder for PNG frames.
        style_folders: The --style entries that were folders.
        given: The settings given on the command line; None: those that differ from
            their defaults.

    Returns:
        The output path.

    Raises:
        NstError: a user mistake, in one line, before TensorFlow loads.
        Interrupted: stopped by a signal (the finished frames are kept).
    """
    given = _given(config, settings) if given is None else set(given)
    config, meta = check_model_video(config, settings, given)
    clip = open_clip(input_path)
    total = clip.taken(settings.start, settings.frames)
    source = weights.find_weights(config.vgg_weights) if config.refine_steps else None
    reads = [
        ("model", os.path.join(config.model, name))
        for name in (model_dir.METADATA_FILE, model_dir.WEIGHTS_FILE)
    ]
    if source is not None:
        reads += [("vgg_weights", source.path)]
        reads += [("style", path) for path in config.style_paths()]
    recipe = model_video_key(config, settings, meta, source.sha256 if source else "")
    check_video_paths(config.logdir, clip.path, output, reads, style_folders, recipe)
    style = None
    if source is not None:
        _, style, _, _ = preflight.read_style(config, source, content=False)
        weights.check_vgg19(source)
    budget = budget_bytes(PlanSettings.of(config))
    load_tensorflow()
    from nst_tf.core.flow import temporal_target  # pylint: disable=import-outside-toplevel
    from nst_tf.engine.feedforward import stylize_with_model  # pylint: disable=C0415
    from nst_tf.engine.monitoring import ProgressLogger  # pylint: disable=C0415

    net, _ = model_dir.load_model_dir(config.model)
    stylizer = None
    if source is not None:
        from nst_tf.engine.stylizer import Stylizer  # pylint: disable=C0415
        from nst_tf.model.features import FeatureExtractor  # pylint: disable=C0415

        refined = model_run.refine_config(config)
        extractor = FeatureExtractor(refined.layers, source, refined.precision, refined.pooling)
        stylizer = Stylizer(refined, extractor, temporal_weight=settings.temporal_weight)
        if refined.preserve_color != "histogram":  # histogram styles follow each frame
            style = stylizer.measure_style(style)

    def frames(on_frame, guard):
        def make_frame(content, previous):
            if guard.received is not None:  # a refinement's steps check it too
                raise Interrupted(guard.received)
            image = stylize_with_model(
                net,
                content,
                budget=budget,
                tile_size=config.tile_size,
                on_device=stylizer is not None,
            )
            if stylizer is None:
                return image, {}
            kwargs = {}
            if previous is not None and settings.temporal_weight:
                kwargs["temporal"] = temporal_target(previous[1], content, previous[0])
            last = ProgressLogger(0)  # keeps the last step's losses
            result = stylizer.stylize(
                content, style, start=image, callbacks=[last, guard], **kwargs
            )
            return result, last.last.losses if last.last else {}

        return stylize_frames(
            settings, input_path, output, config.size, recipe, make_frame, on_frame
        )

    watch_frames(config, input_path, config.style, output, total, frames)
    return output
