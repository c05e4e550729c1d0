"""The plain reference that quality_budget.py measures charnn against, on the same machine, in
the same run, for the same minutes: what a competent person writes in 80 lines of PyTorch
(pytorch/examples' word_language_model, made stateful), with no charnn code and no planner.

    a plain stateful 2x384 LSTM (embedding 128), B=32 streams x T=128, AdamW lr 3e-3
    (betas 0.9/0.99, weight decay 0.01), 100 warmup steps then a cosine decay to 10% fitted to
    the clock, clip 1.0, no dropout, fp32; first 90% of the characters train, last 10% validate

The clock starts with the process (imports and encoding included, as charnn's --time-budget);
training stops when what is left covers the final evaluation of the whole validation split,
estimated from the measured training speed (a forward pass runs at about 3x it).

    .venv/bin/python benchmarks/plain_reference.py corpus.txt --seconds 300
"""

from __future__ import annotations

import time

STARTED = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

B, T, LR, WARMUP, HIDDEN, LAYERS, EMBED = 32, 128, 3e-3, 100, 384, 2, 128


class PlainLSTM(nn.Module):
    def __init__(self, vocab: int, hidden: int = HIDDEN):
        super().__init__()
        self.embed = nn.Embedding(vocab, EMBED)
        self.rnn = nn.LSTM(EMBED, hidden, LAYERS, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state=None):                      # x (B, T) -> (B, T, V)
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def streams(ids: torch.Tensor, b: int) -> torch.Tensor:
    n = len(ids) // b
    return ids[: n * b].view(b, n)                         # (b, n): row i is a contiguous stream


@torch.no_grad()
def evaluate(model: PlainLSTM, ids: torch.Tensor, B: int = B, T: int = T) -> float:
    model.eval()
    s, state, total, count = streams(ids, B), None, 0.0, 0
    for i in range(0, s.shape[1] - 1, T):
        x, y = s[:, i:i + T], s[:, i + 1:i + 1 + T]
        x = x[:, : y.shape[1]]
        logits, state = model(x, state)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train()
    return total / count


def train_reference(text: str, seconds: float, started: float | None = None, seed: int = 0,
                    hidden: int = HIDDEN, B: int = B, T: int = T) -> dict:
    """Train the plain reference on `text` for `seconds` of wall clock from `started`; returns
    its final validation loss (nats/char), steps, tokens and time. (hidden, B, T: smaller for
    the tests; the benchmark uses the defaults.)"""
    started = time.time() if started is None else started
    torch.manual_seed(seed)
    chars = sorted(set(text))
    lut = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([lut[c] for c in text], dtype=torch.long)
    n = int(len(ids) * 0.9)
    train_s, val = streams(ids[:n], B), ids[n:]
    model = PlainLSTM(len(chars), hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.99), weight_decay=0.01)
    state, step, pos, step_s = None, 0, 0, 0.0
    while True:
        t0 = time.time()
        eval_s = len(val) / (3 * B * T / step_s) if step_s else 0.0
        train_end = started + seconds - 1.2 * eval_s - step_s   # the cosine ends where training does
        if step > 0 and t0 >= train_end:
            break
        if pos + T + 1 > train_s.shape[1]:
            pos, state = 0, None                           # a new epoch: state reset
        x, y = train_s[:, pos:pos + T], train_s[:, pos + 1:pos + T + 1]
        progress = min(1.0, (t0 - started) / max(1e-9, train_end - started))
        lr = LR * min(1.0, (step + 1) / WARMUP) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = tuple(s.detach() for s in state)
        pos, step = pos + T, step + 1
        dt = time.time() - t0
        step_s = dt if step == 1 else 0.9 * step_s + 0.1 * dt
    val_loss = evaluate(model, val, B, T)
    return {"val_nats_per_char": val_loss, "train_loss": loss.item(), "steps": step,
            "tokens": step * B * T, "elapsed": time.time() - started, "model": f"plain LSTM {LAYERS}x{hidden} B{B} T{T}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    r = train_reference(a.corpus.read_text(encoding="utf-8"), a.seconds, STARTED, a.seed)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
