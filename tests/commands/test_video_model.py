"""nst-tf-video --model: a clip's frames through a trained network (the network's pixels,
compared with the same network applied here to the decoded input frames), its audio kept,
--refine_steps refining each frame with the temporal loss, the work folder keyed by the
model, and a model that does not fit refused in one line with nothing written.

Real mp4 files, written with imageio-ffmpeg (test_video_safety's clips), and tiny models
(test_batch_model's)."""

import glob
import os
import signal

import numpy as np
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_batch_model import RECIPE, models  # noqa: F401 - models: the tiny models fixture
from test_video_safety import (
    FPS,
    RATE,
    _audio,
    _clip,
    _one_error_line,
    _run,
    _stop_when,
    _streams,
)

from nst_tf.commands.model_run import refine_config
from nst_tf.engine.feedforward import stylize_with_model
from nst_tf.engine.stylizer import Stylizer
from nst_tf.io import clips, images, model_dir
from nst_tf.model.features import FeatureExtractor
from nst_tf.model.weights import find_weights
from nst_tf.settings.config import Config

# The clip's 96x64 frames at 48 px: even sides, so an mp4 keeps them as they are.
SIZE = ["--size=48"]


def _network_frames(model, clip):
    """The network applied here to the clip's frames as nst-tf-video decodes them."""
    net, _ = model_dir.load_model_dir(str(model))
    frames = clips.open_clip(str(clip)).read(0, None, 48)
    return [stylize_with_model(net, np.asarray(frame, np.float32)) for frame in frames]


def _encoded(frames, folder):
    """The frames as PNGs, then as an mp4 the way nst-tf-video assembles one, decoded."""
    folder.mkdir()
    paths = [str(folder / f"{index}.png") for index in range(len(frames))]
    for frame, path in zip(frames, paths, strict=True):
        images.save_image(frame, path)
    clips.write_video(paths, str(folder / "ref.mp4"), FPS, None)
    return [np.asarray(f, np.float32) for f in clips.open_clip(str(folder / "ref.mp4")).read()]


def _folder(path):
    return [np.asarray(Image.open(p), np.float32) for p in sorted(glob.glob(f"{path}/frame_*"))]


