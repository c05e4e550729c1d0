"""Choosing the model and schedule for a time budget (`charnn train --time-budget 5m`).

A user says how long they can wait, not how many layers they want. The rule:
  1. Calibrate: time a few real training steps (random ids, the real model and optimizer) of
     one reference size on this device, with 1 thread and with all cores interleaved (on a busy
     machine one thread can be 3x faster than two that wait for each other), within a tenth of
     the budget; the faster gives the effective FLOP/s of training here.
  2. Predict each candidate's tokens/s from its FLOPs per token (6 x multiply-adds: forward +
     backward), and so the tokens it can see in the training part of the budget.
  3. Take the largest candidate that sees at least TOKENS_PER_PARAM tokens per parameter (a
     compute-optimal ratio from the sweeps in benchmarks/RESULTS.md) and that the corpus can
     feed: at most PARAMS_PER_TOKEN parameters per training token, else it only memorises.
  4. Time the chosen size itself; if it is much slower than predicted, step down.
  5. Dropout and weight drop from the planned number of epochs (more passes over the data,
     more regularisation); AR/TAR on; warmup about 2% of the planned steps; the cosine decay is
     fitted to the wall clock.
Calibration runs under the autocast training will use (bf16 where --amp and the device has it),
so a CPU with native bf16 plans for its real speed. Explicit flags always win: a fixed --hidden
or --layers narrows the candidates, a fixed --batch-size, --seq-len, --lr, --dropout,
--weight-drop, --ar, --tar or --embed-dim is kept as given, and a fixed --attention is calibrated with.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from charnn.config import ModelConfig
from charnn.machine import amp_dtype

# (layers, hidden): ordered by size
CANDIDATES = [(1, 128), (2, 128), (2, 192), (2, 256), (2, 384), (2, 512), (2, 768), (3, 768),
              (3, 1024), (3, 1536), (4, 2048)]
TOKENS_PER_PARAM = 1.0      # at least this many training tokens per parameter within the budget
PARAMS_PER_TOKEN = 4.0      # at most this many parameters per token of training text
TRAIN_FRACTION = 0.92       # of the budget left after calibration: the rest evaluates and saves
OVERHEAD_WIDTH = 256        # narrower layers are bound by per-step overhead on a CPU, not FLOPs
CALIBRATION_SHARE = 0.1     # calibration takes at most this share of the budget...
CALIBRATION_STEPS = 5       # ... and this many timed steps per thread count (at least 2)
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# (real passes at least, weight drop): DropConnect on the recurrent weights once the model would
# see its text many times. At 29 passes (2x384, 2,400 steps) weight drop 0.3 ended 0.10 nats
# lower than dropout alone (0.19 with AR/TAR); at 16 passes over a text unlike its validation
# text it cost 0.05. tinyshakespeare, 20m budget runs of 2x512 with dropout 0.3 (Xeon): without
# it 15 passes ended at 1.3751 and 18 overfit (best 1.3899, final 1.3952); with 0.3, 15 passes
# ended at 1.3825, and with 0.15, 14 passes ended at 1.3686, the best of the four; 10m made 9
# passes without it and had not overfit (benchmarks/RESULTS.md). So 0.15 from 12 passes; 0.3
# from 24, between the 15 where it lost to 0.15 and the 29 (and the 60m run's 50) where it paid
WEIGHT_DROP = [(12.0, 0.15), (24.0, 0.3)]
# Passes are real, the plan's epochs are not: the calibration times a plain step, and the run's
# steps (dropout, AR/TAR, the data) went at 0.76-0.80 of it in seven bf16 budget runs on the
# Xeon (5m-20m, three corpora); weight drop costs 0.84 more (bf16, 2x512), which the plan counts.
REALISED_SPEED = 0.78
WEIGHT_DROP_SPEED = 0.84
# AR/TAR on the top layer's outputs: at equal steps 2x256 (1,200 steps, two seeds) ended 0.16-0.22
# nats lower with them, for 5% of the tokens/s (issue 17, benchmarks/RESULTS.md)
AR, TAR = 2.0, 1.0


@dataclass(frozen=True)
class Plan:
    layers: int
    hidden: int
    embed_dim: int
    batch_size: int
    seq_len: int
    lr: float
    dropout: float
    warmup: int
    tokens_per_sec: float        # measured for the chosen size
    planned_tokens: float        # tokens it should see in the budget
    planned_epochs: float
    parameters: int
    reasons: list[str] = field(default_factory=list)
    threads: int = 0             # torch CPU threads to train with (0: leave as it is)
    weight_drop: float = 0.0     # DropConnect on the recurrent weights (AWD-LSTM)
    amp: bool = False            # bf16 autocast in training (calibrated with it)
    ar: float = 0.0              # activation regularisation (AWD-LSTM's AR)
    tar: float = 0.0             # temporal activation regularisation (TAR)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parameters(vocab: int, embed: int, hidden: int, layers: int, cell: str = "lstm") -> int:
    g = GATES[cell] * hidden
    rnn = sum(g * ((embed if l == 0 else hidden) + hidden) + 2 * g for l in range(layers))
    return vocab * embed + rnn + hidden * vocab + vocab


def default_lr(hidden: int) -> float:
    """Peak AdamW learning rate by width: 5e-3 beat 3e-3 by 0.05 nats at 2x384 (equal compute,
    benchmarks/RESULTS.md); wider layers get less, as is usual (not swept here)."""
    return 5e-3 if hidden <= 512 else 3e-3


def flops_per_token(vocab: int, embed: int, hidden: int, layers: int, cell: str = "lstm") -> float:
    """Training FLOPs per token: 2 per multiply-add, x3 for forward + backward."""
    g = GATES[cell] * hidden
    macs = sum(g * ((embed if l == 0 else hidden) + hidden) for l in range(layers)) + hidden * vocab
    return 6.0 * macs


def measure(cfg: ModelConfig, batch_size: int, seq_len: int, device: torch.device,
            steps: int = 3, threads: int | None = None, amp: bool = True) -> float:
    """Tokens/s of real training steps (forward, backward, clip, AdamW) at this size, with the
    autocast training will use (amp): the median of `steps` timed steps after a warm-up one, so
    one step slowed by another process (or by a first-use allocation) does not decide the plan.
    threads: torch's CPU threads while timing."""
    return _Bench(cfg, batch_size, seq_len, device, amp).rate(steps, threads)


