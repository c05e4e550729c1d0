"""Step-wise generation: one token at a time with the recurrent state carried, never re-running
the model over the prefix.

The prime is read with the model's fused forward; after that `Stepper` takes over. At batch 1 a
step is a few matrix-vector products, and calling nn.LSTM once per token spends most of its time
on per-call overhead, so the Stepper does the step on plain tensors with everything arranged
ahead of time:
  - layer 0's input projection is a lookup: table = E @ W_ih0^T + biases, (V, G), so an
    embedding lookup plus a matmul becomes one row gather;
  - LSTM and RNN layers above do one addmm on [x, h] against pre-concatenated [W_ih; W_hh]^T;
    the hidden states of all layers sit side by side in one buffer [h_0 | h_1 | ...], so
    [x, h] for layer l is a fixed slice of it, [h_{l-1} | h_l], with no concatenation;
  - LSTM gate rows are reordered to (i, f, o, g) so one sigmoid covers three gates;
  - every buffer (state, gates, logits) and every view of one is made once; a step writes
    into them in place (out=, in-place ops), so it allocates nothing and slices nothing.
G is the gate width: 4H (LSTM), 3H (GRU), H (RNN). With quantize="int8" the recurrent and
output products run in dynamic int8 (charnn.quantize: those large enough to gain from it); the
lookup table stays fp32.

`Picker` turns logits into the next ids with pre-drawn uniforms (no torch.multinomial), and
`generate` ties prime, stepper, picker, stream decoding and --stop together.
"""

from __future__ import annotations

import secrets
from typing import Iterator

import torch
import torch.nn.functional as F

from charnn import quantize as q
from charnn.config import SampleConfig
from charnn.errors import CharnnError
from charnn.model import RNNLM, State
from charnn.tokenizers import Tokenizer

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# Primes up to this many tokens are stepped through; longer ones go through the fused model.
SHORT_PRIME = 32


