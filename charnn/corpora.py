"""The corpus catalog: built-in corpora that installed packages ship (no network), and
downloadable ones fetched over HTTPS and verified by sha256 before they are moved into place.

Downloads land in ./corpora (or $CHARNN_CORPORA). A failed or mismatched download leaves
nothing behind under that folder.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from charnn.atomic import atomic_file
from charnn.errors import CharnnError

DEFAULT_CORPUS = "lee"


@dataclass(frozen=True)
class Corpus:
    name: str
    description: str
    gensim_file: Optional[str] = None   # built in: a file in gensim's bundled test data
    url: Optional[str] = None           # downloadable: fetched and checked against sha256
    sha256: Optional[str] = None
    size: Optional[int] = None          # bytes

    @property
    def builtin(self) -> bool:
        return self.gensim_file is not None


CATALOG: dict[str, Corpus] = {c.name: c for c in [
    Corpus("lee", "Lee background corpus: 300 Australian news articles, English (ships with gensim)",
           gensim_file="lee_background.cor", size=360_082),
    Corpus("crime-and-punishment", "the opening of Dostoevsky's novel in Russian, Cyrillic text "
           "(ships with gensim)", gensim_file="crime-and-punishment.txt", size=3_795),
    Corpus("tinyshakespeare", "40,000 lines of Shakespeare's plays, as in char-rnn and nanoGPT",
           url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
           sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
           size=1_115_394),
]}


def corpora_dir() -> Path:
    return Path(os.environ.get("CHARNN_CORPORA") or "corpora")


def lookup(name: str) -> Corpus:
    try:
        return CATALOG[name]
    except KeyError:
        raise CharnnError(
            f"no corpus named {name!r} in the catalog (see `charnn corpus list`)"
        ) from None


def local_path(corpus: Corpus) -> Path:
    if corpus.builtin:
        from gensim.test.utils import datapath

        return Path(datapath(corpus.gensim_file))
    return corpora_dir() / f"{corpus.name}.txt"


def is_available(corpus: Corpus) -> bool:
    return local_path(corpus).is_file()


Progress = Callable[[int, Optional[int]], None]  # (bytes so far, total bytes or None)


def get(name: str, url: str | None = None, progress: Progress | None = None) -> Path:
    """The local path of catalog corpus `name`, downloading it first if need be.

    `url` fetches from a mirror instead; the sha256 check is the same, so a mirror is safe.
    """
    corpus = lookup(name)
    dest = local_path(corpus)
    if corpus.builtin or dest.is_file():
        return dest
    download(url or corpus.url, corpus.sha256, dest, progress)
    return dest


def download(url: str, sha256: str, dest: Path, progress: Progress | None = None,
             timeout: float = 30.0) -> None:
    """Stream `url` into a temporary file beside `dest`, check its sha256, then rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    done = 0
    with atomic_file(dest, durable=True, suffix=".part") as out:
        # nothing is published unless the whole download arrives and verifies
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                total = resp.headers.get("Content-Length")
                total = int(total) if total and total.isdigit() else None
                while block := resp.read(1 << 16):
                    h.update(block)
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
                if total is not None and done < total:
                    raise CharnnError(f"download of {url} failed: the connection closed after "
                                      f"{done:,} of {total:,} bytes; nothing was saved")
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            # HTTPException: e.g. IncompleteRead when the server hangs up mid-transfer
            reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
            raise CharnnError(f"download of {url} failed: {reason}") from None
        if h.hexdigest() != sha256:
            raise CharnnError(
                f"download of {url} does not match its checksum "
                f"(sha256 {h.hexdigest()[:16]}..., expected {sha256[:16]}...); nothing was saved"
            )


def resolve(arg: str, progress: Progress | None = None) -> Path:
    """A corpus argument -> a local file: '-' (stdin), an existing path, or a catalog name."""
    from charnn.data import spool_stdin

    if arg == "-":
        return spool_stdin()
    p = Path(arg)
    if p.exists():
        if p.is_dir():
            raise CharnnError(f"{arg} is a directory, not a text file")
        return p
    if arg in CATALOG:
        return get(arg, progress=progress)
    raise CharnnError(f"{arg}: no such file, and no corpus of that name (see `charnn corpus list`)")


# ----------------------------------------------------------------------------------------------
# Many files: `charnn train corpus/ more.txt --glob '*.md'`

SNIFF_BYTES = 1 << 16     # a file whose first 64 KiB hold a NUL byte or no UTF-8 is not text


@dataclass
class Files:
    """What corpus arguments came to: the text files to read, in order, and the files of the
    directories that were passed over for not being text."""

    files: list[Path]
    skipped: list[Path]


def resolve_all(args: list[str], glob: str | None = None, progress: Progress | None = None) -> Files:
    """Corpus arguments -> files. A directory is read recursively in sorted order (hidden files
    and folders left out; with `glob`, only the files whose path inside it matches, as in
    fnmatch: '*.txt' matches at any depth); its non-text files are skipped and counted. A file
    named on its own is read whatever it holds (its errors name it)."""
    if not args:
        raise CharnnError("no corpus given", 2)
    if "-" in args and len(args) > 1:
        raise CharnnError("standard input (-) cannot be read together with other files", 2)
    if glob is not None and not any(a != "-" and Path(a).is_dir() for a in args):
        raise CharnnError(f"--glob {glob} picks files inside a directory: give one as the corpus", 2)
    out = Files([], [])
    for arg in args:
        if arg != "-" and Path(arg).is_dir():
            found = _walk(Path(arg), glob, out.skipped)
            if not found:
                raise CharnnError(f"{arg}: no text files in this directory"
                                  + (f" match --glob {glob}" if glob else ""))
            out.files += found
        else:
            out.files.append(resolve(arg, progress))
    unique: dict[Path, Path] = {}      # a file named twice is read once, where it first came
    for f in out.files:
        unique.setdefault(f.resolve(), f)
    out.files = list(unique.values())
    return out


def _walk(root: Path, glob: str | None, skipped: list[Path]) -> list[Path]:
    import fnmatch

    found = []
    for d, dirs, names in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        for name in sorted(names):
            path = Path(d) / name
            rel = path.relative_to(root).as_posix()
            if name.startswith(".") or (glob is not None and not fnmatch.fnmatch(rel, glob)):
                continue
            if not path.is_file():
                continue
            (found if is_text(path) else skipped).append(path)
    return found


def is_text(path: Path) -> bool:
    """The file's start holds no NUL byte and decodes as UTF-8 (a character cut at the end of
    the sniffed block is fine)."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return False
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(head) - 3 and e.reason == "unexpected end of data"
    return True
