"""The language model: a pure nn.Module, (ids, state) -> (logits, state).

    ids (B, T) -> input vectors (B, T, E)      learned embedding, or one-hot (E = V) as char-rnn
               (+ W_v v for --input bow)        a bag-of-words vector v (B, bow_dim) added each step
    -> stacked nn.LSTM | nn.GRU | nn.RNN(tanh)  fused kernels: cuDNN on CUDA, oneDNN on CPU
    -> dropout -> (projection H -> E when tied and H != E) -> Linear over the vocabulary (B, T, V)

No I/O, no device choice, no loss: those live in train.py. The recurrent state is a tuple of
tensors, (h, c) for an LSTM and (h,) otherwise, each (layers, B, H), so callers can treat all
cells alike (detach, save, move).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from charnn.config import ModelConfig
from charnn.errors import CharnnError

State = tuple[torch.Tensor, ...]
_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RNNLM(nn.Module):
    def __init__(self, cfg: ModelConfig, device=None):
        """device: where the parameters are made ("meta": shapes only, for loading weights into)."""
        super().__init__()
        self.cfg = cfg
        V, E, H = cfg.vocab_size, cfg.embed_dim, cfg.hidden
        dev = {"device": device}
        if cfg.input == "onehot":
            if cfg.tie_weights:
                raise CharnnError("--tie-weights needs a learned embedding, not --input onehot", 2)
            self.embed = None
            in_dim = V
        else:
            # on "meta", skip nn.Embedding's own normal_ init: on meta it imports torch._dynamo
            # (over a second); _init_weights sets the embedding anyway
            skip = {"_weight": torch.empty(V, E, device=device)} if str(device) == "meta" else {}
            self.embed = nn.Embedding(V, E, **dev, **skip)
            in_dim = E
        # --input bow: a learned projection of the bag-of-words vector joins every step's input
        self.cond = nn.Linear(cfg.bow_dim, in_dim, bias=False, **dev) if cfg.input == "bow" else None
        self.rnn = _CELLS[cfg.cell](
            in_dim, H, num_layers=cfg.layers, batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0, **dev,
        )
        self.drop = nn.Dropout(cfg.dropout)
        # Tying shares the (V, E) embedding with the output layer, so the top state must be E wide.
        self.proj = nn.Linear(H, E, bias=False, **dev) if cfg.tie_weights and H != E else None
        self.head = nn.Linear(E if cfg.tie_weights else H, V, **dev)
        self._init_weights()
        if cfg.tie_weights:
            self.head.weight = self.embed.weight
        if cfg.freeze_embeddings and self.embed is not None:
            self.embed.weight.requires_grad_(False)

    def _init_weights(self) -> None:
        if self.embed is not None:
            nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.uniform_(self.head.weight, -0.1, 0.1)
        nn.init.zeros_(self.head.bias)
        if self.cfg.cell == "lstm":
            # forget-gate bias 1 (gate order i, f, g, o): remember by default early in training
            H = self.cfg.hidden
            for layer in range(self.cfg.layers):
                getattr(self.rnn, f"bias_ih_l{layer}").data[H:2 * H].fill_(1.0)
                getattr(self.rnn, f"bias_hh_l{layer}").data[H:2 * H].zero_()

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> State:
        shape = (self.cfg.layers, batch_size, self.cfg.hidden)
        n = 2 if self.cfg.cell == "lstm" else 1
        return tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(n))

    def inputs(self, ids: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) -> input vectors (B, T, in_dim)."""
        if self.embed is None:
            x = F.one_hot(ids, self.cfg.vocab_size).to(self.head.weight.dtype)
        else:
            x = self.embed(ids)
        if self.cond is not None:
            if cond is None:
                raise CharnnError("this model is conditioned on a bag of words (--input bow): "
                                  "give one (charnn sample --topic WORDS)")
            if isinstance(cond, tuple):  # per step: rows (K, bow_dim), index (B, T) into them
                rows, index = cond
                x = x + self.cond(rows)[index]    # project K rows, then gather: (B, T, in_dim)
            else:
                x = x + self.cond(cond).unsqueeze(1)  # (B, 1, in_dim) broadcast over T
        return self.drop(x)

    def forward(self, ids: torch.Tensor, state: State | None = None,
                cond: torch.Tensor | None = None,
                resets: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """ids (B, T) int64, state from init_state or a previous call -> logits (B, T, V), state.
        resets (B, T) bool: the state is zeroed before these steps (document starts), still
        in one fused call (charnn.resets)."""
        x = self.inputs(ids, cond)                                  # (B, T, E)
        if resets is not None and bool(resets.any()):
            from charnn.resets import run_with_resets

            state = state if state is not None else self.init_state(ids.shape[0], ids.device)
            out, new_state = run_with_resets(self.rnn, x, state, resets)   # (B, T, H)
        else:
            if state is not None:
                state = state if self.cfg.cell == "lstm" else state[0]
            out, new_state = self.rnn(x, state)                     # (B, T, H)
        out = self.drop(out)
        if self.proj is not None:
            out = self.proj(out)                                    # (B, T, E)
        logits = self.head(out)                                     # (B, T, V)
        if not isinstance(new_state, tuple):
            new_state = (new_state,)
        return logits, new_state


def detach_state(state: State) -> State:
    """Cut the graph between chunks (truncated BPTT) while keeping the values."""
    return tuple(s.detach() for s in state)


def num_parameters(model: nn.Module) -> int:
    # count shared (tied) tensors once
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