class Stepper:
    """One step of the stacked cell for N streams, on weights and buffers prepared once.

        stepper = Stepper(model, batch_size=N, cond=cond, quantize="none" | "int8")
        stepper.load_state(state)     # an RNNLM state -> the stepper's buffers
        logits = stepper.step(ids)    # ids (N,) int64 -> logits (N, V)
        state = stepper.state()       # the buffers -> an RNNLM state (a copy)

    `step` returns its logits buffer, which the next step overwrites.
    """

    def __init__(self, model: RNNLM, batch_size: int = 1, cond: torch.Tensor | None = None,
                 quantize: str = "none"):
        cfg = model.cfg
        self.cell, L, H = cfg.cell, cfg.layers, cfg.hidden
        self.layers, self.hidden, self.batch_size = L, H, batch_size
        N, G, V = batch_size, _GATES[cfg.cell] * H, cfg.vocab_size
        dev = model.head.weight.device
        if quantize == "int8" and dev.type != "cpu":
            raise CharnnError("--quantize int8 runs on the CPU")
        rnn = model.rnn

        def w(name: str, l: int) -> torch.Tensor:       # a weight or bias, gate rows reordered
            t = getattr(rnn, f"{name}_l{l}").detach().float()
            if self.cell == "lstm":  # PyTorch's (i, f, g, o) -> (i, f, o, g), by slices (a gather is slower)
                t = torch.cat([t[:2 * H], t[3 * H:], t[2 * H:3 * H]])
            return t

        def mm(W: torch.Tensor, b: torch.Tensor | None = None):
            return q.matmul(W, b, quantize)

        with torch.no_grad():
            W_ih0, b_ih0, b_hh0 = w("weight_ih", 0), w("bias_ih", 0), w("bias_hh", 0)
            self.W_ih0 = W_ih0                                                 # (G, in_dim)
            emb = model.embed.weight.detach().float() if model.embed is not None else None
            table = emb @ W_ih0.T if emb is not None else W_ih0.T.clone()      # (V, G)
            table += b_ih0
            if self.cell != "gru":
                table += b_hh0      # GRU keeps b_hh apart: it sits inside r * (W_hn h + b_hn)
            self.table = table.contiguous()
            # --input bow: the conditioning vector adds a constant to layer 0's gates
            self.cond_gates = None
            if model.cond is not None and cond is not None:
                cg = self.input_gates(model.cond(cond.float().to(dev)))          # (1 or N, G)
                self.cond_gates = cg.expand(N, G).contiguous()
            # layer 0: h_0 @ W_hh0^T; layers above: [h_{l-1}, h_l] @ [W_ih; W_hh]^T (GRU: apart)
            self.rec: list = [mm(w("weight_hh", 0), b_hh0 if self.cell == "gru" else None)]
            self.inp: list = [None]
            for l in range(1, L):
                W_ih, W_hh, b_ih, b_hh = w("weight_ih", l), w("weight_hh", l), w("bias_ih", l), w("bias_hh", l)
                if self.cell == "gru":
                    self.inp.append(mm(W_ih, b_ih))                            # (3H, H)
                    self.rec.append(mm(W_hh, b_hh))                            # (3H, H)
                else:
                    self.inp.append(mm(torch.cat([W_ih, W_hh], 1), b_ih + b_hh))  # (G, 2H)
                    self.rec.append(None)
            self.proj = mm(model.proj.weight) if model.proj is not None else None   # (E, H)
            self.head = mm(model.head.weight, model.head.bias)                    # (V, H or E)

        z = lambda *shape: torch.zeros(*shape, device=dev)  # noqa: E731
        self.h = z(N, L * H)                     # [h_0 | h_1 | ... ]
        self.c = z(N, L * H) if self.cell == "lstm" else None
        self.gates = z(N, G)                     # layer l's gates; GRU: its input part
        self.gh = z(N, G) if self.cell == "gru" else None   # GRU: the recurrent part
        self.tmp = z(N, H)
        self.top = z(N, cfg.embed_dim) if self.proj is not None else None
        self.logits = z(N, V)
        # views, made once: slicing a tensor costs about as much as a small op
        self.h_l = [self.h[:, l * H:(l + 1) * H] for l in range(L)]                 # (N, H)
        self.xh_l = [None] + [self.h[:, (l - 1) * H:(l + 1) * H] for l in range(1, L)]  # (N, 2H)
        g = self.gates
        if self.cell == "lstm":
            self.c_l = [self.c[:, l * H:(l + 1) * H] for l in range(L)]
            self.g_ifo, self.g_i, self.g_f = g[:, :3 * H], g[:, :H], g[:, H:2 * H]
            self.g_o, self.g_g = g[:, 2 * H:3 * H], g[:, 3 * H:]
        elif self.cell == "gru":
            self.g_rz, self.g_r, self.g_z, self.g_n = g[:, :2 * H], g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
            self.gh_rz, self.gh_n = self.gh[:, :2 * H], self.gh[:, 2 * H:]
        self._layers = {"lstm": self._lstm, "gru": self._gru, "rnn": self._rnn}[self.cell]

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        """Input vectors (..., in_dim) -> their contribution to layer 0's gates (..., G)."""
        return x @ self.W_ih0.T

    def load_state(self, state: State) -> None:
        """An RNNLM state, tuple of (layers, N, H) tensors -> the buffers."""
        N, L, H = self.batch_size, self.layers, self.hidden
        self.h.view(N, L, H).copy_(state[0].transpose(0, 1))
        if self.c is not None:
            self.c.view(N, L, H).copy_(state[1].transpose(0, 1))

    def state(self) -> State:
        N, L, H = self.batch_size, self.layers, self.hidden
        h = self.h.view(N, L, H).transpose(0, 1).contiguous()
        return (h,) if self.c is None else (h, self.c.view(N, L, H).transpose(0, 1).contiguous())

    def step(self, ids: torch.Tensor, extra_gates: torch.Tensor | None = None) -> torch.Tensor:
        """ids (N,) int64 -> logits (N, V). extra_gates (N, G): added to layer 0's gates (per-step
        conditioning, as `charnn eval` gives a --input bow model)."""
        with torch.inference_mode():
            g = self.gates
            torch.index_select(self.table, 0, ids, out=g)                       # x_t's gates
            if self.cond_gates is not None:
                g.add_(self.cond_gates)
            if extra_gates is not None:
                g.add_(extra_gates)
            self._layers()
            x = self.h_l[-1]
            if self.proj is not None:
                self.proj.into(x, self.top)
                x = self.top
            self.head.into(x, self.logits)
        return self.logits

    def _lstm(self) -> None:
        g, i, f, o, gg = self.gates, self.g_i, self.g_f, self.g_o, self.g_g
        for l in range(self.layers):
            h, c = self.h_l[l], self.c_l[l]
            if l == 0:
                self.rec[0].add_into(h, g)                          # + h_0 @ W_hh0^T
            else:
                self.inp[l].into(self.xh_l[l], g)                   # [h_{l-1}, h_l] @ W^T + b
            self.g_ifo.sigmoid_()
            gg.tanh_()
            c.mul_(f).addcmul_(i, gg)                               # c = f c + i g
            torch.tanh(c, out=self.tmp)
            torch.mul(o, self.tmp, out=h)                           # h = o tanh(c)

    def _rnn(self) -> None:
        g = self.gates
        for l in range(self.layers):
            if l == 0:
                self.rec[0].add_into(self.h_l[0], g)
            else:
                self.inp[l].into(self.xh_l[l], g)
            torch.tanh(g, out=self.h_l[l])

    def _gru(self) -> None:
        # r, z from x and h together; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        r, z, n = self.g_r, self.g_z, self.g_n
        for l in range(self.layers):
            h = self.h_l[l]
            if l > 0:
                self.inp[l].into(self.h_l[l - 1], self.gates)       # W_i x + b_i
            self.rec[l].into(h, self.gh)                            # W_h h + b_h
            self.g_rz.add_(self.gh_rz).sigmoid_()
            n.addcmul_(r, self.gh_n).tanh_()
            h.sub_(n).mul_(z).add_(n)                               # h = n + z (h - n)


