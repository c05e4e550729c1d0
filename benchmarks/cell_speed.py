"""What the recurrent variants that quality-per-minute papers use cost per token on this machine.

A time budget buys tokens; a variant wins only if it learns more per token than it costs. This
times real training steps (forward, backward, AdamW) of a 2-layer LSTM LM, same shapes, for:

  fused        nn.LSTM over the whole chunk (oneDNN): what charnn trains with
  weight-drop  the same fused kernel with a fresh DropConnect mask on the recurrent weights
               each step (AWD-LSTM), through torch.func.functional_call
  layernorm    a LayerNorm LSTM (LayerNorm on the gate pre-activations and the cell), which no
               fused kernel provides: a Python loop over the T steps of nn.Linear + LayerNorm

    .venv/bin/python benchmarks/cell_speed.py                 # 2x512, B=32, T=64
    .venv/bin/python benchmarks/cell_speed.py --hidden 256
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import date

import torch
import torch.nn.functional as F
from torch import nn


class LNLSTMLayer(nn.Module):
    def __init__(self, inp: int, hidden: int):
        super().__init__()
        self.wx, self.wh = nn.Linear(inp, 4 * hidden), nn.Linear(hidden, 4 * hidden, bias=False)
        self.ln_x, self.ln_h, self.ln_c = nn.LayerNorm(4 * hidden), nn.LayerNorm(4 * hidden), nn.LayerNorm(hidden)

    def forward(self, x):                        # x (B, T, I) -> (B, T, H)
        B, T, _ = x.shape
        H = self.wh.in_features
        gx = self.ln_x(self.wx(x))               # (B, T, 4H): the input part, all steps at once
        h = x.new_zeros(B, H)
        c = x.new_zeros(B, H)
        out = []
        for t in range(T):
            i, f, g, o = (gx[:, t] + self.ln_h(self.wh(h))).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
            out.append(h)
        return torch.stack(out, 1)


class LM(nn.Module):
    def __init__(self, kind: str, V: int, E: int, H: int, L: int, p: float = 0.2):
        super().__init__()
        self.kind, self.p = kind, p
        self.embed, self.head = nn.Embedding(V, E), nn.Linear(H, V)
        if kind == "layernorm":
            self.layers = nn.ModuleList(LNLSTMLayer(E if l == 0 else H, H) for l in range(L))
        else:
            self.rnn = nn.LSTM(E, H, L, batch_first=True)

    def forward(self, ids):
        x = self.embed(ids)
        if self.kind == "layernorm":
            for layer in self.layers:
                x = layer(x)
        elif self.kind == "weight-drop":
            names = [n for n, _ in self.rnn.named_parameters() if n.startswith("weight_hh")]
            masked = {n: F.dropout(getattr(self.rnn, n), self.p, self.training) for n in names}
            x, _ = torch.func.functional_call(self.rnn, masked, (x,))
        else:
            x, _ = self.rnn(x)
        return self.head(x)


def tokens_per_sec(kind: str, V: int, E: int, H: int, L: int, B: int, T: int, steps: int) -> float:
    torch.manual_seed(0)
    model = LM(kind, V, E, H, L)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, V, (B, T + 1))

    def step():
        loss = F.cross_entropy(model(ids[:, :-1]).reshape(-1, V), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return B * T / sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    V, E = 65, 128
    print(f"# cell_speed {date.today()}: {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {a.layers}x{a.hidden} LSTM LM, B={a.batch_size} "
          f"T={a.seq_len}, vocabulary {V}")
    base = None
    for kind in ("fused", "weight-drop", "layernorm"):
        tps = tokens_per_sec(kind, V, E, a.hidden, a.layers, a.batch_size, a.seq_len, a.steps)
        base = base or tps
        print(f"{kind:<12} {tps:>9,.0f} tokens/s  {tps / base:>5.2f}x fused")


if __name__ == "__main__":
    main()
