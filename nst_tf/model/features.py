"""The frozen VGG19 feature extractor."""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from nst_tf import machine
from nst_tf.errors import ConfigError
from nst_tf.machine import cpu_flags, cpu_has_bfloat16  # noqa: F401 (re-exported)
from nst_tf.model import weights as weights_lib
from nst_tf.model.vgg19 import SPLIT_BEFORE, VGG19_CONV_LAYERS

# Caffe preprocessing of the original VGG weights: BGR order, ImageNet mean removed.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


def resolve_precision(precision: str) -> str:
    """Maps "auto" to what the device runs best (machine.precision_for): "bfloat16" on a
    GPU of compute capability 8.0 or later and on a CPU with native bfloat16, else
    "float32" (emulated bfloat16 is slower than float32)."""
    if precision != "auto":
        return precision
    return machine.precision_for(gpu_compute_capability())


def gpu_compute_capability() -> tuple[int, int] | None:
    """The first visible GPU's compute capability, None without a GPU, (0, 0) when the
    device reports none (float32, as for an old GPU)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return tuple(details.get("compute_capability") or (0, 0))


def resolve_xla(xla: str, deterministic: bool = False) -> bool:
    """Whether the step is compiled with XLA: "on", "off", or "auto".

    "auto" turns XLA on for CPU-only machines without AVX-512, where it measured 10-14%
    faster per step (docs/benchmarks.md); on an AVX-512 machine it was 16% slower, and
    GPUs are unmeasured, so there it stays off. So does it for deterministic runs: XLA
    has no deterministic max-pool gradient.
    """
    if xla != "auto":
        return xla == "on"
    if deterministic or tf.config.list_physical_devices("GPU"):
        return False
    flags = machine.cpu_flags()
    return bool(flags) and "avx512f" not in flags


@contextlib.contextmanager
def _global_dtype_policy(policy: str):
    # keras.applications builds its layers under the global policy; set it only while
    # building so the caller's own models are unaffected.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _average_pooling(layer):
    """clone_model hook: VGG19's max pooling layers become average pooling, same geometry."""
    if isinstance(layer, keras.layers.MaxPooling2D):
        return keras.layers.AveragePooling2D(
            pool_size=layer.pool_size,
            strides=layer.strides,
            padding=layer.padding,
            name=layer.name,
            dtype=layer.dtype_policy,
        )
    return layer.__class__.from_config(layer.get_config())


@keras.saving.register_keras_serializable(package="nst_tf")
class FeatureExtractor(keras.Model):
    """Frozen ImageNet VGG19, truncated at the deepest layer needed.

    Takes RGB images in 0..255 of any size, shape [batch, height, width, 3], does the
    caffe preprocessing inside, and returns a dict from layer name to activations
    (float32 whatever the compute precision).

    Args:
        layers: Names of VGG19 conv layers (e.g. "block4_conv2") to return.
        vgg_weights: "auto" to search for the ImageNet weights (see nst_tf.model.weights),
            a file path, "download", a WeightsSource already found (its file is then not
            located and hashed again), or None for random weights (tests).
        precision: "float32", "bfloat16" (bfloat16 convolutions, float32 outputs) or
            "auto" (see resolve_precision).
        pooling: "max" (VGG19 as trained) or "avg": average pooling, which Gatys et al.
            found gives smoother gradients and slightly more appealing results.
        **kwargs: Passed to keras.Model.
    """

    def __init__(self, layers, vgg_weights="auto", precision="float32", pooling="max", **kwargs):
        super().__init__(**kwargs)
        unknown = [name for name in layers if name not in VGG19_CONV_LAYERS]
        if unknown or not layers:
            raise ConfigError(
                f"unknown VGG19 layers {unknown or '(none given)'}; "
                f"choose from {', '.join(VGG19_CONV_LAYERS)}"
            )
        self.layer_names = tuple(layers)
        found = isinstance(vgg_weights, weights_lib.WeightsSource)
        self.vgg_weights = vgg_weights.path if found else vgg_weights
        self.precision = precision
        if pooling not in ("max", "avg"):
            raise ConfigError(f"--pooling={pooling!r} is unknown; choose max or avg")
        self.pooling = pooling
        policy = "mixed_bfloat16" if resolve_precision(precision) == "bfloat16" else "float32"
        with _global_dtype_policy(policy):
            vgg = keras.applications.VGG19(
                include_top=False, weights=None, input_shape=(None, None, 3)
            )
            if pooling == "avg":
                vgg = keras.models.clone_model(vgg, clone_function=_average_pooling)
        self.weights_source = None
        if vgg_weights is not None:
            source = vgg_weights if found else weights_lib.find_weights(vgg_weights)
            decoded = weights_lib.load_weights(source)
            for name, (kernel, bias) in decoded.items():
                vgg.get_layer(name).set_weights([kernel, bias])
            self.weights_source = source
        # A functional model on intermediate outputs holds only the layers up to the
        # deepest one requested: the rest of VGG19 is never computed.
        self.vgg = keras.Model(
            vgg.input, [vgg.get_layer(name).output for name in self.layer_names], name="vgg19"
        )
        self.vgg.trainable = False

    def call(self, images):
        outputs = self.vgg(self._preprocess(images), training=False)
        if len(self.layer_names) == 1:
            outputs = [outputs]
        return {
            name: tf.cast(out, tf.float32)
            for name, out in zip(self.layer_names, outputs, strict=True)
        }

    @staticmethod
    def _preprocess(images):
        bgr = tf.reverse(tf.cast(images, tf.float32), axis=[-1])
        return bgr - tf.constant(IMAGENET_MEAN_BGR)

    def _vgg_layers(self) -> list:
        """VGG19's layers that run, in order (its input layer left out)."""
        return [
            layer for layer in self.vgg.layers if not isinstance(layer, keras.layers.InputLayer)
        ]

    def _chain(self, start: int, stop: int | None, x) -> tuple[dict, tf.Tensor]:
        """Runs VGG19's layers [start, stop) on x: (requested maps among them, the output).

        VGG19 is a chain, so applying its layers in order is what the functional model
        does, op for op.
        """
        features = {}
        for layer in self._vgg_layers()[start:stop]:
            x = layer(x, training=False)
            if layer.name in self.layer_names:
                features[layer.name] = tf.cast(x, tf.float32)
        return features, x

    def split_index(self, first_tail_layer: str = SPLIT_BEFORE) -> int | None:
        """Where head() stops and tail() begins: the index of `first_tail_layer` among
        the layers run, or None when every requested layer comes before it."""
        names = [layer.name for layer in self._vgg_layers()]
        return names.index(first_tail_layer) if first_tail_layer in names else None

    def head(self, images) -> tuple[dict, tf.Tensor]:
        """The first blocks (up to SPLIT_BEFORE): (their requested maps, the map they end in).

        head() then tail() gives what call() gives; the tiled step runs the head, whose
        activations are the largest per pixel, tile by tile, and the tail whole.
        """
        return self._chain(0, self.split_index(), self._preprocess(images))

    def tail(self, boundary) -> dict:
        """The requested maps of the layers from SPLIT_BEFORE on, given head()'s output."""
        return self._chain(self.split_index(), None, boundary)[0]

    def get_config(self):
        config = super().get_config()
        config.update(
            layers=list(self.layer_names),
            vgg_weights=self.vgg_weights,
            precision=self.precision,
            pooling=self.pooling,
        )
        return config
