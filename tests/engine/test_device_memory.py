"""Issue 27: on a GPU the memory plan reads the device's memory, not the host's, and
--precision=auto follows the device's kind. nvidia-smi's answers are injected as text."""

import pytest

from nst_tf import machine
from nst_tf.engine import memory
from nst_tf.settings.config import Config

GiB = 2**30
# Two GPUs as `nvidia-smi --query-gpu=index,uuid,memory.total,compute_cap` prints them.
GPUS = "0, GPU-aaaa, 16384, 8.6\n1, GPU-bbbb, 8192, 7.5\n"


def _apps(pid):
    # What each process holds: this one 12 GiB of GPU 0 (TensorFlow's pool), another
    # process 4 GiB of GPU 0 and 1 GiB of GPU 1.
    return f"GPU-aaaa, {pid}, 12288\nGPU-aaaa, 999999, 4096\nGPU-bbbb, 999999, 1024\n"


def test_the_gpus_memory_is_read_less_what_other_processes_hold():
    found = memory.gpu_memory(GPUS, _apps(1234), visible=None, pid=1234)
    assert [(d.index, d.total, d.used_by_others, d.compute_capability) for d in found] == [
        (0, 16 * GiB, 4 * GiB, (8, 6)),
        (1, 8 * GiB, 1 * GiB, (7, 5)),
    ]
    # CUDA_VISIBLE_DEVICES chooses and orders them, by index or by UUID; "" hides all.
    assert [d.index for d in memory.gpu_memory(GPUS, "", visible="1,0", pid=1)] == [1, 0]
    assert [d.index for d in memory.gpu_memory(GPUS, "", visible="GPU-bbbb", pid=1)] == [1]
    assert memory.gpu_memory(GPUS, "", visible="", pid=1) == []
    # Lines it cannot read (a header, an older driver's [N/A]) are skipped, not fatal.
    odd = "index, uuid, memory.total, compute_cap\n0, GPU-aaaa, 16384, [N/A]\n"
    (only,) = memory.gpu_memory(odd, "", visible=None, pid=1)
    assert only.total == 16 * GiB and only.compute_capability is None


def test_without_nvidia_smi_there_is_no_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert memory.gpu_memory() == []


def test_the_budget_is_the_devices_not_the_hosts(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 268435456 kB\nMemAvailable: 209715200 kB\n")  # 200 GiB
    config = Config(precision="float32")
    host = memory.budget_bytes(config, str(meminfo), devices=[])
    assert host == pytest.approx(memory.AVAILABLE_SHARE * 200 * GiB)
    gpu, _ = memory.gpu_memory(GPUS, _apps(1234), visible=None, pid=1234)
    device = memory.budget_bytes(config, str(meminfo), devices=[gpu])
    # 16 GiB less the other process's 4 GiB; this process's own pool is not subtracted.
    assert device == pytest.approx(memory.DEVICE_SHARE * 12 * GiB)
    # A 4096 px scale fits whole in the host's memory but is tiled on the GPU, within it.
    assert memory.plan_scale(4096, 4096, config, host).tile == 0
    plan = memory.plan_scale(4096, 4096, config, device)
    assert plan.tile and plan.peak <= device
    # --memory_limit still wins.
    limited = Config(precision="float32", memory_limit=3)
    assert memory.budget_bytes(limited, str(meminfo), devices=[gpu]) == 3e9


def test_precision_follows_the_kind_of_device():
    assert machine.precision_for((8, 0)) == "bfloat16"  # Ampere
    assert machine.precision_for((9, 0)) == "bfloat16"  # Hopper
    assert machine.precision_for((7, 5)) == "float32"  # Turing: float16 would need scaling
    assert machine.precision_for((6, 1)) == "float32"
    assert machine.precision_for(None, {"avx512f", "avx512_bf16"}) == "bfloat16"
    assert machine.precision_for(None, {"amx_bf16", "amx_tile"}) == "bfloat16"
    assert machine.precision_for(None, {"avx2", "avx512f"}) == "float32"
    # The memory plan estimates the activations in what the device will run.
    auto = Config(precision="auto")
    ampere = memory.DeviceMemory(0, 16 * GiB, 0, (8, 6))
    turing = memory.DeviceMemory(0, 16 * GiB, 0, (7, 5))
    assert memory.activation_bytes_per_pixel(auto, [ampere]) == memory.BFLOAT16_BYTES_PER_PIXEL
    assert memory.activation_bytes_per_pixel(auto, [turing]) == memory.BYTES_PER_PIXEL
