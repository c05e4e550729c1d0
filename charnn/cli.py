"""The `charnn` command: a thin Typer app. Each command lives in charnn/commands/ and only
parses, delegates to the library, and renders. Heavy imports (torch, gensim, sentencepiece)
happen inside the commands, so `charnn --help` answers at once.

Errors: the library raises CharnnError; `guard` turns it into one `error: ...` line on stderr and
its exit code (1, or 2 for bad usage). A closed stdout pipe ends the command quietly with 0.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable

import typer

app = typer.Typer(
    name="charnn",
    help="Recurrent language models of text: train LSTM/GRU/RNN models on any UTF-8 text, "
    "sample from them, and see text through several tokenizers and vector representations.\n\n"
    "Example: charnn train corpus.txt && charnn sample --temp 0.8 --prime 'ROMEO:'",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def _report(e: BaseException, message: str) -> None:
    """error(message), except in a distributed run, where an error every rank hits alike is
    reported once, by rank 0 (charnn.distributed.error_line)."""
    if "WORLD_SIZE" in os.environ:
        from charnn.distributed import error_line

        message = error_line(e, message)
        if message is None:
            return
    error(message)


def guard(fn: Callable) -> Callable:
    """Wrap a command: CharnnError -> `error: ...` + exit code; EPIPE -> quiet exit 0."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from charnn.errors import CharnnError

        try:
            return fn(*args, **kwargs)
        except CharnnError as e:
            _report(e, str(e))
            raise typer.Exit(e.code) from None
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            if os.environ.get("RANK", "0") == "0":
                sys.stderr.write("interrupted\n")
            raise typer.Exit(130) from None
        except typer.Exit:
            raise
        except MemoryError as e:
            _report(e, "out of memory; try a smaller --batch-size, --hidden or corpus")
            raise typer.Exit(1) from None
        except Exception as e:  # a bug, not the user's doing: one line unless asked for more
            if os.environ.get("CHARNN_DEBUG"):
                raise
            _report(e, f"internal error: {type(e).__name__}: {e} (set CHARNN_DEBUG=1 for a traceback)")
            raise typer.Exit(1) from None

    return wrapper


def _silence_stdout() -> None:
    # Python would report the broken pipe again when flushing stdout at exit
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _register() -> None:
    from charnn.commands import corpus, evaluate, info, sample, train

    for module in (train, sample, evaluate, info, corpus):
        module.register(app)
    for optional in ("embed", "tokenize"):
        try:
            module = __import__(f"charnn.commands.{optional}", fromlist=["register"])
        except ImportError:
            continue
        module.register(app)


_register()


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(0)
