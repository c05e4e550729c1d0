"""Documents: many short texts (names, titles, tweets, poems) trained as separate texts.

`charnn train --docs MODE` reads the corpus as documents:
    lines         one document per line (empty lines skipped)
    blank-lines   documents separated by one or more blank lines
    files         one document per file (with several files or a directory)
and encodes it with the tokenizer's end-of-document id (EOD) around each document:

    EOD d1 d1 d1 EOD d2 d2 EOD d3 ... EOD

EOD is both the last target of a document (the model learns where a document ends) and the
first input of the next one. The recurrent state is set to zero before every EOD input
(charnn.resets in training, Stepper.reset in sampling), so each document is read from the
same start and nothing before a boundary can reach past it. Sampling a document is then:
zero state, feed EOD, draw until EOD comes out.

Fingerprints (64-bit hashes of each document's token ids) travel in the checkpoint, so
`charnn sample --docs N --novel-only` can drop documents that are in the training text without
the text itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator

MODES = ("lines", "blank-lines", "files")
# what a document's end stands for in plain text (printing documents, counting characters)
SEPARATORS = {"lines": "\n", "blank-lines": "\n\n", "files": "\n\n"}
MAX_FINGERPRINTS = 1 << 20      # 8 MB in a checkpoint; a larger corpus keeps none
_BLANK = re.compile(r"\n(?:[ \t\r\f\v]*\n)+")    # blank lines (whitespace-only ones count)


def check_mode(mode: str | None) -> str | None:
    from charnn.errors import CharnnError

    if mode is not None and mode not in MODES:
        raise CharnnError(f"--docs {mode!r}: choose one of {', '.join(MODES)}", 2)
    return mode


def split(chunks: Iterable[str], mode: str) -> Iterator[str]:
    """Text chunks (one file) -> its documents in `mode` lines or blank-lines; a separator may
    fall across two chunks. Documents are stripped of surrounding line breaks; empty ones skipped."""
    sep = re.compile("\n") if mode == "lines" else _BLANK
    carry = ""
    for chunk in chunks:
        parts = sep.split(carry + chunk)
        carry = parts.pop()              # may continue in the next chunk
        yield from _clean(parts, mode)
    yield from _clean([carry], mode)


def whole(chunks: Iterable[str]) -> Iterator[str]:
    """One file as one document (mode files)."""
    yield from _clean(["".join(chunks)], "files")


def _clean(parts: list[str], mode: str) -> Iterator[str]:
    for p in parts:
        p = p.rstrip("\r") if mode == "lines" else p.strip("\r\n")
        if p.strip():
            yield p


def fingerprint(ids) -> int:
    """A document's token ids -> a 64-bit hash (as a signed int64, to sit in a tensor)."""
    import numpy as np

    raw = hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=8).digest()
    return int.from_bytes(raw, "little", signed=True)


def fingerprint_text(tokenizer, text: str) -> int:
    """The fingerprint a text would have had in the training corpus: its canonical encoding
    (a sampled id sequence may spell the same text with other subwords)."""
    return fingerprint(tokenizer.encode(text))
