"""The recurrent cells of charnn.model written out one step at a time, on the model's own weights.

nn.LSTM / nn.GRU / nn.RNN run fused kernels that hand back only the hidden states; to see the
gates (and to take gradients with respect to any single step's state) the step is spelled out
here, in PyTorch's conventions (the tests hold it equal to the fused forward):

    LSTM  (i, f, g, o) = split(W_ih x + b_ih + W_hh h + b_hh)     rows in PyTorch's order i, f, g, o
          i, f, o = sigmoid(.), g = tanh(.);  c' = f c + i g;  h' = o tanh(c')
    GRU   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr);  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
          n = tanh(W_in x + b_in + r (W_hn h + b_hn));  h' = (1 - z) n + z h
    RNN   h' = tanh(W_ih x + b_ih + W_hh h + b_hh)

A layer's input projection W_ih x is done for all steps at once; only the recurrent part loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from charnn.model import RNNLM

# the gates each cell records, in PyTorch's row order
GATES: dict[str, tuple[str, ...]] = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ()}
# gates squashed by a sigmoid (0..1), as opposed to the tanh candidates g and n (-1..1)
SIGMOID_GATES: dict[str, tuple[str, ...]] = {"lstm": ("i", "f", "o"), "gru": ("r", "z"), "rnn": ()}


@dataclass
class LayerWeights:
    """One layer's parameters as plain float tensors (detached: nothing here trains)."""

    W_ih: torch.Tensor      # (G, in_dim), G = 4H (LSTM), 3H (GRU), H (RNN)
    W_hh: torch.Tensor      # (G, H)
    b_ih: torch.Tensor      # (G,)
    b_hh: torch.Tensor      # (G,)


def layer_weights(model: RNNLM, l: int) -> LayerWeights:
    get = lambda name: getattr(model.rnn, f"{name}_l{l}").detach().float()  # noqa: E731
    return LayerWeights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"))


@dataclass
class LayerTrace:
    """What one layer did, step by step: lists of T tensors, each (B, H)."""

    h: list[torch.Tensor] = field(default_factory=list)
    c: list[torch.Tensor] = field(default_factory=list)                  # LSTM only
    gates: dict[str, list[torch.Tensor]] = field(default_factory=dict)   # name -> T x (B, H)


def run_layer(cell: str, w: LayerWeights, x: torch.Tensor, h0: torch.Tensor,
              c0: torch.Tensor | None = None, keep_gates: bool = True) -> LayerTrace:
    """x (B, T, in_dim), h0 (and c0 for an LSTM) (B, H) -> the layer's trace over the T steps.
    Differentiable: under autograd every h_t in the trace is a node one can take gradients at."""
    gx = x @ w.W_ih.T + w.b_ih                                   # (B, T, G): all steps at once
    trace = LayerTrace(gates={g: [] for g in GATES[cell]} if keep_gates else {})
    step = {"lstm": _lstm_step, "gru": _gru_step, "rnn": _rnn_step}[cell]
    h, c = h0, c0
    for t in range(x.shape[1]):
        h, c, gates = step(w, gx[:, t], h, c)
        trace.h.append(h)
        if c is not None:
            trace.c.append(c)
        if keep_gates:
            for name, value in zip(GATES[cell], gates):
                trace.gates[name].append(value)
    return trace


def _lstm_step(w: LayerWeights, gx: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    i, f, g, o = (gx + h @ w.W_hh.T + w.b_hh).chunk(4, dim=-1)      # each (B, H)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c + i * g
    return o * c.tanh(), c, (i, f, g, o)


def _gru_step(w: LayerWeights, gx: torch.Tensor, h: torch.Tensor, c: None):
    gh = h @ w.W_hh.T + w.b_hh                                      # (B, 3H): b_hn stays inside r (.)
    xr, xz, xn = gx.chunk(3, dim=-1)
    hr, hz, hn = gh.chunk(3, dim=-1)
    r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
    n = (xn + r * hn).tanh()
    return (1 - z) * n + z * h, None, (r, z, n)


def _rnn_step(w: LayerWeights, gx: torch.Tensor, h: torch.Tensor, c: None):
    return (gx + h @ w.W_hh.T + w.b_hh).tanh(), None, ()


def run_stack(model: RNNLM, x: torch.Tensor, h0: torch.Tensor | None = None,
              c0: torch.Tensor | None = None, keep_gates: bool = True) -> list[LayerTrace]:
    """Input vectors x (B, T, in_dim) through every layer; h0, c0 (L, B, H) or None for zeros.
    Layer l reads layer l-1's states (the model is in eval mode: no dropout between layers)."""
    cfg = model.cfg
    B = x.shape[0]
    zeros = torch.zeros(cfg.layers, B, cfg.hidden, dtype=x.dtype, device=x.device)
    h0 = zeros if h0 is None else h0
    if cfg.cell == "lstm":
        c0 = zeros if c0 is None else c0
    traces = []
    for l in range(cfg.layers):
        trace = run_layer(cfg.cell, layer_weights(model, l), x, h0[l],
                          c0[l] if cfg.cell == "lstm" else None, keep_gates)
        traces.append(trace)
        x = torch.stack(trace.h, dim=1)                          # (B, T, H): the next layer's input
    return traces


def head_logits(model: RNNLM, top: torch.Tensor) -> torch.Tensor:
    """The top layer's states (..., H) -> logits (..., V), as RNNLM.forward makes them."""
    if model.proj is not None:
        top = model.proj(top)                                     # (..., E) for tied weights
    return model.head(top)
