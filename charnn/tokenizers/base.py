"""The one small interface every tokenizer implements, and the registry that finds them.

A tokenizer turns text into integer ids and back. It is fitted on the corpus once (`fit`), saved
into the checkpoint as plain data (`state`), and rebuilt from that data (`from_state`), so a
checkpoint needs no side files. Adding a tokenizer is one new module that subclasses Tokenizer
and decorates the class with @register.

The end-of-document token (`charnn train --docs`): a tokenizer made `with_eod()` has one more
id, `eod_id`, that no text encodes to and that decodes to nothing. It is appended after the
vocabulary (so a model's other ids keep their meaning), and a tokenizer's state says where it
is; a state without it (every checkpoint from before documents) loads as before, eod_id None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from charnn.errors import CharnnError

# name -> tokenizer class, filled by @register as the modules are imported (see __init__.py)
REGISTRY: dict[str, type[Tokenizer]] = {}

# A restartable text source: each call yields the corpus again as a stream of str chunks.
TextSource = Callable[[], Iterable[str]]


def register(cls: type[Tokenizer]) -> type[Tokenizer]:
    REGISTRY[cls.name] = cls
    return cls


class StreamDecoder:
    """Turns ids into text one id at a time; `push` returns what is complete so far.

    Multi-byte characters and subwords appear as soon as they are complete, never half-way.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    def push(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def flush(self) -> str:
        return ""


class Tokenizer(ABC):
    name: ClassVar[str]
    # options accepted by fit() (shown as flags by the CLI: --vocab-size, --min-count, ...)
    fit_options: ClassVar[tuple[str, ...]] = ()
    # the end-of-document id, or None (see the module's doc); set by the constructors
    eod_id: int | None = None

    @classmethod
    @abstractmethod
    def fit(cls, source: TextSource, **options: Any) -> Tokenizer:
        """Build the vocabulary from the text that `source()` yields."""

    @abstractmethod
    def encode(self, text: str) -> np.ndarray:
        """text -> 1-D int64 array of ids. Raises CharnnError for text it cannot represent."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """ids -> text."""

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Plain data (str, int, float, list, dict, bytes) that from_state() rebuilds from."""

    @classmethod
    @abstractmethod
    def from_state(cls, state: dict[str, Any]) -> Tokenizer: ...

    def tokens(self, text: str) -> list[str]:
        """The token strings of `text`, for `charnn tokenize` (default: decode each id)."""
        return [self.decode([int(i)]) for i in self.encode(text)]

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)

    def count_chars(self, ids: Sequence[int]) -> int:
        """Characters of text that `ids` stand for, to report loss per character (default: the
        length of the decoded text; tokenizers whose decoding is not the original text refine it).
        An end-of-document token counts as one: the line break or blank line it stands for."""
        return len(self.decode(ids)) + self.count_eod(ids)

    def count_eod(self, ids: Sequence[int]) -> int:
        if self.eod_id is None:
            return 0
        return int(np.count_nonzero(np.asarray(ids) == self.eod_id))

    def with_eod(self) -> Tokenizer:
        """This tokenizer with an end-of-document id appended (itself if it has one)."""
        if self.eod_id is not None:
            return self
        return self._add_eod()

    @abstractmethod
    def _add_eod(self) -> Tokenizer:
        """A copy with the end-of-document id after the last id."""

    def id_of(self, text: str) -> int | None:
        """The id of a one-token string such as "\\n", or None when it is not one token."""
        try:
            ids = self.encode(text)
        except CharnnError:
            return None
        return int(ids[0]) if len(ids) == 1 else None

    def encode_chunks(self, source: TextSource) -> Iterator[np.ndarray]:
        """Encode a whole corpus chunk by chunk (chunks end on line breaks where possible)."""
        for chunk in source():
            if chunk:
                yield self.encode(chunk)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state()}


def escape_token(token: str) -> str:
    """A token as one visible, space-free word for `charnn tokenize`.

    Backslash escapes: \\s space, \\n newline, \\t tab, \\r carriage return, \\\\ backslash, and
    \\xNN for ASCII control characters and for a lone byte that is not a whole UTF-8 character
    (byte-level tokens carry such bytes as surrogate escapes, U+DC80..U+DCFF); \\uNNNN for other
    whitespace (no-break space, line separator, ...).
    """
    out = []
    for ch in token:
        o = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or o == 0x7F or ch.isspace():
            out.append(f"\\x{o:02x}" if o < 0x80 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


_ESCAPES = {" ": "\\s", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def get_tokenizer_class(name: str) -> type[Tokenizer]:
    import charnn.tokenizers  # noqa: F401  (registers the built-in tokenizers)

    try:
        return REGISTRY[name]
    except KeyError:
        raise CharnnError(
            f"unknown tokenizer {name!r}: choose one of {', '.join(sorted(REGISTRY))}", 2
        ) from None


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer saved with Tokenizer.to_dict() (as stored in a checkpoint).

    The entry is data from a file: anything wrong with it (an unknown name such as "../../x",
    a state of the wrong shape) is a CharnnError, never another exception.
    """
    import charnn.tokenizers  # noqa: F401  (registers the built-in tokenizers)

    if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not isinstance(d.get("state"), dict):
        raise CharnnError("the checkpoint's tokenizer entry is damaged")
    cls = REGISTRY.get(d["name"])
    if cls is None:
        raise CharnnError(f"the checkpoint's tokenizer {d['name'][:40]!r} is not one this charnn "
                          f"knows ({', '.join(sorted(REGISTRY))})")
    try:
        return cls.from_state(d["state"])
    except CharnnError:
        raise
    except Exception as e:   # a state forged or damaged in ways from_state did not foresee
        raise CharnnError(f"the checkpoint's {cls.name} tokenizer is damaged ({type(e).__name__})") from None


def check_text(strings: Iterable[str], what: str) -> None:
    """Vocabulary strings from a file must be text that can be written out (no lone surrogates)."""
    try:
        for s in strings:
            s.encode("utf-8")
    except (UnicodeEncodeError, AttributeError):
        raise CharnnError(f"the checkpoint's {what} is damaged (it is not UTF-8 text)") from None
