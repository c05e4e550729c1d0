"""charnn sample: generate text from a trained model, streamed to stdout."""

from __future__ import annotations

import sys
from typing import Optional

import typer

Opt = typer.Option


def register(app: typer.Typer) -> None:
    from charnn.cli import guard

    app.command(
        "sample",
        help="Generate text from a trained model and stream it to stdout. RUN is a run folder, a "
        "checkpoint file or a run name under checkpoints/ (default: the newest run). The prime "
        "comes from --prime or from piped stdin.\n\n"
        "Example: charnn sample --temp 0.8 --prime 'ROMEO:' --length 500 | less",
    )(guard(sample_cmd))


def sample_cmd(
    run: Optional[str] = typer.Argument(None, help="Run folder or checkpoint. [default: newest under checkpoints/]"),
    temp: float = Opt(1.0, "--temp", "-t", help="Temperature: lower is safer, higher is wilder; 0 is greedy."),
    length: int = Opt(1000, "--length", "-n", help="Tokens to generate (characters for char models)."),
    prime: Optional[str] = Opt(None, "--prime", "-p", help="Text to start from (echoed first). [default: piped stdin, else none]"),
    top_k: int = Opt(0, help="Sample only from the K likeliest tokens (0: off)."),
    top_p: float = Opt(1.0, help="Sample only from the smallest set of tokens holding this much probability (1: off)."),
    seed: Optional[int] = Opt(None, help="Random seed: the same seed gives the same text. [default: random]"),
    stop: Optional[str] = Opt(None, help="Stop a sample when this text appears (not printed)."),
    num_samples: int = Opt(1, help="Samples to generate, as one batch; printed one after another."),
    separator: str = Opt("\n\n", help="Printed between samples."),
    topic: Optional[str] = Opt(None, help="Models trained with --input bow: words to write about, e.g. 'war soldier battle'."),
    device: str = Opt("cpu", help="cpu, cuda or auto."),
    json_out: bool = Opt(False, "--json", help="One JSON object per sample on stdout instead of text."),
):
    from charnn.commands.common import load_model, write_json
    from charnn.config import SampleConfig

    if prime is None and not sys.stdin.isatty():
        prime = sys.stdin.read()
    stop = stop.encode().decode("unicode_escape") if stop and "\\" in stop else stop
    cfg = SampleConfig(length=length, temperature=temp, top_k=top_k, top_p=top_p, prime=prime or "",
                       stop=stop, num_samples=num_samples, seed=seed)
    path, ckpt, model, tok = load_model(run)

    from charnn.sample import generate, encode_prime
    from charnn.train import pick_device

    from charnn.bow import topic_cond

    encode_prime(tok, cfg.prime)  # unknown prime characters fail before anything is printed
    dev = pick_device(device)
    model.to(dev)
    cond = topic_cond(ckpt, model, topic)                 # (1, bow_dim) or None
    cond = cond.to(dev) if cond is not None else None
    out = sys.stdout
    texts = [cfg.prime] * num_samples
    live = not json_out
    if live:
        out.write(cfg.prime)
        out.flush()
    for pieces in generate(model, tok, cfg, cond=cond, device=dev):
        if live and pieces[0]:
            out.write(pieces[0])
            out.flush()
        texts = [t + p for t, p in zip(texts, pieces)]
    if json_out:
        for i, t in enumerate(texts):
            write_json({"sample": i, "text": t, "checkpoint": str(path)})
        return
    for t in texts[1:]:
        out.write(separator + t)
    if not texts[-1].endswith("\n"):
        out.write("\n")
    out.flush()
