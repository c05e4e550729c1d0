"""Training with truncated backpropagation through time, and evaluation.

train() is a plain function: it takes frozen configs and prepared data, writes checkpoints and a
metrics log into the run folder, and reports progress through a callback. It never prints.

Each step takes the next (B, T) chunk of the B parallel streams, runs the model from the state
carried over from the previous chunk, backpropagates, clips the global gradient norm and steps
AdamW; the state is then detached, so gradients stop at chunk boundaries while the values flow
on. The state is reset at each epoch.

Data-parallel (charnn.distributed, under torchrun): each rank trains on its share of the B
streams through DDP, the stop decisions are agreed once per step, and rank 0 alone writes.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from charnn import checkpoint as ckpt_io
from charnn.config import ModelConfig, TrainConfig
from charnn.data import batchify, check_trainable, encode_corpus, get_chunk, num_chunks, split
from charnn.distributed import Group
from charnn.errors import CharnnError
from charnn.model import RNNLM, detach_state, num_parameters
from charnn.tokenizers import Tokenizer

Callback = Callable[[dict[str, Any]], Optional[bool]]  # return True to stop gracefully
LN2 = math.log(2.0)
MAX_BAD_STEPS = 3       # consecutive non-finite steps before rolling back
MAX_ROLLBACKS = 8       # then the run ends on the last good weights
ROLLBACK_LR_FACTOR = 0.25   # each rollback divides the learning rate by 4: 8 of them, by 65536
DIVERGED_NATS = 20.0    # a validation loss this far above uniform guessing (ln V) is divergence
PERIODIC_EVAL_TOKENS = 1 << 20   # periodic evaluations read this prefix of the validation split
FINAL_EVAL_SHARE = 0.04         # under a time budget, the final evaluation takes at most this share
MIN_EVAL_TOKENS = 1 << 15       # ... but never fewer tokens than this
EXIT_SECONDS = 1.0              # kept for the summary and the process exit after the last save


@dataclass
class TrainData:
    """A tokenized corpus split for training: ids are (N,) arrays, memory-mapped."""

    tokenizer: Tokenizer
    train_ids: np.ndarray
    val_ids: np.ndarray
    val_chars: int            # characters of text the validation ids stand for
    source: dict[str, Any] = field(default_factory=dict)   # {path, digest, from_cache}
    bow: Any = None           # charnn.bow.BowData for --input bow: per-chunk document vectors

    @property
    def chars_per_token(self) -> float:
        return self.val_chars / max(1, len(self.val_ids))


def prepare_data(path: Path, tokenizer_name: str = "char", val_frac: float = 0.1,
                 fit_options: dict[str, Any] | None = None,
                 tokenizer: Tokenizer | None = None) -> TrainData:
    enc = encode_corpus(path, tokenizer_name, fit_options, tokenizer)
    train_ids, val_ids = split(enc.ids, val_frac)
    return TrainData(enc.tokenizer, train_ids, val_ids, count_chars(enc.tokenizer, val_ids),
                     {"path": str(path), "digest": enc.digest, "from_cache": enc.from_cache})


def count_chars(tokenizer: Tokenizer, ids: np.ndarray, block: int = 1 << 20) -> int:
    """Characters of original text behind `ids` (the per-character loss divides by this)."""
    if tokenizer.name == "char":
        return len(ids)
    return sum(tokenizer.count_chars(ids[i:i + block]) for i in range(0, len(ids), block))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CharnnError("--device cuda was asked for, but no CUDA GPU is available", 2)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CharnnError("--device mps was asked for, but MPS is not available", 2)
    return torch.device(name)


def lr_at(cfg: TrainConfig, step: int, progress: float, scale: float = 1.0) -> float:
    """Linear warmup over cfg.warmup steps, then cosine decay to lr * min_lr_frac.

    `progress` in [0, 1] is the fraction of the run done: steps / max_steps, or, with a time
    budget, elapsed / budget, so the decay ends when the wall clock does.
    """
    warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    p = min(1.0, max(0.0, progress))
    decay = cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p))
    return cfg.lr * scale * warm * decay


@torch.no_grad()
def evaluate(model: RNNLM, ids: np.ndarray, batch_size: int, seq_len: int,
             device: torch.device | str = "cpu", amp: bool = False,
             max_tokens: int | None = None, cond: Any = None,
             group: Group | None = None, deadline: float | None = None,
             min_tokens: int = 0) -> tuple[float, int]:
    """Mean cross-entropy (nats per token) over `ids`, read as B streams with carried state.

    Returns (loss, tokens scored). `max_tokens` caps the work for periodic evaluations;
    `deadline` (a time.time() value) ends it after the chunk that passes it, once this process
    has scored `min_tokens`: the streams then stand for the split as a sample of its B parts.
    cond: a charnn.bow.DocCond aligned with `ids` for --input bow models. group: in a
    distributed run each rank scores its share of the B streams and the sums are all-reduced.
    """
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[:max_tokens]
        cond = cond.prefix(max_tokens) if cond is not None else None
    B = max(1, min(batch_size, (len(ids) - 1) // 2))
    rows = group.rows(B) if group is not None else slice(None)   # this rank's streams
    streams = batchify(ids, B)[rows]                             # (B, L), or (B/W, L) of them
    was_training = model.training
    model.eval()
    state, total, count = None, 0.0, 0
    device = torch.device(device)
    for i in range(num_chunks(streams, seq_len) if len(streams) else 0):
        blk = torch.from_numpy(get_chunk(streams, i, seq_len)).to(device)   # (B, t + 1)
        c = cond.chunk(B, i, seq_len, device, rows) if cond is not None else None  # per-step bow
        with _autocast(device, amp):
            logits, state = model(blk[:, :-1], state, c)
        total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                 blk[:, 1:].reshape(-1), reduction="sum").item()
        count += blk[:, 1:].numel()
        if deadline is not None and count >= min_tokens and time.time() >= deadline:
            break
    model.train(was_training)
    if group is not None:
        total, n = group.sum(total, count)
        count = int(n)
    if count == 0:
        raise CharnnError("the validation split is too short to evaluate")
    return total / count, count


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def val_metrics(loss: float, data: TrainData) -> dict[str, float]:
    """Per-token loss -> the figures users compare: nats/char, bits/char, perplexity."""
    nats_char = loss / data.chars_per_token
    return {"val_loss": loss, "val_nats_per_char": nats_char, "val_bpc": nats_char / LN2,
            "val_ppl": math.exp(min(loss, 50.0))}


class _Interrupts:
    """First Ctrl-C (or SIGTERM) asks for a graceful stop at the next step boundary, so the
    checkpoint is never taken mid-update; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(model_cfg: ModelConfig, cfg: TrainConfig, data: TrainData, run_dir: Path,
          callback: Callback | None = None, resume: dict[str, Any] | None = None,
          started: float | None = None, init_model: Callable[[RNNLM], None] | None = None,
          group: Group | None = None) -> dict[str, Any]:
    """Train a model and return a summary dict. See the module docstring for the loop.

    resume: a loaded checkpoint to continue from exactly. started: time.time() when the command
    began, so --time-budget covers corpus reading and the final evaluation too. init_model: a
    hook run once on a fresh model (e.g. copying word2vec vectors into the embedding).
    group: this process's rank in a data-parallel run (charnn.distributed); rank 0 alone writes
    files and emits events. Default: a single process.
    """
    t_start = time.time()
    started = started if started is not None else t_start
    group = group or Group()
    emit = callback if callback is not None and group.is_main else (lambda event: None)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for w in check_trainable(len(data.train_ids), len(data.val_ids), cfg.batch_size, cfg.seq_len):
        emit({"event": "warning", "message": w})

    group.check_batch(cfg.batch_size)
    device = group.device(pick_device(cfg.device))
    amp = cfg.amp and device.type == "cuda"
    torch.manual_seed(cfg.seed)
    model = RNNLM(model_cfg)
    if resume is not None:
        model.load_state_dict(resume["model"])
    elif init_model is not None:
        init_model(model)
    model.to(device)
    net = group.wrap(model)     # DDP when W > 1: backward averages the gradients over the ranks
    group.seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.99), **({"fused": True} if device.type == "cuda" else {}),
    )

    rows = group.rows(cfg.batch_size)                            # this rank's share of the streams
    streams = batchify(data.train_ids, cfg.batch_size)[rows]    # (B, L) (/W) view of the memmap
    chunks_per_epoch = num_chunks(streams, cfg.seq_len)
    total_steps = cfg.max_steps
    if cfg.epochs is not None:
        epoch_steps = cfg.epochs * chunks_per_epoch
        total_steps = min(total_steps, epoch_steps) if total_steps else epoch_steps
    budget = cfg.time_budget

    step = epoch = chunk = 0
    elapsed_before = 0.0
    state = None
    history: list[dict[str, Any]] = []
    best_val = math.inf
    lr_scale = 1.0
    if resume is not None:
        p = resume["progress"]
        step, epoch, chunk = int(p["step"]), int(p["epoch"]), int(p["chunk"])
        elapsed_before = float(p.get("elapsed", 0.0))
        best_val = float(p.get("best_val", math.inf))
        lr_scale = float(p.get("lr_scale", 1.0))
        history = list(resume.get("history", []))
        if resume.get("optimizer"):
            opt.load_state_dict(resume["optimizer"])
        if resume.get("state"):
            state = tuple(s[:, rows].to(device) for s in resume["state"])   # saved whole: (layers, B, H)
        rng = group.rng_for_rank(resume.get("rng", {}))
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])

    metrics_path = run_dir / "metrics.jsonl"
    metrics = _open_log(metrics_path) if group.is_main else open(os.devnull, "a", encoding="utf-8")

    def log(record: dict[str, Any]) -> Optional[bool]:
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        return emit(record)

    def payload(carried, rng) -> dict[str, Any]:
        return {
            "model_config": model_cfg.to_dict(),
            "train_config": cfg.to_dict(),
            "tokenizer": data.tokenizer.to_dict(),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": _to_cpu(opt.state_dict()),
            "progress": {"step": step, "epoch": epoch, "chunk": chunk, "best_val": best_val,
                         "elapsed": elapsed_before + (time.time() - t_start), "lr_scale": lr_scale,
                         "chars_per_token": data.chars_per_token},
            "state": [s.detach().cpu() for s in carried] if carried is not None else [],
            "rng": rng,
            "history": history,
            "corpus": {k: v for k, v in data.source.items() if k in ("path", "digest")},
            "num_parameters": num_parameters(model),
            **({"bow": data.bow.state()} if data.bow is not None else {}),
        }

    def save(best: bool = False) -> None:
        # every rank takes part: the carried state is saved whole, (layers, B, H), gathered
        carried, rng = group.gather_rows(state), group.gather_rng(_rng_state(device))
        if not group.is_main:
            return
        p = payload(carried, rng)
        ckpt_io.save(p, run_dir / ckpt_io.LATEST)
        if best:
            ckpt_io.save(p, run_dir / ckpt_io.BEST)
        emit({"event": "save", "step": step, "best": best})

    def eval_cap(final: bool) -> int | None:
        """Tokens an evaluation may read. Periodic ones: a prefix of PERIODIC_EVAL_TOKENS. The
        final one: the whole split, unless a time budget is set and the whole split would not
        fit in what is left of it (a 1 GB corpus holds 100M validation tokens)."""
        if not final:
            return PERIODIC_EVAL_TOKENS
        if budget is None or eval_rate() <= 0:
            return None
        left = budget - (time.time() - started + elapsed_before) - save_seconds
        return max(MIN_EVAL_TOKENS, int(max(left, 0.0) * eval_rate()))

    def eval_rate() -> float:
        """Validation tokens/s: measured by the last evaluation, else guessed from training
        (a forward pass alone runs at about 3x the training speed per token)."""
        if eval_tps:
            return eval_tps
        return 3 * cfg.batch_size * cfg.seq_len / step_seconds if step_seconds else 0.0

    def run_eval(final: bool = False) -> float:
        nonlocal best_val, eval_tps
        t0 = time.perf_counter()
        cap = eval_cap(final)
        # the final evaluation under a budget also stops at the clock, should it run slower than
        # measured (a machine that got busy): the command ends within its budget
        end = started + budget - elapsed_before - save_seconds - EXIT_SECONDS \
            if final and budget is not None else None
        loss, n = evaluate(model, data.val_ids, cfg.batch_size, cfg.seq_len, device, amp,
                           max_tokens=group.broadcast(cap) if final else cap,   # rank 0's clock
                           cond=data.bow.val if data.bow is not None else None, group=group,
                           deadline=end, min_tokens=MIN_EVAL_TOKENS // group.world)
        eval_tps = n / max(1e-6, time.perf_counter() - t0)
        if _diverged(loss, model_cfg.vocab_size) or not _finite(model):
            # never recorded or saved as good: the caller rolls back
            log({"event": "eval_diverged", "step": step, "final": final,
                 "val_loss": loss if math.isfinite(loss) else str(loss)})
            return math.nan
        improved = loss < best_val
        best_val = min(best_val, loss)
        rec = {"event": "eval", "step": step, "epoch": epoch, "final": final, "tokens": n,
               "of_tokens": len(data.val_ids),
               "elapsed": round(time.time() - started, 3), **val_metrics(loss, data),
               "best_val_loss": best_val}
        history.append({"step": step, "val_loss": loss, "elapsed": rec["elapsed"],
                        "train_loss": last_train_loss})
        log(rec)
        save(best=improved)
        return loss

    def deadline_near() -> bool:
        if budget is None:
            return False
        # keep room for the final evaluation: the whole split, or FINAL_EVAL_SHARE of the budget
        rate = eval_rate()
        final_eval = min(len(data.val_ids) / rate, FINAL_EVAL_SHARE * budget) if rate else 0.0
        reserve = 1.2 * final_eval + save_seconds + step_seconds + EXIT_SECONDS
        return (time.time() - started) + elapsed_before + reserve >= budget

    eval_tps = 0.0
    save_seconds = 0.5
    step_seconds = 0.0
    last_train_loss = float("nan")
    bad_steps = rollbacks = 0
    good = _snapshot(model, opt, step, epoch, chunk)
    gave_up: str | None = None      # why the run ended on the last good weights, if it did

    def roll_back(reason: str) -> bool:
        """Divergence: restore the last good weights (those of the last evaluation that was
        finite) and continue with the learning rate divided by 4. Returns False once the
        rollbacks are used up: the run then ends on those good weights."""
        nonlocal step, epoch, chunk, state, lr_scale, rollbacks, bad_steps, gave_up
        step, epoch, chunk = _restore(good, model, opt)
        state, bad_steps = None, 0
        if rollbacks >= MAX_ROLLBACKS:
            gave_up = reason
            log({"event": "diverged", "step": step, "reason": reason, "rollbacks": rollbacks})
            return False
        rollbacks += 1
        lr_scale *= ROLLBACK_LR_FACTOR
        log({"event": "rollback", "step": step, "lr_scale": lr_scale, "reason": reason})
        return True
    tokens_window, t_window = 0, time.perf_counter()
    interrupted = False
    n_params = num_parameters(model)
    emit({"event": "start", "device": str(device), "parameters": n_params, "vocab_size": model_cfg.vocab_size,
          "train_tokens": len(data.train_ids), "val_tokens": len(data.val_ids),
          "chunks_per_epoch": chunks_per_epoch, "total_steps": total_steps, "time_budget": budget,
          "step": step, "resumed": resume is not None, "run_dir": str(run_dir)})
    model.train()
    with _Interrupts() as interrupts:
        # W > 1: stop decisions are agreed by all ranks in each step's all-reduce (StepSync)
        sync = group.step_sync(deadline_near, lambda: interrupts.requested)
        while True:
            if total_steps is not None and step >= total_steps:
                break
            if sync.deadline():
                break
            if sync.interrupted():
                interrupted = True
                break
            if chunk >= chunks_per_epoch:
                epoch, chunk, state = epoch + 1, 0, None
                if cfg.epochs is not None and epoch >= cfg.epochs:
                    break
            t_step = time.perf_counter()
            blk = torch.from_numpy(get_chunk(streams, chunk, cfg.seq_len)).to(device, non_blocking=True)
            x, y = blk[:, :-1], blk[:, 1:]                                     # (B, t) each
            cond = data.bow.train.chunk(cfg.batch_size, chunk, cfg.seq_len, device, rows) \
                if data.bow is not None else None        # per-step bag of words (charnn.bow)
            progress = _progress(step, total_steps, time.time() - started + elapsed_before, budget)
            lr = lr_at(cfg, step, progress, lr_scale)
            for g in opt.param_groups:
                g["lr"] = lr
            with _autocast(device, amp):
                logits, new_state = net(x, state, cond)                        # (B, t, V)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            loss_v, gnorm_v = sync.reduce(loss, gnorm)    # W > 1: global mean loss, agreed flags
            if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):
                # a non-finite loss or gradient never reaches the weights
                bad_steps += 1
                log({"event": "skip", "step": step, "loss": loss_v, "grad_norm": gnorm_v})
                opt.zero_grad(set_to_none=True)
                state = None
                chunk += 1
                # weights already broken (an earlier finite but huge step) cannot recover
                broken = not _finite(model)
                if bad_steps >= MAX_BAD_STEPS or broken:
                    if not roll_back("non-finite weights" if broken else
                                     f"{bad_steps} non-finite steps in a row"):
                        break
                continue
            bad_steps = 0
            opt.step()
            state = detach_state(new_state)
            step += 1
            chunk += 1
            last_train_loss = loss_v
            tokens_window += y.numel() * group.world
            step_seconds = 0.9 * step_seconds + 0.1 * (time.perf_counter() - t_step) if step > 1 else \
                time.perf_counter() - t_step
            stop = False
            if step % 10 == 0 or step == total_steps:
                dt = time.perf_counter() - t_window
                tps = tokens_window / dt if dt > 0 else 0.0
                tokens_window, t_window = 0, time.perf_counter()
                elapsed = time.time() - started + elapsed_before
                stop = bool(log({"event": "step", "step": step, "epoch": epoch, "loss": loss_v,
                                 "lr": lr, "grad_norm": gnorm_v, "tokens_per_sec": tps,
                                 "chars_per_sec": tps * data.chars_per_token, "elapsed": elapsed,
                                 "progress": _progress(step, total_steps, elapsed, budget),
                                 "eta": _eta(step, total_steps, elapsed, budget, step_seconds)}))
            last = step == total_steps     # its evaluation and save are the final ones, below
            if step % cfg.eval_every == 0 and not last:
                if math.isnan(run_eval()):
                    if not roll_back("a diverged validation loss"):
                        break
                    continue
                good = _snapshot(model, opt, step, epoch, chunk)
            elif step % cfg.save_every == 0 and not last:
                if not _finite(model):      # never save broken weights as latest.pt
                    if not roll_back("non-finite weights"):
                        break
                    continue
                t0 = time.perf_counter()
                save()
                save_seconds = time.perf_counter() - t0
            if stop and sync.stop_here():
                interrupted = True
                break

        final_loss = run_eval(final=True) if step > 0 or gave_up else math.nan
        if math.isnan(final_loss) and step > 0 and not gave_up:
            # the last steps broke the weights: end on the last good ones instead
            step, epoch, chunk = _restore(good, model, opt)
            state, gave_up = None, "a diverged final validation loss"
            log({"event": "diverged", "step": step, "reason": gave_up, "rollbacks": rollbacks})
            final_loss = run_eval(final=True)
    metrics.close()
    summary = {
        "event": "done", "run_dir": str(run_dir), "steps": step, "epochs": epoch,
        "interrupted": interrupted, "parameters": n_params, "best_val_loss": best_val,
        "elapsed": time.time() - started, "train_loss": last_train_loss,
        **(val_metrics(final_loss, data) if math.isfinite(final_loss) else {}),
        "best_val_bpc": best_val / data.chars_per_token / LN2,
        "rollbacks": rollbacks,
        "diverged": None if gave_up is None else (
            f"training kept diverging (last: {gave_up}); after {rollbacks} rollback(s) to lower learning "
            f"rates the run ended on the last good weights, from step {step}, saved in "
            f"{run_dir}; try a lower --lr"),
    }
    emit(summary)
    return summary


