"""A run's loss curves, read from its metrics.jsonl (the trainer logs a step record every few
steps, with the training loss, the learning rate and the elapsed time, and an eval record at
each evaluation), falling back to the checkpoint's history when the log is gone.

Losses are in nats per token as logged; `per_char` converts them with the run's characters per
token, so runs with different tokenizers can share a chart. A step logged twice (a resumed or
rolled-back run repeats steps) keeps its last record.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Curves:
    name: str
    chars_per_token: float = 1.0
    steps: list[int] = field(default_factory=list)          # training step records
    train: list[float] = field(default_factory=list)        # nats/token
    lr: list[float] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)      # seconds
    val_steps: list[int] = field(default_factory=list)      # evaluations
    val: list[float] = field(default_factory=list)          # nats/token
    val_elapsed: list[float] = field(default_factory=list)

    def per_char(self, losses: list[float]) -> list[float]:
        return [x / self.chars_per_token for x in losses]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a line that is not JSON (a run killed mid-write) is skipped."""
    records = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
    except FileNotFoundError:
        pass
    return records


def read_curves(run_dir: Path, ckpt: dict[str, Any], name: str | None = None) -> Curves:
    """The curves of the run in `run_dir` (its checkpoint `ckpt` gives chars/token and history)."""
    cpt = float((ckpt.get("progress") or {}).get("chars_per_token", 1.0)) or 1.0
    curves = Curves(name or run_dir.name, cpt)
    steps: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    for rec in read_metrics(run_dir / "metrics.jsonl"):
        if rec.get("event") == "step" and _finite(rec.get("loss")) and isinstance(rec.get("step"), int):
            steps[rec["step"]] = rec
        elif rec.get("event") == "eval" and _finite(rec.get("val_loss")) and isinstance(rec.get("step"), int):
            evals[rec["step"]] = rec
    if not evals:     # no log: the checkpoint's own history of evaluations
        evals = {h["step"]: h for h in ckpt.get("history") or []
                 if isinstance(h, dict) and isinstance(h.get("step"), int) and _finite(h.get("val_loss"))}
    for s in sorted(steps):
        rec = steps[s]
        curves.steps.append(s)
        curves.train.append(float(rec["loss"]))
        curves.lr.append(float(rec["lr"]) if _finite(rec.get("lr")) else math.nan)
        curves.elapsed.append(float(rec["elapsed"]) if _finite(rec.get("elapsed")) else math.nan)
    for s in sorted(evals):
        rec = evals[s]
        curves.val_steps.append(s)
        curves.val.append(float(rec["val_loss"]))
        curves.val_elapsed.append(float(rec["elapsed"]) if _finite(rec.get("elapsed")) else math.nan)
    return curves