class _Bench:
    """A model, optimizer and batch made once, so the same size can be timed again (with other
    thread counts) without building it anew."""

    def __init__(self, cfg: ModelConfig, batch_size: int, seq_len: int, device: torch.device, amp: bool = True):
        from charnn.model import RNNLM

        self.cfg, self.device, self.tokens, self.amp = cfg, device, batch_size * seq_len, amp
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            self.model = RNNLM(cfg).to(device)
            self.ids = torch.randint(0, cfg.vocab_size, (batch_size, seq_len + 1), device=device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.warm = False

    def step(self) -> None:
        from charnn.training.evaluate import autocast

        with autocast(self.device, self.amp):
            logits, _ = self.model(self.ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, self.cfg.vocab_size).float(), self.ids[:, 1:].reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        _sync(self.device)

    def times(self, steps: int, threads: int | None = None) -> list[float]:
        old = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            if not self.warm:
                self.step()                      # warm-up: allocations, kernel selection
                self.warm = True
            out = []
            for _ in range(steps):
                t0 = time.perf_counter()
                self.step()
                out.append(time.perf_counter() - t0)
            return out
        finally:
            torch.set_num_threads(old)

    def rate(self, steps: int, threads: int | None = None) -> float:
        return self.tokens / statistics.median(self.times(steps, threads))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@dataclass(frozen=True)
class Calibration:
    """What training costs here: the reference size's tokens/s, and the effective FLOP/s."""

    ref: tuple[int, int]           # (layers, hidden) that was timed
    ref_tps: float
    flop_rate: float
    threads: int                   # torch CPU threads that trained fastest (0: not a CPU)
    seconds: float                 # what calibrating took
    note: str = ""                 # how the threads were chosen, for the reasons


def calibrate(shape: Shape, device: torch.device, ref: tuple[int, int], cap_seconds: float) -> Calibration:
    """Time `ref` with each thread count worth trying (1 and all of this process's cores, on a
    CPU), interleaved, and keep the faster: on a machine other processes keep busy, threads
    that wait for each other can run 3x slower than one thread alone. Steps stop at
    `cap_seconds` of timing (at least CALIBRATION_STEPS each are tried, 2 when that is slow)."""
    t0 = time.perf_counter()
    B, T = shape.B, shape.T
    bench = _Bench(shape.config(*ref), B, T, device, shape.amp)
    choices = _thread_choices(device)
    times: dict[int, list[float]] = {t: [] for t in choices}
    live = list(choices)
    for round_ in range(CALIBRATION_STEPS):
        for t in live:
            times[t] += bench.times(1, t or None)
        # a thread count already twice as slow as another is out: its steps cost the most
        fastest = min(statistics.median(times[t]) for t in live)
        live = [t for t in live if statistics.median(times[t]) <= 2 * fastest]
        if round_ >= 1 and time.perf_counter() - t0 > cap_seconds:
            break
    med = {t: statistics.median(v) for t, v in times.items()}
    best = min(med, key=med.get)
    note = ""
    if len(choices) > 1:
        note = (f"threads: {best} ({', '.join(f'{t}: {B * T / med[t]:,.0f}' for t in choices)} tokens/s)")
    ref_tps = _stable(B * T / med[best])
    flop_rate = ref_tps * shape.flops(*ref)
    return Calibration(ref, ref_tps, flop_rate, best, time.perf_counter() - t0, note)


def _thread_choices(device: torch.device) -> list[int]:
    from charnn.machine import thread_choices

    return (thread_choices() or [0]) if device.type == "cpu" else [0]      # 0: leave as it is


def _stable(rate: float) -> float:
    """A measured rate rounded down onto a grid of 2^(1/8) steps (9%): two calibrations on a
    quiet machine, a few percent apart, then plan from the same figure."""
    return 2.0 ** (math.floor(8 * math.log2(max(rate, 1e-9))) / 8)


def plan(budget: float, train_tokens: int, vocab: int, device: torch.device,
         fixed: dict[str, Any] | None = None, cell: str = "lstm", amp: bool = True) -> Plan:
    """The model and schedule for `budget` seconds of training on `train_tokens` tokens."""
    t0 = time.perf_counter()
    shape = shape_for(vocab, device, fixed, cell, amp)
    cands = shape.candidates()
    if len(cands) == 1 and "dropout" in shape.fixed and "warmup" in shape.fixed:
        # every choice is made by flags: there is nothing to calibrate, so start at once
        return shape.as_given(cands[0])
    # 1. calibrate on a mid-sized reference (or the only candidate), in at most a tenth of the budget
    ref = cands[min(len(cands) - 1, next((i for i, c in enumerate(cands) if c[1] >= 256), 0))]
    cal = calibrate(shape, device, ref, cap_seconds=max(0.5, CALIBRATION_SHARE * budget))
    left = budget - (time.perf_counter() - t0)
    return choose(cal, left, train_tokens, shape, device=device)


def shape_for(vocab: int, device: torch.device, fixed: dict[str, Any] | None, cell: str = "lstm",
              amp: bool = True) -> Shape:
    """The fixed parts of a plan on `device`; amp: bf16 autocast where the device has it
    (calibration then runs under it, so the plan is made for the real speed)."""
    fixed = {k: v for k, v in (fixed or {}).items() if v is not None}
    gpu = device.type == "cuda"
    # CPU: B=32, T=64. At equal compute T=64 beat T=128 by 0.22 nats (2x384: twice the steps
    # for the same tokens) and B=64 lost to B=32 (half the steps, and no faster per token on 2
    # cores); benchmarks/RESULTS.md. The GPU defaults are unmeasured: wider batches keep it busy.
    return Shape(vocab, fixed.get("batch_size", 64 if gpu else 32), fixed.get("seq_len", 256 if gpu else 64),
                 cell, fixed, amp_dtype(device, amp) is not None)


def replan(shape: Shape, size: tuple[int, int], tokens_per_sec: float, threads: int, seconds: float,
           train_tokens: int) -> Plan | None:
    """Mid-run: the plan for the `seconds` left, from the speed `size` trains at now (no new
    calibration); None when that plan keeps `size`."""
    l, h = size
    flop_rate = tokens_per_sec * shape.flops(l, h)
    cal = Calibration(size, tokens_per_sec, flop_rate, threads, 0.0,
                      f"re-planned from the speed {l}x{h} trains at now, {tokens_per_sec:,.0f} tokens/s")
    new = choose(cal, seconds, train_tokens, shape, device=None, measured=size)
    return None if (new.layers, new.hidden) == size else new


def choose(cal: Calibration, seconds: float, train_tokens: int, shape: Shape,
           device: torch.device | None = None, measured: tuple[int, int] | None = None) -> Plan:
    """The largest candidate that sees enough tokens in `seconds` and that the corpus can feed
    (steps 2-5 of the rule). device: time the chosen size to confirm it (None: trust the
    prediction). measured: a size whose speed cal.ref_tps is (when re-planning mid-run)."""
    cands, cell = shape.candidates(), shape.cell
    reasons = [f"calibration{' (bf16 autocast)' if shape.amp else ''}: {cal.ref[0]}x{cal.ref[1]} {cell.upper()} "
               f"trains at {cal.ref_tps:,.0f} "
               f"tokens/s here ({cal.flop_rate / 1e9:.1f} GFLOP/s effective)"] + ([cal.note] if cal.note else [])
    train_seconds = max(1.0, seconds * TRAIN_FRACTION)
    chosen = cands[0]
    for l, h in cands:     # 2-3. largest candidate that sees enough tokens and the data can feed
        n_par = shape.parameters(l, h)
        if shape.predict(cal, l, h) * train_seconds >= TOKENS_PER_PARAM * n_par \
                and n_par <= PARAMS_PER_TOKEN * train_tokens:
            chosen = (l, h)
    while True:            # 4. confirm the chosen size; step down while it is much slower than predicted
        l, h = chosen
        if chosen in (cal.ref, measured):
            tps = cal.ref_tps
        elif device is None:
            tps = shape.predict(cal, l, h)
        else:
            tps = _Bench(shape.config(l, h), shape.B, shape.T, device, shape.amp).rate(2, cal.threads or None)
        n_par, idx = shape.parameters(l, h), cands.index(chosen)
        if tps * train_seconds >= 0.7 * TOKENS_PER_PARAM * n_par or idx == 0:
            break
        reasons.append(f"{l}x{h} measured {tps:,.0f} tokens/s, slower than predicted: one size down")
        chosen = cands[idx - 1]
    return shape.schedule(l, h, tps, tps * train_seconds, train_tokens, train_seconds, cal.threads, reasons)


class Shape:
    """The fixed parts of a plan (vocabulary, B, T, cell, the user's flags) and the arithmetic
    of a candidate size under them."""

    def __init__(self, vocab: int, B: int, T: int, cell: str, fixed: dict[str, Any], amp: bool = False):
        self.vocab, self.B, self.T, self.cell, self.fixed, self.amp = vocab, B, T, cell, fixed, amp
        # what changes the cost per token and is fixed by flags is calibrated with (--attention)
        self.extra = {k: fixed[k] for k in ("attention",) if k in fixed}

    def candidates(self) -> list[tuple[int, int]]:
        f = self.fixed
        cands = [(l, h) for l, h in CANDIDATES if f.get("layers", l) == l and f.get("hidden", h) == h]
        return cands or [(f.get("layers", 2), f.get("hidden", 512))]   # a size fixed outside the list

    def embed_for(self, h: int) -> int:
        return self.fixed.get("embed_dim", min(256, max(64, h // 4)))

    def parameters(self, l: int, h: int) -> int:
        return parameters(self.vocab, self.embed_for(h), h, l, self.cell)

    def config(self, l: int, h: int) -> ModelConfig:
        return ModelConfig(vocab_size=self.vocab, cell=self.cell, layers=l, hidden=h, embed_dim=self.embed_for(h),
                           **self.extra)

    def flops(self, l: int, h: int) -> float:
        return flops_per_token(self.vocab, self.embed_for(h), h, l, self.cell)

    def predict(self, cal: Calibration, l: int, h: int) -> float:
        tps = cal.flop_rate / self.flops(l, h)
        # small models are bound by per-step overhead, not FLOPs: below the reference's width
        # (or OVERHEAD_WIDTH, when re-planning from a wider model) never predict faster than there
        if h < min(cal.ref[1], OVERHEAD_WIDTH):
            if cal.ref[1] <= OVERHEAD_WIDTH:
                return min(tps, cal.ref_tps)
            w = OVERHEAD_WIDTH
            return min(tps, cal.flop_rate / self.flops(l, w))
        return tps

    def as_given(self, size: tuple[int, int]) -> Plan:
        l, h = size
        return Plan(layers=l, hidden=h, embed_dim=self.embed_for(h), batch_size=self.B, seq_len=self.T,
                    lr=self.fixed.get("lr", default_lr(h)), dropout=self.fixed["dropout"],
                    warmup=self.fixed["warmup"], tokens_per_sec=0.0, planned_tokens=0.0, planned_epochs=0.0,
                    parameters=self.parameters(l, h),
                    reasons=["size, dropout and warmup are all given as flags: nothing to choose, no calibration"],
                    weight_drop=self.fixed.get("weight_drop", 0.0), amp=self.amp,
                    ar=self.fixed.get("ar", 0.0), tar=self.fixed.get("tar", 0.0))

    def schedule(self, l: int, h: int, tps: float, tokens: float, train_tokens: int, train_seconds: float,
                 threads: int, reasons: list[str]) -> Plan:
        """5. dropout and weight drop by passes over the data, AR/TAR on, warmup ~2% of the
        steps, lr by width."""
        n_par = self.parameters(l, h)
        epochs = tokens / max(1, train_tokens)
        reasons.append(f"chose {l}x{h} ({n_par / 1e6:.2f}M parameters): about {tokens / 1e6:.2f}M tokens "
                       f"in {train_seconds:.0f}s of training, {tokens / n_par:.1f} per parameter "
                       f"(rule: >= {TOKENS_PER_PARAM:g}), {epochs:.1f} epochs of the corpus")
        f = self.fixed
        dropout, weight_drop = regularisation(epochs)
        dropout, weight_drop = f.get("dropout", dropout), f.get("weight_drop", weight_drop)
        if not {"dropout", "weight_drop"} <= f.keys():
            reasons.append(f"dropout {dropout:g}, weight drop {weight_drop:g}: {epochs:.1f} planned passes over "
                           "the data (more passes, more regularisation)")
        if weight_drop:        # its own cost: fewer tokens in the same time (WEIGHT_DROP_SPEED)
            tps, tokens, epochs = tps * WEIGHT_DROP_SPEED, tokens * WEIGHT_DROP_SPEED, epochs * WEIGHT_DROP_SPEED
            reasons.append(f"weight drop trains at about {WEIGHT_DROP_SPEED:g} of the speed: {epochs:.1f} "
                           "epochs expected")
        # a plain RNN's output is its whole state: AR/TAR shrink and freeze its memory (2x384 RNN,
        # 400 steps: 2.21 with them, 1.96 without, benchmarks/RESULTS.md)
        gated = self.cell != "rnn"
        ar, tar = f.get("ar", AR if gated else 0.0), f.get("tar", TAR if gated else 0.0)
        if not {"ar", "tar"} <= f.keys():
            reasons.append(f"AR {ar:g}, TAR {tar:g}: they sped up learning at equal steps (issue 17)" if gated else
                           "no AR/TAR: on a plain RNN they cost 0.1-0.25 nats/char at equal steps")
        warmup = self.fixed.get("warmup", int(min(200, max(10, 0.02 * tokens / (self.B * self.T)))))
        return Plan(layers=l, hidden=h, embed_dim=self.embed_for(h), batch_size=self.B, seq_len=self.T,
                    lr=self.fixed.get("lr", default_lr(h)), dropout=dropout, warmup=warmup,
                    tokens_per_sec=tps, planned_tokens=tokens, planned_epochs=epochs, parameters=n_par,
                    reasons=reasons, threads=threads, weight_drop=weight_drop, amp=self.amp, ar=ar, tar=tar)


def regularisation(epochs: float) -> tuple[float, float]:
    """(dropout, weight drop) for a run that will make `epochs` passes over its training text.

    Dropout (thresholds in planned epochs, set from the planner's own runs): 2x512 at 3.4
    epochs, 0.2 beat 0.3 by 0.02 nats; runs with none overfit by 5 epochs. Weight drop
    (thresholds in real passes of the run without it): see WEIGHT_DROP and REALISED_SPEED
    (benchmarks/RESULTS.md, issue 17)."""
    dropout = 0.0 if epochs < 1 else 0.1 if epochs < 2 else 0.2 if epochs < 10 else 0.3
    passes = epochs * REALISED_SPEED        # what the run would get through without weight drop
    weight_drop = next((wd for at_least, wd in reversed(WEIGHT_DROP) if passes >= at_least), 0.0)
    return dropout, weight_drop


def describe(p: Plan) -> str:
    lines = [f"model     {p.layers} x {p.hidden} (embedding {p.embed_dim}), {p.parameters:,} parameters",
             f"batches   {p.batch_size} streams x {p.seq_len} steps, lr {p.lr:g}, warmup {p.warmup} steps, "
             f"dropout {p.dropout:g}, weight drop {p.weight_drop:g}, AR {p.ar:g}, TAR {p.tar:g}"
             f"{', bf16 autocast' if p.amp else ''}",
             (f"expected  {p.tokens_per_sec:,.0f} tokens/s, {p.planned_tokens:,.0f} tokens, "
              f"{p.planned_epochs:.2f} epochs" if p.tokens_per_sec else "expected  (not measured)"),
             "why:"] + [f"  - {r}" for r in p.reasons]
    return "\n".join(lines)


