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
    unknown: str = typer.Option("error", "--unknown", metavar="error|skip",
                                help="Characters a char model has never seen: error, or skip them (they "
                                "are counted, reported, and left out of the text and of the per-character "
                                "loss)."),
    encoding: str = typer.Option("utf-8", "--encoding", metavar="NAME", help="The text's encoding (e.g. latin-1)."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
):
    from charnn import corpora
    from charnn.commands.common import at_least, load_model, write_json
    from charnn.errors import CharnnError
    from charnn.sampling import quantize as q
    from charnn.training.evaluate import score_ids

    at_least(1, batch_size=batch_size, seq_len=seq_len)
    if unknown not in ("error", "skip"):
        raise CharnnError(f"--unknown {unknown}: choose error or skip", 2)
    quantize = q.check(quantize, "cpu")
    path, ckpt, model, tok = load_model(checkpoint)
    from charnn.checkpoint import docs_mode

    docs = docs_mode(ckpt)      # a document model reads the text as its documents
    ids, skipped = _read(Path(corpora.resolve(file)), tok, encoding, unknown, docs)
    if len(ids) < 2:
        raise CharnnError(f"{file} is too short to score (it needs at least 2 tokens)")
    res = {"checkpoint": str(path), "file": str(file),
           **score_ids(model, ckpt, tok, ids, batch_size, seq_len, quantize, eod=tok.eod_id if docs else None),
           "skipped_chars": sum(skipped.values()), "skipped": skipped}
    if skipped:
        shown = ", ".join(f"{c!r} x{n}" for c, n in sorted(skipped.items(), key=lambda kv: -kv[1])[:8])
        sys.stderr.write(f"skipped {res['skipped_chars']:,} character(s) the model has never seen "
                         f"({shown}): left out of the text and of the loss\n")
    if json_out:
        write_json(res)
    else:
        sys.stdout.write(
            f"loss {res['loss']:.4f} nats/token  {res['nats_per_char']:.4f} nats/char  "
            f"{res['bits_per_char']:.4f} bits/char  perplexity {res['perplexity']:.3f}  "
            f"({res['tokens']:,} tokens scored)\n")


def _read(path: Path, tok, encoding: str, unknown: str, docs: str | None):
    """The file's ids, and the characters left out ({} unless --unknown skip)."""
    from charnn.data import CorpusText, encode_corpus, encode_known
    from charnn.errors import CharnnError

    if unknown == "skip" and not docs:
        return encode_known(path, tok, encoding)
    if unknown == "skip":
        raise CharnnError("--unknown skip reads the text as one stream; a document model's text is read "
                          "as documents: leave --unknown out", 2)
    return encode_corpus(CorpusText((path,), docs, encoding), tok.name, tokenizer=tok).ids, {}
