"""What keeps a run safe: graceful interrupts, divergence detection, and the in-memory snapshot
of the last good weights that a diverged run rolls back to."""

from __future__ import annotations

import copy
import math
import signal
import threading
from typing import Any

import torch

MAX_BAD_STEPS = 3       # consecutive non-finite steps before rolling back
MAX_ROLLBACKS = 8       # then the run ends on the last good weights
ROLLBACK_LR_FACTOR = 0.25   # each rollback divides the learning rate by 4: 8 of them, by 65536
DIVERGED_NATS = 20.0    # a validation loss this far above uniform guessing (ln V) is divergence


class Interrupts:
    """First Ctrl-C (or SIGTERM) asks for a graceful stop at the next step boundary, so the
    checkpoint is never taken mid-update; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def diverged(loss: float, vocab_size: int) -> bool:
    """A validation loss that is not finite, or far worse than guessing uniformly."""
    return not math.isfinite(loss) or loss > math.log(max(vocab_size, 2)) + DIVERGED_NATS


def finite(model: torch.nn.Module) -> bool:
    """All weights finite: one reduction per tensor, run at evaluations, saves and skips only."""
    return bool(torch.stack([p.detach().float().abs().amax() for p in model.parameters()])
                .isfinite().all())


class Snapshot:
    """An in-memory copy of the last known-good weights and optimizer, and where the run was."""

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer, pos: tuple[int, int, int]):
        self.model = copy.deepcopy(model.state_dict())
        self.opt = copy.deepcopy(opt.state_dict())
        self.pos = pos          # (step, epoch, chunk)

    def restore(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[int, int, int]:
        model.load_state_dict(self.model)
        opt.load_state_dict(self.opt)
        return self.pos
