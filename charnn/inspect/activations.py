"""One pass of a model over a text, recording what happened at every token.

    acts = record(run.model, run.tokenizer, ids, cond)
    acts.states["h"]      # (L, T, H) hidden state after each token, per layer
    acts.states["c"]      # (L, T, H) LSTM cell state
    acts.states["f"]      # (L, T, H) a gate: LSTM i f g o, GRU r z n (PyTorch's names)
    acts.loss             # (T,) nats paid for each token given those before it (NaN for the first)
    acts.top_ids          # (T, k) the model's likeliest next tokens after each token, and top_probs

The pass starts from the zero state, as training's first chunk does, and steps through the
text with the cells written out (charnn.inspect.cells), so gates can be recorded; the states
equal the fused model's (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from charnn.inspect import cells
from charnn.model import RNNLM

TOP_K = 5


@dataclass
class Activations:
    cell: str
    ids: np.ndarray                       # (T,) int64
    pieces: list[str]                     # (T,) each token's text (charnn.inspect.text.pieces)
    states: dict[str, np.ndarray]         # kind -> (L, T, H) float32: "h", "c", gate names
    loss: np.ndarray                      # (T,) float32, NaN at t = 0 (no context)
    top_ids: np.ndarray                   # (T, k) int64
    top_probs: np.ndarray                 # (T, k) float32
    meta: dict = field(default_factory=dict)   # run name, tokenizer, ... (for dumps and the page)

    @property
    def layers(self) -> int:
        return self.states["h"].shape[0]

    @property
    def hidden(self) -> int:
        return self.states["h"].shape[2]

    @property
    def kinds(self) -> list[str]:
        return list(self.states)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def unit(self, kind: str, layer: int, unit: int) -> np.ndarray:
        """One unit's values over the text, (T,)."""
        return self.states[kind][layer, :, unit]


def bow_cond(cond, T: int):
    """A --input bow model's per-token conditioning (charnn.representations.bow.DocCond) for a
    one-stream pass over T tokens: (rows (K, dim), index (1, T)), step t conditioned on the
    document of the token it predicts (the last step on its own), as evaluation does."""
    docs = np.asarray(cond.doc_ids[:T])
    docs = np.concatenate([docs[1:], docs[-1:]])                 # (T,) the target's document
    uniq, inv = np.unique(docs, return_inverse=True)
    return torch.from_numpy(cond.rows(uniq)), torch.from_numpy(inv.reshape(1, T))


@torch.no_grad()
def trace(model: RNNLM, ids: np.ndarray, cond=None, keep_gates: bool = True) -> list[cells.LayerTrace]:
    """The per-layer traces of one stream over `ids` (T,), from the zero state."""
    model.eval()
    x = torch.as_tensor(ids, dtype=torch.long).unsqueeze(0)          # (1, T)
    c = bow_cond(cond, len(ids)) if cond is not None else None
    inputs = model.inputs(x, c).float()                               # (1, T, in_dim)
    return cells.run_stack(model, inputs, keep_gates=keep_gates)


def _stack(steps: list[torch.Tensor]) -> np.ndarray:
    return torch.stack(steps, dim=1)[0].numpy()                       # T x (1, H) -> (T, H)


@torch.no_grad()
def record(model: RNNLM, tokenizer, ids: np.ndarray, cond=None, top_k: int = TOP_K,
           meta: dict | None = None) -> Activations:
    """Run the model over `ids` and keep everything (see the module docstring)."""
    from charnn.inspect.text import pieces

    traces = trace(model, ids, cond)
    states = {"h": np.stack([_stack(t.h) for t in traces])}          # (L, T, H)
    if model.cfg.cell == "lstm":
        states["c"] = np.stack([_stack(t.c) for t in traces])
    for g in cells.GATES[model.cfg.cell]:
        states[g] = np.stack([_stack(t.gates[g]) for t in traces])
    top = torch.from_numpy(states["h"][-1])                           # (T, H) the top layer
    logp = cells.head_logits(model, top).log_softmax(-1)             # (T, V)
    loss = np.full(len(ids), np.nan, dtype=np.float32)
    target = torch.as_tensor(ids[1:], dtype=torch.long)
    loss[1:] = (-logp[:-1].gather(1, target[:, None])[:, 0]).numpy()  # token t given tokens < t
    k = min(top_k, logp.shape[1])
    probs, top_ids = logp.exp().topk(k, dim=-1)                       # (T, k) each
    return Activations(model.cfg.cell, np.asarray(ids, dtype=np.int64), pieces(tokenizer, ids),
                       states, loss, top_ids.numpy().astype(np.int64), probs.numpy(), dict(meta or {}))
