"""Step-wise generation: one token at a time with the recurrent state carried, never re-running
the model over the prefix.

The prime is read with the model's fused forward; after that `Stepper` takes over. It does one
step of the stacked cell on plain tensors with the weights arranged ahead of time, which at
batch 1 is many times faster than calling nn.LSTM once per character:
  - layer 0's input projection is a lookup: table = E @ W_ih0^T + biases, (V, G), so an
    embedding lookup plus a matmul becomes one row gather;
  - LSTM and RNN layers above do one addmm on [x, h] against pre-concatenated [W_ih; W_hh]^T;
  - LSTM gate rows are reordered to (i, f, o, g) so one sigmoid covers three gates.
G is the gate width: 4H (LSTM), 3H (GRU), H (RNN).
"""

from __future__ import annotations

from typing import Iterator

import torch

from charnn.config import SampleConfig
from charnn.errors import CharnnError
from charnn.model import RNNLM, State
from charnn.tokenizers import Tokenizer


class Stepper:
    def __init__(self, model: RNNLM, cond: torch.Tensor | None = None):
        cfg = model.cfg
        self.cell, self.layers, H = cfg.cell, cfg.layers, cfg.hidden
        rnn = model.rnn
        with torch.no_grad():
            w = lambda name, l: getattr(rnn, f"{name}_l{l}").detach().float()  # noqa: E731
            order = self._gate_order(H)
            W_ih0, b_ih0, b_hh0 = w("weight_ih", 0)[order], w("bias_ih", 0)[order], w("bias_hh", 0)[order]
            emb = model.embed.weight.detach().float() if model.embed is not None else None
            table = emb @ W_ih0.T if emb is not None else W_ih0.T.clone()     # (V, G)
            table += b_ih0
            self.gru_b_hh: list[torch.Tensor] = []
            if self.cell != "gru":
                table += b_hh0      # GRU keeps b_hh apart: it sits inside r * (W_hn h + b_hn)
            self.table = table.contiguous()
            # --input bow: the conditioning vector adds a constant to layer 0's input gates
            self.cond_gates = None
            if model.cond is not None and cond is not None:
                self.cond_gates = (model.cond(cond.float()) @ W_ih0.T)       # (N, G)
            self.W_hh0 = w("weight_hh", 0)[order].T.contiguous()              # (H, G)
            self.W_cat, self.b, self.W_ih, self.W_hh = [], [], [], []
            for l in range(1, self.layers):
                W_ih, W_hh = w("weight_ih", l)[order], w("weight_hh", l)[order]
                b_ih, b_hh = w("bias_ih", l)[order], w("bias_hh", l)[order]
                if self.cell == "gru":
                    self.W_ih.append(W_ih.T.contiguous())                      # (H, 3H)
                    self.W_hh.append(W_hh.T.contiguous())                      # (H, 3H)
                    self.b.append(b_ih)
                    self.gru_b_hh.append(b_hh)
                else:
                    self.W_cat.append(torch.cat([W_ih, W_hh], 1).T.contiguous())  # (2H, G)
                    self.b.append(b_ih + b_hh)
            if self.cell == "gru":
                self.gru_b_hh.insert(0, b_hh0)
            self.proj = model.proj.weight.detach().float().T.contiguous() if model.proj is not None else None
            self.W_out = model.head.weight.detach().float().T.contiguous()    # (H or E, V)
            self.b_out = model.head.bias.detach().float()

    def _gate_order(self, H: int) -> torch.Tensor:
        if self.cell == "lstm":  # PyTorch's (i, f, g, o) -> (i, f, o, g)
            return torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        return torch.arange({"gru": 3, "rnn": 1}[self.cell] * H)

    def _cell(self, gates_x: torch.Tensor, l: int, h: torch.Tensor, c: torch.Tensor | None):
        """One layer: gates_x (N, G) is the input's contribution (bias included)."""
        H = h.shape[1]
        if self.cell == "lstm":
            gates = torch.addmm(gates_x, h, self.W_hh0) if l == 0 else gates_x
            s = gates[:, : 3 * H].sigmoid()                     # i, f, o
            g = gates[:, 3 * H:].tanh()
            c = torch.addcmul(s[:, H: 2 * H] * c, s[:, :H], g)
            return s[:, 2 * H:] * c.tanh(), c
        if self.cell == "rnn":
            gates = torch.addmm(gates_x, h, self.W_hh0) if l == 0 else gates_x
            return gates.tanh(), None
        # GRU: r, z from x and h together; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        W_hh = self.W_hh0 if l == 0 else self.W_hh[l - 1]
        gh = torch.addmm(self.gru_b_hh[l], h, W_hh)             # (N, 3H)
        rz = (gates_x[:, : 2 * H] + gh[:, : 2 * H]).sigmoid()
        r, z = rz[:, :H], rz[:, H:]
        n = torch.addcmul(gates_x[:, 2 * H:], r, gh[:, 2 * H:]).tanh()
        return n + z * (h - n), None                          # (1 - z) * n + z * h

    @torch.no_grad()
    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """ids (N,) -> logits (N, V); state as RNNLM's: tuple of (layers, N, H) tensors."""
        hs = list(state[0].unbind(0))
        cs = list(state[1].unbind(0)) if self.cell == "lstm" else [None] * self.layers
        gates_x = self.table.index_select(0, ids)                 # (N, G)
        if self.cond_gates is not None:
            gates_x = gates_x + self.cond_gates
        x = None
        for l in range(self.layers):
            if l > 0:
                if self.cell == "gru":
                    gates_x = torch.addmm(self.b[l - 1], x, self.W_ih[l - 1])
                else:
                    gates_x = torch.addmm(self.b[l - 1], torch.cat([x, hs[l]], 1), self.W_cat[l - 1])
            hs[l], cs[l] = self._cell(gates_x, l, hs[l], cs[l])
            x = hs[l]
        if self.proj is not None:
            x = x @ self.proj
        logits = torch.addmm(self.b_out, x, self.W_out)           # (N, V)
        new = (torch.stack(hs),) if self.cell != "lstm" else (torch.stack(hs), torch.stack(cs))
        return logits, new


