"""Rendering training progress on stderr: a Rich progress line on a terminal, plain periodic
log lines otherwise (logs, CI, pipes). train() knows nothing of this; it emits events."""

from __future__ import annotations

import sys
import time
from typing import Any

from charnn.commands.common import fmt_duration


class TrainReporter:
    def __init__(self, quiet: bool = False, log_every: float = 10.0):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.log_every = log_every
        self._last_log = 0.0
        self._progress = None
        self._task = None
        self._val = "val -"

    def _print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def __call__(self, ev: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind = ev.get("event")
        if kind == "start":
            what = "resuming" if ev["resumed"] else "training"
            self._print(
                f"{what} {ev['parameters']:,}-parameter model on {ev['device']}: "
                f"vocabulary {ev['vocab_size']:,}, {ev['train_tokens']:,} train / "
                f"{ev['val_tokens']:,} val tokens, {ev['chunks_per_epoch']:,} steps per epoch"
                + (f", from step {ev['step']}" if ev["resumed"] else "")
                + f" -> {ev['run_dir']}"
            )
            if self.tty:
                from rich.console import Console
                from rich.progress import BarColumn, Progress, TextColumn

                self._progress = Progress(
                    TextColumn("[bold]{task.description}"), BarColumn(bar_width=24),
                    TextColumn("{task.fields[info]}"),
                    console=Console(stderr=True), transient=False,
                )
                self._progress.start()
                self._task = self._progress.add_task("train", total=1000, info="")
        elif kind == "step":
            line = (f"step {ev['step']:>6}  epoch {ev['epoch']}  loss {ev['loss']:.4f}  {self._val}  "
                    f"{ev['chars_per_sec']:,.0f} chars/s  elapsed {fmt_duration(ev['elapsed'])}  "
                    f"ETA {fmt_duration(ev['eta'])}")
            if self._progress is not None:
                self._progress.update(self._task, completed=int(1000 * min(1.0, ev["progress"])),
                                      info=line)
            elif time.monotonic() - self._last_log >= self.log_every:
                self._last_log = time.monotonic()
                self._print(line)
        elif kind == "eval":
            self._val = f"val {ev['val_nats_per_char']:.4f} ({ev['val_bpc']:.3f} bits/char)"
            label = "final" if ev["final"] else f"step {ev['step']}"
            self._print(f"eval {label}: val loss {ev['val_loss']:.4f} nats/token, "
                        f"{ev['val_nats_per_char']:.4f} nats/char, {ev['val_bpc']:.4f} bits/char, "
                        f"perplexity {ev['val_ppl']:.2f}")
        elif kind == "warning":
            self._print(f"warning: {ev['message']}")
        elif kind == "skip":
            self._print(f"warning: step {ev['step']}: non-finite loss or gradient, step skipped")
        elif kind == "rollback":
            self._print(f"warning: divergence ({ev.get('reason', 'non-finite loss')}): rolled back to "
                        f"step {ev['step']}, learning rate scaled by {ev['lr_scale']:g}")
        elif kind == "eval_diverged":
            v = ev["val_loss"]
            v = f"{v:.4g}" if isinstance(v, float) else v
            self._print(f"warning: step {ev['step']}: validation loss {v}: diverged, not saved")
        elif kind == "done":
            self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class DownloadBar:
    """A Rich download bar on stderr, driven by corpora.download's (done, total) callback."""

    def __init__(self, quiet: bool = False):
        self.quiet, self._bar, self._task = quiet, None, None

    def __enter__(self) -> "DownloadBar":
        return self

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            self._bar = Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("download", total=total)
        self._bar.update(self._task, completed=done)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
