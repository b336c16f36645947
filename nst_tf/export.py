"""SavedModel export of the feature extractor for other programs."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence

import tensorflow as tf

from nst_tf.errors import OutputError
from nst_tf.features import FeatureExtractor
from nst_tf.losses import gram_matrix


class FeatureModule(tf.Module):
    """What the SavedModel holds: the frozen extractor and its serving function.

    `serving_default` takes float32 RGB [batch, height, width, 3] in 0..255 and returns,
    for each layer, `<layer>` (activations) and `gram_<layer>` (Gram matrix / (H*W)).
    """

    def __init__(self, model: FeatureExtractor):
        super().__init__(name="nst_tf_features")
        self.model = model
        self.layer_names = tf.constant(list(model.layer_names))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def serve(self, images):
        """Activations and Gram matrices of each exported layer."""
        outputs = {}
        for name, features in self.model(images).items():
            outputs[name] = features
            outputs[f"gram_{name}"] = gram_matrix(features)
        return outputs


def export_features(
    export_dir: str,
    layers: Sequence[str],
    vgg_weights: str | None = "auto",
    precision: str = "float32",
) -> str:
    """Writes the feature extractor as a SavedModel, atomically.

    The model is saved into a temporary sibling directory that is renamed to
    `export_dir` once complete, so a crash never leaves a half-written export.

    Args:
        export_dir: Target directory; must not exist yet (or be empty).
        layers: VGG19 layers to export.
        vgg_weights: As for FeatureExtractor.
        precision: "float32" or "bfloat16".

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
    module = FeatureModule(FeatureExtractor(list(layers), vgg_weights, precision))
    tmp = tempfile.mkdtemp(dir=parent, prefix=".nst_tf-export-")
    try:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
        if os.path.isdir(export_dir):
            os.rmdir(export_dir)  # empty, checked above
        os.replace(tmp, export_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_dir
