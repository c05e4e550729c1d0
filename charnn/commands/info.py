"""charnn info: what a checkpoint holds: model, size, vocabulary, progress, loss curve; with
--plot, the loss curves of one or several runs as a picture."""

from __future__ import annotations

import math
import sys
from typing import Any, Optional

import typer

from charnn.commands.textplot import plot  # noqa: F401  (charnn.commands.info.plot, as before)


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    app.command(
        "info",
        help="Describe a checkpoint: configuration, parameter count, vocabulary, steps, best "
        "validation loss and the loss curve. Several runs are described one after another; "
        "--plot draws their loss curves in one chart.\n\n"
        "Example: charnn info checkpoints/lee --json\n\n"
        "Example: charnn info checkpoints/rnn checkpoints/gru checkpoints/lstm --plot loss.png",
    )(guard(info_cmd))


def info_cmd(
    runs: Optional[list[str]] = typer.Argument(None, help="Run folders or checkpoints. [default: the newest run]"),
    json_out: bool = typer.Option(False, "--json", help="Print everything as JSON (one line per run)."),
    plot_file: Optional[str] = typer.Option(
        None, "--plot", help="Also draw the loss curves into this image file (.png, .svg or .pdf): training "
        "and validation loss against steps and against wall-clock time, learning rate on a second axis; "
        "several runs are overlaid. Needs matplotlib: pip install 'charnn[plot]'."),
):
    from charnn.run import load

    if plot_file is not None:
        from charnn.inspect.plots import check_path, pyplot

        check_path(plot_file)
        pyplot()                                  # a missing matplotlib fails before any output
    loaded = [load(r) for r in (runs or [None])]
    for k, run in enumerate(loaded):
        if json_out:
            from charnn.commands.common import write_json

            write_json(describe(run))
        else:
            sys.stdout.write("\n" if k else "")
            show(run)
    if plot_file is not None:
        draw(loaded, plot_file)


def describe(run) -> dict[str, Any]:
    """A run's facts as plain data (the --json output)."""
    from charnn.model import num_parameters

    ckpt, model, tok = run.ckpt, run.model, run.tokenizer
    progress = ckpt.get("progress", {})
    cpt = float(progress.get("chars_per_token", 1.0)) or 1.0
    best = progress.get("best_val")
    docs = ckpt.get("docs", {})
    return {
        "checkpoint": str(run.path),
        "format_version": ckpt.get("version"),
        "model": model.cfg.to_dict(),
        "train": ckpt.get("train_config", {}),
        "tokenizer": tok.name,
        "vocab_size": tok.vocab_size,
        "parameters": num_parameters(model),
        "step": progress.get("step"),
        "epoch": progress.get("epoch"),
        "elapsed": progress.get("elapsed"),
        "best_val_loss": best,
        "best_val_bpc": best / cpt / math.log(2) if isinstance(best, float) and math.isfinite(best) else None,
        "corpus": ckpt.get("corpus", {}),
        "documents": {"mode": docs["mode"], "fingerprints": len(docs.get("fingerprints", []))} if docs else None,
        "history": [h for h in ckpt.get("history", []) if isinstance(h, dict)],
    }


def show(run) -> None:
    """The description as text, with a loss curve drawn in characters."""
    info, tok = describe(run), run.tokenizer
    m, best = info["model"], info["best_val_loss"]
    w = sys.stdout.write
    w(f"checkpoint   {run.path}\n")
    w(f"model        {m['layers']} x {m['hidden']} {m['cell'].upper()}, input {m.get('input', 'embedding')} "
      f"({m['embed_dim']}), dropout {m['dropout']}, tied {m['tie_weights']}\n")
    w(f"parameters   {info['parameters']:,}\n")
    w(f"tokenizer    {tok.name}, vocabulary {tok.vocab_size:,}\n")
    if tok.name == "char":
        w(f"vocabulary   {tok.decode(list(range(min(tok.vocab_size, 100))))!r}\n")
    w(f"trained      {info['step']} steps, epoch {info['epoch']}, {_dur(info['elapsed'])}\n")
    if info["best_val_bpc"] is not None:
        w(f"best val     {best:.4f} nats/token, {info['best_val_bpc']:.4f} bits/char\n")
    if info["corpus"].get("path"):
        files = info["corpus"].get("files") or []
        more = f" and {len(files) - 1:,} more files" if len(files) > 1 else ""
        w(f"corpus       {info['corpus']['path']}{more}\n")
    if info["documents"]:
        w(f"documents    {info['documents']['mode']}, each ending in an end-of-document token\n")
    if info["train"].get("init_from"):
        w(f"fine-tuned   from {info['train']['init_from']}\n")
    w("\n" + text_curve(run, info["history"]) + "\n")


def text_curve(run, history: list[dict]) -> str:
    """The validation curve when there are two evaluations or more, else the training loss
    logged in metrics.jsonl, else a line that says why there is no curve."""
    if len(history) >= 2:
        return "validation loss (nats/token) by step\n" + plot([h["step"] for h in history],
                                                              [h.get("val_loss") for h in history])
    from charnn.inspect.curves import read_curves

    curves = read_curves(run.path.parent, run.ckpt)
    evals, steps = _n(len(history), "evaluation"), _n(len(curves.steps), "logged training step")
    if len(curves.steps) >= 2:
        return (f"training loss (nats/token) by step, from metrics.jsonl (the run has {evals}, too few for "
                "a validation curve)\n" + plot(curves.steps, curves.train))
    return (f"no loss curve: the run has {evals} and {steps} (a curve needs two; training steps are logged "
            "every 10 steps in metrics.jsonl)")


def _n(k: int, what: str) -> str:
    return f"{k} {what}{'' if k == 1 else 's'}"


def draw(runs: list, path: str) -> None:
    """The loss chart of `runs` into `path`; runs with nothing logged are left out, saying so."""
    from charnn.errors import CharnnError
    from charnn.inspect.curves import read_curves
    from charnn.inspect.plots import loss_chart

    curves = []
    for run in runs:
        c = read_curves(run.path.parent, run.ckpt, name=run.name)
        if c.steps or c.val_steps:
            curves.append(c)
        else:
            sys.stderr.write(f"warning: {run.path}: nothing to draw (no training steps logged in "
                             f"{run.path.parent / 'metrics.jsonl'} and no evaluations)\n")
    if not curves:
        raise CharnnError("nothing to draw: no run has logged training steps or evaluations")
    out = loss_chart(curves, path)
    sys.stderr.write(f"wrote {out}\n")


def _dur(s) -> str:
    from charnn.commands.common import fmt_duration

    return fmt_duration(s) if s is not None else "?"
