"""MODEL_DIR: written atomically, described without TensorFlow, loaded by nst_tf, by plain
tf.saved_model.load and by keras.layers.TFSMLayer in a fresh process with the same pixels,
and every folder that is not ours refused in one line with nothing changed."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from clis import run_export

from nst_tf.errors import ModelError, OutputError
from nst_tf.io import model_dir
from nst_tf.io.model_dir import load_model_dir, read_model_metadata, write_model_dir
from nst_tf.model.transform import TransformNet

RNG = np.random.default_rng(5)
STYLES = [{"name": "style.png", "sha256": "ab" * 32}]
RECIPE = {"style_weight": 1e-3, "style_layers": ["block1_conv1"]}
TRAINING = {"steps": 3, "heldout_loss": 12.5}


def _net(seed=0):
    keras.utils.set_random_seed(seed)
    net = TransformNet(width=4, residual_blocks=1)
    net(np.zeros((1, 16, 16, 3), np.float32))
    for layer in net.norms:  # non-trivial norm parameters, as after training
        layer.gamma.assign(RNG.uniform(0.5, 1.5, layer.gamma.shape).astype(np.float32))
        layer.beta.assign(RNG.uniform(-0.3, 0.3, layer.beta.shape).astype(np.float32))
    return net


def _write(path, net=None, **kwargs):
    return write_model_dir(
        str(path), net or _net(), recipe=RECIPE, styles=STYLES, training=TRAINING, **kwargs
    )


def _tree(path):
    return sorted(
        (os.path.relpath(os.path.join(root, name), path), os.path.getsize(os.path.join(root, name)))
        for root, _, names in os.walk(path)
        for name in names
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    net = _net()
    path = tmp_path_factory.mktemp("models") / "model"
    meta = _write(path, net, tflite=True)
    return path, net, meta


def test_description_says_what_the_model_is(exported):
    path, net, meta = exported
    assert read_model_metadata(str(path)) == meta
    assert meta["format"] == "nst_tf_model" and meta["format_version"] == 1
    assert meta["network"]["width"] == 4 and meta["network"]["residual_blocks"] == 1
    assert meta["network"]["parameters"] == sum(v.numpy().size for v in net.weights)
    assert meta["recipe"] == RECIPE and meta["styles"] == STYLES and meta["training"] == TRAINING
    assert meta["weights_sha256"] == model_dir.sha256_of(str(path / model_dir.WEIGHTS_FILE))
    assert os.path.isfile(path / "saved_model" / "saved_model.pb")
    # Nothing of the writing is left beside it.
    assert [p.name for p in path.parent.iterdir()] == ["model"]


def test_loaded_in_process_gives_the_same_pixels(exported):
    path, net, _ = exported
    loaded, meta = load_model_dir(str(path))
    images = RNG.uniform(0, 255, (2, 33, 17, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(images).numpy(), net(images).numpy())
    assert meta["network"]["width"] == loaded.width


_FRESH = """
import sys
sys.modules["nst_tf"] = None  # any import of nst_tf fails: plain TensorFlow and Keras only
import numpy as np, tensorflow as tf, keras
data = np.load(sys.argv[1])
saved = sys.argv[2] + "/saved_model"
served = tf.saved_model.load(saved).signatures["serving_default"]
layer = keras.layers.TFSMLayer(saved, call_endpoint="serving_default")
for index in range(2):
    images, expected = data[f"images{index}"], data[f"expected{index}"]
    plain = served(images=tf.constant(images))["stylized"].numpy()
    via_keras = layer(images)["stylized"].numpy()
    for got in (plain, via_keras):
        print("ok" if got.shape == expected.shape and np.abs(got - expected).max() <= 1e-3
              else f"differs:{np.abs(got - expected).max()}")
