"""The devices a run plans for: each visible GPU's memory, read without TensorFlow.

A run's tensors live on the first visible GPU when there is one, so its memory plan
budgets from that device's memory rather than the host's (engine.memory.budget_bytes).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess

# On a GPU, this share of the device memory that other processes leave: the activations,
# the weights, the image and the L-BFGS history all live there (the host holds only the
# inputs). The rest is for cuDNN's workspaces and the allocator's fragmentation. Not yet
# measured on a GPU.
DEVICE_SHARE = 0.85


@dataclasses.dataclass(frozen=True)
class DeviceMemory:
    """One GPU's memory, as the planner sees it.

    Attributes:
        index: The device's index (as CUDA_VISIBLE_DEVICES counts them).
        total: Its memory in bytes.
        used_by_others: Bytes other processes hold on it (not this one: TensorFlow
            reserves most of the device for itself once it starts).
        compute_capability: (major, minor), for the precision rule.
    """

    index: int
    total: float
    used_by_others: float = 0.0
    compute_capability: tuple[int, int] | None = None


def device_budget_bytes(device: DeviceMemory, share: float = DEVICE_SHARE) -> float:
    """The bytes a run may plan for on a GPU: `share` of what other processes leave."""
    return share * max(device.total - device.used_by_others, 0.0)


_GPU_QUERY = "index,uuid,memory.total,compute_cap"
_APPS_QUERY = "gpu_uuid,pid,used_memory"


def gpu_memory(
    gpus: str | None = None,
    apps: str | None = None,
    visible: str | None = None,
    pid: int | None = None,
) -> list[DeviceMemory]:
    """The visible NVIDIA GPUs' memory from nvidia-smi, without TensorFlow; [] without one.

    Args:
        gpus: nvidia-smi's `--query-gpu=index,uuid,memory.total,compute_cap` CSV lines
            (no header, MiB); default: run it.
        apps: Its `--query-compute-apps=gpu_uuid,pid,used_memory` lines: what each
            process holds; default: run it.
        visible: CUDA_VISIBLE_DEVICES (default: the environment's); the devices it lists
            come first in its order, as CUDA numbers them.
        pid: This process, whose own use is not counted against the budget (default:
            os.getpid()).
    """
    if gpus is None:
        gpus = _nvidia_smi(f"--query-gpu={_GPU_QUERY}")
        apps = _nvidia_smi(f"--query-compute-apps={_APPS_QUERY}") if gpus else ""
    pid = os.getpid() if pid is None else pid
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    others: dict[str, float] = {}
    for line in (apps or "").splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3 and fields[1].isdigit() and int(fields[1]) != pid:
            others[fields[0]] = others.get(fields[0], 0.0) + _mib(fields[2])
    found = {}
    for line in gpus.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        major, _, minor = fields[3].partition(".")
        capability = (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None
        found[fields[0]] = found[fields[1]] = DeviceMemory(
            int(fields[0]), _mib(fields[2]), others.get(fields[1], 0.0), capability
        )
    order = sorted({d.index: d for d in found.values()}.values(), key=lambda d: d.index)
    if visible is not None:
        order = [found[name] for name in (v.strip() for v in visible.split(",")) if name in found]
    return order


@functools.lru_cache(maxsize=1)
def visible_gpus() -> tuple[DeviceMemory, ...]:
    """The visible GPUs, read once (for the precision rule: a device's kind does not
    change during a run)."""
    return tuple(gpu_memory())


def _mib(text: str) -> float:
    try:
        return float(text) * 2**20
    except ValueError:
        return 0.0


def _nvidia_smi(query: str) -> str:
    """nvidia-smi's CSV answer to `query`, or "" where there is no NVIDIA driver."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return ""
    try:
        done = subprocess.run(
            [binary, query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""
