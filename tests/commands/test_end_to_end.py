"""Real runs on the real VGG19 weights: the CLI end to end, and the SavedModel export."""

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow


def _scalars(accumulator, tag):
    import tensorflow as tf

    return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real CLI run on the built-in samples, shared by the tests below."""
    tmp_path = tmp_path_factory.mktemp("run")
    output, logdir, trace = tmp_path / "out.png", tmp_path / "logs", tmp_path / "trace.jsonl"
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
            "--save_every=5",
            f"--trace={trace}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return tmp_path, result


def test_cli_stylises_the_samples_and_logs_to_tensorboard(finished_run):
    tmp_path, result = finished_run
    output, logdir = tmp_path / "out.png", tmp_path / "logs"
    assert result.returncode == 0, result.stderr
    assert "step     4/12 |" in result.stderr and f"-> {output}" in result.stderr
    # Each progress line ends with the elapsed time and the estimate of what is left.
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert len(lines) == 4  # steps 1, 4, 8, 12
    assert all(re.search(r"\| elapsed \d+:\d\d  eta \d+:\d\d$", line) for line in lines)
    assert lines[-1].endswith("eta 0:00")
    # --save_every=5: the image of steps 5 and 10 beside the output, whole PNGs.
    for step in (5, 10):
        with Image.open(tmp_path / f"out.step{step:05d}.png") as snapshot:
            assert snapshot.size == (64, 48)
    assert not (tmp_path / "out.step00012.png").exists()
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
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".nst_tf") or ".tmp" in n]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port, path, data=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(data).encode() if data is not None else None,
        headers={"Content-Type": "application/json", "X-TensorBoard-Feature-Flags": "{}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if response.headers.get_content_type() == "application/json" else body


def test_real_tensorboard_server_serves_the_run(finished_run):
    tmp_path, result = finished_run
    assert result.returncode == 0, result.stderr
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert [r["step"] for r in trace] == list(range(1, 13))
    port = _free_port()
    tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    server = subprocess.Popen(
        [
            tensorboard,
            "--logdir",
            str(tmp_path / "logs"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                runs = _get(port, "/data/runs")
                if runs:
                    break
            except OSError:
                pass
            assert server.poll() is None, "tensorboard exited"
            assert time.monotonic() < deadline, "tensorboard did not start"
            time.sleep(0.5)
        (run,) = runs
        query = urllib.parse.urlencode({"run": run, "tag": "loss/total"})
        scalars = _get(port, f"/data/plugin/scalars/scalars?{query}")
        served = {step: value for _, step, value in scalars}
        for record in trace:
            assert served[record["step"]] == pytest.approx(record["total"], rel=1e-6)
        layer = urllib.parse.urlencode({"run": run, "tag": "loss/style/block3_conv1"})
        served_layer = {
            step: v for _, step, v in _get(port, f"/data/plugin/scalars/scalars?{layer}")
        }
        assert served_layer[12] == pytest.approx(trace[-1]["style/block3_conv1"], rel=1e-6)

        image_tags = _get(port, "/data/plugin/images/tags")[run]
        assert {"generated", "strip", "input/content", "input/style"} <= set(image_tags)
        images = _get(
            port,
            "/data/plugin/images/images?"
            + urllib.parse.urlencode({"run": run, "tag": "strip", "sample": 0}),
        )
        assert [entry["step"] for entry in images] == [5, 10, 12]
        png = _get(port, "/data/plugin/images/" + "individualImage?" + images[-1]["query"])
        with Image.open(io.BytesIO(png)) as strip:
            assert strip.height == 48 and strip.width > 64 * 2  # content | style | current

        text = _get(
            port, "/data/plugin/text/text?" + urllib.parse.urlencode({"run": run, "tag": "flags"})
        )
        assert "--size=64" in text[0]["text"]

        experiment = _get(port, "/data/plugin/hparams/experiment", {"experimentName": ""})
        names = {h["name"] for h in experiment["hparamInfos"]}
        assert {"size", "style_weight", "optimizer"} <= names
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert "final/total" in metrics
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.poll() is not None


def test_export_reloads_in_a_fresh_process(tmp_path):
    import tensorflow as tf

    from nst_tf.core.losses import gram_matrix
    from nst_tf.io.export import export_features
    from nst_tf.model.features import FeatureExtractor

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
        "import sys, json, numpy as np, tensorflow as tf, keras\n"
        "d = sys.argv[1]\n"
        "loaded = tf.saved_model.load(d + '/features')\n"
        "serve = loaded.signatures['serving_default']\n"
        "out = serve(images=tf.constant(np.load(d + '/batch.npy')))\n"
        "np.savez(d + '/loaded.npz', **{k: v.numpy() for k, v in out.items()})\n"
        "layer = keras.layers.TFSMLayer(d + '/features', call_endpoint='serving_default')\n"
        "small = layer(tf.constant(np.load(d + '/batch.npy')[:1, :16, :24]))\n"
        "np.savez(d + '/keras.npz', **{k: v.numpy() for k, v in small.items()})\n"
        "meta = loaded.signatures['metadata']()['json'].numpy().decode()\n"
        "open(d + '/meta.json', 'w').write(meta)\n"
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

    through_keras = np.load(tmp_path / "keras.npz")  # another batch size and image size
    expected = model(tf.constant(batch[:1, :16, :24]))["block1_conv1"].numpy()
    np.testing.assert_allclose(through_keras["block1_conv1"], expected, rtol=1e-4, atol=1e-3)

    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["layers"] == layers
    assert meta["input"]["channel_order"] == "RGB" and meta["input"]["range"] == [0, 255]
    assert meta["preprocessing"]["mean_bgr"] == [103.939, 116.779, 123.68]
    assert meta["weights"]["sha256"] == model.weights_source.sha256

    described = subprocess.run(
        [
            sys.executable,
            "-c",
            "from nst_tf.commands.export import main; main()",
            f"--describe={export_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout) == meta

    np.save(tmp_path / "one.npy", batch[:1])
    ran = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "saved_model_cli"),
            "run",
            "--dir",
            str(export_dir),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={tmp_path / 'one.npy'}",
            "--outdir",
            str(tmp_path / "cli_out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    from_cli = np.load(tmp_path / "cli_out" / "gram_block3_conv1.npy")
    np.testing.assert_allclose(from_cli, reloaded["gram_block3_conv1"][:1], rtol=1e-4, atol=1e-2)


def test_export_refuses_an_existing_directory(tmp_path):
    from nst_tf.errors import OutputError
    from nst_tf.io.export import export_features

    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        export_features(str(tmp_path), ["block1_conv1"])
    assert (tmp_path / "keep.txt").read_text() == "mine"
