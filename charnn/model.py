"""The language model: a pure nn.Module, (ids, state) -> (logits, state).

    ids (B, T) -> input vectors (B, T, E)      learned embedding, or one-hot (E = V) as char-rnn
               (+ W_v v for --input bow)        a bag-of-words vector v (B, bow_dim) added each step
    -> stacked nn.LSTM | nn.GRU | nn.RNN(tanh)  fused kernels: cuDNN on CUDA, oneDNN on CPU
    (-> + one head of attention over the last K top-layer states, --attention K: charnn.attention)
    -> dropout -> (projection H -> E when tied and H != E) -> Linear over the vocabulary (B, T, V)

No I/O, no device choice, no loss: those live in charnn.training. The recurrent state is a tuple
of tensors, (h, c) for an LSTM and (h,) otherwise, each (layers, B, H), then with --attention the
carried window (K-1, B, 2D+1): batch on dim 1 throughout, so callers treat all of them alike
(detach, save, move, take rows).

AWD-LSTM's regularisers (Merity et al. 2017), active only in training mode, so evaluation and
sampling never see them:
  --weight-drop p    DropConnect on each weight_hh_l{k}: one mask per forward (a training step),
                     shared by every time step; the fused kernel runs on the dropped weights
                     (torch.func.functional_call; tests/test_regularize.py proves they are used)
  --locked-dropout   --dropout's masks on the stack's input and output are (B, 1, D), shared by
                     the steps of a chunk (variational dropout); between layers the fused
                     kernel's own dropout stays
  --embed-dropout p  a token type's input vector is zeroed in the whole chunk with probability p
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from charnn.attention import WindowAttention
from charnn.config import ModelConfig
from charnn.errors import CharnnError

State = tuple[torch.Tensor, ...]
_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
# functional_call hands cuDNN weights outside its flat buffer; it copies them, and says so
_NOT_FLAT = "RNN module weights are not part of single contiguous chunk"


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
        self.attn = WindowAttention(H, cfg.attention, device) if cfg.attention else None
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
        window = (self.attn.empty_window(batch_size, device, dtype),) if self.attn is not None else ()
        return tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(n)) + window

    def inputs(self, ids: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) -> input vectors (B, T, in_dim)."""
        if self.embed is None:
            x = F.one_hot(ids, self.cfg.vocab_size).to(self.head.weight.dtype)
        else:
            x = self.embed(ids)
        p = self.cfg.embed_dropout
        if self.training and p > 0:   # one draw per token type: all its occurrences go together
            keep = x.new_empty(self.cfg.vocab_size).bernoulli_(1 - p) / (1 - p)   # (V,)
            x = x * keep[ids].unsqueeze(-1)
        if self.cond is not None:
            if cond is None:
                raise CharnnError("this model is conditioned on a bag of words (--input bow): "
                                  "give one (charnn sample --topic WORDS)")
            if isinstance(cond, tuple):  # per step: rows (K, bow_dim), index (B, T) into them
                rows, index = cond
                x = x + self.cond(rows)[index]    # project K rows, then gather: (B, T, in_dim)
            else:
                x = x + self.cond(cond).unsqueeze(1)  # (B, 1, in_dim) broadcast over T
        return self.dropout(x)

    def dropout(self, x: torch.Tensor) -> torch.Tensor:
        """--dropout on (B, T, D): a fresh mask per element, or with --locked-dropout one (B, 1, D)
        mask shared by the T steps."""
        p = self.cfg.dropout
        if not (self.cfg.locked_dropout and self.training and p > 0):
            return self.drop(x)
        return x * (x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p) / (1 - p))

    def forward(self, ids: torch.Tensor, state: State | None = None,
                cond: torch.Tensor | None = None, hidden: bool = False,
                resets: torch.Tensor | None = None):
        """ids (B, T) int64, state from init_state or a previous call -> logits (B, T, V), state;
        hidden=True adds the top layer's outputs (B, T, H), before attention and dropout (for
        AR/TAR). resets (B, T) bool: the state is zeroed before these steps (document starts),
        still in fused calls (charnn.resets)."""
        x = self.inputs(ids, cond)                                  # (B, T, E)
        n = 2 if self.cfg.cell == "lstm" else 1
        rnn_state = window = None
        if state is not None:
            rnn_state = tuple(state[:n])
            window = state[n] if self.attn is not None else None
        top, new_state = self.recurrent(x, rnn_state, resets)       # (B, T, H)
        out = top
        if self.attn is not None:
            out, window = self.attn(top, window)                    # (B, T, H), (K-1, B, 2D+1)
            new_state = new_state + (window,)
        out = self.dropout(out)
        if self.proj is not None:
            out = self.proj(out)                                    # (B, T, E)
        logits = self.head(out)                                     # (B, T, V)
        return (logits, new_state, top) if hidden else (logits, new_state)

    def recurrent(self, x: torch.Tensor, state: State | None, resets: torch.Tensor | None = None):
        """The fused stack -> (outputs (B, T, H), state as a tuple): on DropConnect'ed recurrent
        weights when training with --weight-drop; with `resets`, the state zeroed before those
        steps (charnn.resets)."""
        run = self._fused()
        if resets is not None and bool(resets.any()):
            from charnn.resets import run_with_resets

            if state is None:
                state = self.init_state(x.shape[0], x.device)[:2 if self.cfg.cell == "lstm" else 1]
            return run_with_resets(run, x, state, resets)
        out, new = run(x, None if state is None else state if len(state) == 2 else state[0])
        return out, new if isinstance(new, tuple) else (new,)

    def _fused(self):
        """The recurrent stack as a callable rnn(x, state): the module itself, or with --weight-drop
        in training, the module on recurrent weights with one DropConnect mask for this call."""
        p = self.cfg.weight_drop
        if not (self.training and p > 0):
            return self.rnn
        dropped = {f"weight_hh_l{l}": F.dropout(getattr(self.rnn, f"weight_hh_l{l}"), p, True)
                   for l in range(self.cfg.layers)}                 # (G, H) each, one mask per step

        def run(x, state):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_NOT_FLAT)
                return torch.func.functional_call(self.rnn, dropped, (x, state))
        return run


def detach_state(state: State) -> State:
    """Cut the graph between chunks (truncated BPTT) while keeping the values."""
    return tuple(s.detach() for s in state)


def num_parameters(model: nn.Module) -> int:
    # count shared (tied) tensors once
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
