"""SavedModel export of the feature extractor for other programs."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence

import keras
import tensorflow as tf

from nst_tf import __version__
from nst_tf.errors import OutputError
from nst_tf.features import IMAGENET_MEAN_BGR, FeatureExtractor
from nst_tf.images import check_output_path, load_image
from nst_tf.losses import gram_matrix
from nst_tf.targets import StyleTargets


def build_archive(model: FeatureExtractor) -> keras.export.ExportArchive:
    """The SavedModel's contents: the frozen extractor, two signatures and a description.

    `serving_default` takes float32 RGB [batch, height, width, 3] in 0..255 and returns,
    for each layer, `<layer>` (activations) and `gram_<layer>` (Gram matrix / (H*W)).
    `metadata` takes nothing and returns {"json": the description}; the same JSON is the
    variable `metadata_json[0]` of the loaded object. Keras's ExportArchive (not a bare
    tf.saved_model.save) keeps the export loadable by TF1-style clients such as
    `saved_model_cli run` and TF Serving.
    """
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
    source = model.weights_source
    return {
        "producer": f"nst_tf {__version__}",
        "layers": list(model.layer_names),
        "outputs": {name: ["activations", f"gram_{name}"] for name in model.layer_names},
        "gram_normalization": "divided by height * width of the layer",
        "input": {
            "dtype": "float32",
            "shape": "[batch, height, width, 3], any batch size and image size",
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


def read_metadata(export_dir: str) -> dict:
    """Loads an export and returns its description.

    Raises:
        OutputError: the directory holds no nst_tf SavedModel.
    """
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise OutputError(f"{export_dir} holds no SavedModel; give the --export_dir of an export")
    loaded = tf.saved_model.load(export_dir)
    if "metadata" not in loaded.signatures:
        raise OutputError(f"{export_dir} is a SavedModel but not an nst_tf export")
    return json.loads(loaded.signatures["metadata"]()["json"].numpy().decode())


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
            f"{export_dir} already exists and is not empty; choose a new --export_dir"
        )
    if not os.path.isdir(parent):
        raise OutputError(f"directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"directory {parent} is not writable; choose another --export_dir")
    # "auto" means the fastest precision for *this* CPU; an export may be served anywhere.
    precision = "float32" if precision == "auto" else precision
    archive = build_archive(FeatureExtractor(list(layers), vgg_weights, precision, pooling))
    tmp = tempfile.mkdtemp(dir=parent, prefix=".nst_tf-export-")
    try:
        archive.write_out(tmp, verbose=False)
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
    check_output_path(out_path, "targets_out", image=False)
    style = load_image(style_path, size)
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
