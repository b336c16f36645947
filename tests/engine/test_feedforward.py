"""nst-tf --model: a trained network's forward pass, tiled with shared instance-norm
statistics (against the untiled pass), refined by the optimiser (a lower objective), and
every model or setting that does not fit refused in one line before TensorFlow loads."""

import json
import shutil

import keras
import numpy as np
import pytest
from clis import run_cli
from conftest import LAYERS
from PIL import Image, ImageCms

from nst_tf.commands.model_run import refine_config
from nst_tf.engine import feedforward
from nst_tf.engine.stylizer import Stylizer
from nst_tf.io import images, model_dir
from nst_tf.model.transform import TransformNet
from nst_tf.settings.config import Config

RNG = np.random.default_rng(25)
RECIPE = {"style_weight": 1e-3, "style_layers": ["block1_conv1", "block1_conv2"], "size": 64}


def _net(width=8, blocks=1, seed=0):
    keras.utils.set_random_seed(seed)
    net = TransformNet(width=width, residual_blocks=blocks)
    net(np.zeros((1, 16, 16, 3), np.float32))
    for layer in net.norms:  # non-trivial norm parameters, as after training
        layer.gamma.assign(RNG.uniform(0.5, 1.5, layer.gamma.shape).astype(np.float32))
        layer.beta.assign(RNG.uniform(-0.3, 0.3, layer.beta.shape).astype(np.float32))
    return net


@pytest.fixture(scope="module")
def net():
    return _net()


