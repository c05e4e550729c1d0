"""charnn score: each line (or document) of a text with its log-probability, streamed."""

from __future__ import annotations

import sys
from typing import Optional

import typer

Opt = typer.Option
COLUMNS = ("logprob", "tokens", "bits_per_char", "perplexity")


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    app.command(
        "score",
        help="Score each line of FILE (or stdin) with a trained model, a line in, a line out: its "
        "log-probability in nats (the line's end included), tokens, bits per character and "
        "perplexity, then the line, tab-separated (or --json). Sort by it to rank, filter or "
        "find the odd ones out.\n\n"
        "Example: charnn score checkpoints/names candidates.txt | sort -t$'\\t' -k3,3n | head",
    )(guard(score_cmd))


def score_cmd(
    run: str = typer.Argument(..., metavar="RUN", help="Run folder or checkpoint."),
    file: Optional[str] = typer.Argument(None, metavar="[FILE|-]", help="Text to score.  [default: stdin]"),
    docs: str = Opt("lines", "--docs", metavar="lines|blank-lines|files",
                    help="What one text is: a line, a paragraph between blank lines, or the whole input."),
    tokens: bool = Opt(False, "--tokens", help="Add each token's log-probability (TSV: a column of "
                       "escaped token=logprob pairs before the text)."),
    json_out: bool = Opt(False, "--json", help="One JSON object per text instead of TSV."),
    threads: int = Opt(1, metavar="N", help="CPU threads."),
):
    import torch

    from charnn.commands.common import load_model, write_json
    from charnn.errors import CharnnError
    from charnn.scoring import Scorer, units

    if threads < 1:
        raise CharnnError("--threads must be at least 1", 2)
    torch.set_num_threads(threads)
    path, ckpt, model, tok = load_model(run, mmap=True)
    stream = open_input(file)
    scorer = Scorer(model, tok, ckpt)
    warned = False
    for n, text in enumerate(_decoded(units(stream, docs), file), 1):
        s = scorer.score(text, tokens)
        if s.error and not warned:
            sys.stderr.write(f"warning: text {n} cannot be scored ({s.error}): its logprob is -inf\n")
            warned = True
        if json_out:
            write_json(s.to_dict())
        else:
            sys.stdout.write(tsv_row(s) + "\n")
            sys.stdout.flush()


def open_input(file: str | None):
    """FILE, or stdin for - or none (which must then be piped), as UTF-8 text."""
    import io

    from charnn.data import open_bytes
    from charnn.errors import CharnnError

    if file is None or file == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise CharnnError("give a FILE to score, or pipe text into charnn score", 2)
        raw = getattr(sys.stdin, "buffer", None)
        return io.TextIOWrapper(raw, encoding="utf-8", newline="") if raw is not None else sys.stdin
    return io.TextIOWrapper(open_bytes(file), encoding="utf-8", newline="")


def _decoded(texts, file: str | None):
    """The texts, with a text that is not UTF-8 as a one-line error naming the input."""
    from charnn.errors import CharnnError

    try:
        yield from texts
    except UnicodeDecodeError as e:
        raise CharnnError(f"{file or 'stdin'}: not valid UTF-8 ({e.reason})") from None


def tsv_row(s) -> str:
    """logprob, tokens, bits/char, perplexity[, token=logprob ...], the text (escaped: \\t, \\n)."""
    from charnn.tokenizers import escape_token

    cells = [f"{s.logprob:.4f}", str(s.tokens), f"{s.bits_per_char:.4f}", f"{s.perplexity:.4f}"]
    if s.token_logprobs is not None:
        cells.append(" ".join(f"{escape_token(t)}={lp:.4f}" for t, lp in s.token_logprobs))
    return "\t".join(cells + [s.text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")])
