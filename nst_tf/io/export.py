"""SavedModel export of the feature extractor for other programs.

The module imports without TensorFlow (it is loaded inside the functions that build or
run a model), so describing an export is reading a JSON file and nothing else.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING

from nst_tf.errors import OutputError
from nst_tf.io.images import check_output_path, load_image
from nst_tf.io.paths import (
    Written,
    check_no_overlap,
    check_writable_directory,
    read_json_object,
    shown,
)
from nst_tf.io.targets import StyleTargets
from nst_tf.model.vgg19 import layer_downsampling
from nst_tf.model.weights import find_weights
from nst_tf.version import __version__

if TYPE_CHECKING:
    import keras

    from nst_tf.model.features import FeatureExtractor


def _check_weights_input(written, vgg_weights, inputs=()) -> None:
    """Refuses a written path that is, or contains, an input of the export.

    (Random weights read nothing; "download" is left to Keras, which writes its own cache.)
    """
    source = None if vgg_weights in (None, "download") else find_weights(vgg_weights)
    check_no_overlap(written, [*inputs, ("vgg_weights", source.path if source else None)])


def build_archive(model: FeatureExtractor) -> keras.export.ExportArchive:
    """The SavedModel's contents: the frozen extractor, two signatures and a description.

    `serving_default` takes float32 RGB [batch, height, width, 3] in 0..255 and returns,
    for each layer, `<layer>` (activations) and `gram_<layer>` (Gram matrix / (H*W)).
    `metadata` takes nothing and returns {"json": the description}; the same JSON is the
    variable `metadata_json[0]` of the loaded object. Keras's ExportArchive (not a bare
    tf.saved_model.save) keeps the export loadable by TF1-style clients such as
    `saved_model_cli run` and TF Serving.
    """
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nst_tf.core.losses import gram_matrix  # pylint: disable=import-outside-toplevel

    model(tf.zeros([1, 32, 32, 3]))  # build the variables before tracking them
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        outputs = {}
        for name, features in model(images).items():
            outputs[name] = features
            outputs[f"gram_{name}"] = gram_matrix(features)
        return outputs

    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")],
    )
    description = tf.Variable(
        json.dumps(describe_model(model), indent=2), trainable=False, name="metadata_json"
    )
    archive.add_variable_collection("metadata_json", [description])
    archive.add_endpoint(
        name="metadata", fn=lambda: {"json": tf.identity(description)}, input_signature=[]
    )
    return archive


def describe_model(model: FeatureExtractor) -> dict:
    """What a program loading the export needs to know to feed it and trust it."""
    from nst_tf.model.features import IMAGENET_MEAN_BGR  # pylint: disable=C0415

    source = model.weights_source
    return {
        "producer": f"nst_tf {__version__}",
        "layers": list(model.layer_names),
        "outputs": {name: ["activations", f"gram_{name}"] for name in model.layer_names},
        "gram_normalization": "divided by height * width of the layer",
        "input": {
            "dtype": "float32",
            "shape": "[batch, height, width, 3], any batch size, height and width "
            f"at least {max(map(layer_downsampling, model.layer_names))} px",
            "range": [0, 255],
            "channel_order": "RGB",
        },
        "preprocessing": {
            "done_inside": True,
            "steps": "RGB -> BGR, minus the ImageNet mean (caffe)",
            "mean_bgr": list(IMAGENET_MEAN_BGR),
        },
        "precision": model.precision,
        "pooling": model.pooling,
        "weights": {
            "network": "VGG19 (Simonyan & Zisserman 2014), ImageNet, Keras notop conversion",
            "source": os.path.basename(source.path) if source else None,
            "kind": source.kind if source else "random (untrained)",
            "sha256": source.sha256 if source else None,
        },
    }


# The description, as plain JSON beside the SavedModel: describing an export reads this
# text and never loads the SavedModel, since loading one runs the graph it holds.
METADATA_FILE = "nst_tf.json"
_MAX_METADATA_BYTES = 1 << 20


def read_metadata(export_dir: str) -> dict:
    """Returns the description of an export, read as data from its nst_tf.json.

    The SavedModel itself is never loaded: loading a SavedModel runs its code.

    Raises:
        OutputError: the directory holds no nst_tf export, or its description is broken.
    """
    label = shown(export_dir)
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise OutputError(f"{label} holds no SavedModel; give the --export_dir of an export")
    path = os.path.join(export_dir, METADATA_FILE)
    if not os.path.lexists(path):
        raise OutputError(
            f"{label} is a SavedModel without an {METADATA_FILE} description: not an nst_tf "
            "export, or one made before nst_tf 0.x wrote it; re-export it"
        )
    description = read_json_object(path, OutputError, _MAX_METADATA_BYTES)
    if description is None:
        raise OutputError(f"{shown(path)} is not an nst_tf description; re-export {label}")
    return description


def export_features(
    export_dir: str,
    layers: Sequence[str],
    vgg_weights: str | None = "auto",
    precision: str = "float32",
    pooling: str = "max",
) -> str:
    """Writes the feature extractor as a SavedModel, atomically.

    The model is saved into a temporary sibling directory that is renamed to
    `export_dir` once complete, so a crash never leaves a half-written export.

    Args:
        export_dir: Target directory; must not exist yet (or be empty).
        layers: VGG19 layers to export.
        vgg_weights: As for FeatureExtractor.
        precision: "float32" or "bfloat16".
        pooling: "max" or "avg".

    Returns:
        The export directory.

    Raises:
        OutputError: the directory exists and is not empty, or cannot be written.
    """
    export_dir = os.path.abspath(export_dir)
    parent = os.path.dirname(export_dir)
    if os.path.exists(export_dir) and (not os.path.isdir(export_dir) or os.listdir(export_dir)):
        raise OutputError(
            f"{shown(export_dir)} already exists and is not empty; choose a new --export_dir"
        )
    _check_weights_input([Written("export_dir", export_dir, directory=True)], vgg_weights)
    check_writable_directory(export_dir, "export_dir", create=False)
    # "auto" means the fastest precision for *this* CPU; an export may be served anywhere.
    precision = "float32" if precision == "auto" else precision
    from nst_tf.model.features import FeatureExtractor  # pylint: disable=C0415

    model = FeatureExtractor(list(layers), vgg_weights, precision, pooling)
    archive = build_archive(model)
    # Not tempfile.mkdtemp: its 0700 would make the export unreadable to a server running
    # as another user; mkdir's mode honours the umask, as for any directory the user makes.
    tmp = os.path.join(parent, f".nst_tf-export-{secrets.token_hex(8)}")
    os.mkdir(tmp, 0o777)
    try:
        archive.write_out(tmp, verbose=False)
        with open(os.path.join(tmp, METADATA_FILE), "w", encoding="utf-8") as f:
            f.write(json.dumps(describe_model(model), indent=2) + "\n")
        if os.path.isdir(export_dir):
            os.rmdir(export_dir)  # empty, checked above
        os.replace(tmp, export_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_dir


def export_style_targets(
    style_path: str,
    out_path: str,
    layers: Sequence[str],
    size: int,
    normalization: str = "mean",
    vgg_weights: str | None = "auto",
    pooling: str = "max",
) -> StyleTargets:
    """Computes a style image's Gram matrices once and writes them as a targets file.

    Args:
        style_path: The style image.
        out_path: The .npz to write (atomically).
        layers: The style layers.
        size: Longest side the style image is measured at (as --size of a run).
        normalization: As Config.normalization.
        vgg_weights: As for FeatureExtractor.
        pooling: As for FeatureExtractor.

    Returns:
        The targets written.
    """
    _check_weights_input([Written("targets_out", out_path)], vgg_weights, [("style", style_path)])
    check_output_path(out_path, "targets_out", image=False)
    style = load_image(style_path, size)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from nst_tf.core.losses import gram_matrix  # pylint: disable=import-outside-toplevel
    from nst_tf.model.features import FeatureExtractor  # pylint: disable=C0415

    model = FeatureExtractor(list(layers), vgg_weights, "float32", pooling)
    features = model(tf.constant(style[None]))
    normalize = normalization != "course"
    targets = StyleTargets(
        {name: gram_matrix(features[name], normalize).numpy() for name in layers},
        size,
        normalization,
        model.weights_source.sha256 if model.weights_source else "random",
        pooling,
    )
    targets.save(out_path)
    return targets
