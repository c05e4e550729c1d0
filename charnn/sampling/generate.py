"""Generation: picking the next token from logits, and the loop that ties a prime, the Stepper
(charnn.sampling.stepper), the picker, stream decoding and --stop together.

`Picker` turns logits into the next ids with pre-drawn uniforms (no torch.multinomial);
`generate` yields each step's new text for N streams; `evaluate_stepwise` scores a text through
the same Stepper arithmetic that sampling uses.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from charnn.config import SampleConfig
from charnn.errors import CharnnError
from charnn.model import RNNLM
from charnn.sampling.stepper import Stepper
from charnn.tokenizers import Tokenizer

# Primes up to this many tokens are stepped through; longer ones go through the fused model.
SHORT_PRIME = 32


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
    """Passes text through until a stop text appears; holds back a tail that may be its start.

    `stop` is one text or several (the server's `stop` list): the earliest occurrence of any
    of them ends the text."""

    def __init__(self, stop: str | Sequence[str] | None):
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        self.stops = tuple(s for s in stops if s)
        self.stop = self.stops[0] if self.stops else None
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.pending, self.done = "", False

    def feed(self, text: str) -> str:
        if self.done or not self.stops:
            return "" if self.done else text
        buf = self.pending + text
        found = [at for at in (buf.find(s) for s in self.stops) if at >= 0]
        if found:
            self.done, self.pending = True, ""
            return buf[:min(found)]
        keep = self.keep
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


def start_ids(tokenizer: Tokenizer, prime: str) -> list[int]:
    """What a stream reads before its first draw: a document model's end-of-document id (a
    document starts there) and the prime; otherwise a line break (not printed) and the prime."""
    ids = encode_prime(tokenizer, prime) if prime else []
    if tokenizer.eod_id is not None:
        return [tokenizer.eod_id, *ids]
    # Start as if after a line break (not printed), prime or not: a zero state is what training
    # sees only where a stream starts, at an arbitrary place in the text, so the model reads a
    # prime from it poorly (a char model of Python source continued `def ` with an identifier in
    # 9-12 of 16 samples from a zero state, 15 of 16 after a line break: docs/quality.md).
    nl = tokenizer.id_of("\n")
    return [nl, *ids] if nl is not None and ids[:1] != [nl] else ids


def read_primes(model: RNNLM, stepper: Stepper, primes: list[list[int]], cond=None,
                device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """Stream i reads primes[i] from the zero state; -> the logits of its first draw (N, V).
    One prime for all (the common case): up to SHORT_PRIME tokens are stepped (cheaper than
    the fused kernel's set-up on a first call, and in int8 too), a longer one runs fused. Several
    (--prompts): each distinct prime runs fused once, its state copied to its streams."""
    N, V = len(primes), model.cfg.vocab_size
    stepper.load_state(model.init_state(N, device=device))
    logits = torch.zeros(N, V, device=device)            # no prime: a uniform first draw
    distinct = {tuple(p) for p in primes}
    if len(distinct) == 1 and 0 < len(primes[0]) <= SHORT_PRIME:
        for i in primes[0]:
            logits = stepper.step(torch.full((N,), i, dtype=torch.long, device=device))
        return logits
    for prime in distinct:
        if not prime:
            continue
        rows = torch.tensor([i for i, p in enumerate(primes) if tuple(p) == prime], device=device)
        with torch.no_grad():
            ids = torch.tensor(prime, device=device).unsqueeze(0)                         # (1, P)
            out, state = model(ids, model.init_state(1, device=device), None if cond is None else cond[:1])
        stepper.load_rows(rows, state)
        logits[rows] = out[:, -1].float()                                                 # (k, V)
    return logits


def generate(model: RNNLM, tokenizer: Tokenizer, cfg: SampleConfig,
             cond: torch.Tensor | None = None, device: str | torch.device = "cpu",
             quantize: str = "none", primes: list[str] | None = None, eod_text: str = "\n",
             observe: Callable[[torch.Tensor, torch.Tensor, list[bool]], None] | None = None
             ) -> Iterator[list[str]]:
    """Yield, per step, the new text of each of the cfg.num_samples streams (a list of str).

    The prime itself is not yielded; the caller prints it. Streams that reached --stop yield "".
    primes: one prime per stream instead (--prompts; stream i draws with seed + i). A document
    model (charnn.documents) starts each stream at a document's start; when a stream draws the
    end of a document, `eod_text` stands for it and the next document starts from the zero
    state. observe(logits (N, V), ids (N,), done): called at each draw (--logprobs); done[i]:
    stream i had already stopped (--stop) before it.
    """
    model.eval()
    texts = primes if primes is not None else [cfg.prime] * cfg.num_samples
    N, eod = len(texts), tokenizer.eod_id
    device = torch.device(device)
    picker = Picker(N, tokenizer.vocab_size, cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)
    prime_ids = [start_ids(tokenizer, t) for t in texts]
    if cond is not None and cond.shape[0] != N:
        cond = cond.expand(N, -1)
    stepper = Stepper(model, N, cond, quantize)
    logits = read_primes(model, stepper, prime_ids, cond, device)
    on_cpu = device.type == "cpu"
    decoders = [tokenizer.stream_decoder() for _ in range(N)]
    stops = [StopFilter(cfg.stop) for _ in range(N)]
    for _ in range(cfg.length):
        nxt = picker(logits if on_cpu else logits.cpu())                            # (N,)
        if observe is not None:
            observe(logits, nxt, [s.done for s in stops])
        yield [s.feed(d.push(t) + (eod_text if t == eod else "")) for s, d, t in zip(stops, decoders, nxt.tolist())]
        if all(s.done for s in stops):
            return
        nxt = nxt if on_cpu else nxt.to(device)
        if eod is not None:
            stepper.reset(nxt == eod)          # a new document reads its start from zeros
        logits = stepper.step(nxt)
    yield [s.feed(d.flush()) + s.flush() for s, d in zip(stops, decoders)]


def sample_text(model: RNNLM, tokenizer: Tokenizer, cfg: SampleConfig, **kw) -> list[str]:
    """The whole of each sample, prime included (for tests and the library)."""
    out = [cfg.prime] * cfg.num_samples
    for pieces in generate(model, tokenizer, cfg, **kw):
        out = [o + p for o, p in zip(out, pieces)]
    return out


def evaluate_stepwise(model: RNNLM, ids, batch_size: int, seq_len: int = 256, cond=None,
                      quantize: str = "none", eod: int | None = None) -> tuple[float, int]:
    """Mean cross-entropy (nats per token) of `ids` scored through the Stepper, as
    charnn.training.evaluate reads them (B streams, state carried), so `charnn eval --quantize int8`
    measures exactly the arithmetic that sampling uses. Returns (loss, tokens scored).
    cond: a charnn.representations.bow.DocCond aligned with `ids` for --input bow models.
    eod: documents' end-of-document id, before which the state is reset (charnn.documents)."""
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
                if eod is not None:
                    stepper.reset(blk[:, j] == eod)
                logits = stepper.step(blk[:, j].contiguous(), None if extra is None else extra[:, j])
                total += F.cross_entropy(logits, blk[:, j + 1], reduction="sum")
            count += blk[:, 1:].numel()
    if count == 0:
        raise CharnnError("the text is too short to evaluate")
    return float(total) / count, count