def _state(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_clip_with_audio_through_the_model_gives_its_frames_and_keeps_the_audio(
    models, tmp_path  # noqa: F811
):
    _, _, model_a, model_b = models
    _clip(tmp_path / "clip.mp4", frames=4, audio=True)
    result = _run("--input=clip.mp4", "--output=out.mp4", f"--model={model_a}", *SIZE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote out.mp4 (4 frames)" in result.stderr
    assert "frames: 100%" in result.stderr  # the progress bar, to the last frame
    out = tmp_path / "out.mp4"
    assert _streams(out) == ["Video", "Audio"]
    assert clips.open_clip(str(out)).fps == FPS
    assert abs(len(_audio(out)) / RATE - 4 / FPS) < 1500 / RATE  # AAC pads 1024 at most
    written = [np.asarray(frame, np.float32) for frame in clips.open_clip(str(out)).read()]
    assert [frame.shape for frame in written] == [(32, 48, 3)] * 4
    # The network's frames: H.264 leaves them further from the network's output than
    # from the same frames encoded here, and nearer than another network's.
    ours = _network_frames(model_a, tmp_path / "clip.mp4")
    other = _network_frames(model_b, tmp_path / "clip.mp4")
    encoded = _encoded(ours, tmp_path / "reference")
    for frame, mine, same, theirs in zip(written, ours, encoded, other, strict=True):
        assert np.abs(frame - same).mean() < 1.0
        error, elsewhere = np.abs(frame - mine).mean(), np.abs(frame - theirs).mean()
        assert error < 0.5 * elsewhere, (error, elsewhere)
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "out.mp4", "reference"]  # no work folder


def test_a_silent_clip_gives_the_networks_pixels_and_resumes_only_with_that_model(
    models, tmp_path  # noqa: F811
):
    _, _, model_a, model_b = models
    _clip(tmp_path / "clip.mp4", frames=3)
    video = _run("--input=clip.mp4", "--output=out.mp4", f"--model={model_a}", *SIZE, cwd=tmp_path)
    assert video.returncode == 0, video.stderr[-2000:]
    assert _streams(tmp_path / "out.mp4") == ["Video"]
    args = ["--input=clip.mp4", "--output=frames", *SIZE]
    folder = _run(*args, f"--model={model_a}", cwd=tmp_path)
    assert folder.returncode == 0, folder.stderr[-2000:]
    # PNG frames: the network's pixels, rounded to 8 bits.
    ours = _network_frames(model_a, tmp_path / "clip.mp4")
    written = _folder(tmp_path / "frames")
    assert len(written) == 3
    for frame, mine in zip(written, ours, strict=True):
        assert frame.shape == (32, 48, 3)
        assert np.abs(frame - np.round(np.clip(mine, 0, 255))).max() <= 1
    # The same model again: every frame kept; another model, or none, is refused.
    before = _state(tmp_path / "frames")
    again = _run(*args, f"--model={model_a}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "wrote frames (3 frames, 3 of them from an earlier run)" in again.stderr
    for other in ([f"--model={model_b}"], ["--steps=1", "--frame_steps=1"]):
        _one_error_line(_run(*args, *other, cwd=tmp_path), "made with other settings")
        assert _state(tmp_path / "frames") == before
    # A folder an optimised run made is not resumed with a model either.
    optimised = _run(
        "--input=clip.mp4",
        "--output=opt",
        *SIZE,
        "--steps=1",
        "--frame_steps=1",
        "--frames=1",
        cwd=tmp_path,
    )
    assert optimised.returncode == 0, optimised.stderr[-2000:]
    refused = _run(
        "--input=clip.mp4", "--output=opt", "--frames=1", *SIZE, f"--model={model_a}", cwd=tmp_path
    )
    _one_error_line(refused, "made with other settings")


def test_frames_run_in_tiles_give_the_untiled_pixels(models, tmp_path):  # noqa: F811
    """Tiles share whole-frame statistics (engine.feedforward): 80 px tiles of a 192x128
    frame (the smallest --tile_size the default layers allow) give the one pass's pixels."""
    _, _, model_a, _ = models
    _clip(tmp_path / "clip.mp4", frames=2)
    args = ["--input=clip.mp4", f"--model={model_a}", "--size=192"]
    for output, tiles in (("whole", "--tile_size=0"), ("tiled", "--tile_size=80")):
        result = _run(*args, f"--output={output}", tiles, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    whole, tiled = _folder(tmp_path / "whole"), _folder(tmp_path / "tiled")
    assert [frame.shape for frame in tiled] == [(128, 192, 3)] * 2
    for one, other in zip(whole, tiled, strict=True):
        assert np.abs(one - other).max() <= 1


def test_ctrl_c_keeps_the_networks_finished_frames_and_the_rerun_continues(
    models, tmp_path  # noqa: F811
):
    """SIGINT between two forward passes: exit 130 in one line, the frames finished kept;
    the same command makes only the others."""
    _, _, model_a, _ = models
    _clip(tmp_path / "clip.mp4", frames=40)
    args = ["--input=clip.mp4", "--output=out", f"--model={model_a}", "--size=192"]
    out = tmp_path / "out"
    _stop_when(
        args,
        tmp_path,
        lambda: out.is_dir() and len(glob.glob(f"{out}/frame_*.png")) >= 2,
        signal.SIGINT,
    )
    kept = {p: p.stat().st_mtime_ns for p in out.glob("frame_*.png")}
    assert 2 <= len(kept) < 40
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote out (40 frames, {len(kept)} of them from an earlier run)" in result.stderr
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in kept.items())


def _frame_scalars(logdir, tag):
    (run,) = glob.glob(f"{logdir}/*")
    accumulator = EventAccumulator(run, size_guidance={"tensors": 0})
    accumulator.Reload()
    return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)}


