"""A trained stylizer on disk (MODEL_DIR): a SavedModel for other programs, Keras weights for
nst_tf, and a JSON description read as data.

    MODEL_DIR/
      nst_tf_model.json          what it is: format, versions, recipe, styles' sha256,
                                 network size, training steps, held-out loss (written last)
      saved_model/               tf.saved_model, signature serving_default:
                                 images [N, H, W, 3] float32 0..255 -> stylized, same shape
      transform.weights.h5       the TransformNet's weights (Keras, numeric arrays only)
      transform.tflite           with --tflite, when the network converts

nst_tf itself never loads the SavedModel (loading one runs the graph it holds): it builds
a TransformNet from the description and loads the weights, whose sha256 the description
holds. Reading the description needs no TensorFlow, so `nst-tf-export --describe` and
every check of a model against the flags given run before TensorFlow loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil

from nst_tf.errors import ModelError, OutputError
from nst_tf.io.paths import check_writable_directory, open_regular, read_json_object, shown
from nst_tf.version import __version__

FORMAT = "nst_tf_model"
# The layout and meaning of the files above; another number is refused, not guessed at.
FORMAT_VERSION = 1
METADATA_FILE = "nst_tf_model.json"
SAVED_MODEL_DIR = "saved_model"
WEIGHTS_FILE = "transform.weights.h5"
TFLITE_FILE = "transform.tflite"
SIGNATURE = "serving_default"
OUTPUT_KEY = "stylized"
_MAX_METADATA_BYTES = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Bounds that keep a crafted description from building an absurd network.
_MAX_WIDTH = 1024
_MAX_BLOCKS = 64


def sha256_of(path: str) -> str:
    """The sha256 of a regular file, read in chunks."""
    digest = hashlib.sha256()
    with open_regular(path, ModelError) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_model_dir(path: str) -> bool:
    """Whether `path` is a folder that holds an nst_tf model description (not yet checked)."""
    return os.path.isdir(path) and os.path.lexists(os.path.join(path, METADATA_FILE))


def _require(condition: bool, label: str, what: str) -> None:
    if not condition:
        raise ModelError(f"{label} is not a valid nst_tf model description ({what}); retrain it")


def _check_schema(meta: dict, label: str) -> dict:
    """Refuses a description that is not ours, of another format version, or malformed."""
    if meta.get("format") != FORMAT:
        raise ModelError(f"{label} is not an nst_tf model (its format is not {FORMAT!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        made_by = meta.get("nst_tf_version")
        by = f" by nst_tf {made_by}" if isinstance(made_by, str) and made_by.isprintable() else ""
        raise ModelError(
            f"{label} is an nst_tf model of format {version!r}{by[:60]}; this nst_tf "
            f"({__version__}) reads format {FORMAT_VERSION}: retrain it or use that version"
        )
    network = meta.get("network")
    _require(isinstance(network, dict), label, "no network")
    for key, top in (("width", _MAX_WIDTH), ("residual_blocks", _MAX_BLOCKS)):
        value = network.get(key)
        _require(
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top,
            label,
            f"network.{key}",
        )
    _require(network["width"] >= 1, label, "network.width")
    _require(_SHA256.match(str(meta.get("weights_sha256", ""))) is not None, label, "weights")
    _require(isinstance(meta.get("recipe"), dict), label, "recipe")
    styles = meta.get("styles")
    _require(isinstance(styles, list) and bool(styles), label, "styles")
    for style in styles:
        _require(
            isinstance(style, dict) and _SHA256.match(str(style.get("sha256", ""))) is not None,
            label,
            "styles' sha256",
        )
    _require(isinstance(meta.get("training"), dict), label, "training")
    return meta


def read_model_metadata(path: str) -> dict:
    """The description of a MODEL_DIR, read as data (no TensorFlow, nothing executed).

    Args:
        path: The MODEL_DIR.

    Returns:
        The description: format, format_version, nst_tf_version, network {width,
        residual_blocks}, recipe (the settings trained with), styles [{name, sha256}],
        training {steps, held-out loss...}, weights_sha256, files.

    Raises:
        ModelError: not a folder, not ours (a SavedModel from elsewhere included), another
            format version, or a broken description.
    """
    label = shown(path)
    if not os.path.isdir(path):
        raise ModelError(f"{label} is not a folder; give the MODEL_DIR nst-tf-train wrote")
    meta_path = os.path.join(path, METADATA_FILE)
    if not os.path.lexists(meta_path):
        if os.path.lexists(os.path.join(path, "saved_model.pb")):
            raise ModelError(
                f"{label} is a SavedModel without an {METADATA_FILE}: not an nst_tf model "
                "(it was not loaded)"
            )
        raise ModelError(f"{label} holds no {METADATA_FILE}: not an nst_tf model")
    meta = read_json_object(meta_path, ModelError, _MAX_METADATA_BYTES)
    if meta is None:
        raise ModelError(f"{shown(meta_path)} is not an nst_tf model description (not JSON)")
    return _check_schema(meta, label)


def identity(path: str, meta: dict) -> dict[str, str]:
    """What a result made with this model depends on, for the commands' result keys: the
    sha256 of its description and of its weights (its bytes, wherever the folder is).

    Args:
        path: The MODEL_DIR.
        meta: Its description (read_model_metadata).
    """
    return {
        "model description": sha256_of(os.path.join(path, METADATA_FILE)),
        "model weights": meta["weights_sha256"],
    }


def _ours_or_absent(path: str) -> None:
    """Refuses to write over anything but nothing, an empty folder, or one of our models."""
    label = shown(path)
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        raise OutputError(f"{label} exists and is not a folder; choose a new --output")
    if not os.listdir(path):
        return
    try:
        read_model_metadata(path)
    except ModelError:
        raise OutputError(
            f"{label} exists and is not an nst_tf model of this version; nothing was "
            "changed: choose a new --output"
        ) from None


def check_model_output(path: str) -> None:
    """The checks write_model_dir makes, made up front (before hours of training).

    Raises:
        OutputError: `path` exists and is not ours, or its folder cannot be written.
    """
    _ours_or_absent(path)
    check_writable_directory(os.path.abspath(path), "output", create=False)


def describe(path: str) -> str:
    """The description as indented JSON text (for `nst-tf-export --describe`)."""
    return json.dumps(read_model_metadata(path), indent=2)


def write_model_dir(
    path: str,
    net,
    *,
    recipe: dict,
    styles: list[dict],
    training: dict,
    tflite: bool = False,
) -> dict:
    """Writes a trained network as a MODEL_DIR, atomically.

    Everything is written into a hidden sibling folder, which replaces `path` only once
    complete: a crash leaves the old model or none, never half of one. An existing `path`
    is replaced only when it is empty or one of our models.

    Args:
        path: The MODEL_DIR to write.
        net: The trained TransformNet (any precision; exported in float32).
        recipe: The settings that define the result (JSON values).
        styles: One {"name", "sha256"} per style image.
        training: What the training was: steps, held-out loss, photos, crop size...
        tflite: Also convert to TFLite; a network that does not convert is noted in the
            description ("tflite": the converter's error) rather than failing the export.

    Returns:
        The description written.

    Raises:
        OutputError: `path` is not ours, or cannot be written.
    """
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nst_tf.model.transform import TransformNet  # pylint: disable=import-outside-toplevel

    path = os.path.abspath(path)
    check_model_output(path)
    # The served network is float32 whatever it trained in: a server may have no bfloat16.
    served = TransformNet(net.width, net.residual_blocks, name="transform_net")
    served(tf.zeros([1, 16, 16, 3]))
    served.set_weights(net.get_weights())
    tmp = os.path.join(os.path.dirname(path), f".nst_tf-model-{secrets.token_hex(8)}")
    os.mkdir(tmp, 0o777)  # the umask's mode, as for any folder the user makes
    try:
        served.save_weights(os.path.join(tmp, WEIGHTS_FILE))
        archive = keras.export.ExportArchive()
        archive.track(served)
        archive.add_endpoint(
            name=SIGNATURE,
            fn=lambda images: {OUTPUT_KEY: served(images)},
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")],
        )
        archive.write_out(os.path.join(tmp, SAVED_MODEL_DIR), verbose=False)
        files = {"saved_model": SAVED_MODEL_DIR, "weights": WEIGHTS_FILE}
        converted = None
        if tflite:
            converted = _write_tflite(os.path.join(tmp, SAVED_MODEL_DIR), tmp)
            if converted is None:
                files["tflite"] = TFLITE_FILE
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "nst_tf_version": __version__,
            "network": {
                "class": "TransformNet",
                "width": served.width,
                "residual_blocks": served.residual_blocks,
                "parameters": int(sum(v.numpy().size for v in served.weights)),
            },
            "recipe": recipe,
            "styles": styles,
            "training": training,
            "weights_sha256": sha256_of(os.path.join(tmp, WEIGHTS_FILE)),
            "files": files,
            "signature": {
                "name": SIGNATURE,
                "input": "images: float32 [N, H, W, 3] RGB in 0..255, any N, H, W",
                "output": f"{OUTPUT_KEY}: float32 [N, H, W, 3] RGB in 0..255",
            },
        }
        if tflite and converted is not None:
            meta["tflite"] = f"not converted: {converted}"
        with open(os.path.join(tmp, METADATA_FILE), "w", encoding="utf-8") as f:
            f.write(json.dumps(meta, indent=2) + "\n")
        _replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _write_tflite(saved_model: str, folder: str) -> str | None:
    """Converts the SavedModel to TFLite; None when done, else the converter's complaint."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, [SIGNATURE])
        data = converter.convert()
    except Exception as err:  # noqa: BLE001 - any converter failure is reported, not fatal
        return " ".join(str(err).split())[:200]
    with open(os.path.join(folder, TFLITE_FILE), "wb") as f:
        f.write(data)
    return None


def _replace(tmp: str, path: str) -> None:
    """Puts the finished folder `tmp` at `path` (an empty folder or our old model there)."""
    if not os.path.lexists(path):
        os.replace(tmp, path)
        return
    old = os.path.join(os.path.dirname(path), f".nst_tf-model-old-{secrets.token_hex(8)}")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_model_dir(path: str, dtype: str | None = None):
    """Loads a MODEL_DIR for use in this process, without running its SavedModel.

    Args:
        path: The MODEL_DIR.
        dtype: The network's Keras dtype policy ("float32", "mixed_bfloat16"); None:
            float32.

    Returns:
        (TransformNet with the trained weights, the description).

    Raises:
        ModelError: not ours, another format version, a broken description, or weights
            that are missing, altered (sha256) or do not fit the described network.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nst_tf.model.transform import TransformNet  # pylint: disable=import-outside-toplevel

    meta = read_model_metadata(path)
    weights = os.path.join(path, WEIGHTS_FILE)
    if sha256_of(weights) != meta["weights_sha256"]:
        raise ModelError(
            f"{shown(weights)} is not the file this model was saved with (sha256 differs); "
            "retrain or restore it"
        )
    network = meta["network"]
    net = TransformNet(network["width"], network["residual_blocks"], dtype=dtype)
    net(tf.zeros([1, 16, 16, 3]))
    try:
        net.load_weights(weights)
    except (ValueError, OSError, KeyError) as err:
        reason = " ".join(str(err).split())[:120]
        raise ModelError(
            f"{shown(weights)} does not fit the described network ({reason})"
        ) from None
    return net, meta