def pick(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (N, V) -> next ids (N,). temperature 0 is greedy (argmax)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]                    # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens above it already hold top_p of the mass (keeps >= 1)
        drop = probs.cumsum(-1) - probs > top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class StopFilter:
    """Passes text through until `stop` appears; holds back a tail that may be its start."""

    def __init__(self, stop: str | None):
        self.stop, self.pending, self.done = stop or None, "", False

    def feed(self, text: str) -> str:
        if self.done or not self.stop:
            return "" if self.done else text
        buf = self.pending + text
        at = buf.find(self.stop)
        if at >= 0:
            self.done, self.pending = True, ""
            return buf[:at]
        keep = len(self.stop) - 1
        self.pending = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep] if keep else buf

    def flush(self) -> str:
        out, self.pending = ("" if self.done else self.pending), ""
        return out


def encode_prime(tokenizer: Tokenizer, prime: str) -> list[int]:
    try:
        return [int(i) for i in tokenizer.encode(prime)]
    except CharnnError as e:
        raise CharnnError(f"the prime text has {e}") from None


def generate(model: RNNLM, tokenizer: Tokenizer, cfg: SampleConfig,
             cond: torch.Tensor | None = None, device: str | torch.device = "cpu") -> Iterator[list[str]]:
    """Yield, per step, the new text of each of the cfg.num_samples streams (a list of str).

    The prime itself is not yielded; the caller prints it. Streams that reached --stop yield "".
    """
    model.eval()
    N = cfg.num_samples
    gen = torch.Generator(device="cpu")
    gen.manual_seed(cfg.seed if cfg.seed is not None else torch.seed())
    prime_ids = encode_prime(tokenizer, cfg.prime) if cfg.prime else []
    if not prime_ids:
        nl = tokenizer.id_of("\n")   # start as if after a line break, without printing it
        prime_ids = [nl] if nl is not None else []
    if cond is not None and cond.shape[0] != N:
        cond = cond.expand(N, -1)
    state = model.init_state(N, device=device)
    with torch.no_grad():
        if prime_ids:
            ids = torch.tensor(prime_ids, device=device).unsqueeze(0).expand(N, -1)   # (N, P)
            logits, state = model(ids, state, cond)
            logits = logits[:, -1].float()                                            # (N, V)
        else:  # nothing to condition on: the first token is drawn uniformly
            logits = torch.zeros(N, tokenizer.vocab_size, device=device)
    stepper = Stepper(model, cond)
    decoders = [tokenizer.stream_decoder() for _ in range(N)]
    stops = [StopFilter(cfg.stop) for _ in range(N)]
    for _ in range(cfg.length):
        nxt = pick(logits.cpu(), cfg.temperature, cfg.top_k, cfg.top_p, gen)          # (N,)
        yield [s.feed(d.push(int(t))) for s, d, t in zip(stops, decoders, nxt.tolist())]
        if all(s.done for s in stops):
            return
        logits, state = stepper.step(nxt.to(device), state)
    yield [s.feed(d.flush()) + s.flush() for s, d in zip(stops, decoders)]


def sample_text(model: RNNLM, tokenizer: Tokenizer, cfg: SampleConfig, **kw) -> list[str]:
    """The whole of each sample, prime included (for tests and the library)."""
    out = [cfg.prime] * cfg.num_samples
    for pieces in generate(model, tokenizer, cfg, **kw):
        out = [o + p for o, p in zip(out, pieces)]
    return out

