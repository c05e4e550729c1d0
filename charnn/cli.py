"""The `charnn` command: a thin Typer app. Each command lives in charnn/commands/ and only
parses, delegates to the library, and renders. Heavy imports (torch, gensim, sentencepiece)
happen inside the commands, so `charnn --help` answers at once.

Errors: the library raises CharnnError; `guard` turns it into one `error: ...` line on stderr and
its exit code (1, or 2 for bad usage). Typer's own usage errors (an unknown option, a value that is
not a number) become one such line too (CharnnGroup), and an OSError (a full disk, a permission)
becomes one line naming the file. A closed stdout pipe ends the command quietly with 0.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Callable

import typer
from typer.core import TyperGroup


# Typer's usage errors, found through its public BadParameter (their module moved between releases)
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class CharnnGroup(TyperGroup):
    """The top-level group: usage errors are one `error: ...` line (exit 2), not Typer's box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if {"--help", "-h"} & set(sys.argv[1:]):
            _quiet_help_pipe()
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except _ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":   # bare `charnn`: the help is the answer
                if e.format_message():
                    sys.stdout.write(e.format_message() + "\n")
                sys.exit(2)
            ctx = getattr(e, "ctx", None)
            where = f" (see {ctx.command_path} --help)" if isinstance(e, _UsageError) and ctx else ""
            message = " ".join(e.format_message().split()).rstrip(".")
            error(f"{message[:1].lower()}{message[1:]}{where}")
            sys.exit(e.exit_code)
        except typer.Abort:
            sys.stderr.write("aborted\n")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=CharnnGroup,
    name="charnn",
    help="Recurrent language models of text: train LSTM/GRU/RNN models on any UTF-8 text, "
    "sample from them, and see text through several tokenizers and vector representations.\n\n"
    "Example: charnn train corpus.txt && charnn sample --temp 0.8 --prime 'ROMEO:'",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _quiet_help_pipe() -> None:
    """`charnn --help | head`: Rich, which draws the help, exits 1 when stdout is closed early;
    charnn's rule for a closed pipe is a quiet exit 0 (Rich documents on_broken_pipe as the hook)."""
    from rich.console import Console

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _silence_stdout()
        raise SystemExit(0)

    Console.on_broken_pipe = on_broken_pipe


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
        except OSError as e:  # the system said no: a full disk, a permission, a vanished file
            where = f"{e.filename}: " if e.filename else ""
            error(f"{where}{e.strerror or e}")
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
    # A file size limit (ulimit -f) would kill the process with SIGXFSZ mid-write; ignored, the
    # write fails with EFBIG instead, and checkpoint.save reports it and keeps the old file.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        app()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(0)
