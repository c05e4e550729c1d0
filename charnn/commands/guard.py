"""Errors as a user sees them: one `error: ...` line on stderr and an exit code, never a
traceback.

The library raises CharnnError; `guard` (around every command) turns it into one `error: ...`
line and its exit code (1, or 2 for bad usage). Typer's own usage errors (an unknown option, a
value that is not a number) become one such line too (CharnnGroup), and an OSError (a full disk,
a permission) becomes one line naming the file. A closed stdout pipe ends the command quietly
with 0.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

import typer
from typer.core import TyperGroup

# Typer's usage errors, found through its public BadParameter (their module moved between releases)
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class CharnnGroup(TyperGroup):
    """The top-level group: usage errors are one `error: ...` line (exit 2), not Typer's box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if {"--help", "-h"} & set(sys.argv[1:]):
            quiet_help_pipe()
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


def quiet_help_pipe() -> None:
    """`charnn --help | head`: Rich, which draws the help, exits 1 when stdout is closed early;
    charnn's rule for a closed pipe is a quiet exit 0 (Rich documents on_broken_pipe as the hook)."""
    from rich.console import Console

    def on_broken_pipe(self) -> None:
        self.quiet = True
        silence_stdout()
        raise SystemExit(0)

    Console.on_broken_pipe = on_broken_pipe


def error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def _report(e: BaseException, message: str) -> None:
    """error(message), except in a distributed run, where an error every rank hits alike is
    reported once, by rank 0 (charnn.training.distributed.error_line)."""
    if "WORLD_SIZE" in os.environ:
        from charnn.training.distributed import error_line

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
            silence_stdout()
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


def silence_stdout() -> None:
    # Python would report the broken pipe again when flushing stdout at exit
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