def test_refine_steps_start_from_the_network_and_hold_frames_to_the_previous_one(
    models, tmp_path  # noqa: F811
):
    _, style, model_a, _ = models
    _clip(tmp_path / "clip.mp4", frames=3)
    result = _run(
        "--input=clip.mp4",
        "--output=frames",
        f"--model={model_a}",
        "--refine_steps=2",
        f"--style={style}",
        "--precision=float32",
        "--logdir=logs",
        *SIZE,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    written = _folder(tmp_path / "frames")
    ours = _network_frames(model_a, tmp_path / "clip.mp4")
    assert [frame.shape for frame in written] == [(32, 48, 3)] * 3
    assert all(np.abs(a - b).mean() > 0.5 for a, b in zip(written, ours, strict=True))
    # Frames after the first are held to the previous one: their temporal loss is on.
    temporal = _frame_scalars(tmp_path / "logs", "frame/weighted/temporal")
    assert temporal[0] == 0 and temporal[1] > 0 and temporal[2] > 0, temporal
    # The first frame (no temporal term): a lower objective than the network's output.
    recipe = {name: value for name, value in RECIPE.items() if name != "size"}
    recipe = {k: tuple(v) if isinstance(v, list) else v for k, v in recipe.items()}
    config = refine_config(
        Config(model="m", refine_steps=2, size=48, precision="float32", **recipe)
    )
    source = find_weights("auto")
    extractor = FeatureExtractor(config.layers, source, "float32", config.pooling)
    stylizer = Stylizer(config, extractor)
    content = np.asarray(next(clips.open_clip(str(tmp_path / "clip.mp4")).read(0, 1, 48)))
    style_image = images.load_image(str(style), limit=96)
    targets = stylizer.targets(stylizer.prepare(content.astype(np.float32), style_image), 48)
    network = np.round(np.clip(ours[0], 0, 255))
    before = stylizer.evaluate(network[None], targets)["total"]
    after = stylizer.evaluate(written[0][None], targets)["total"]
    assert after < 0.9 * before, (before, after)


def test_a_model_that_does_not_fit_is_refused_in_one_line_with_nothing_written(
    models, tmp_path  # noqa: F811
):
    root, style, model_a, _ = models
    _clip(tmp_path / "clip.mp4", frames=2)
    cases = [
        (["--style_layers=block1_conv1"], "--style_layers=block1_conv1 differs from the model's"),
        (["--style_weight=1"], "--style_weight=1.0 differs from the model's 0.001"),
        (["--frame_init=previous"], "--frame_init does not apply with --model"),
        (["--frame_steps=3"], "--frame_steps does not apply with --model"),
        (["--temporal_weight=5"], "--temporal_weight acts only in a refinement"),
        ([f"--style={style}"], "--style is not needed"),
        (["--refine_steps=1", f"--style={tmp_path / 'clip.mp4'}"], "not the style"),
        (["--init=noise"], "--init does not apply with --model"),
    ]
    before = sorted(os.listdir(tmp_path))
    for args, expected in cases:
        result = _run(
            "--input=clip.mp4", "--output=out.mp4", f"--model={model_a}", *args, *SIZE, cwd=tmp_path
        )
        _one_error_line(result, expected)
        assert "frames:" not in result.stderr  # refused before any work
    # A MODEL_DIR that is not ours: a plain folder, a SavedModel from elsewhere.
    plain = tmp_path / "plain"
    plain.mkdir()
    saved = model_a / model_dir.SAVED_MODEL_DIR
    for model, expected in ((plain, "not an nst_tf model"), (saved, "SavedModel without")):
        result = _run(
            "--input=clip.mp4", "--output=out.mp4", f"--model={model}", *SIZE, cwd=tmp_path
        )
        _one_error_line(result, expected)
    assert sorted(os.listdir(tmp_path)) == sorted([*before, "plain"])
