"""Facts about this machine that do not need TensorFlow (so the memory check runs first)."""

from __future__ import annotations


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return set()
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return flags


def cpu_has_bfloat16() -> bool:
    """Whether the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


# Compute capabilities from which NVIDIA GPUs run bfloat16 natively (Ampere, 8.0) and
# float16 tensor cores (Volta, 7.0).
BFLOAT16_GPU = (8, 0)
FLOAT16_GPU = (7, 0)


def precision_for(
    gpu_compute_capability: tuple[int, int] | None = None, flags: set[str] | None = None
) -> str:
    """What --precision=auto runs in on a device: the rule per kind of device.

    - a GPU of compute capability 8.0 or later (Ampere, Hopper...): "bfloat16", whose
      float32 range needs no loss scaling;
    - an older GPU: "float32". Volta and Turing (7.x) have float16 tensor cores, but
      float16 needs loss scaling, and our gradients (a loss of 1e5-1e7 on 0..255 pixels)
      would have to be scaled down as well as up; that path is not built, since it
      could not be checked here without such a GPU;
    - a CPU with native bfloat16 (AVX512-BF16 or AMX): "bfloat16"; without it bfloat16
      is emulated and slower than float32: "float32".

    Args:
        gpu_compute_capability: The GPU's (major, minor), or None to run on the CPU.
        flags: The CPU's flags (default: this machine's).
    """
    if gpu_compute_capability is not None:
        return "bfloat16" if tuple(gpu_compute_capability) >= BFLOAT16_GPU else "float32"
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"
