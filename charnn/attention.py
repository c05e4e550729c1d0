"""`--attention K`: one head of attention over the last K hidden states of the top layer, added
to its output (as SHA-RNN does with a single head on top of an LSTM).

    h (B, T, H) -> q, k, v = h W_qkv               (B, T, D) each, D = attention_dim(H)
    a_t = softmax_s(q_t . k_s / sqrt(D) + pos[t - s]) v_s    over s = t-K+1 .. t (itself included)
    out_t = h_t + W_o a_t                          (B, T, H)

The keys and values of the last K-1 steps are carried from chunk to chunk in the recurrent state
as one tensor, window (K-1, B, 2D+1) = [k | v | valid]: batch on dim 1 like the LSTM's (layers,
B, H), so the code that slices, gathers and saves states by rows handles it unchanged. `valid` is
0 for slots before the stream's start, which a zero state (init_state) has everywhere, so a
chunked run equals a full one and a fresh state equals no state. pos is a learned bias by
distance (K values); W_o starts at zero, so training starts from the plain recurrent model.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def attention_dim(hidden: int) -> int:
    """Width of the query/key/value vectors: a quarter of the layer (~8% of a 2x512 LSTM's
    FLOPs per token at D=128), never below 16."""
    return max(16, hidden // 4)


class WindowAttention(nn.Module):
    def __init__(self, hidden: int, window: int, device=None):
        super().__init__()
        self.window, self.dim = window, attention_dim(hidden)
        D = self.dim
        self.qkv = nn.Linear(hidden, 3 * D, bias=False, device=device)
        self.out = nn.Linear(D, hidden, bias=False, device=device)
        self.pos = nn.Parameter(torch.zeros(window, device=device))   # bias by distance 0..K-1
        if str(device) != "meta":
            nn.init.zeros_(self.out.weight)

    def empty_window(self, batch_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """The window of a stream that has not started: (K-1, B, 2D+1), nothing valid."""
        return torch.zeros(self.window - 1, batch_size, 2 * self.dim + 1, device=device, dtype=dtype)

    def forward(self, h: torch.Tensor, window: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, T, H), window (K-1, B, 2D+1) or None -> out (B, T, H), the next window."""
        B, T, _ = h.shape
        K, D = self.window, self.dim
        q, k, v = self.qkv(h).split(D, -1)                                   # (B, T, D) each
        new = torch.cat([k, v, torch.ones_like(k[..., :1])], -1)             # (B, T, 2D+1)
        past = window.transpose(0, 1) if window is not None else \
            self.empty_window(B, h.device, new.dtype).transpose(0, 1)        # (B, K-1, 2D+1)
        mem = torch.cat([past.to(new.dtype), new], 1)                       # (B, K-1+T, 2D+1)
        keys, values, valid = mem.split([D, D, 1], -1)
        # query t sits at position K-1+t of mem; it reads positions at distance 0..K-1 from it
        dist = (torch.arange(T, device=h.device) + K - 1)[:, None] - torch.arange(K - 1 + T, device=h.device)
        band = (dist >= 0) & (dist < K)                                      # (T, K-1+T)
        scores = q @ keys.transpose(1, 2) / math.sqrt(D) + self.pos[dist.clamp(0, K - 1)]
        allowed = band & (valid.transpose(1, 2) > 0)                         # (B, T, K-1+T)
        attn = scores.masked_fill(~allowed, float("-inf")).softmax(-1)       # (B, T, K-1+T)
        out = h + self.out(attn.to(values.dtype) @ values)                  # (B, T, H)
        return out, mem[:, T:].transpose(0, 1)                              # window (K-1, B, 2D+1)
