"""Choosing the model and schedule for a time budget (`charnn train --time-budget 5m`).

A user says how long they can wait, not how many layers they want. The rule:
  1. Calibrate: time a few real training steps (random ids, the real model and optimizer) of
     one reference size on this device, which gives the effective FLOP/s of training here.
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
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
# (planned epochs at least, weight drop): DropConnect on the recurrent weights once the model
# sees its text many times (issue 17's sweeps in benchmarks/RESULTS.md)
WEIGHT_DROP = [(10.0, 0.0)]
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
            steps: int = 3, amp: bool = True) -> float:
    """Tokens/s of real training steps (forward, backward, clip, AdamW) at this size, with the
    autocast training will use (amp): the median of `steps` timed steps after a warm-up one, so
    one step slowed by another process (or by a first-use allocation) does not decide the plan."""
    from charnn.model import RNNLM
    from charnn.training.evaluate import autocast

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = RNNLM(cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        ids = torch.randint(0, cfg.vocab_size, (batch_size, seq_len + 1), device=device)

        def step():
            with autocast(device, amp):
                logits, _ = model(ids[:, :-1])
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, cfg.vocab_size).float(), ids[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        step()                                   # warm-up: allocations, kernel selection
        _sync(device)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - t0)
        return batch_size * seq_len / sorted(times)[len(times) // 2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plan(budget: float, train_tokens: int, vocab: int, device: torch.device,
         fixed: dict[str, Any] | None = None, cell: str = "lstm", amp: bool = True) -> Plan:
    """The model and schedule for `budget` seconds of training on `train_tokens` tokens."""
    fixed = {k: v for k, v in (fixed or {}).items() if v is not None}
    t0 = time.perf_counter()
    gpu = device.type == "cuda"
    # CPU: B=32, T=64. At equal compute T=64 beat T=128 by 0.22 nats (2x384: twice the steps
    # for the same tokens) and B=64 lost to B=32 (half the steps, and no faster per token on 2
    # cores); benchmarks/RESULTS.md. The GPU defaults are unmeasured: wider batches keep it busy.
    B = fixed.get("batch_size", 64 if gpu else 32)
    T = fixed.get("seq_len", 256 if gpu else 64)
    reasons: list[str] = []

    cands = [(l, h) for l, h in CANDIDATES
             if fixed.get("layers", l) == l and fixed.get("hidden", h) == h]
    if not cands:   # a size outside the list, fixed by the user: it is the only candidate
        cands = [(fixed.get("layers", 2), fixed.get("hidden", 512))]

    def embed_for(h: int) -> int:
        return fixed.get("embed_dim", min(256, max(64, h // 4)))

    if len(cands) == 1 and "dropout" in fixed and "warmup" in fixed:
        # every choice is made by flags: there is nothing to calibrate, so start at once
        l, h = cands[0]
        n_par = parameters(vocab, embed_for(h), h, l, cell)
        reasons.append("size, dropout and warmup are all given as flags: nothing to choose, no calibration")
        return Plan(layers=l, hidden=h, embed_dim=embed_for(h), batch_size=B, seq_len=T,
                    lr=fixed.get("lr", default_lr(h)), dropout=fixed["dropout"],
                    warmup=fixed["warmup"], tokens_per_sec=0.0, planned_tokens=0.0,
                    planned_epochs=0.0, parameters=n_par, reasons=reasons,
                    weight_drop=fixed.get("weight_drop", 0.0), amp=amp_dtype(device, amp) is not None,
                    ar=fixed.get("ar", 0.0), tar=fixed.get("tar", 0.0))
    # 1. calibrate on a mid-sized reference (or the only candidate)
    ref = cands[min(len(cands) - 1, next((i for i, c in enumerate(cands) if c[1] >= 256), 0))]
    # calibrated with what changes the cost per token and is fixed by flags (--attention)
    extra = {k: fixed[k] for k in ("attention",) if k in fixed}
    ref_cfg = ModelConfig(vocab_size=vocab, cell=cell, layers=ref[0], hidden=ref[1],
                          embed_dim=embed_for(ref[1]), **extra)
    ref_tps = measure(ref_cfg, B, T, device, amp=amp)
    flop_rate = ref_tps * flops_per_token(vocab, embed_for(ref[1]), ref[1], ref[0], cell)
    bf16 = amp_dtype(device, amp) is not None
    reasons.append(f"calibration{' (bf16 autocast)' if bf16 else ''}: {ref[0]}x{ref[1]} {cell.upper()} "
                   f"trains at {ref_tps:,.0f} tokens/s "
                   f"here ({flop_rate / 1e9:.1f} GFLOP/s effective)")

    def predict(l: int, h: int) -> float:
        tps = flop_rate / flops_per_token(vocab, embed_for(h), h, l, cell)
        # small models are bound by per-step overhead, not FLOPs: never predict above the reference
        return min(tps, ref_tps) if h < ref[1] else tps

    train_seconds = max(1.0, budget * TRAIN_FRACTION - (time.perf_counter() - t0))
    # 2-3. largest candidate that sees enough tokens and that the data can feed
    chosen = cands[0]
    for l, h in cands:
        n_par = parameters(vocab, embed_for(h), h, l, cell)
        tokens = predict(l, h) * train_seconds
        if tokens >= TOKENS_PER_PARAM * n_par and n_par <= PARAMS_PER_TOKEN * train_tokens:
            chosen = (l, h)
    # 4. confirm the chosen size; step down while it is much slower than predicted
    while True:
        l, h = chosen
        cfg = ModelConfig(vocab_size=vocab, cell=cell, layers=l, hidden=h, embed_dim=embed_for(h), **extra)
        tps = ref_tps if chosen == ref else measure(cfg, B, T, device, amp=amp)
        n_par = parameters(vocab, embed_for(h), h, l, cell)
        idx = cands.index(chosen)
        if tps * train_seconds >= 0.7 * TOKENS_PER_PARAM * n_par or idx == 0:
            break
        reasons.append(f"{l}x{h} measured {tps:,.0f} tokens/s, slower than predicted: one size down")
        chosen = cands[idx - 1]
    train_seconds = max(1.0, budget * TRAIN_FRACTION - (time.perf_counter() - t0))
    tokens = tps * train_seconds
    epochs = tokens / max(1, train_tokens)
    reasons.append(f"chose {l}x{h} ({n_par / 1e6:.2f}M parameters): about {tokens / 1e6:.2f}M tokens "
                   f"in {train_seconds:.0f}s of training, {tokens / n_par:.1f} per parameter "
                   f"(rule: >= {TOKENS_PER_PARAM:g}), {epochs:.1f} epochs of the corpus")
    dropout, weight_drop = regularisation(epochs)
    dropout, weight_drop = fixed.get("dropout", dropout), fixed.get("weight_drop", weight_drop)
    if not {"dropout", "weight_drop"} <= fixed.keys():
        reasons.append(f"dropout {dropout:g}, weight drop {weight_drop:g}: {epochs:.1f} passes over "
                       "the data (more passes, more regularisation)")
    ar, tar = fixed.get("ar", AR), fixed.get("tar", TAR)
    if not {"ar", "tar"} <= fixed.keys():
        reasons.append(f"AR {ar:g}, TAR {tar:g}: they sped up learning at equal steps (issue 17)")
    steps = tokens / (B * T)
    warmup = fixed.get("warmup", int(min(200, max(10, 0.02 * steps))))
    lr = fixed.get("lr", default_lr(h))
    return Plan(layers=l, hidden=h, embed_dim=embed_for(h), batch_size=B, seq_len=T, lr=lr,
                dropout=dropout, warmup=warmup, tokens_per_sec=tps, planned_tokens=tokens,
                planned_epochs=epochs, parameters=n_par, reasons=reasons, weight_drop=weight_drop,
                amp=bf16, ar=ar, tar=tar)


def regularisation(epochs: float) -> tuple[float, float]:
    """(dropout, weight drop) for a run that will make `epochs` passes over its training text.

    Dropout: 2x512 at 3.4 epochs, 0.2 beat 0.3 by 0.02 nats; runs with none overfit by 5
    epochs. Weight drop: see WEIGHT_DROP (benchmarks/RESULTS.md, issue 17)."""
    dropout = 0.0 if epochs < 1 else 0.1 if epochs < 2 else 0.2 if epochs < 10 else 0.3
    weight_drop = next((wd for at_least, wd in reversed(WEIGHT_DROP) if epochs >= at_least), 0.0)
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


