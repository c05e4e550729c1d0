"""The `charnn` command: a thin Typer app that registers the commands, nothing else. Each
command lives in charnn/commands/ and only parses, delegates to the library, and renders; the
error guard lives there too (charnn.commands.guard). Heavy imports (torch, gensim,
sentencepiece) happen inside the commands, so `charnn --help` answers at once.
"""

from __future__ import annotations

import signal
import sys

import typer

from charnn.commands import corpus, embed, evaluate, export, info, inspect, sample, score, serve, tokenize, train
from charnn.commands.guard import CharnnGroup, silence_stdout

app = typer.Typer(
    cls=CharnnGroup,
    name="charnn",
    help="Recurrent language models of text: train LSTM/GRU/RNN models on any UTF-8 text, "
    "sample from them, and see text through several tokenizers and vector representations.\n\n"
    "Example: charnn train corpus.txt && charnn sample --temp 0.8 --prime 'ROMEO:'",
    no_args_is_help=True,
    add_completion=True,       # charnn --install-completion [bash|zsh|fish]
    rich_markup_mode=None,      # plain help: fits 80 columns, shows every default, pipes cleanly
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


for _module in (train, sample, score, evaluate, info, inspect, corpus, embed, tokenize, serve, export):
    _module.register(app)


def main() -> None:
    # A file size limit (ulimit -f) would kill the process with SIGXFSZ mid-write; ignored, the
    # write fails with EFBIG instead, and checkpoint.save reports it and keeps the old file.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        app()
    except BrokenPipeError:
        silence_stdout()
        sys.exit(0)
