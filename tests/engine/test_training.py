"""nst-tf-train: the crops, the compiled step (traced once, lowers the loss), a whole run to
a MODEL_DIR with TensorBoard, SIGKILL / Ctrl-C then --resume, and every bad input."""

import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from nst_tf.commands.train import load_training_photos, train
from nst_tf.engine.training import Trainer, crop_batches, resumable_checkpoint, settings_json
from nst_tf.errors import ConfigError, ImageError, OutputError
from nst_tf.io import model_dir
from nst_tf.io.images import load_image, sample_path
from nst_tf.io.model_dir import load_model_dir
from nst_tf.settings.training import TrainSettings, validate_training

RNG = np.random.default_rng(7)
# The smallest network and VGG19 cut at block1 keep a step to a fraction of a second.
SMALL = dict(
    content_layers=("block1_conv2",),
    style_layers=("block1_conv1", "block1_conv2"),
    width=8,
    residual_blocks=1,
    crop_size=32,
    batch_size=2,
    size=64,
)
FLAGS = [
    "--content_layers=block1_conv2",
    "--style_layers=block1_conv1,block1_conv2",
    "--width=8",
    "--residual_blocks=1",
    "--crop_size=32",
    "--batch_size=2",
    "--size=64",
]


def _photo(height, width, seed):
    """A photo-like picture: smooth colour gradients, an edge and a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    a, b, c = rng.uniform(0.2, 1.0, 3)
    image = np.stack([a * x, b * y, c * (1 - x * y)], -1) * 255
    image[: height // 2, width // 3 :] *= 0.4
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def _folder(path, count, size=(72, 60), start=0):
    path.mkdir(exist_ok=True)
    for index in range(start, start + count):
        Image.fromarray(_photo(*size, index)).save(path / f"photo{index:02d}.png")
    return path


def _tree(path):
    return sorted(
        (os.path.relpath(os.path.join(root, name), path), os.path.getsize(os.path.join(root, name)))
        for root, _, names in os.walk(path)
        for name in names
    )


def test_crops_are_windows_of_the_photos_and_a_function_of_the_step():
    photos = [_photo(40, 36, 0), _photo(33, 50, 1)]
    whole = [b.numpy() for b in crop_batches(photos, 16, 3, seed=5, first=1, last=6)]
    later = [b.numpy() for b in crop_batches(photos, 16, 3, seed=5, first=4, last=6)]
    assert len(whole) == 6 and whole[0].shape == (3, 16, 16, 3) and whole[0].dtype == np.uint8
    for a, b in zip(whole[3:], later, strict=True):
        np.testing.assert_array_equal(a, b)
    other_seed = next(iter(crop_batches(photos, 16, 3, seed=6, first=1, last=1))).numpy()
    assert not np.array_equal(other_seed, whole[0])
    flipped = 0
    for crop in np.concatenate(whole):
        found = None
        for photo in photos:
            for candidate, was_flipped in ((crop, False), (crop[:, ::-1], True)):
                h, w = photo.shape[:2]
                for i in range(h - 15):
                    for j in range(w - 15):
                        if np.array_equal(photo[i : i + 16, j : j + 16], candidate):
                            found = was_flipped
        assert found is not None, "a crop is no window of any photo"
        flipped += found
    assert 0 < flipped < 18  # flips happen, not always


@pytest.fixture(scope="module")
def trainer(model):
    style = load_image(sample_path("style"), size=64)
    settings = TrainSettings(
        **{
            **SMALL,
            "content_layers": ("block2_conv1",),
            "style_layers": ("block1_conv1", "block2_conv1"),
        },
        images="unused",
        output="unused",
        steps=40,
        learning_rate=3e-3,
        precision="float32",
        style_weight=0.1,
    )
    return Trainer(validate_training(settings), [style], model)


def test_the_train_step_lowers_the_loss_and_is_traced_once(trainer):
    photos = [_photo(64, 56, seed) for seed in range(4)]
    held = _photo(48, 64, 99)
    before = trainer.evaluate(held)[0]["total"]
    batches = list(crop_batches(photos, 32, 2, seed=0, first=1, last=40))
    # The terms a step reports are those of the weights it starts from, per image.
    expected = _terms(trainer, batches[0])["total"].numpy() / 2
    totals = [trainer.train_step(batch)["total"] for batch in batches]
    np.testing.assert_allclose(totals[0], expected, rtol=1e-3)
    after = trainer.evaluate(held)[0]["total"]
    assert trainer.trace_count == 1
    assert np.mean(totals[-5:]) < 0.5 * totals[0], totals
    assert after < 0.5 * before, (before, after)  # on a photo it never saw


def _terms(trainer, crops):
    content = tf.cast(crops, tf.float32)
    out = trainer.net(content)
    return trainer.objective.terms(out, trainer.model(out), trainer._targets(content))


def test_a_run_writes_a_model_and_tensorboard(tmp_path):
    photos = _folder(tmp_path / "photos", 6)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    Image.fromarray(_photo(20, 20, 50)).save(photos / "tiny.png")  # smaller than the crop
    before = _tree(photos)
    settings = TrainSettings(
        **SMALL,
        images=str(photos),
        output=str(tmp_path / "model"),
        steps=4,
        sample_every=2,
        checkpoint_every=2,
        holdout=0.2,
        logdir=str(tmp_path / "logs"),
    )
    meta = train(settings)
    training = meta["training"]
    assert training["steps"] == 4 and training["photos"] == 5 and training["photos_skipped"] == 2
    assert len(training["heldout_photos"]) == 1 and training["heldout_loss"]["total"] > 0
    assert meta["styles"][0]["sha256"] == model_dir.sha256_of(sample_path("style"))
    assert meta["recipe"]["crop_size"] == 32 and meta["recipe"]["style_layers"] == [
        "block1_conv1",
        "block1_conv2",
    ]
    net, read = load_model_dir(str(tmp_path / "model"))
    assert read == meta and (net.width, net.residual_blocks) == (8, 1)
    assert _tree(photos) == before
    tags = set()
    for event_file in glob.glob(str(tmp_path / "logs" / "*" / "events.*")):
        for record in tf.compat.v1.train.summary_iterator(event_file):
            tags |= {value.tag for value in record.summary.value}
    assert {"loss/total", "loss/style", "optim/learning_rate", "heldout/total"} <= tags
    assert "heldout/0" in tags and "_hparams_/session_start_info" in tags


def _bad(tmp_path, **kwargs):
    photos = tmp_path / "photos"
    values = {**SMALL, "images": str(photos), "output": str(tmp_path / "model"), "steps": 2}
    return TrainSettings(**{**values, **kwargs})


@pytest.mark.parametrize(
    "make, kwargs, error, message",
    [
        (lambda p: p.mkdir(), {}, ConfigError, "holds no usable photos"),
        (lambda p: _folder(p, 1), {}, ConfigError, "one usable photo"),
        (lambda p: _folder(p, 3), {"batch_size": 4}, ConfigError, "fewer than --batch_size=4"),
        (lambda p: _folder(p, 4, (24, 40)), {}, ConfigError, "4 smaller than the 32 px crop"),
        (lambda p: _folder(p, 3), {"holdout": 0.5}, ConfigError, "after holding out 2"),
        (lambda p: None, {}, ConfigError, "no such folder or clip"),
        (lambda p: _folder(p, 4), {"crop_size": 128}, ConfigError, "larger than --size=64"),
        (lambda p: _folder(p, 4), {"preserve_color": "histogram"}, ConfigError, "luminance"),
        (lambda p: _folder(p, 4), {"style": "/nonexistent.png"}, ImageError, "no such file"),
    ],
)
def test_bad_inputs_are_one_line_errors_and_change_nothing(tmp_path, make, kwargs, error, message):
    make(tmp_path / "photos")
    before = _tree(tmp_path)
    with pytest.raises(error, match=re.escape(message)) as err:
        train(_bad(tmp_path, **kwargs))
    assert "\n" not in str(err.value)
    assert _tree(tmp_path) == before
    assert not (tmp_path / "model").exists() and not (tmp_path / "model.ckpt").exists()


def test_a_corrupt_photo_among_few_is_counted_in_the_refusal(tmp_path):
    photos = _folder(tmp_path / "photos", 1)
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ConfigError, match=r"one usable photo \(1 unreadable skipped\)"):
        train(_bad(tmp_path))


def test_an_output_that_is_not_ours_is_refused_before_any_work(tmp_path):
    _folder(tmp_path / "photos", 4)
    theirs = tmp_path / "model"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    other = tmp_path / "other"
    other.mkdir()
    (other / model_dir.METADATA_FILE).write_text(
        json.dumps({"format": "nst_tf_model", "format_version": 7})
    )
    before = _tree(tmp_path)
    for output in (theirs, other, photos := tmp_path / "photos"):
        with pytest.raises(OutputError, match="not an nst_tf model of this version"):
            train(_bad(tmp_path, output=str(output)))
    assert _tree(tmp_path) == before and photos.exists()


def test_an_image_given_as_the_set_is_refused(tmp_path):
    Image.fromarray(_photo(64, 64, 0)).save(tmp_path / "one.png")
    with pytest.raises(ConfigError, match="is one image"):
        train(_bad(tmp_path, images=str(tmp_path / "one.png")))


# --- real processes: SIGKILL and Ctrl-C, then --resume ------------------------------------


def _command(tmp_path, *extra):
    return [
        sys.executable,
        "-m",
        "nst_tf.commands.train",
        *FLAGS,
        f"--images={tmp_path / 'photos'}",
        f"--output={tmp_path / 'model'}",
        "--steps=60",
        "--checkpoint_every=2",
        "--sample_every=0",
        "--holdout=0",
        *extra,
    ]


def _newest_checkpoint(directory):
    try:
        text = (directory / "checkpoint").read_text()
    except OSError:
        return 0
    return max((int(m) for m in re.findall(r'ckpt-(\d+)"', text)), default=0)


class _Run:
    """A training process whose stderr is collected as it comes."""

    def __init__(self, tmp_path, *extra):
        self.process = subprocess.Popen(
            _command(tmp_path, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr))
        self.reader.start()

    def reported(self):
        return [int(m) for m in re.findall(r"checkpoint at step (\d+)", "".join(self.lines))]

    def wait_for_report(self, step, timeout=300):
        deadline = time.monotonic() + timeout
        while max(self.reported(), default=0) < step:
            assert self.process.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)

    def end(self, signum=signal.SIGKILL):
        if self.process.poll() is None:
            self.process.send_signal(signum)
        self.process.wait(timeout=120)
        self.reader.join(timeout=60)
        return "".join(self.lines)


@pytest.mark.slow
def test_sigkill_then_ctrl_c_then_resume_continue_at_the_reported_step(tmp_path):
    _folder(tmp_path / "photos", 4)
    checkpoints = tmp_path / "model.ckpt"
    first = _Run(tmp_path)
    try:
        first.wait_for_report(4)
    finally:
        first.end(signal.SIGKILL)
    # A kill between a save and its line can leave one more checkpoint than was reported,
    # never fewer.
    killed_at = _newest_checkpoint(checkpoints)
    assert killed_at >= first.reported()[-1] >= 4
    assert not (tmp_path / "model").exists()  # nothing half-written
    second = _Run(tmp_path, "--resume")
    try:
        second.wait_for_report(killed_at + 2)
    finally:
        err = second.end(signal.SIGINT)
    assert f"resuming {checkpoints} at step {killed_at}" in err
    assert second.process.returncode == 130, err
    stopped = [line for line in err.splitlines() if "error:" in line]
    assert len(stopped) == 1, err
    step = int(re.search(r"stopped by SIGINT at step (\d+); checkpoint saved", stopped[0])[1])
    assert step == _newest_checkpoint(checkpoints) and "--resume" in stopped[0]
    assert not (tmp_path / "model").exists()

    third = subprocess.run(
        _command(tmp_path, "--resume"), capture_output=True, text=True, timeout=300
    )
    assert third.returncode == 0, third.stderr
    assert f"at step {step}" in third.stderr and "done: 60 steps" in third.stderr
    assert model_dir.read_model_metadata(str(tmp_path / "model"))["training"]["steps"] == 60

    # What --resume with other settings meets: refused, naming the setting.
    settings = TrainSettings(
        **SMALL, images="x", output=str(tmp_path / "model"), steps=60, holdout=0.0
    )
    assert json.loads(settings_json(settings))["steps"] == 60
    with pytest.raises(ConfigError, match=r"other settings \(learning_rate: 0.001 -> 0.01\)"):
        resumable_checkpoint(
            str(checkpoints), settings_json(dataclasses.replace(settings, learning_rate=0.01))
        )


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        resumable_checkpoint(str(tmp_path / "none.ckpt"), "{}")
    assert not (tmp_path / "none.ckpt").exists()
    foreign = tmp_path / "foreign.ckpt"
    foreign.mkdir()
    (foreign / "checkpoint").write_text("theirs")
    with pytest.raises(ConfigError, match="did not write"):
        resumable_checkpoint(str(foreign), "{}")
    assert (foreign / "checkpoint").read_text() == "theirs"


def test_a_clip_s_frames_are_the_set_and_its_last_frames_are_held_out(tmp_path):
    import imageio_ffmpeg

    picture = _photo(120, 200, 3)
    clip = tmp_path / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(clip), (96, 64), fps=12, macro_block_size=2)
    writer.send(None)
    for t in range(10):
        writer.send(np.ascontiguousarray(picture[20 + t : 84 + t, 20 + 4 * t : 116 + 4 * t]))
    writer.close()
    settings = validate_training(_bad(tmp_path, images=str(clip), holdout=0.2))
    photo_set = load_training_photos(settings)
    assert photo_set.heldout_names == ["frame00008", "frame00009"]
    assert photo_set.train_names == [f"frame{i:05d}" for i in range(8)]
    # Scaled by ffmpeg to --size=64 on the long side.
    assert photo_set.train[0].shape == (43, 64, 3) and photo_set.train[0].dtype == np.uint8
    # The frames are the clip's, in order: each is the picture panned 4 px (here 2.7) more.
    first, second = (f.astype(float) for f in photo_set.train[:2])
    assert np.abs(first[:, 3:] - second[:, :-3]).mean() < np.abs(first - second).mean()
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    with pytest.raises(ImageError, match="not a video ffmpeg can read"):
        load_training_photos(_bad(tmp_path, images=str(tmp_path / "broken.mp4")))
