"""Facts about the machine this process runs on: its CPU cores, and the device to compute on."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask), else all of the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_choices() -> list[int]:
    """The CPU thread counts worth trying for training: 1 and all cores ([] when there is no
    choice: one core, or OMP_NUM_THREADS set by the user, which is then respected)."""
    cores = available_cores()
    if cores <= 1 or os.environ.get("OMP_NUM_THREADS"):
        return []
    return [1, cores]


def pick_device(name: str):
    """--device auto|cpu|cuda[:N]|mps -> a torch.device (auto: CUDA when available)."""
    import torch

    from charnn.errors import CharnnError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CharnnError("--device cuda was asked for, but no CUDA GPU is available", 2)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CharnnError("--device mps was asked for, but MPS is not available", 2)
    return torch.device(name)


# CPU flags (as /proc/cpuinfo spells them) of native bf16 arithmetic: oneDNN then runs bf16
# matrix products faster than fp32 ones; without them bf16 is emulated, and slower.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU (or the /proc/cpuinfo text given) has native bf16 arithmetic: an x86
    flag in BF16_FLAGS. Read, not guessed: False where there is no /proc/cpuinfo (macOS, Windows)
    and on CPUs other than x86 (bf16 on ARM is not measured here)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":          # x86 lists its features on this line, per core
            return any(flag in value.split() for flag in BF16_FLAGS)
    return False


def amp_dtype(device, amp: bool = True):
    """The autocast dtype for training and evaluation on `device` (a torch.device), or None for
    fp32: bf16 on CUDA and on CPUs with native bf16 (cpu_bf16), when amp is on."""
    import torch

    if not amp:
        return None
    if device.type == "cuda" or (device.type == "cpu" and _cpu_bf16_cached()):
        return torch.bfloat16
    return None


_BF16: list[bool] = []


def _cpu_bf16_cached() -> bool:
    if not _BF16:
        _BF16.append(cpu_bf16())
    return _BF16[0]
