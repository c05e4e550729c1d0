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