class Picker:
    """Chooses the next token of each of N streams from their logits (N, V).

    A draw inverts the cumulative distribution: softmax -> cumsum -> the first token whose
    cumulative probability exceeds u * total, with u uniform in [0, 1). That is three small ops
    where torch.multinomial costs ~20 us at batch 1. Each stream has its own generator, seeded
    seed + i, and draws its uniforms ahead in blocks, so a stream's text depends only on its own
    seed: `--num-samples N --seed S` gives stream i the text of a single run with --seed S + i
    in fp32 (the batched products may round differently, which changes a draw only when its
    uniform falls within ~1e-7 of a boundary); int8 batch-mates share a quantization scale.
    """

    BLOCK = 1024

    def __init__(self, num_streams: int, vocab_size: int, temperature: float, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None):
        N, V = num_streams, vocab_size
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        seed = secrets.randbits(62) if seed is None else seed
        self.gens = [torch.Generator().manual_seed(seed + i) for i in range(N)]
        self.u = torch.empty(self.BLOCK, N, 1)
        self.u_t = list(self.u.unbind(0))       # (N, 1) views, so taking the next costs nothing
        self.t = self.BLOCK                     # the first call draws a block
        self.plain = top_k == 0 and top_p == 1.0
        self.inv_temp = torch.tensor(1.0 / temperature if temperature > 0 else 1.0)
        self.scaled = torch.empty(N, V)
        self.cdf = torch.empty(N, V)
        self.total = self.cdf[:, -1:]           # (N, 1) view: the sum of each row
        self.target = torch.empty(N, 1)
        self.out = torch.empty(N, 1, dtype=torch.long)
        self.ids = self.out.view(N)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (N, V) on the CPU -> ids (N,), a buffer the next call overwrites."""
        if self.temperature == 0:
            return logits.argmax(-1)
        if self.t == self.BLOCK:
            for i, g in enumerate(self.gens):
                self.u[:, i, 0] = torch.rand(self.BLOCK, generator=g)
            self.u.mul_(1 - 2 ** -22)           # u * total stays below total despite rounding
            self.t = 0
        u = self.u_t[self.t]                                                # (N, 1)
        self.t += 1
        if self.plain:   # the common case in as few ops as it takes (a 0-dim tensor, not a float:
            # a Python scalar operand costs a tensor conversion per call)
            if self.temperature != 1.0:
                logits = torch.mul(logits, self.inv_temp, out=self.scaled)
            probs = torch.softmax(logits, -1)
        else:
            probs = probabilities(logits, self.temperature, self.top_k, self.top_p)
        torch.cumsum(probs, -1, out=self.cdf)
        torch.mul(u, self.total, out=self.target)
        # right=True: the first index whose cdf exceeds the target, never a zero-probability one
        torch.searchsorted(self.cdf, self.target, right=True, out=self.out)
        return self.ids


def probabilities(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """logits (N, V) -> sampling probabilities (N, V) after temperature, top-k and top-p."""
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
    return logits.softmax(-1)


def pick(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (N, V) -> next ids (N,), one draw each, as Picker draws. temperature 0 is greedy."""
    if temperature == 0:
        return logits.argmax(-1)
    cdf = probabilities(logits, temperature, top_k, top_p).cumsum(-1)          # (N, V)
    u = torch.rand(logits.shape[0], 1, generator=generator) * (1 - 2 ** -22)
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)


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
             cond: torch.Tensor | None = None, device: str | torch.device = "cpu",
             quantize: str = "none") -> Iterator[list[str]]:
    """Yield, per step, the new text of each of the cfg.num_samples streams (a list of str).

    The prime itself is not yielded; the caller prints it. Streams that reached --stop yield "".
    A prime of up to SHORT_PRIME tokens is read by the Stepper (in int8 too with quantize="int8");
    a longer one by the fused model in fp32, which reads a long text many times faster.
    """
    model.eval()
    N = cfg.num_samples
    device = torch.device(device)
    picker = Picker(N, tokenizer.vocab_size, cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)
    prime_ids = encode_prime(tokenizer, cfg.prime) if cfg.prime else []
    if not prime_ids:
        nl = tokenizer.id_of("\n")   # start as if after a line break, without printing it
        prime_ids = [nl] if nl is not None else []
    if cond is not None and cond.shape[0] != N:
        cond = cond.expand(N, -1)
    stepper = Stepper(model, N, cond, quantize)
    state = model.init_state(N, device=device)
    stepper.load_state(state)
    logits = torch.zeros(N, tokenizer.vocab_size, device=device)   # no prime: a uniform first draw
    if 0 < len(prime_ids) <= SHORT_PRIME:   # cheaper than the fused kernel's set-up on a first call
        for i in prime_ids:
            logits = stepper.step(torch.full((N,), i, dtype=torch.long, device=device))
    elif prime_ids:
        with torch.no_grad():
            ids = torch.tensor(prime_ids, device=device).unsqueeze(0).expand(N, -1)   # (N, P)
            out, state = model(ids, state, cond)
        logits = out[:, -1].float()                                                   # (N, V)
        stepper.load_state(state)
    on_cpu = device.type == "cpu"
    decoders = [tokenizer.stream_decoder() for _ in range(N)]
    stops = [StopFilter(cfg.stop) for _ in range(N)]
    for _ in range(cfg.length):
        nxt = picker(logits if on_cpu else logits.cpu())                            # (N,)
        yield [s.feed(d.push(t)) for s, d, t in zip(stops, decoders, nxt.tolist())]
        if all(s.done for s in stops):
            return
        logits = stepper.step(nxt if on_cpu else nxt.to(device))
    yield [s.feed(d.flush()) + s.flush() for s, d in zip(stops, decoders)]


