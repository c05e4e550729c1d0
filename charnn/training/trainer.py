"""Training with truncated backpropagation through time.

`Trainer` holds a run's state as attributes and reads top to bottom: `run` is the loop, and
each thing the loop does is one method (`train_step`, `evaluate`, `save`, `roll_back`, the
budget bookkeeping). It takes frozen configs and prepared data, writes checkpoints and a
metrics log into the run folder, and reports progress through a callback. It never prints.

Each step takes the next (B, T) chunk of the B parallel streams, runs the model from the state
carried over from the previous chunk, backpropagates, clips the global gradient norm and steps
AdamW; the state is then detached, so gradients stop at chunk boundaries while the values flow
on. The state is reset at each epoch.

Faults are handled around the loop, not inside every line (charnn.training.recovery): a
non-finite step never reaches the weights; a diverged evaluation is never saved and rolls the
run back to the last good weights at a lower learning rate; Ctrl-C stops at a step boundary.

Data-parallel (charnn.training.distributed, under torchrun): each rank trains on its share of
the B streams through DDP, the stop decisions are agreed once per step, and rank 0 alone writes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from charnn import checkpoint as ckpt_io
from charnn.config import ModelConfig, TrainConfig
from charnn.data import batchify, check_trainable, get_chunk, num_chunks
from charnn.machine import amp_dtype, pick_device
from charnn.model import RNNLM, detach_state, num_parameters
from charnn.training import regularize, schedule
from charnn.training.dataset import TrainData
from charnn.training.distributed import Group
from charnn.training.evaluate import LN2, autocast, evaluate, val_metrics
from charnn.training.recovery import (
    MAX_BAD_STEPS,
    MAX_ROLLBACKS,
    ROLLBACK_LR_FACTOR,
    Interrupts,
    Snapshot,
    diverged,
    finite,
)

Callback = Callable[[dict[str, Any]], Optional[bool]]  # return True to stop gracefully
PERIODIC_EVAL_TOKENS = 1 << 20   # periodic evaluations read this prefix of the validation split
FINAL_EVAL_SHARE = 0.04         # under a time budget, the final evaluation takes at most this share
MIN_EVAL_TOKENS = 1 << 15       # ... but never fewer tokens than this
EXIT_SECONDS = 1.0              # kept for the summary and the process exit after the last save
SAVE_BYTES_PER_SEC = 100e6      # a cautious guess at the disk, until the first save is timed
LOG_EVERY = 10                  # steps between step records (metrics.jsonl and the callback)


def train(model_cfg: ModelConfig, cfg: TrainConfig, data: TrainData, run_dir: Path,
          callback: Callback | None = None, resume: dict[str, Any] | None = None,
          started: float | None = None, init_model: Callable[[RNNLM], None] | None = None,
          group: Group | None = None, watch=None) -> dict[str, Any]:
    """Train a model and return a summary dict: Trainer(...).run(). See Trainer."""
    return Trainer(model_cfg, cfg, data, run_dir, callback, resume, started, init_model, group, watch).run()


class Trainer:
    """One training run.

    resume: a loaded checkpoint to continue from exactly. started: time.time() when the command
    began, so --time-budget covers corpus reading and the final evaluation too. init_model: a
    hook run once on a fresh model (e.g. copying word2vec vectors into the embedding).
    group: this process's rank in a data-parallel run (charnn.training.distributed); rank 0
    alone writes files and emits events. Default: a single process. watch: a
    charnn.training.watch.ThroughputWatch that follows the speed the run gets (threads,
    re-planning); when it asks for a new plan the run stops at once, unsaved, and its summary
    carries the plan under "replan" for the caller to restart with.
    """

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, data: TrainData, run_dir: Path,
                 callback: Callback | None = None, resume: dict[str, Any] | None = None,
                 started: float | None = None, init_model: Callable[[RNNLM], None] | None = None,
                 group: Group | None = None, watch=None):
        self.watch = watch
        self.t_start = time.time()
        self.started = started if started is not None else self.t_start
        self.model_cfg, self.cfg, self.data = model_cfg, cfg, data
        self.group = group = group or Group()
        self._callback = callback if callback is not None and group.is_main else None
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for w in check_trainable(len(data.train_ids), len(data.val_ids), cfg.batch_size, cfg.seq_len):
            self.emit({"event": "warning", "message": w})

        group.check_batch(cfg.batch_size)
        self.device = group.device(pick_device(cfg.device))
        self.amp = amp_dtype(self.device, cfg.amp) is not None   # bf16 autocast (CUDA, bf16 CPUs)
        self._build(resume, init_model)

        self.rows = group.rows(cfg.batch_size)                              # this rank's streams
        self.streams = batchify(data.train_ids, cfg.batch_size)[self.rows]  # (B, L) (/W) of the memmap
        self.chunks_per_epoch = num_chunks(self.streams, cfg.seq_len)
        self.total_steps = cfg.max_steps
        if cfg.epochs is not None:
            epoch_steps = cfg.epochs * self.chunks_per_epoch
            self.total_steps = min(self.total_steps, epoch_steps) if self.total_steps else epoch_steps
        self.budget = cfg.time_budget

        # where the run is, and what it has learned so far
        self.step = self.epoch = self.chunk = 0
        self.elapsed_before = 0.0          # seconds of training before a resume
        self.state = None                  # the carried recurrent state, (layers, B, H) each
        self.history: list[dict[str, Any]] = []
        self.best_val = math.inf
        self.lr_scale = 1.0
        self.resumed = resume is not None
        if resume is not None:
            self._resume_from(resume)
        # clocks the budget bookkeeping reads, measured as the run goes
        self.eval_tps = 0.0
        self.step_seconds = 0.0
        self.save_seconds = 0.05 + self._payload_bytes() / SAVE_BYTES_PER_SEC   # until timed
        # fault bookkeeping
        self.last_train_loss = float("nan")
        self.bad_steps = self.rollbacks = 0
        self.gave_up: str | None = None    # why the run ended on the last good weights, if it did
        self.interrupted = False
        self.replan = None                 # a new plan from the watch: the run restarts with it
        self.good = Snapshot(self.model, self.opt, (self.step, self.epoch, self.chunk))
        self.metrics = _open_log(self.run_dir / "metrics.jsonl") if group.is_main \
            else open(os.devnull, "a", encoding="utf-8")
        self._window = (0, time.perf_counter())     # tokens and start of the speed window
        self.lr = self.last_grad_norm = math.nan

    # ------------------------------------------------------------------------------------------
    # set-up

    def _build(self, resume: dict[str, Any] | None, init_model) -> None:
        torch.manual_seed(self.cfg.seed)
        self.model = RNNLM(self.model_cfg)
        if resume is not None:
            self.model.load_state_dict(resume["model"])
        elif init_model is not None:
            init_model(self.model)
        self.model.to(self.device)
        self.net = self.group.wrap(self.model)   # DDP when W > 1: backward averages the gradients
        self.group.seed(self.cfg.seed)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in self.params if p.dim() >= 2]
        no_decay = [p for p in self.params if p.dim() < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.cfg.lr, betas=(0.9, 0.99), **({"fused": True} if self.device.type == "cuda" else {}),
        )

    def _resume_from(self, ckpt: dict[str, Any]) -> None:
        p = ckpt["progress"]
        self.step, self.epoch, self.chunk = int(p["step"]), int(p["epoch"]), int(p["chunk"])
        self.elapsed_before = float(p.get("elapsed", 0.0))
        self.best_val = float(p.get("best_val", math.inf))
        self.lr_scale = float(p.get("lr_scale", 1.0))
        self.history = list(ckpt.get("history", []))
        if ckpt.get("optimizer"):
            self.opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("state"):        # saved whole, (layers, B, H): this rank takes its rows
            self.state = tuple(s[:, self.rows].to(self.device) for s in ckpt["state"])
        rng = self.group.rng_for_rank(ckpt.get("rng", {}))
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])

    # ------------------------------------------------------------------------------------------
    # the loop

    def run(self) -> dict[str, Any]:
        self.emit({"event": "start", "device": str(self.device), "parameters": num_parameters(self.model),
                   "vocab_size": self.model_cfg.vocab_size, "train_tokens": len(self.data.train_ids),
                   "val_tokens": len(self.data.val_ids), "chunks_per_epoch": self.chunks_per_epoch,
                   "total_steps": self.total_steps, "time_budget": self.budget, "step": self.step,
                   "resumed": self.resumed, "run_dir": str(self.run_dir)})
        self.model.train()
        self._window = (0, time.perf_counter())
        with Interrupts() as interrupts:
            # W > 1: stop decisions are agreed by all ranks in each step's all-reduce (StepSync)
            sync = self.group.step_sync(self.deadline_near, lambda: interrupts.requested)
            while self._may_step(sync):
                if not self.train_step(sync):
                    if self.gave_up:
                        break
                    continue                        # skipped or rolled back: go on from there
                if self.watch is not None and self._watch():
                    break                           # a new plan: the caller restarts the run
                stop = self._report_step() if self.step % LOG_EVERY == 0 or self._last() else False
                if self.step % self.cfg.eval_every == 0 and not self._last():
                    if not self._timed_checkpoint():
                        if self.gave_up:
                            break
                        continue
                if stop and sync.stop_here():
                    self.interrupted = True
                    break
            final_loss = math.nan if self.replan is not None else self.final_evaluation()
        self.metrics.close()
        summary = self.summary(final_loss)
        self.emit(summary)
        return summary

    def _may_step(self, sync) -> bool:
        """Before each step: the step limit, the clock, Ctrl-C, and the epoch boundary."""
        if self.total_steps is not None and self.step >= self.total_steps:
            return False
        if sync.deadline():
            return False
        if sync.interrupted():
            self.interrupted = True
            return False
        if self.chunk >= self.chunks_per_epoch:
            self.epoch, self.chunk, self.state = self.epoch + 1, 0, None
            if self.cfg.epochs is not None and self.epoch >= self.cfg.epochs:
                return False
        return True

    def _last(self) -> bool:
        """This step is the last: its evaluation and save are the final ones."""
        return self.step == self.total_steps

    def train_step(self, sync) -> bool:
        """One chunk of truncated BPTT. Returns False when the step was skipped (a non-finite
        loss or gradient) or the run rolled back; self.gave_up is then set if it must end."""
        cfg, t0 = self.cfg, time.perf_counter()
        blk = torch.from_numpy(get_chunk(self.streams, self.chunk, cfg.seq_len)).to(
            self.device, non_blocking=True)
        x, y = blk[:, :-1], blk[:, 1:]                                           # (B, t) each
        cond = self.data.bow.train.chunk(cfg.batch_size, self.chunk, cfg.seq_len, self.device,
                                         self.rows) if self.data.bow is not None else None  # bow per step
        lr = schedule.lr_at(cfg, self.step, self._progress(), self.lr_scale)
        for g in self.opt.param_groups:
            g["lr"] = lr
        # documents: the state is reset before each end-of-document input (charnn.documents)
        resets = {"resets": x == self.data.eod} if self.data.eod is not None else {}
        act = cfg.ar > 0 or cfg.tar > 0       # AR/TAR read the top layer's outputs
        with autocast(self.device, self.amp):
            logits, new_state, *top = self.net(x, self.state, cond, hidden=act, **resets)   # (B, t, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
            penalty = regularize.activation_penalty(top[0], cfg.ar, cfg.tar) if act else 0.0
        self.opt.zero_grad(set_to_none=True)
        (loss + penalty).backward()            # the loss reported stays the cross-entropy
        clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        loss_v, gnorm_v = sync.reduce(loss, gnorm)    # W > 1: global mean loss, agreed flags
        if not (math.isfinite(loss_v) and math.isfinite(gnorm_v)):
            self._skip(loss_v, gnorm_v)
            return False
        self.bad_steps = 0
        self.opt.step()
        self.state = detach_state(new_state)
        self.step += 1
        self.chunk += 1
        self.last_train_loss, self.lr = loss_v, lr
        self.last_grad_norm = gnorm_v
        self._window = (self._window[0] + y.numel() * self.group.world, self._window[1])
        dt = time.perf_counter() - t0
        self.step_seconds = 0.9 * self.step_seconds + 0.1 * dt if self.step > 1 else dt
        return True

    def _timed_checkpoint(self) -> bool:
        """checkpoint(), its time kept out of the speed the watch judges."""
        t0 = time.perf_counter()
        try:
            return self.checkpoint()
        finally:
            if self.watch is not None:
                self.watch.exclude(time.perf_counter() - t0)

    def _watch(self) -> bool:
        """Tell the watch what the step trained; True when it asks for a new plan."""
        event = self.watch.after_step(self.cfg.batch_size * self.cfg.seq_len, self._progress())
        if event is None:
            return False
        self.log({**event, "step": self.step})
        if event["event"] == "replan":
            self.replan = event         # {tokens_per_sec, planned_tokens_per_sec, plan}
        return self.replan is not None

    def _skip(self, loss_v: float, gnorm_v: float) -> None:
        """A non-finite loss or gradient never reaches the weights: the step is skipped, the
        state reset; a few in a row, or weights already broken, roll the run back."""
        self.bad_steps += 1
        self.log({"event": "skip", "step": self.step, "loss": loss_v, "grad_norm": gnorm_v})
        self.opt.zero_grad(set_to_none=True)
        self.state = None
        self.chunk += 1
        # weights already broken (an earlier finite but huge step) cannot recover
        broken = not finite(self.model)
        if self.bad_steps >= MAX_BAD_STEPS or broken:
            self.roll_back("non-finite weights" if broken else f"{self.bad_steps} non-finite steps in a row")

    def _report_step(self) -> bool:
        """A step record (speed over the last LOG_EVERY steps); True if the callback asks to stop."""
        tokens, t0 = self._window
        dt = time.perf_counter() - t0
        tps = tokens / dt if dt > 0 else 0.0
        self._window = (0, time.perf_counter())
        elapsed = self._elapsed()
        return bool(self.log({
            "event": "step", "step": self.step, "epoch": self.epoch, "loss": self.last_train_loss,
            "lr": self.lr, "grad_norm": self.last_grad_norm, "tokens_per_sec": tps,
            "chars_per_sec": tps * self.data.chars_per_token, "elapsed": elapsed,
            "progress": schedule.progress(self.step, self.total_steps, elapsed, self.budget),
            "eta": schedule.eta(self.step, self.total_steps, elapsed, self.budget, self.step_seconds)}))

    def checkpoint(self) -> bool:
        """A periodic evaluation and save. Returns False if it diverged (the run rolled back)."""
        if math.isnan(self.evaluate()):
            self.roll_back("a diverged validation loss")
            return False
        self.good = Snapshot(self.model, self.opt, (self.step, self.epoch, self.chunk))
        return True

    def final_evaluation(self) -> float:
        """The last evaluation (and save). If the last steps broke the weights, the run ends on
        the last good ones instead."""
        if self.step == 0 and not self.gave_up:
            return math.nan
        loss = self.evaluate(final=True)
        if math.isnan(loss) and self.step > 0 and not self.gave_up:
            self.step, self.epoch, self.chunk = self.good.restore(self.model, self.opt)
            self.state, self.gave_up = None, "a diverged final validation loss"
            self.log({"event": "diverged", "step": self.step, "reason": self.gave_up,
                      "rollbacks": self.rollbacks})
            loss = self.evaluate(final=True)
        return loss

    # ------------------------------------------------------------------------------------------
    # evaluation, saving, rolling back

    def evaluate(self, final: bool = False) -> float:
        """Validation loss (nats/token), logged and saved; NaN if it diverged (never saved)."""
        t0 = time.perf_counter()
        cap = self.eval_cap(final)
        # the final evaluation under a budget also stops at the clock, should it run slower than
        # measured (a machine that got busy): the command ends within its budget
        end = self.started + self.budget - self.elapsed_before - self.save_seconds - EXIT_SECONDS \
            if final and self.budget is not None else None
        loss, n = evaluate(self.model, self.data.val_ids, self.cfg.batch_size, self.cfg.seq_len,
                           self.device, self.amp,
                           max_tokens=self.group.broadcast(cap) if final else cap,   # rank 0's clock
                           cond=self.data.bow.val if self.data.bow is not None else None,
                           group=self.group, deadline=end,
                           min_tokens=MIN_EVAL_TOKENS // self.group.world, eod=self.data.eod)
        self.eval_tps = n / max(1e-6, time.perf_counter() - t0)
        if diverged(loss, self.model_cfg.vocab_size) or not finite(self.model):
            # never recorded or saved as good: the caller rolls back
            self.log({"event": "eval_diverged", "step": self.step, "final": final,
                      "val_loss": loss if math.isfinite(loss) else str(loss)})
            return math.nan
        improved = loss < self.best_val
        self.best_val = min(self.best_val, loss)
        rec = {"event": "eval", "step": self.step, "epoch": self.epoch, "final": final, "tokens": n,
               "of_tokens": len(self.data.val_ids), "elapsed": round(self._elapsed(), 3),
               **val_metrics(loss, self.data.chars_per_token), "best_val_loss": self.best_val}
        self.history.append({"step": self.step, "val_loss": loss, "elapsed": rec["elapsed"],
                             "train_loss": self.last_train_loss})
        self.log(rec)
        self.save(best=improved)
        return loss

    def save(self, best: bool = False) -> None:
        """latest.pt (and best.pt); every rank takes part, as the carried state is saved whole,
        (layers, B, H), gathered from the ranks. Its duration feeds the budget's reserve."""
        carried = self.group.gather_rows(self.state)
        rng = self.group.gather_rng(_rng_state(self.device))
        if not self.group.is_main:
            return
        t0 = time.perf_counter()
        p = self.payload(carried, rng)
        ckpt_io.save(p, self.run_dir / ckpt_io.LATEST)
        if best:
            ckpt_io.save(p, self.run_dir / ckpt_io.BEST)
        self.save_seconds = time.perf_counter() - t0
        self.emit({"event": "save", "step": self.step, "best": best})

    def payload(self, carried, rng) -> dict[str, Any]:
        """The checkpoint's plain data (charnn.checkpoint documents the format)."""
        data = self.data
        return {
            "model_config": self.model_cfg.to_dict(),
            "train_config": self.cfg.to_dict(),
            "tokenizer": data.tokenizer.to_dict(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": _to_cpu(self.opt.state_dict()),
            "progress": {"step": self.step, "epoch": self.epoch, "chunk": self.chunk,
                         "best_val": self.best_val, "elapsed": self.elapsed_before + (time.time() - self.t_start),
                         "lr_scale": self.lr_scale, "chars_per_token": data.chars_per_token},
            "state": [s.detach().cpu() for s in carried] if carried is not None else [],
            "rng": rng,
            "history": self.history,
            "corpus": {k: v for k, v in data.source.items() if k in ("path", "digest", "args", "files", "encoding")},
            "num_parameters": num_parameters(self.model),
            **({"bow": data.bow.state()} if data.bow is not None else {}),
            **({"data_config": data.config} if data.config else {}),
            **({"docs": documents_entry(data)} if data.docs else {}),
        }

    def roll_back(self, reason: str) -> None:
        """Divergence: restore the last good weights (those of the last evaluation that was
        finite) and continue with the learning rate divided by 4. Once the rollbacks are used
        up, self.gave_up says why and the run ends on those good weights."""
        self.step, self.epoch, self.chunk = self.good.restore(self.model, self.opt)
        self.state, self.bad_steps = None, 0
        if self.rollbacks >= MAX_ROLLBACKS:
            self.gave_up = reason
            self.log({"event": "diverged", "step": self.step, "reason": reason, "rollbacks": self.rollbacks})
            return
        self.rollbacks += 1
        self.lr_scale *= ROLLBACK_LR_FACTOR
        self.log({"event": "rollback", "step": self.step, "lr_scale": self.lr_scale, "reason": reason})

    # ------------------------------------------------------------------------------------------
    # the budget: the clock, and what to keep in reserve for the end of the run

    def _elapsed(self) -> float:
        """Seconds the run has taken, a resumed run's earlier ones included."""
        return time.time() - self.started + self.elapsed_before

    def _progress(self) -> float:
        return schedule.progress(self.step, self.total_steps, self._elapsed(), self.budget)

    def eval_rate(self) -> float:
        """Validation tokens/s: measured by the last evaluation, else guessed from training
        (a forward pass alone runs at about 3x the training speed per token)."""
        if self.eval_tps:
            return self.eval_tps
        return 3 * self.cfg.batch_size * self.cfg.seq_len / self.step_seconds if self.step_seconds else 0.0

    def eval_cap(self, final: bool) -> int | None:
        """Tokens an evaluation may read. Periodic ones: a prefix of PERIODIC_EVAL_TOKENS. The
        final one: the whole split, unless a time budget is set and the whole split would not
        fit in what is left of it (a 1 GB corpus holds 100M validation tokens)."""
        if not final:
            return PERIODIC_EVAL_TOKENS
        if self.budget is None or self.eval_rate() <= 0:
            return None
        left = self.budget - self._elapsed() - self.save_seconds
        return max(MIN_EVAL_TOKENS, int(max(left, 0.0) * self.eval_rate()))

    def deadline_near(self) -> bool:
        """Time to stop training: what is left of the budget is the reserve for the final
        evaluation (the whole split, or FINAL_EVAL_SHARE of the budget), a save, and the exit."""
        if self.budget is None:
            return False
        rate = self.eval_rate()
        final_eval = min(len(self.data.val_ids) / rate, FINAL_EVAL_SHARE * self.budget) if rate else 0.0
        reserve = 1.2 * final_eval + self.save_seconds + self.step_seconds + EXIT_SECONDS
        return self._elapsed() + reserve >= self.budget

    # ------------------------------------------------------------------------------------------
    # output

    def emit(self, event: dict[str, Any]) -> Optional[bool]:
        return self._callback(event) if self._callback is not None else None

    def log(self, record: dict[str, Any]) -> Optional[bool]:
        """A record for metrics.jsonl and the callback."""
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        return self.emit(record)

    def summary(self, final_loss: float) -> dict[str, Any]:
        cpt = self.data.chars_per_token
        return {
            "event": "done", "run_dir": str(self.run_dir), "steps": self.step, "epochs": self.epoch,
            "interrupted": self.interrupted, "parameters": num_parameters(self.model),
            # the run's whole wall time, a resumed run's earlier sessions included (as the
            # progress line counts it)
            "best_val_loss": self.best_val, "elapsed": self._elapsed(),
            "train_loss": self.last_train_loss,
            **(val_metrics(final_loss, cpt) if math.isfinite(final_loss) else {}),
            "best_val_bpc": self.best_val / cpt / LN2,
            "rollbacks": self.rollbacks,
            "replan": self.replan,
            "diverged": None if self.gave_up is None else (
                f"training kept diverging (last: {self.gave_up}); after {self.rollbacks} rollback(s) "
                f"to lower learning rates the run ended on the last good weights, from step "
                f"{self.step}, saved in {self.run_dir}; try a lower --lr"),
        }

    def _payload_bytes(self) -> int:
        """About the size of a checkpoint: the weights and AdamW's two moments, in fp32."""
        return 12 * num_parameters(self.model)


def documents_entry(data: TrainData) -> dict[str, Any]:
    """The checkpoint's "docs" entry: the mode, and the documents' fingerprints (for
    `charnn sample --novel-only`) unless there are too many to carry."""
    from charnn.documents import MAX_FINGERPRINTS

    fps = data.fingerprints
    keep = fps is not None and len(fps) <= MAX_FINGERPRINTS
    return {"mode": data.docs, **({"fingerprints": torch.from_numpy(fps.copy())} if keep else {})}


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
