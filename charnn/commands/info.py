"""charnn info: what a checkpoint holds: model, size, vocabulary, progress, loss curve."""

from __future__ import annotations

import math
import sys
from typing import Any, Optional

import typer


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    app.command(
        "info",
        help="Describe a checkpoint: configuration, parameter count, vocabulary, steps, best "
        "validation loss and the loss curve.\n\nExample: charnn info checkpoints/lee --json",
    )(guard(info_cmd))


def info_cmd(
    checkpoint: Optional[str] = typer.Argument(None, help="Run folder or checkpoint. [default: newest run]"),
    json_out: bool = typer.Option(False, "--json", help="Print everything as JSON."),
):
    from charnn.commands.common import load_model, write_json
    from charnn.model import num_parameters

    path, ckpt, model, tok = load_model(checkpoint)
    progress = ckpt.get("progress", {})
    cpt = float(progress.get("chars_per_token", 1.0)) or 1.0
    history = [h for h in ckpt.get("history", []) if isinstance(h, dict)]
    best = progress.get("best_val")
    vocab_preview = tok.decode(list(range(min(tok.vocab_size, 100)))) if tok.name == "char" else None
    docs = ckpt.get("docs", {})
    info: dict[str, Any] = {
        "checkpoint": str(path),
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
        "history": history,
    }
    if json_out:
        write_json(info)
        return
    m = info["model"]
    w = sys.stdout.write
    w(f"checkpoint   {path}\n")
    w(f"model        {m['layers']} x {m['hidden']} {m['cell'].upper()}, input {m.get('input', 'embedding')} "
      f"({m['embed_dim']}), dropout {m['dropout']}, tied {m['tie_weights']}\n")
    w(f"parameters   {info['parameters']:,}\n")
    w(f"tokenizer    {tok.name}, vocabulary {tok.vocab_size:,}\n")
    if vocab_preview is not None:
        w(f"vocabulary   {vocab_preview!r}\n")
    w(f"trained      {info['step']} steps, epoch {info['epoch']}, {_dur(info['elapsed'])}\n")
    if info["best_val_bpc"] is not None:
        w(f"best val     {best:.4f} nats/token, {info['best_val_bpc']:.4f} bits/char\n")
    if info["corpus"].get("path"):
        files = info["corpus"].get("files") or []
        more = f" and {len(files) - 1:,} more files" if len(files) > 1 else ""
        w(f"corpus       {info['corpus']['path']}{more}\n")
    if docs:
        w(f"documents    {docs['mode']}, each ending in an end-of-document token\n")
    if info["train"].get("init_from"):
        w(f"fine-tuned   from {info['train']['init_from']}\n")
    if len(history) >= 2:
        w("\nvalidation loss (nats/token) by step\n")
        w(plot([h["step"] for h in history], [h["val_loss"] for h in history]) + "\n")


def _dur(s) -> str:
    from charnn.commands.common import fmt_duration

    return fmt_duration(s) if s is not None else "?"


def plot(xs: list[float], ys: list[float], width: int = 60, height: int = 10) -> str:
    """A small text plot of ys against xs, drawn with characters (for terminals and logs)."""
    pts = [(x, y) for x, y in zip(xs, ys) if isinstance(y, (int, float)) and math.isfinite(y)]
    if len(pts) < 2:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    span_x, span_y = (x1 - x0) or 1, (y1 - y0) or 1
    grid = [[" "] * width for _ in range(height)]
    for x, y in pts:
        col = round((x - x0) / span_x * (width - 1))
        row = round((y1 - y) / span_y * (height - 1))
        grid[row][col] = "*"
    lines = []
    for r, row in enumerate(grid):
        label = y1 - r * span_y / (height - 1)
        lines.append(f"{label:8.3f} |{''.join(row)}")
    lines.append(" " * 9 + "+" + "-" * width)
    lines.append(" " * 10 + f"{x0:<{width // 2}g}{x1:>{width - width // 2}g}")
    return "\n".join(lines)
