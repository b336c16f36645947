"""nst-tf-batch --model: each Ray actor holds the trained network and stylises its photos as
nst-tf --model does (the same pixels as a one-photo nst-tf run), refines with
--refine_steps, keys its results by the model (another model redoes them, the same one
skips them), and refuses a model that does not fit in one line with nothing written."""

import dataclasses
import json
import shutil

import keras
import numpy as np
import pytest
from clis import run_cli
from PIL import Image
from test_batch import (  # noqa: F401 - processes: the subreaper fixture
    _batch,
    _photos,
    _refused,
    processes,
)

from nst_tf.commands import model_batch
from nst_tf.io import model_dir
from nst_tf.model.transform import TransformNet
from nst_tf.settings.config import Config

# What the tiny model was "trained" with: a network cut at block2 keeps the refinement short.
RECIPE = {
    "content_layers": ["block2_conv1"],
    "style_layers": ["block1_conv1", "block2_conv1"],
    "style_weight": 1e-3,
    "size": 64,
}
# The batch's own settings: nst-tf-batch's SETTINGS would give --style_layers and more,
# which a model refuses unless they are its own.
RUN = ["--size=64", "--precision=float32", "--xla=off", "--optimizer=adam"]


def _write_model(path, style, seed):
    keras.utils.set_random_seed(seed)
    net = TransformNet(width=8, residual_blocks=1)
    net(np.zeros((1, 16, 16, 3), np.float32))
    rng = np.random.default_rng(seed)
    for layer in net.norms:  # non-trivial norm parameters, as after training
        layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype(np.float32))
        layer.beta.assign(rng.uniform(-0.3, 0.3, layer.beta.shape).astype(np.float32))
    model_dir.write_model_dir(
        str(path),
        net,
        recipe=RECIPE,
        styles=[{"name": style.name, "sha256": model_dir.sha256_of(str(style))}],
        training={"steps": 1},
    )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    style = root / "style.png"
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(style)
    return root, style, _write_model(root / "a", style, 1), _write_model(root / "b", style, 2)


def _pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _sidecars(output_dir):
    return {
        p.stem: json.loads(p.read_text())
        for p in sorted(output_dir.glob("*.json"))
        if not p.name.endswith(".error.json")
    }


def test_a_batch_with_a_model_gives_nst_tf_models_pixels_and_skips_what_it_did(
    models, tmp_path, processes  # noqa: F811
):
    root, style, model_a, _ = models
    photos = _photos(tmp_path / "in", 2)
    output_dir = tmp_path / "out"
    run = _batch(tmp_path / "in", output_dir, f"--model={model_a}", *RUN, "--workers=1")
    assert run.returncode == 0, run.stderr
    assert "done 2, skipped 0" in run.stderr, run.stderr
    records = _sidecars(output_dir)
    assert sorted(records) == [p.stem for p in photos]
    assert all(r["steps"] == 0 and r["losses"] == {} for r in records.values())
    # One photo through nst-tf --model, independently: the same pixels.
    single = tmp_path / "single.png"
    one = run_cli(f"--model={model_a}", f"--content={photos[0]}", f"--output={single}", *RUN[:1])
    assert one.returncode == 0, one.stderr
    np.testing.assert_array_equal(_pixels(output_dir / f"{photos[0].stem}.png"), _pixels(single))
    assert _pixels(single).shape == (64, 48, 3)
    # The same model again: every photo skipped, nothing rewritten.
    stamps = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}
    again = _batch(tmp_path / "in", output_dir, f"--model={model_a}", *RUN, "--workers=1")
    assert again.returncode == 0, again.stderr
    assert "done 0, skipped 2" in again.stderr, again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()} == stamps
    # The same model refined: other results, each with its optimiser steps.
    refined = _batch(
        tmp_path / "in",
        output_dir,
        f"--model={model_a}",
        "--refine_steps=2",
        f"--style={style}",
        *RUN,
        "--workers=1",
    )
    assert refined.returncode == 0, refined.stderr
    assert "done 2, skipped 0" in refined.stderr, refined.stderr
    records = _sidecars(output_dir)
    assert all(r["steps"] == 2 and r["losses"]["total"] > 0 for r in records.values())
    after = _pixels(output_dir / f"{photos[0].stem}.png")
    assert after.shape == (64, 48, 3) and np.abs(after.astype(int) - _pixels(single)).max() > 0


def test_the_key_holds_the_models_identity(models):
    root, style, model_a, model_b = models

    def digest(model, **settings):
        config = Config(model=str(model), size=64, **settings)
        plan = model_batch.plan_model(config, set(settings))
        return model_batch.model_digest(plan, "png")

    reference = digest(model_a)
    assert digest(model_a) == reference
    assert digest(model_b) != reference  # another network
    assert digest(model_a, steps=7) == reference  # not used without a refinement
    copy = root / "a-copy"
    shutil.copytree(model_a, copy)
    assert digest(copy) == reference  # the model's bytes, not its path
    assert digest(model_a, refine_steps=2, style=str(style)) != reference
    plan = model_batch.plan_model(Config(model=str(model_a), size=64), set())
    wider = dataclasses.replace(plan, meta={**plan.meta, "weights_sha256": "0" * 64})
    assert model_batch.model_digest(wider, "png") != reference
    assert model_batch.model_digest(plan, "jpg") != reference


def test_a_model_that_does_not_fit_is_refused_in_one_line(models, tmp_path):
    root, style, model_a, _ = models
    _photos(tmp_path / "in", 1)
    line = _refused(tmp_path, f"--model={model_a}", "--style_layers=block1_conv1", *RUN)
    assert "--style_layers=block1_conv1 differs from the model's" in line
    assert "--style is not needed" in _refused(tmp_path, f"--model={model_a}", f"--style={style}")
    assert "give --model" in _refused(tmp_path, "--refine_steps=2")
    line = _refused(tmp_path, f"--model={model_a}", "--refine_steps=2", f"--style={tmp_path}/in")
    assert "not the style" in line
    plain = root / "plain"
    plain.mkdir(exist_ok=True)
    assert "not an nst_tf model" in _refused(tmp_path, f"--model={plain}")
    foreign = root / "foreign"
    if not foreign.exists():
        shutil.copytree(model_a / "saved_model", foreign)
    line = _refused(tmp_path, f"--model={foreign}")
    assert "SavedModel" in line and "not an nst_tf model" in line
    other = root / "other"
    if not other.exists():
        shutil.copytree(model_a, other)
        meta = json.loads((other / model_dir.METADATA_FILE).read_text())
        meta["format_version"] = 2
        (other / model_dir.METADATA_FILE).write_text(json.dumps(meta))
    assert "format 2" in _refused(tmp_path, f"--model={other}")
    assert not (tmp_path / "out").exists()
