"""Real runs on the real VGG19 weights: the CLI end to end, and the SavedModel export."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow


def _scalars(accumulator, tag):
    import tensorflow as tf

    return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)}


def test_cli_stylises_the_samples_and_logs_to_tensorboard(tmp_path):
    output, logdir = tmp_path / "out.png", tmp_path / "logs"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nst_tf",
            f"--output={output}",
            f"--logdir={logdir}",
            "--size=64",
            "--min_size=0",
            "--steps=12",
            "--snapshot_every=5",
            "--log_every=4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "step     4 |" in result.stderr and f"-> {output}" in result.stderr
    with Image.open(output) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (64, 48)  # the content sample is 512x384
        pixels = np.asarray(image)
    assert pixels.std() > 5  # a real picture, not a flat or black image

    (run_dir,) = logdir.iterdir()  # each run gets its own subdirectory
    assert run_dir.name.endswith("-sample-sample")
    accumulator = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    tags = accumulator.Tags()["tensors"]
    for tag in [
        "loss/total",
        "loss/content",
        "loss/style",
        "loss/tv",
        "generated",
        "input/content",
        "input/style",
        "config",
    ]:
        assert tag in tags
    total = _scalars(accumulator, "loss/total")
    assert sorted(total) == list(range(1, 13))
    assert total[12] < 0.5 * total[1]
    assert {e.step for e in accumulator.Tensors("generated")} == {5, 10, 12}
    config = accumulator.Tensors("config")[0].tensor_proto.string_val[0].decode()
    assert json.loads(config.strip("`\n"))["size"] == 64
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".nst_tf")]


def test_export_reloads_in_a_fresh_process(tmp_path):
    import tensorflow as tf

    from nst_tf.export import export_features
    from nst_tf.features import FeatureExtractor
    from nst_tf.losses import gram_matrix

    layers = ["block1_conv1", "block3_conv1"]
    export_dir = tmp_path / "features"
    export_features(str(export_dir), layers)
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (2, 40, 56, 3)).astype(np.float32)
    np.save(tmp_path / "batch.npy", batch)

    shown = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "saved_model_cli"),
            "show",
            "--dir",
            str(export_dir),
            "--all",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    assert "serving_default" in shown.stdout
    for key in ["block1_conv1", "gram_block1_conv1", "block3_conv1", "gram_block3_conv1"]:
        assert f"outputs['{key}']" in shown.stdout

    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "d = sys.argv[1]\n"
        "f = tf.saved_model.load(d + '/features').signatures['serving_default']\n"
        "out = f(images=tf.constant(np.load(d + '/batch.npy')))\n"
        "np.savez(d + '/loaded.npz', **{k: v.numpy() for k, v in out.items()})\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr
    reloaded = np.load(tmp_path / "loaded.npz")

    model = FeatureExtractor(layers)
    features = model(tf.constant(batch))
    for name in layers:
        np.testing.assert_allclose(reloaded[name], features[name].numpy(), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(
            reloaded[f"gram_{name}"], gram_matrix(features[name]).numpy(), rtol=1e-4, atol=1e-2
        )
    assert reloaded["block3_conv1"].shape == (2, 10, 14, 256)


def test_export_refuses_an_existing_directory(tmp_path):
    from nst_tf.errors import OutputError
    from nst_tf.export import export_features

    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        export_features(str(tmp_path), ["block1_conv1"])
    assert (tmp_path / "keep.txt").read_text() == "mine"