def _progress(step: int, total: int | None, elapsed: float, budget: float | None) -> float:
    parts = []
    if total:
        parts.append(step / total)
    if budget:
        parts.append(elapsed / budget)
    return max(parts) if parts else 0.0


def _eta(step, total, elapsed, budget, step_seconds) -> float | None:
    etas = []
    if total:
        etas.append((total - step) * step_seconds)
    if budget:
        etas.append(max(0.0, budget - elapsed))
    return min(etas) if etas else None


def _rng_state(device: torch.device) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(),
            **({"cuda": torch.cuda.get_rng_state_all()} if device.type == "cuda" else {})}


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _open_log(path: Path):
    """The metrics log, opened for appending after cutting the half-written last line that a
    killed run may have left (so every line stays one JSON record)."""
    try:
        with open(path, "rb+") as f:
            end = pos = f.seek(0, 2)
            while pos > 0:
                start = max(0, pos - (1 << 16))
                f.seek(start)
                cut = f.read(pos - start).rfind(b"\n")
                if cut >= 0:
                    pos = start + cut + 1
                    break
                pos = start
            if pos != end:
                f.truncate(pos)
    except FileNotFoundError:
        pass
    return open(path, "a", encoding="utf-8")


def _diverged(loss: float, vocab_size: int) -> bool:
    """A validation loss that is not finite, or far worse than guessing uniformly."""
    return not math.isfinite(loss) or loss > math.log(max(vocab_size, 2)) + DIVERGED_NATS


def _finite(model: RNNLM) -> bool:
    """All weights finite: one reduction per tensor, run at evaluations, saves and skips only."""
    return bool(torch.stack([p.detach().float().abs().amax() for p in model.parameters()])
                .isfinite().all())


def _snapshot(model, opt, step, epoch, chunk) -> dict[str, Any]:
    """An in-memory copy of the last known-good weights, for rolling back after divergence."""
    return {"model": copy.deepcopy(model.state_dict()), "opt": copy.deepcopy(opt.state_dict()),
            "pos": (step, epoch, chunk)}


def _restore(snap, model, opt) -> tuple[int, int, int]:
    model.load_state_dict(snap["model"])
    opt.load_state_dict(snap["opt"])
    return snap["pos"]
