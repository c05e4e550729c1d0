"""How far back the gradient reaches: the norm of d loss_t / d h_(t-k) for k = 1 .. K, per layer.

This is the quantity behind vanishing and exploding gradients. For a plain tanh RNN,
d h_t / d h_(t-1) = diag(1 - h_t^2) W_hh, so the gradient k steps back is a product of k such
Jacobians: it shrinks about like sigma^k when W_hh's largest singular value sigma is below 1
(and the tanh only shrinks it more), and can grow when sigma > 1. An LSTM's cell state adds a
path whose Jacobian is the forget gate, diag(f), which stays near 1 for units that remember, so
its gradient reaches much further; a GRU's update gate z plays that part.

The measurement: positions t are spread over the text; for each, the model is run from the
state it has after token t-K-1 (the fused model, run over the text once, gives those states)
through tokens t-K .. t, the loss of predicting token t+1 is taken, and autograd gives its gradient with
respect to every layer's h at every step of the window. All windows run as one batch (they do not
interact). Reported per layer and k: the mean over positions of |d loss_t / d h_(t-k)|_2, and
the same relative to k = 1. LSTMs also report the gradient with respect to the cell state c.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from charnn.errors import CharnnError
from charnn.inspect import cells
from charnn.inspect.activations import bow_cond
from charnn.model import RNNLM

FALLS_BELOW = 1e-3      # "the gradient is gone": |grad| at k below this share of |grad| at k = 1


@dataclass
class GradientFlow:
    lags: np.ndarray                     # (K,) k = 1 .. K
    norms: np.ndarray                    # (L, K) mean |d loss_t / d h_(t-k)| per layer
    cell_norms: np.ndarray | None        # (L, K) the same for the LSTM cell state, else None
    positions: list[int]                 # the t that were averaged over
    sigma: list[dict]                    # per layer: largest singular value of W_hh, whole and per gate
    mean_gate: list[float] | None        # per layer: mean LSTM forget gate f, or GRU update gate z,
                                         # over the windows measured
    gate_name: str | None = None         # "f" or "z"
    meta: dict = field(default_factory=dict)

    @property
    def relative(self) -> np.ndarray:
        """(L, K) norms over their k = 1 value (0 where that is 0)."""
        first = self.norms[:, :1]
        return np.divide(self.norms, first, out=np.zeros_like(self.norms), where=first > 0)

    def falls_below(self, share: float = FALLS_BELOW) -> list[int | None]:
        """Per layer, the first k whose gradient is below `share` of its k = 1 value (None: not
        within K)."""
        out = []
        for row in self.relative:
            below = np.flatnonzero(row < share)
            out.append(int(self.lags[below[0]]) if len(below) else None)
        return out


def check_lag(n_tokens: int, lag: int) -> None:
    if lag < 1:
        raise CharnnError("--lag must be at least 1", 2)
    if n_tokens < lag + 2:
        raise CharnnError(f"--lag {lag} needs a text of at least {lag + 2} tokens (K before the position "
                          f"and the token after it); this one has {n_tokens}: give a longer text or a "
                          "smaller --lag", 2)


def measure(model: RNNLM, ids: np.ndarray, lag: int = 200, positions: int = 32, cond=None) -> GradientFlow:
    """The gradient flow of `model` on the tokens `ids` (T,); see the module docstring."""
    check_lag(len(ids), lag)
    if positions < 1:
        raise CharnnError("--positions must be at least 1", 2)
    model.eval()
    T, K = len(ids), lag
    ts = np.unique(np.linspace(K, T - 2, num=positions).round().astype(int)).tolist()   # targets t
    starts = [t - K for t in ts]                                                         # sorted, distinct
    c = bow_cond(cond, T) if cond is not None else None
    with torch.no_grad():
        x_all = model.inputs(torch.as_tensor(ids, dtype=torch.long)[None], c).float()    # (1, T, in_dim)
        h0, c0 = _start_states(model, x_all, starts)
    targets = torch.as_tensor(ids[[t + 1 for t in ts]])                                  # (B,)
    gate = {"lstm": "f", "gru": "z"}.get(model.cfg.cell)
    with torch.enable_grad():
        x = torch.stack([x_all[0, s:s + K + 1] for s in starts]).requires_grad_(True)   # (B, K+1, in_dim)
        traces = cells.run_stack(model, x, h0, c0, keep_gates=gate is not None)
        logits = cells.head_logits(model, traces[-1].h[-1])                              # (B, V) at t
        loss = F.cross_entropy(logits, targets, reduction="sum")                        # windows are independent
        norms = _grad_norms(loss, [t.h for t in traces], K, retain=model.cfg.cell == "lstm")
        cell_norms = _grad_norms(loss, [t.c for t in traces], K) if model.cfg.cell == "lstm" else None
    # the gate that keeps a unit's old value, averaged over the windows' steps and units
    mean_gate = [float(torch.stack(t.gates[gate]).detach().mean()) for t in traces] if gate else None
    return GradientFlow(np.arange(1, K + 1), norms, cell_norms, ts, singular_values(model), mean_gate, gate)


def _start_states(model: RNNLM, x_all: torch.Tensor, starts: list[int]):
    """Each window's start state, the state after token start-1 (zero for a window at 0), by the
    fused model run from segment to segment: h0 and c0 (L, B, H) (c0 None but for an LSTM)."""
    lstm = model.cfg.cell == "lstm"
    zero = model.init_state(1, dtype=x_all.dtype)
    state, pos, hs, cs = None, 0, [], []
    for s in starts:
        if s > pos:
            _, state = model.rnn(x_all[:, pos:s], state)
            pos = s
        now = zero if state is None else (state if lstm else (state,))
        hs.append(now[0])
        if lstm:
            cs.append(now[1])
    return torch.cat(hs, dim=1), torch.cat(cs, dim=1) if lstm else None     # (L, B, H)


def _grad_norms(loss: torch.Tensor, per_layer: list[list[torch.Tensor]], K: int,
                retain: bool = False) -> np.ndarray:
    """|d loss / d s_(t-k)| averaged over the batch, for k = 1..K, per layer: (L, K).
    per_layer[l][j] is layer l's state after window step j (j = K is the target position t)."""
    wanted = [steps[K - k] for steps in per_layer for k in range(1, K + 1)]
    grads = torch.autograd.grad(loss, wanted, retain_graph=retain, allow_unused=True)
    norms = [g.norm(dim=-1).mean().item() if g is not None else 0.0 for g in grads]   # each (B, H) -> mean
    return np.asarray(norms, dtype=np.float64).reshape(len(per_layer), K)


def singular_values(model: RNNLM) -> list[dict]:
    """Per layer, the largest singular value of the recurrent matrix W_hh (G, H) as a whole and of
    each gate's block (H, H): {"layer", "all", gate: value, ...}. For a plain RNN it bounds how
    much one step can grow a gradient (the tanh's slope is at most 1)."""
    out = []
    for l in range(model.cfg.layers):
        W = cells.layer_weights(model, l).W_hh
        entry = {"layer": l, "all": float(torch.linalg.matrix_norm(W, ord=2))}
        names = cells.GATES[model.cfg.cell]
        for name, block in zip(names, W.chunk(len(names), dim=0) if names else ()):
            entry[name] = float(torch.linalg.matrix_norm(block, ord=2))
        out.append(entry)
    return out
