"""The learning-rate schedule and the run's progress: by steps, by the wall clock, or both."""

from __future__ import annotations

import math

from charnn.config import TrainConfig


def lr_at(cfg: TrainConfig, step: int, progress: float, scale: float = 1.0) -> float:
    """Linear warmup over cfg.warmup steps, then cosine decay to lr * min_lr_frac.

    `progress` in [0, 1] is the fraction of the run done: steps / max_steps, or, with a time
    budget, elapsed / budget, so the decay ends when the wall clock does.
    """
    warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    p = min(1.0, max(0.0, progress))
    decay = cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p))
    return cfg.lr * scale * warm * decay


def progress(step: int, total: int | None, elapsed: float, budget: float | None) -> float:
    """The fraction of the run done: the further of steps/total and elapsed/budget."""
    parts = []
    if total:
        parts.append(step / total)
    if budget:
        parts.append(elapsed / budget)
    return max(parts) if parts else 0.0


def eta(step: int, total: int | None, elapsed: float, budget: float | None,
        step_seconds: float) -> float | None:
    """Seconds left: the nearer of the step limit (at the current speed) and the budget."""
    etas = []
    if total:
        etas.append((total - step) * step_seconds)
    if budget:
        etas.append(max(0.0, budget - elapsed))
    return min(etas) if etas else None
