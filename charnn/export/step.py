"""One step of a charnn model as a plain module for export: gathers, matrix products and the gate
nonlinearities, no nn.LSTM, so ONNX and TorchScript see ops every runtime has.

    step = StepModel(model)
    logits, state = step(ids, state)           # ids (N,) int64, state (S, N, H) -> (N, V), (S, N, H)
    logits, state = step(ids, state, cond)     # --input bow models: cond (N, bow_dim)

The whole recurrent state is one tensor, so every cell has the same two inputs and outputs:
S = 2L for an LSTM (h of layers 0..L-1, then c of layers 0..L-1), S = L for a GRU or an RNN.
A fresh sequence starts from zeros. As in the Stepper, layer 0's input projection is a lookup
table, table = E @ W_ih0^T + b_ih0 (+ b_hh0 but for a GRU), (V, G); one-hot input makes it W_ih0^T.
Weights keep PyTorch's gate order: LSTM (i, f, g, o), GRU (r, z, n).
"""

from __future__ import annotations

import torch
from torch import nn

from charnn.model import RNNLM


class StepModel(nn.Module):
    def __init__(self, model: RNNLM):
        super().__init__()
        cfg = model.cfg
        self.cell, self.layers, self.hidden = cfg.cell, cfg.layers, cfg.hidden
        rnn = model.rnn

        def w(name: str, l: int) -> torch.Tensor:
            return getattr(rnn, f"{name}_l{l}").detach().float().clone()

        with torch.no_grad():
            W_ih0 = w("weight_ih", 0)                                            # (G, in_dim)
            emb = model.embed.weight.detach().float() if model.embed is not None else None
            table = (emb @ W_ih0.T if emb is not None else W_ih0.T.clone()) + w("bias_ih", 0)   # (V, G)
            if self.cell != "gru":
                table += w("bias_hh", 0)
            self.register_buffer("table", table.contiguous())
            self.register_buffer("cond_w", None)
            if model.cond is not None:            # cond @ W_c^T @ W_ih0^T, as one (bow_dim, G) matrix
                self.cond_w = (W_ih0 @ model.cond.weight.detach().float()).T.contiguous()
            for l in range(self.layers):
                self.register_buffer(f"w_hh{l}", w("weight_hh", l).T.contiguous())     # (H, G)
                if self.cell == "gru":
                    self.register_buffer(f"b_hh{l}", w("bias_hh", l))                   # (G,)
                if l > 0:
                    b = w("bias_ih", l) + (0 if self.cell == "gru" else w("bias_hh", l))
                    self.register_buffer(f"w_ih{l}", w("weight_ih", l).T.contiguous())  # (H, G)
                    self.register_buffer(f"b_ih{l}", b)
            proj = model.proj.weight.detach().float().T.contiguous() if model.proj is not None else None
            self.register_buffer("proj", proj)                                           # (H, E) or None
            self.register_buffer("head_w", model.head.weight.detach().float().T.contiguous())   # (H or E, V)
            self.register_buffer("head_b", model.head.bias.detach().float().clone())           # (V,)

    @property
    def state_size(self) -> int:
        """S: the first dimension of the state tensor."""
        return 2 * self.layers if self.cell == "lstm" else self.layers

    def forward(self, ids: torch.Tensor, state: torch.Tensor,
                cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.table[ids]                                                      # (N, G)
        if self.cond_w is not None and cond is not None:
            x = x + cond @ self.cond_w
        L, hs, cs = self.layers, [], []
        for l in range(L):
            if l > 0:
                x = hs[-1] @ getattr(self, f"w_ih{l}") + getattr(self, f"b_ih{l}")    # (N, G)
            h = state[l]                                                         # (N, H)
            if self.cell == "lstm":
                g = x + h @ getattr(self, f"w_hh{l}")
                i, f, gg, o = g.chunk(4, 1)
                c = torch.sigmoid(f) * state[L + l] + torch.sigmoid(i) * torch.tanh(gg)
                h = torch.sigmoid(o) * torch.tanh(c)
                cs.append(c)
            elif self.cell == "gru":
                gh = h @ getattr(self, f"w_hh{l}") + getattr(self, f"b_hh{l}")
                xr, xz, xn = x.chunk(3, 1)
                hr, hz, hn = gh.chunk(3, 1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                h = n + z * (h - n)                                              # (1 - z) n + z h
            else:
                h = torch.tanh(x + h @ getattr(self, f"w_hh{l}"))
            hs.append(h)
        top = hs[-1] if self.proj is None else hs[-1] @ self.proj
        logits = top @ self.head_w + self.head_b                                  # (N, V)
        return logits, torch.stack(hs + cs)                                       # (S, N, H)
