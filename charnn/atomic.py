"""Atomic file writes: the one mechanism behind every file charnn writes (checkpoints, caches,
downloads, word vectors, exports).

    with atomic_file(path) as f:        # f: a binary file open on a temporary beside `path`
        f.write(data)                   # on success: fsync (durable=True), chmod, rename

The bytes go to a temporary file in the destination's folder, which is renamed over the
destination only once the block ends without an exception, so a reader (or a crash, or a full
disk) sees the old file or the new one, never a torn one; on any exception the temporary file
is removed and nothing is published. Finished files get the ordinary mode of a new file,
0666 less the umask, as `open()` would give them (mkstemp alone would leave them 0600).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


class Pending:
    """A write in progress: `tmp` is the temporary file's path, `target` where it will land
    (a writer that learns the final name only from the content, e.g. a hash, may change it)."""

    def __init__(self, tmp: str, target: Path):
        self.tmp, self.target = tmp, target


@contextlib.contextmanager
def atomic_path(target: Path | str, *, durable: bool = False, suffix: str = ".tmp",
                prefix: str | None = None) -> Iterator[Pending]:
    """A temporary path beside `target` for a writer that opens files by name (gensim, torch's
    ONNX exporter); renamed onto `target` when the block succeeds, removed when it fails.
    The folder must exist. Temporary names start with a dot: `.NAME.XXXX.tmp` by default."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix or f".{target.name}.", suffix=suffix)
    os.close(fd)
    pending = Pending(tmp, target)
    try:
        yield pending
        os.chmod(tmp, 0o666 & ~_umask())
        if durable:
            _fsync_file(tmp)
        os.replace(tmp, pending.target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(pending.target.parent)


@contextlib.contextmanager
def atomic_file(target: Path | str, mode: str = "wb", *, durable: bool = False,
                suffix: str = ".tmp", encoding: str | None = None) -> Iterator[IO]:
    """atomic_path, with the temporary file opened: `mode` "wb" or "w" (text, UTF-8 unless
    `encoding` says otherwise, newlines written as given)."""
    text = "b" not in mode
    with atomic_path(target, durable=durable, suffix=suffix) as pending:
        with open(pending.tmp, mode, encoding=(encoding or "utf-8") if text else None,
                  newline="" if text else None) as f:
            yield f
            f.flush()


def write_bytes(target: Path | str, data: bytes, *, durable: bool = False) -> None:
    with atomic_file(target, "wb", durable=durable) as f:
        f.write(data)


def write_text(target: Path | str, text: str, *, durable: bool = False) -> None:
    with atomic_file(target, "w", durable=durable) as f:
        f.write(text)


def fsync_dir(d: Path | str) -> None:
    """Make a rename in `d` durable (where the system allows opening a folder)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back (charnn is single-threaded
    # where it writes files)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