print("nst_tf-absent" if not any(m.startswith("nst_tf.") for m in sys.modules) else "nst_tf-used")
"""


def test_saved_model_and_tfsmlayer_in_a_fresh_process_give_the_same_pixels(exported, tmp_path):
    path, net, _ = exported
    arrays = {}
    for index, shape in enumerate([(1, 40, 24), (3, 17, 31)]):
        images = RNG.uniform(0, 255, (*shape, 3)).astype(np.float32)
        arrays[f"images{index}"] = images
        arrays[f"expected{index}"] = net(images).numpy()
    np.savez(tmp_path / "data.npz", **arrays)
    env = dict(os.environ, PYTHONPATH="")
    done = subprocess.run(
        [sys.executable, "-c", _FRESH, str(tmp_path / "data.npz"), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"] * 4 + ["nst_tf-absent"], done.stdout


def test_tflite_converts_and_gives_the_same_pixels(exported):
    path, net, meta = exported
    assert meta["files"].get("tflite") == model_dir.TFLITE_FILE, meta.get("tflite")
    interpreter = tf.lite.Interpreter(model_path=str(path / model_dir.TFLITE_FILE))
    runner = interpreter.get_signature_runner("serving_default")
    images = RNG.uniform(0, 255, (1, 36, 28, 3)).astype(np.float32)
    got = runner(images=images)["stylized"]
    np.testing.assert_allclose(got, net(images).numpy(), atol=0.05)


def test_describe_reads_the_json_without_tensorflow(exported):
    path, _, meta = exported
    described = run_export(f"--describe={path}")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout) == meta
    code = (
        "import sys; from nst_tf.io import model_dir; model_dir.describe(sys.argv[1]); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_a_model_is_replaced_whole_and_only_our_own(exported, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(exported[0], path)
    first = load_model_dir(str(path))[0]
    second_net = _net(1)
    _write(path, second_net)
    images = RNG.uniform(0, 255, (1, 20, 20, 3)).astype(np.float32)
    again = load_model_dir(str(path))[0]
    np.testing.assert_array_equal(again(images).numpy(), second_net(images).numpy())
    assert np.abs(first(images).numpy() - again(images).numpy()).max() > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def _foreign_saved_model(path, marker):
    """A SavedModel from elsewhere whose function writes `marker` when it is run."""

    class Foreign(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x):
            tf.io.write_file(str(marker), "executed")
            return x * 2.0

    module = Foreign()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})


def test_folders_that_are_not_ours_are_refused_and_left_alone(exported, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"my photo")
    foreign = tmp_path / "foreign"
    marker = tmp_path / "executed.txt"
    _foreign_saved_model(foreign, marker)
    other = tmp_path / "other"
    shutil.copytree(exported[0], other)
    meta = json.loads((other / model_dir.METADATA_FILE).read_text())
    meta["format_version"] = 2
    meta["nst_tf_version"] = "9.0.0"
    (other / model_dir.METADATA_FILE).write_text(json.dumps(meta))
    file = tmp_path / "file"
    file.write_text("x")
    cases = {
        photos: "holds no nst_tf_model.json",
        foreign: "SavedModel without",
        other: "format 2 by nst_tf 9.0.0",
        file: "is not a folder",
        tmp_path / "missing": "is not a folder",
    }
    for path, message in cases.items():
        before = _tree(path) if path.is_dir() else None
        with pytest.raises(ModelError, match=message):
            read_model_metadata(str(path))
        with pytest.raises(ModelError, match=message):
            load_model_dir(str(path))
        described = run_export(f"--describe={path}") if path == other else None
        if described is not None:
            assert described.returncode == 1 and described.stdout == ""
            errors = [line for line in described.stderr.splitlines() if "error:" in line]
            assert len(errors) == 1 and message in errors[0], described.stderr
        if path.exists() and path is not file:
            with pytest.raises(OutputError, match="not an nst_tf model of this version"):
                _write(path)
            assert _tree(path) == before
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["photos", "foreign", "other", "file"]
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: "{not json", "not JSON"),
        (lambda m: json.dumps({**m, "format": "keras"}), "not an nst_tf model"),
        (lambda m: json.dumps({**m, "network": {"width": 10**9, "residual_blocks": 1}}), "width"),
        (lambda m: json.dumps({**m, "styles": [{"sha256": "x"}]}), "sha256"),
        (lambda m: json.dumps({**m, "pad": "x" * (2 << 20)}), "not JSON"),
        (lambda m: "[" * 100000, "not JSON"),
    ],
)
def test_broken_descriptions_are_one_line_errors(exported, tmp_path, change, message):
    path = tmp_path / "model"
    shutil.copytree(exported[0], path)
    meta_path = path / model_dir.METADATA_FILE
    meta_path.write_text(change(json.loads(meta_path.read_text())))
    with pytest.raises(ModelError, match=message) as err:
        read_model_metadata(str(path))
    assert "\n" not in str(err.value)


def test_altered_weights_are_refused(exported, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(exported[0], path)
    weights = path / model_dir.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 differs"):
        load_model_dir(str(path))
