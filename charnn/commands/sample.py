"""charnn sample: generate text from a trained model, streamed to stdout."""

from __future__ import annotations

import sys
import time
from typing import Optional

import typer

Opt = typer.Option

# Streamed text is flushed at most this often (and at the end): a write per character would cost
# a system call per character, while 1/50 s batches are still smooth to watch.
FLUSH_EVERY = 0.02


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

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
    prime: Optional[str] = Opt(None, "--prime", "-p",
                               help="Text to start from (echoed first). [default: piped stdin, else none]"),
    top_k: int = Opt(0, help="Sample only from the K likeliest tokens (0: off)."),
    top_p: float = Opt(1.0, help="Sample only from the smallest set of tokens holding this much probability (1: off)."),
    seed: Optional[int] = Opt(None, help="Random seed: the same seed gives the same text; with --num-samples, "
                              "sample i is the text --seed SEED+i gives alone (in fp32). [default: random]"),
    stop: Optional[str] = Opt(None, help="Stop a sample when this text appears (not printed; \\n, \\t, \\xNN, "
                              "\\uNNNN escapes work)."),
    num_samples: int = Opt(1, help="Samples to generate, as one batch; printed one after another."),
    separator: str = Opt("\\n\\n", help="Printed between samples (\\n, \\t, \\xNN, \\uNNNN escapes work)."),
    topic: Optional[str] = Opt(None, help="Models trained with --input bow: words to write about, e.g. 'war soldier battle'."),
    quantize: str = Opt("none", help="none, or int8: the recurrent and output weights in int8 (CPU; about "
                        "twice as fast, a little less accurate: see `charnn eval --quantize`)."),
    threads: int = Opt(1, help="CPU threads. At batch 1 a step is a chain of small matrix-vector products "
                       "that a second thread slows down; more can help a large --num-samples."),
    device: str = Opt("cpu", help="cpu, cuda or auto."),
    json_out: bool = Opt(False, "--json", help="One JSON object per sample on stdout instead of text."),
):
    from charnn.commands.common import load_model, unescape
    from charnn.config import SampleConfig
    from charnn.errors import CharnnError

    if threads < 1:
        raise CharnnError("--threads must be at least 1", 2)
    if prime is None and not sys.stdin.isatty():
        prime = sys.stdin.read()
    stop, separator = unescape(stop) if stop else stop, unescape(separator)
    cfg = SampleConfig(length=length, temperature=temp, top_k=top_k, top_p=top_p, prime=prime or "",
                       stop=stop, num_samples=num_samples, seed=seed)
    import torch

    from charnn.sampling import quantize as q

    dev = torch.device("cpu")
    if device != "cpu":
        from charnn.machine import pick_device

        dev = pick_device(device)
    quantize = q.check(quantize, dev)
    torch.set_num_threads(threads)
    path, ckpt, model, tok = load_model(run, mmap=True)

    from charnn.sampling.generate import encode_prime, generate

    encode_prime(tok, cfg.prime)  # unknown prime characters fail before anything is printed
    model.to(dev)
    cond = None
    if topic is not None or model.cfg.input == "bow":
        from charnn.representations.bow import topic_cond

        cond = topic_cond(ckpt, model, topic)                 # (1, bow_dim)
        cond = cond.to(dev)
    pieces = generate(model, tok, cfg, cond=cond, device=dev, quantize=quantize)
    _print_samples(pieces, cfg, separator, json_out, path)


def _print_samples(pieces, cfg, separator: str, json_out: bool, path) -> None:
    """Stream 0 is printed as it comes; the others (and all of them for --json) are kept and
    printed at the end, one after another."""
    num_samples = cfg.num_samples
    out = sys.stdout
    live = not json_out
    kept = [[] for _ in range(num_samples)]
    first_kept = 0 if json_out else 1
    if live:
        out.write(cfg.prime)
        out.flush()
    last, tail = float("-inf"), cfg.prime     # the first piece is flushed at once
    for step in pieces:
        if live and step[0]:
            out.write(step[0])
            tail = step[0]
            now = time.monotonic()
            if now - last >= FLUSH_EVERY:
                out.flush()
                last = now
        for k, p in zip(kept[first_kept:], step[first_kept:]):
            k.append(p)
    texts = [cfg.prime + "".join(k) for k in kept]
    if json_out:
        from charnn.commands.common import write_json

        for i, t in enumerate(texts):
            write_json({"sample": i, "text": t, "checkpoint": str(path)})
        return
    for t in texts[1:]:
        out.write(separator + t)
    if not (texts[-1] if num_samples > 1 else tail).endswith("\n"):
        out.write("\n")
    out.flush()