def sample_text(model: RNNLM, tokenizer: Tokenizer, cfg: SampleConfig, **kw) -> list[str]:
    """The whole of each sample, prime included (for tests and the library)."""
    out = [cfg.prime] * cfg.num_samples
    for pieces in generate(model, tokenizer, cfg, **kw):
        out = [o + p for o, p in zip(out, pieces)]
    return out


def evaluate_stepwise(model: RNNLM, ids, batch_size: int, seq_len: int = 256, cond=None,
                      quantize: str = "none") -> tuple[float, int]:
    """Mean cross-entropy (nats per token) of `ids` scored through the Stepper, as
    train.evaluate reads them (B streams, state carried), so `charnn eval --quantize int8`
    measures exactly the arithmetic that sampling uses. Returns (loss, tokens scored).
    cond: a charnn.bow.DocCond aligned with `ids` for --input bow models."""
    from charnn.data import batchify, get_chunk, num_chunks

    model.eval()
    B = max(1, min(batch_size, (len(ids) - 1) // 2))
    streams = batchify(ids, B)                                      # (B, L)
    stepper = Stepper(model, B, quantize=quantize)
    stepper.load_state(model.init_state(B))
    T = seq_len
    total, count = torch.zeros((), dtype=torch.float64), 0
    with torch.no_grad():
        for i in range(num_chunks(streams, T)):
            blk = torch.from_numpy(get_chunk(streams, i, T))          # (B, t + 1)
            extra = None
            if cond is not None and model.cond is not None:
                rows, index = cond.chunk(B, i, T)
                extra = stepper.input_gates(model.cond(rows))[index]   # (B, t, G)
            for j in range(blk.shape[1] - 1):
                logits = stepper.step(blk[:, j].contiguous(), None if extra is None else extra[:, j])
                total += F.cross_entropy(logits, blk[:, j + 1], reduction="sum")
            count += blk[:, 1:].numel()
    if count == 0:
        raise CharnnError("the text is too short to evaluate")
    return float(total) / count, count
