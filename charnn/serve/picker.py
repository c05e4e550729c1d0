"""Picking the next token for the rows of a continuously batched step, each row with its own
seed, temperature, top-k and top-p, so that a row draws exactly what `charnn sample --seed S`
(charnn.sampling.generate.Picker) draws for a single stream with the same settings.

Picker gives stream i a generator seeded seed + i and pre-draws its uniforms in blocks of
Picker.BLOCK, scaled by (1 - 2^-22); a draw inverts the cumulative distribution. Here each
stream keeps that state itself (`Draws`), because streams join and leave the batch at any step:
a row's uniform is taken from its own block, and the batch gathers them into one (N, 1) tensor.
The arithmetic per row is the Picker's, op for op:
  - plain rows (top_k 0, top_p 1): logits * float32(1/T), softmax (a factor 1.0 where T is 1
    or 0 leaves the logits bit for bit as they are);
  - rows with top-k or top-p: charnn.sampling.generate.probabilities on those rows, grouped by
    their settings (every op in it works row by row, so a group computes what one row would);
  - T = 0: the argmax of the raw logits, and no uniform is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from charnn.sampling.generate import Picker, probabilities

SCALE = 1 - 2 ** -22      # as Picker: u * total stays below total despite rounding


@dataclass(frozen=True)
class Sampling:
    """How one stream picks: temperature (0 is greedy), top_k (0: off), top_p (1: off)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    @property
    def plain(self) -> bool:
        return self.top_k == 0 and self.top_p == 1.0


class Draws:
    """One stream's uniforms, drawn as Picker draws them for a stream seeded `seed`."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)
        self.block: list[float] = []
        self.t = 0

    def next(self) -> float:
        if self.t == len(self.block):
            # float32 draws, scaled in float32, held as Python floats (exact: a float32 value
            # round-trips through a double unchanged)
            self.block = torch.rand(Picker.BLOCK, generator=self.gen).mul_(SCALE).tolist()
            self.t = 0
        u = self.block[self.t]
        self.t += 1
        return u


class BatchPicker:
    """Picks for N rows with fixed settings (rebuilt when the batch's rows change).

        picker = BatchPicker([Sampling(0.8), Sampling(1.0, top_k=5), ...])
        ids = picker(logits, us)     # logits (N, V), us: N uniforms -> ids (N,) int64
    """

    def __init__(self, rows: list[Sampling]):
        self.n = len(rows)
        inv = [1.0 / s.temperature if s.temperature not in (0.0, 1.0) else 1.0 for s in rows]
        self.inv_temp = torch.tensor(inv, dtype=torch.float32).unsqueeze(1)      # (N, 1)
        self.scale = any(v != 1.0 for v in inv)
        greedy = [s.temperature == 0 for s in rows]
        self.greedy = torch.tensor(greedy).unsqueeze(1) if any(greedy) else None  # (N, 1) bool
        groups: dict[Sampling, list[int]] = {}
        for i, s in enumerate(rows):
            if not s.plain and s.temperature > 0:
                groups.setdefault(s, []).append(i)
        self.groups = [(s, torch.tensor(idx)) for s, idx in groups.items()]

    def __call__(self, logits: torch.Tensor, us: list[float]) -> torch.Tensor:
        """logits (N, V) float32 on the CPU, us (N,) uniforms from Draws.next -> ids (N,)."""
        scaled = logits * self.inv_temp if self.scale else logits                 # (N, V)
        probs = torch.softmax(scaled, -1)
        for s, idx in self.groups:
            probs[idx] = probabilities(logits[idx], s.temperature, s.top_k, s.top_p)
        cdf = torch.cumsum(probs, -1)                                              # (N, V)
        u = torch.tensor(us, dtype=torch.float32).unsqueeze(1)                     # (N, 1)
        # right=True: the first index whose cdf exceeds the target, never a zero-probability one
        ids = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1)      # (N,)
        if self.greedy is not None:
            ids = torch.where(self.greedy.squeeze(1), logits.argmax(-1), ids)
        return ids
