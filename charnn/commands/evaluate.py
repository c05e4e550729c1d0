"""charnn eval: a checkpoint's loss on a held-out text file."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    app.command(
        "eval",
        help="Score a model on a text file: loss in nats per token and per character, bits per "
        "character and perplexity.\n\nExample: charnn eval checkpoints/shakespeare heldout.txt --json",
    )(guard(eval_cmd))


def eval_cmd(
    checkpoint: str = typer.Argument(..., help="Run folder or checkpoint file."),
    file: str = typer.Argument(..., help="Text file (or - for stdin) to score."),
    batch_size: int = typer.Option(32, help="Parallel streams."),
    seq_len: int = typer.Option(256, help="Steps per chunk; the state carries across chunks."),
    quantize: str = typer.Option("none", help="none, or int8: score the model as `charnn sample --quantize "
                                 "int8` runs it (step by step through the sampler, recurrent and output "
                                 "weights in int8), to see what quantizing costs."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
):
    import math

    from charnn import corpora
    from charnn.commands.common import load_model, write_json
    from charnn.errors import CharnnError
    from charnn.sampling import quantize as q
    from charnn.training.dataset import count_chars
    from charnn.training.evaluate import LN2, evaluate

    quantize = q.check(quantize, "cpu")
    path, ckpt, model, tok = load_model(checkpoint)
    text_path = corpora.resolve(file)
    from charnn.checkpoint import docs_mode
    from charnn.data import CorpusText, encode_corpus

    docs = docs_mode(ckpt)      # a document model reads the text as its documents
    ids = encode_corpus(CorpusText((Path(text_path),), docs), tok.name, tokenizer=tok).ids
    eod = tok.eod_id if docs else None
    if len(ids) < 2:
        raise CharnnError(f"{file} is too short to score (it needs at least 2 tokens)")
    from charnn.representations.bow import cond_for

    cond = cond_for(ckpt, tok, ids)
    if quantize == "int8":
        from charnn.sampling.generate import evaluate_stepwise

        loss, n = evaluate_stepwise(model, ids, batch_size, seq_len, cond=cond, quantize=quantize, eod=eod)
    else:
        loss, n = evaluate(model, ids, batch_size, seq_len, cond=cond, eod=eod)
    # evaluate() scores the ids the streams cover; count the characters of exactly those
    B = max(1, min(batch_size, (len(ids) - 1) // 2))
    covered = ids[: (len(ids) // B) * B]
    chars = count_chars(tok, covered)
    nats_char = loss / (chars / len(covered))   # per token -> per character of the text
    res = {"checkpoint": str(path), "file": str(file), "tokens": n, "loss": loss,
           "nats_per_char": nats_char, "bits_per_char": nats_char / LN2, "perplexity": math.exp(min(loss, 50)), "quantize": quantize}
    if json_out:
        write_json(res)
    else:
        sys.stdout.write(
            f"loss {loss:.4f} nats/token  {nats_char:.4f} nats/char  {res['bits_per_char']:.4f} bits/char  "
            f"perplexity {res['perplexity']:.3f}  ({n:,} tokens scored)\n")