def _smooth(height, width):
    """A photo-like image: smooth gradients plus a little noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width, y / height, (x + y) / (height + width)], axis=-1) * 200
    return np.clip(image + RNG.uniform(0, 55, image.shape), 0, 255).astype(np.float32)


@pytest.mark.parametrize("shape", [(96, 80), (93, 78)])
def test_tiles_sharing_whole_image_statistics_give_the_untiled_pixels(net, shape):
    image = RNG.uniform(0, 255, (*shape, 3)).astype(np.float32)
    untiled = feedforward.stylize_with_model(net, image, tile_size=0)
    assert feedforward.plan_tile(net, *shape, np.inf, 48) == 48
    tiled = feedforward.stylize_with_model(net, image, tile_size=48)
    assert tiled.shape == untiled.shape == (*shape, 3)
    np.testing.assert_allclose(tiled, untiled, rtol=0, atol=2e-3)
    # Tiles normalised by their own statistics instead: the seams show.
    own = np.empty_like(untiled)
    for y0 in range(0, 96, 48):
        for x0 in range(0, 80, 48):
            patch = image[y0 : y0 + 48, x0 : x0 + 48]
            own[y0 : y0 + 48, x0 : x0 + 48] = net(patch[None])[0].numpy()
    assert np.abs(own[: shape[0], : shape[1]] - untiled).max() > 1.0


def test_statistics_measured_tile_by_tile_are_the_whole_images(net):
    image = RNG.uniform(0, 255, (64, 96, 3)).astype(np.float32)
    whole = net.norm_statistics(image[None])
    tiled = feedforward.tiled_statistics(net, image, 32)
    assert len(tiled) == len(whole) == len(net.norms)
    for mine, theirs in zip(tiled, whole, strict=True):
        np.testing.assert_allclose(mine.mean.numpy(), theirs.mean.numpy(), atol=1e-4)
        np.testing.assert_allclose(mine.variance.numpy(), theirs.variance.numpy(), rtol=1e-3)


def test_tiling_is_decided_by_the_memory_estimate(net):
    need = feedforward.forward_bytes(net, 400, 300)
    assert feedforward.plan_tile(net, 400, 300, need * 1.01) is None
    tile = feedforward.plan_tile(net, 400, 300, need / 4)
    assert tile is not None and tile % 4 == 0 and tile < 400
    halo = -(-net.halo // 4) * 4
    assert feedforward.forward_bytes(net, tile + 2 * halo, tile + 2 * halo) <= need / 4
    assert feedforward.plan_tile(net, 400, 300, 1.0, "0") is None  # never tiles


def test_refine_lowers_the_objective_of_the_networks_output(model, net):
    content = _smooth(24, 32)
    style = RNG.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    start = feedforward.stylize_with_model(net, content)
    config = refine_config(Config(size=32, model="m", refine_steps=6, **LAYERS))
    stylizer = Stylizer(config, model)
    targets = stylizer.targets(stylizer.prepare(content, style), 32)
    before = stylizer.evaluate(start[None], targets)["total"]
    refined = stylizer.stylize(content, style, start=start)
    after = stylizer.evaluate(refined[None], targets)["total"]
    assert refined.shape == start.shape
    assert after < 0.9 * before, (before, after)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, net):
    folder = tmp_path_factory.mktemp("model")
    style = folder / "style.png"
    Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(style)
    path = folder / "model"
    model_dir.write_model_dir(
        str(path),
        net,
        recipe=RECIPE,
        styles=[{"name": "style.png", "sha256": model_dir.sha256_of(str(style))}],
        training={"steps": 1},
    )
    content = folder / "photo.png"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(_smooth(60, 45).astype(np.uint8)).save(content, icc_profile=icc, dpi=(300, 300))
    return folder, path, content, style


def test_cli_model_writes_the_networks_output_as_nst_tf_writes(saved, net):
    folder, path, content, _ = saved
    out = folder / "out.png"
    result = run_cli(f"--model={path}", f"--content={content}", f"--output={out}", "--size=32")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    with Image.open(out) as written:
        pixels = np.asarray(written.convert("RGB"), np.float32)
        assert written.info.get("icc_profile") == Image.open(content).info["icc_profile"]
        assert tuple(round(v) for v in written.info["dpi"]) == (300, 300)
    expected = feedforward.stylize_with_model(net, images.load_image(str(content), size=32))
    assert pixels.shape == (32, 24, 3)
    np.testing.assert_allclose(pixels, np.round(expected), atol=1.0)
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def _refused(result, *words):
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "tensorflow" not in result.stderr.lower()
    for word in words:
        assert word in lines[0], lines[0]


def test_models_and_settings_that_do_not_fit_are_refused_in_one_line(saved, tmp_path):
    _, path, content, style = saved
    out = tmp_path / "out.png"
    common = (f"--content={content}", f"--output={out}", "--size=32")
    _refused(run_cli(f"--model={path}", f"--style={style}", *common), "--style is not needed")
    _refused(
        run_cli(f"--model={path}", "--style_layers=block1_conv1", *common),
        "--style_layers=block1_conv1 differs from the model's block1_conv1,block1_conv2",
    )
    _refused(run_cli(f"--model={path}", "--init=style", *common), "--init does not apply")
    _refused(run_cli("--refine_steps=3", *common), "give --model")
    _refused(run_cli(f"--model={path}", "--refine_steps=3", *common), "give --style")
    _refused(
        run_cli(f"--model={path}", "--refine_steps=3", f"--style={content}", *common),
        "not the style",
    )
    # Not ours: a plain folder, a SavedModel from elsewhere, another format version.
    plain = tmp_path / "plain"
    plain.mkdir()
    _refused(run_cli(f"--model={plain}", *common), "not an nst_tf model")
    foreign = tmp_path / "foreign"
    shutil.copytree(path / "saved_model", foreign)
    _refused(run_cli(f"--model={foreign}", *common), "SavedModel", "not an nst_tf model")
    other = tmp_path / "other"
    shutil.copytree(path, other)
    meta = json.loads((other / model_dir.METADATA_FILE).read_text())
    meta["format_version"] = 2
    (other / model_dir.METADATA_FILE).write_text(json.dumps(meta))
    _refused(run_cli(f"--model={other}", *common), "format 2")
    assert not out.exists()
