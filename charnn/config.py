"""Frozen, typed configurations. CLI options map 1:1 onto these fields.

Each config is stored in the checkpoint as a plain dict (dataclasses.asdict) and rebuilt with
`from_dict`, which ignores unknown keys so older code can read newer checkpoints' configs.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Optional

from charnn.errors import CharnnError

CELLS = ("lstm", "gru", "rnn")
INPUTS = ("embedding", "onehot", "word2vec", "bow")


class _Dict:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class ModelConfig(_Dict):
    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 512
    embed_dim: int = 128
    dropout: float = 0.0
    tie_weights: bool = False
    input: str = "embedding"          # embedding | onehot | word2vec | bow
    freeze_embeddings: bool = False
    bow_dim: int = 0                  # size of the bag-of-words vector for --input bow

    def __post_init__(self):
        if self.cell not in CELLS:
            raise CharnnError(f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}", 2)
        if self.input not in INPUTS:
            raise CharnnError(f"unknown input {self.input!r}: choose one of {', '.join(INPUTS)}", 2)
        for name in ("vocab_size", "layers", "hidden", "embed_dim"):
            if int(getattr(self, name)) < 1:
                raise CharnnError(f"--{name.replace('_', '-')} must be at least 1", 2)
        if not 0.0 <= self.dropout < 1.0:
            raise CharnnError("--dropout must be in [0, 1)", 2)


@dataclass(frozen=True)
class TrainConfig(_Dict):
    seq_len: int = 64                 # T=64 learned more per token than 128 (benchmarks/RESULTS.md)
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup: int = 100                 # linear warmup steps; then cosine decay to lr * min_lr_frac
    min_lr_frac: float = 0.1
    epochs: Optional[int] = None
    max_steps: Optional[int] = None
    time_budget: Optional[float] = None   # seconds; the schedule is fitted to the wall clock
    val_frac: float = 0.1
    eval_every: int = 500             # validate and save every N steps
    device: str = "auto"
    amp: bool = True                  # bf16 autocast on CUDA
    seed: int = 1337

    def __post_init__(self):
        checks = [
            (self.seq_len >= 1, "--seq-len must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (0 < self.lr < float("inf"), "--lr must be a positive number"),
            (self.grad_clip >= 0, "--grad-clip must be >= 0 (0 turns clipping off)"),
            (self.epochs is None or self.epochs >= 1, "--epochs must be at least 1"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1"),
            (self.time_budget is None or self.time_budget > 0, "--time-budget must be positive"),
            (0.0 < self.val_frac < 1.0, "--val-frac must be between 0 and 1"),
            (self.eval_every >= 1, "--eval-every must be at least 1"),
            (self.warmup >= 0, "--warmup must be >= 0"),
            (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
             "--device must be auto, cpu, cuda or mps"),
        ]
        for ok, msg in checks:
            if not ok:
                raise CharnnError(msg, 2)


@dataclass(frozen=True)
class SampleConfig(_Dict):
    length: int = 1000
    temperature: float = 1.0
    top_k: int = 0                    # 0: off
    top_p: float = 1.0                # 1: off
    prime: str = ""
    stop: Optional[str] = None
    num_samples: int = 1
    seed: Optional[int] = None

    def __post_init__(self):
        import math

        t = self.temperature
        checks = [
            (self.length >= 0, "--length must be >= 0"),
            (not math.isnan(t) and t >= 0 and not math.isinf(t), "--temp must be a finite number >= 0"),
            (self.top_k >= 0, "--top-k must be >= 0"),
            (not math.isnan(self.top_p) and 0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
            (self.num_samples >= 1, "--num-samples must be at least 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise CharnnError(msg, 2)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | None) -> float | None:
    """'90s', '10m', '2h', '1h30m' or a plain number of seconds -> seconds."""
    if text is None:
        return None
    t = text.strip().lower()
    try:
        value = float(t)
    except ValueError:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhd])", t)
        if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", t):
            raise CharnnError(f"cannot read {text!r} as a duration: use e.g. 90s, 10m, 2h or 1h30m", 2)
        value = sum(float(n) * _UNITS[u] for n, u in parts)
    if not value > 0 or value != value:
        raise CharnnError(f"--time-budget must be positive, not {text!r}", 2)
    return value
