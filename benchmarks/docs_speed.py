"""What `--docs` costs in training: tokens/s of real training steps (forward, backward, AdamW)
on one chunk without resets, and with the state reset at document boundaries of a given mean
length (charnn.resets: few reset steps as plain fused pieces, many as one packed call).

    .venv/bin/python benchmarks/docs_speed.py                  # 2 threads
    .venv/bin/python benchmarks/docs_speed.py --threads 1 --sizes 1x128 2x256 2x512

B=32 streams x T=64 steps, vocabulary 60; each figure is the median of 15 timed steps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from machine_info import cpu_name  # noqa: E402

from charnn.config import ModelConfig  # noqa: E402
from charnn.model import RNNLM  # noqa: E402

V, B, T = 60, 32, 64
CASES = [("plain", None), ("docs ~1000", 1000), ("docs ~100", 100), ("docs ~8 (names)", 8)]


def tokens_per_sec(model: RNNLM, doc_len: int | None, steps: int = 15) -> float:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V - 1, (B, T + 1), generator=g)
    if doc_len:
        ids[torch.rand(B, T + 1, generator=g) < 1 / doc_len] = V - 1      # V - 1: the end token
    x, y = ids[:, :-1], ids[:, 1:]
    kw = {"resets": x == V - 1} if doc_len else {}
    state = model.init_state(B)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def step():
        logits, _ = model(x, state, None, **kw)
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return B * T / sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", nargs="+", default=["1x128", "2x256", "2x512"])
    ap.add_argument("--cell", default="lstm")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# benchmarks/docs_speed.py {' '.join(sys.argv[1:])}")
    print(f"# {date.today()}, {cpu_name()}, {os.cpu_count()} cores, {a.threads} threads, torch {torch.__version__}")
    for size in a.sizes:
        layers, hidden = map(int, size.split("x"))
        torch.manual_seed(0)
        model = RNNLM(ModelConfig(vocab_size=V, cell=a.cell, layers=layers, hidden=hidden, embed_dim=64))
        plain = None
        cells = []
        for name, doc_len in CASES:
            tps = tokens_per_sec(model, doc_len)
            plain = plain or tps
            cells.append(f"{name} {tps:,.0f} ({tps / plain:.0%})")
        print(f"{size} {a.cell}: " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
