"""Continuous batching: every completion in flight on one model is a row of one batched Stepper
step, and rows join and leave between steps.

One Engine per served model runs a thread that loops:
    admit     new streams join, finished and cancelled ones leave (the batch is rebuilt only then)
    step      one Stepper step for all N rows: ids (N,) -> logits (N, V)
    pick      each row that is not still reading its prime picks its next token (BatchPicker)
    publish   the new text goes to each stream, and the event loop is woken once per step

How rows come and go: the Stepper has a fixed batch size, so the Engine keeps one Stepper per
size N that has occurred (`Stepper.resized`: the prepared weights are shared, only the (N, ...)
buffers are new) and, when the rows change, gathers the state of the rows that stay into the
Stepper of the new size. The alternative, one Stepper at full capacity with idle rows masked, pays
for every idle row at every step: a matrix product over 64 rows costs several times one over 1
(benchmarks/serve_batching.py measures both), while the gather costs one copy per join or leave.

What a stream draws is what `charnn sample` draws with the same seed: its prime is stepped by the
Stepper when it is up to SHORT_PRIME tokens (inside the batch: one prime token per step) and
read by the fused model when it is longer (in the request's thread, before joining), as
charnn.sampling.generate does; its uniforms and picking arithmetic are Picker's
(charnn.serve.picker). Batched products may round differently from batch 1, which changes a draw
only when its uniform falls within ~1e-7 of a boundary (as `--num-samples`).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import torch

from charnn.errors import CharnnError
from charnn.sampling.generate import SHORT_PRIME, StopFilter
from charnn.sampling.stepper import Stepper
from charnn.serve.picker import BatchPicker, Draws, Sampling

# New text is announced to the event loop at most this often (a stream's first text and its end at
# once); `charnn sample` flushes its output at the same pace.
PUBLISH_EVERY = 0.02

STEPPERS = 16        # batch sizes whose Steppers are kept


class EngineClosed(CharnnError):
    """The engine is shutting down and takes no new streams."""


@dataclass
class Start:
    """Where a stream starts: the ids it steps first, and for a long prime (or no prime at all)
    the state and logits to start from instead of the zero state."""

    feed: list[int]
    state: tuple[torch.Tensor, ...] | None = None       # (layers, 1, H) each
    logits: torch.Tensor | None = None                  # (V,): pick the first token from these
    gates: torch.Tensor | None = None                   # (1, G): a --input bow topic's gates


@dataclass
class Job:
    """One completion choice: where it starts, how it picks, when it ends."""

    start: Start
    sampling: Sampling
    seed: int
    max_tokens: int
    stops: tuple[str, ...] = ()
    logprobs: int | None = None          # how many alternatives to report per token (None: none)


@dataclass
class Token:
    """A picked token, for `logprobs`: its text, log-probability and the likeliest alternatives."""

    text: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


class Stream:
    """One completion choice in flight. The engine's thread writes it (push); the event loop
    reads it (take) after `event` is set on `loop`. Streams of one request share the event."""

    def __init__(self, job: Job, tokenizer: Any, loop: asyncio.AbstractEventLoop, event: asyncio.Event):
        self.job, self.loop, self.event = job, loop, event
        self.draws = Draws(job.seed)
        self.decoder = tokenizer.stream_decoder()
        self.stop = StopFilter(job.stops)
        self.feed: deque[int] = deque(job.start.feed)    # ids to step next: the prime, then picks
        self.tokens = 0
        self.cancelled = False
        self._lock = threading.Lock()
        self._text: list[str] = []
        self._logprobs: list[Token] = []
        self.finish_reason: str | None = None   # "stop" | "length" | "error", set once

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def push(self, text: str, token: Token | None = None, finish: str | None = None) -> None:
        with self._lock:
            if text:
                self._text.append(text)
            if token is not None:
                self._logprobs.append(token)
            if finish and self.finish_reason is None:
                self.finish_reason = finish

    def take(self) -> tuple[str, list[Token], str | None]:
        """The text (and logprobs) made since the last take, and the finish reason once done."""
        with self._lock:
            text, self._text = "".join(self._text), []
            tokens, self._logprobs = self._logprobs, []
            return text, tokens, self.finish_reason


class Engine:
    """The continuous batcher of one model (a charnn.run.Run). Thread-safe: submit, cancel,
    prepare and shutdown may be called from any thread."""

    def __init__(self, run: Any, quantize: str = "none"):
        self.run, self.model, self.tokenizer = run, run.model, run.tokenizer
        self.model.eval()
        self._steppers = OrderedDict({1: Stepper(self.model, 1, quantize=quantize)})   # batch size -> Stepper
        self._zero = self.model.init_state(1)
        self._cv = threading.Condition()
        self._inbox: list[Stream] = []
        self._closing = False
        self.rows: list[Stream] = []
        self.stepper: Stepper | None = None
        self.picker: BatchPicker | None = None
        self.gates: torch.Tensor | None = None           # (N, G) per-row topic gates, or None
        self.steps = self.tokens = 0
        self._joining: list[Stream] = []          # taken from the inbox, not yet rows
        self._changed: set[Stream] = set()       # streams with text not yet announced
        self._published = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"charnn-engine-{run.name}", daemon=True)

    # -- the request side ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def prepare(self, prime_ids: list[int], cond: torch.Tensor | None = None) -> Start:
        """How a stream with this prime starts (runs the fused model for a long prime: call it
        from a worker thread, not the event loop). cond: (1, bow_dim) for --input bow models."""
        gates = None
        if cond is not None:
            with torch.no_grad():
                gates = self._steppers[1].input_gates(self.model.cond(cond.float()))   # (1, G)
        if not prime_ids:                     # as generate: a uniform first draw
            return Start([], logits=torch.zeros(self.tokenizer.vocab_size), gates=gates)
        if len(prime_ids) <= SHORT_PRIME:     # stepped inside the batch, one token per step
            return Start(list(prime_ids), gates=gates)
        with torch.no_grad():
            out, state = self.model(torch.tensor([prime_ids]), None, cond)         # (1, P, V)
        return Start([], state=state, logits=out[0, -1].float(), gates=gates)

    def submit(self, streams: list[Stream]) -> None:
        with self._cv:
            if self._closing:
                raise EngineClosed("the server is shutting down")
            self._inbox.extend(streams)
            self._cv.notify()

    def cancel(self, streams: list[Stream]) -> None:
        """The client went away: the rows leave at the next step."""
        for s in streams:
            s.cancelled = True
        with self._cv:
            self._cv.notify()

    def shutdown(self) -> None:
        """End every stream at the next step (finish_reason "length") and stop the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def open_streams(self) -> int:
        with self._cv:
            return len(self.rows) + len(self._inbox)

    # -- the engine's thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            try:
                if not self._admit():
                    return
                if self.rows:
                    self._step()
            except Exception:  # a bug: end the streams in flight with an error rather than hang them
                traceback.print_exc(file=sys.stderr)
                self._end(self.rows + self._joining, "error")
                self.rows, self._joining, self.stepper = [], [], None

    def _admit(self) -> bool:
        """Let new streams join and finished ones leave; wait while there is nothing to do.
        False once shut down."""
        with self._cv:
            while not (self._inbox or self._closing or self.rows):
                self._cv.wait()
            joining, self._inbox = self._inbox, []
            closing = self._closing
        self._joining = joining                 # ended too, should anything below fail
        if closing:
            self._end(self.rows + joining, "length")
            self.rows = []
            return False
        keep = [s for s in self.rows if not (s.done or s.cancelled)]
        new = []
        for s in joining:
            if s.cancelled:
                continue
            if s.job.start.logits is not None:
                self._first_pick(s)
            if not s.done:
                new.append(s)
        if new or len(keep) != len(self.rows):
            self._rebuild(keep, new)
        self._joining = []
        return True

    def _rebuild(self, keep: list[Stream], new: list[Stream]) -> None:
        """The batch becomes keep + new: gather the kept rows' state into the Stepper of the new
        size, the new rows start from their own state (zero, or a long prime's)."""
        old, rows = self.rows, keep + new
        self.rows = rows
        if not rows:
            self.stepper = self.picker = self.gates = None
            return
        parts = []
        if keep:
            where = {id(s): i for i, s in enumerate(old)}
            idx = torch.tensor([where[id(s)] for s in keep])
            parts.append(tuple(t.index_select(1, idx) for t in self.stepper.state()))   # (L, k, H)
        parts += [s.job.start.state or self._zero for s in new]
        state = tuple(torch.cat([p[j] for p in parts], 1) for j in range(len(self._zero)))   # (L, N, H)
        self.stepper = self._stepper(len(rows))
        self.stepper.load_state(state)
        self.picker = BatchPicker([s.job.sampling for s in rows])
        gates = [s.job.start.gates for s in rows]
        self.gates = torch.cat(gates) if gates[0] is not None else None        # (N, G)

    def _stepper(self, n: int) -> Stepper:
        """The Stepper for n rows; the STEPPERS most recently used sizes are kept (their buffers
        are small, but one per size up to --max-streams would add up)."""
        if n not in self._steppers:
            self._steppers[n] = self._steppers[1].resized(n)
            while len(self._steppers) > STEPPERS:
                oldest = next(k for k in self._steppers if k != 1)
                del self._steppers[oldest]
        self._steppers.move_to_end(n)
        return self._steppers[n]

    def _step(self) -> None:
        rows = self.rows
        ids = torch.tensor([s.feed.popleft() for s in rows])                     # (N,)
        logits = self.stepper.step(ids, self.gates)                               # (N, V)
        self.steps += 1
        picking = [not s.feed for s in rows]       # rows still reading their prime do not pick
        if not any(picking):
            return
        us = [s.draws.next() if p and s.job.sampling.temperature > 0 else 0.5 for s, p in zip(rows, picking)]
        nxt = self.picker(logits, us).tolist()
        lp = self._logprobs(logits, nxt, [s.job.logprobs if p else None for s, p in zip(rows, picking)])
        for i, (s, p, t) in enumerate(zip(rows, picking, nxt)):
            if p:
                self._emit(s, t, lp.get(i))
        self._publish([s for s, p in zip(rows, picking) if p], any(s.done for s in rows))

    def _first_pick(self, s: Stream) -> None:
        """A stream that starts from given logits (a long prime, or none) picks before it steps."""
        logits = s.job.start.logits.unsqueeze(0)                                   # (1, V)
        u = [s.draws.next() if s.job.sampling.temperature > 0 else 0.5]
        t = int(BatchPicker([s.job.sampling])(logits, u)[0])
        self._emit(s, t, self._logprobs(logits, [t], [s.job.logprobs]).get(0))
        self._publish([s], True)

    def _emit(self, s: Stream, t: int, token: Token | None) -> None:
        """Token t of stream s: decode it, apply the stop texts, end at max_tokens (as generate)."""
        text = s.stop.feed(s.decoder.push(t))
        s.tokens += 1
        self.tokens += 1
        finish = None
        if s.stop.done:
            finish = "stop"
        elif s.tokens >= s.job.max_tokens:
            text += s.stop.feed(s.decoder.flush()) + s.stop.flush()
            finish = "stop" if s.stop.done else "length"
        else:
            s.feed.append(t)
        s.push(text, token, finish)

    def _logprobs(self, logits: torch.Tensor, ids: list[int], wants: list[int | None]) -> dict[int, Token]:
        """Row -> Token for the rows whose `wants` (alternatives to report) is not None: the
        model's own log-probabilities, before temperature, top-k and top-p."""
        rows = [i for i, k in enumerate(wants) if k is not None]
        if not rows:
            return {}
        lsm = torch.log_softmax(logits[rows].float(), -1)                          # (k, V)
        out = {}
        for r, row in zip(rows, lsm):
            alts = {}
            if wants[r]:
                top = row.topk(min(wants[r], row.numel()))
                alts = {self._token_text(int(j)): _finite(v) for v, j in zip(*top)}
            out[r] = Token(self._token_text(ids[r]), _finite(row[ids[r]]), alts)
        return out

    def _token_text(self, t: int) -> str:
        return self.tokenizer.decode([t])

    def _publish(self, streams: list[Stream], now: bool = False) -> None:
        """Wake each event loop once for all its streams that changed: at once for a stream's
        first text or its end, else at most every PUBLISH_EVERY seconds (the text in between is
        sent as one chunk: far less HTTP work per character, and as smooth to watch)."""
        self._changed.update(streams)
        t = time.monotonic()
        if not (now or t - self._published >= PUBLISH_EVERY or any(s.tokens == 1 for s in streams)):
            return
        self._published = t
        by_loop: dict[asyncio.AbstractEventLoop, set[asyncio.Event]] = {}
        for s in self._changed:
            by_loop.setdefault(s.loop, set()).add(s.event)
        self._changed = set()
        for loop, events in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_all, events)
            except RuntimeError:        # that loop is closed: its client is gone
                pass

    def _end(self, streams: list[Stream], reason: str) -> None:
        for s in streams:
            if not s.done:
                s.push(s.stop.feed(s.decoder.flush()) + s.stop.flush() if reason != "error" else "", None, reason)
        self._publish(streams, True)


def _set_all(events: set[asyncio.Event]) -> None:
    for e in events:
        e.set()


def _finite(v: Any) -> float | None:
    """A log-probability as a JSON number (None where it is not finite)."""
    v = float(v)
    return v if v == v and abs(v) != float("inf") else None
