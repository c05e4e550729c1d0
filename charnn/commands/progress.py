"""Progress on stderr: the one display every long-running command uses.

The library reports through callbacks (events as dicts); the reporters here turn those events
into a `Display`: on a terminal, one status line redrawn in place (a bar and as much of the
status as the terminal's width holds), with permanent lines printed above it; elsewhere (logs,
CI, pipes), plain lines, the status at most every `log_every` seconds. The status line is
transient: when the work ends it disappears and the final lines stand alone.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from charnn.commands.common import fmt_duration

BAR_MIN = 10      # a bar narrower than this says nothing: leave it out
BAR_MAX = 30


class Display:
    """A status line (bar + info) on a terminal, plain periodic lines otherwise."""

    def __init__(self, quiet: bool = False, log_every: float = 10.0):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.log_every = log_every
        self._last_log = -float("inf")
        self._live = None
        self._console = None

    def print(self, text: str) -> None:
        """A permanent line (above the status line on a terminal)."""
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def warn(self, message: str) -> None:
        """A warning line: shown even when quiet (it is not progress)."""
        quiet, self.quiet = self.quiet, False
        self.print(f"warning: {message}")
        self.quiet = quiet

    def status(self, label: str, fraction: float | None, parts: Sequence[str], force: bool = False) -> None:
        """The current status: `label`, a bar for `fraction` (None: no bar) and `parts`, in
        order of importance (on a narrow terminal the last ones are dropped)."""
        if self.quiet:
            return
        if not self.tty:
            if force or time.monotonic() - self._last_log >= self.log_every:
                self._last_log = time.monotonic()
                self.print("  ".join(parts))
            return
        self._start()
        self._live.update(self._line(label, fraction, parts, self._live.console.width))

    @staticmethod
    def _line(label: str, fraction: float | None, parts: Sequence[str], width: int):
        """One line that fits `width` columns: label, bar, then the parts that fit. The first
        part (the step) goes before the bar, the bar before the other parts."""
        from rich.text import Text

        width = max(1, width - 1)      # the last column would wrap on some terminals
        kept: list[str] = []
        used = len(label)
        for i, p in enumerate(parts):
            bar_room = BAR_MIN + 1 if fraction is not None and i > 0 else 0
            if used + 2 + len(p) + bar_room > width:
                break
            kept.append(p)
            used += 2 + len(p)
        info = "  ".join(kept)
        line = Text(label, style="bold")
        if fraction is not None:
            room = width - len(label) - len(info) - 3
            bar = min(BAR_MAX, room)
            if bar >= BAR_MIN:
                done = int(round(bar * min(1.0, max(0.0, fraction))))
                line.append(" ")
                line.append("━" * done, style="magenta")
                line.append("─" * (bar - done), style="grey37")
        if info:
            line.append("  " + info)
        line.truncate(width)
        return line

    def _start(self) -> None:
        if self._live is None:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._live = Live(Text(""), console=Console(stderr=True), refresh_per_second=4,
                              transient=True)
            self._live.start()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class TrainReporter(Display):
    """charnn train's events (charnn.training.trainer) on the Display."""

    def __init__(self, quiet: bool = False, log_every: float = 10.0):
        super().__init__(quiet, log_every)
        self._val = None

    def __call__(self, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "warning":       # not progress: shown with --quiet too
            self.warn(ev["message"])
        elif kind == "off_plan":
            share = ev["tokens_per_sec"] / ev["planned_tokens_per_sec"]
            self.warn(f"training runs at {ev['tokens_per_sec']:,.0f} tokens/s, {share:.0%} of the "
                      f"{ev['planned_tokens_per_sec']:,.0f} planned (the machine is "
                      f"{'busier' if share < 1 else 'quieter'} than when the plan was made); the schedule "
                      "follows the clock, so the run still ends on time")
        if self.quiet:
            return
        if kind in ("message", "plan"):
            self.print(ev["text"])
        elif kind == "start":
            what = "resuming" if ev["resumed"] else "training"
            self.print(
                f"{what} {ev['parameters']:,}-parameter model on {ev['device']}: "
                f"vocabulary {ev['vocab_size']:,}, {ev['train_tokens']:,} train / "
                f"{ev['val_tokens']:,} val tokens, {ev['chunks_per_epoch']:,} steps per epoch"
                + (f", from step {ev['step']}" if ev["resumed"] else "")
                + f" -> {ev['run_dir']}")
        elif kind == "step":
            parts = [f"step {ev['step']}", f"loss {ev['loss']:.4f}",
                     *([f"val {self._val:.4f}"] if self._val is not None else []),
                     f"ETA {fmt_duration(ev['eta'])}", f"{ev['chars_per_sec']:,.0f} chars/s",
                     f"elapsed {fmt_duration(ev['elapsed'])}", f"epoch {ev['epoch']}"]
            self.status("train", ev["progress"], parts)
        elif kind == "eval":
            self._val = ev["val_nats_per_char"]
            label = "final" if ev["final"] else f"step {ev['step']}"
            self.print(f"eval {label}: val loss {ev['val_loss']:.4f} nats/token, "
                       f"{ev['val_nats_per_char']:.4f} nats/char, {ev['val_bpc']:.4f} bits/char, "
                       f"perplexity {ev['val_ppl']:.2f}")
        elif kind == "threads":
            self.print(f"speed: {ev['threads']} thread{'s' if ev['threads'] != 1 else ''} train faster here now "
                       f"({ev['tokens_per_sec']:,.0f} tokens/s against {ev['was_tokens_per_sec']:,.0f} with "
                       f"{ev['was']}): switched")
        elif kind == "skip":
            self.print(f"warning: step {ev['step']}: non-finite loss or gradient, step skipped")
        elif kind == "rollback":
            self.print(f"warning: divergence ({ev.get('reason', 'non-finite loss')}): rolled back to "
                       f"step {ev['step']}, learning rate scaled by {ev['lr_scale']:g}")
        elif kind == "eval_diverged":
            v = ev["val_loss"]
            v = f"{v:.4g}" if isinstance(v, float) else v
            self.print(f"warning: step {ev['step']}: validation loss {v}: diverged, not saved")
        elif kind == "done":
            self.close()


class BuildReporter(Display):
    """charnn embed's events (charnn.representations.word2vec.build) on the Display: tokenizing
    by bytes, then training by epoch with words/s and ETA from gensim's epoch callbacks."""

    def __call__(self, ev: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind = ev["event"]
        if kind == "prepare" and self.tty:
            total = ev["total"] or 1
            self.status("tokenizing", ev["done"] / total, [f"{ev['done'] / 1e6:.1f}/{total / 1e6:.1f} MB"])
        elif kind == "start":
            self.close()
            self.print(
                f"word2vec on {ev['corpus_words']:,} words ({ev['sentences']:,} sentences"
                f"{', tokenized corpus from the cache' if ev['cached'] else ''}): vocabulary "
                f"{ev['vocab']:,} of {ev['distinct']:,} distinct words, {ev['epochs']} epochs, "
                f"{ev['workers']} worker{'s' if ev['workers'] != 1 else ''}")
            if self.tty:
                self.status("training", 0.0, ["epoch 1 running"])
        elif kind == "epoch":
            parts = [f"epoch {ev['epoch']}/{ev['epochs']}", f"{ev['words_per_sec']:,.0f} words/s",
                     f"ETA {fmt_duration(ev['eta'])}", f"elapsed {fmt_duration(ev['elapsed'])}"]
            self.status("training", ev["epoch"] / ev["epochs"], parts, force=True)
        elif kind == "done":
            self.close()


class DownloadBar:
    """A Rich download bar on stderr, driven by corpora.download's (done, total) callback."""

    def __init__(self, quiet: bool = False):
        self.quiet, self._bar, self._task = quiet, None, None

    def __enter__(self) -> DownloadBar:
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
