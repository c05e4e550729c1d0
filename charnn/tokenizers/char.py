"""Characters: one id per Unicode code point (not per byte), so Cyrillic, CJK and emoji are
single symbols. Ids are ordered by code point, as in char-rnn, except that characters added
by fine-tuning (`extended`) come after the existing ones, so no character changes its id.

The end-of-document token sits in the vocabulary as EOD_CHAR, a Unicode noncharacter (reserved
for a program's internal use); text never encodes to it and it decodes to nothing.

Encoding is vectorised: the text is viewed as UTF-32 code points (a uint32 array) and mapped
through a lookup table, which runs at hundreds of MB/s instead of a Python loop's few MB/s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from charnn.errors import CharnnError
from charnn.tokenizers.base import TextSource, Tokenizer, check_text, register

_MAX_CP = 0x110000
EOD_CHAR = "\uffff"


def _codepoints(text: str) -> np.ndarray:
    """(len(text),) code points: uint8 for ASCII text, uint32 otherwise.

    str.isascii() is O(1) (CPython keeps the flag) and encoding ASCII is a copy, so plain-ASCII
    corpora skip the UTF-32 encoding, a quarter of the memory traffic. Surrogates cannot occur
    in text decoded from UTF-8."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def describe_chars(chars: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(c) for c in list(chars)[:limit])
    more = len(chars) - limit
    return shown + (f" and {more} more" if more > 0 else "")


@register
class CharTokenizer(Tokenizer):
    name = "char"

    def __init__(self, chars: Sequence[str], eod: int | None = None):
        if not chars:
            raise CharnnError("a character vocabulary cannot be empty")
        self.chars: list[str] = list(chars)
        if eod is not None and not (0 <= eod < len(self.chars) and self.chars[eod] == EOD_CHAR):
            raise CharnnError("the character vocabulary's end-of-document entry is damaged")
        self.eod_id = eod
        cps = np.array([ord(c) for c in self.chars], dtype=np.int64)
        # code point -> id, -1 where the character is not in the vocabulary; at least 256 long,
        # so any uint8 code point (ASCII text) indexes it without a bounds check
        self._lut = np.full(max(256, int(cps.max()) + 1), -1, dtype=np.int64)
        self._lut[cps] = np.arange(len(cps))
        self._chars_arr = np.array(self.chars, dtype=object)
        if eod is not None:           # text never encodes to the end of a document
            self._lut[ord(EOD_CHAR)] = -1
            self._chars_arr[eod] = ""
        self._lut32 = self._lut.astype(np.int32)

    @classmethod
    def fit(cls, source: TextSource, **options: Any) -> CharTokenizer:
        seen = np.zeros(_MAX_CP, dtype=bool)
        for chunk in source():
            if chunk:
                seen[_codepoints(chunk)] = True   # a scatter: ~7x faster than np.unique
        cps = np.flatnonzero(seen)
        if len(cps) == 0:
            raise CharnnError("the corpus is empty")
        return cls([chr(int(c)) for c in cps])

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return self._encode(text, self._lut)

    def encode_chunks(self, source: TextSource) -> Iterator[np.ndarray]:
        # a corpus is written as uint8/uint16/int32 ids: looking them up as int32 halves the memory
        # traffic of int64 (the encoding of a 1 GB corpus is bound by it)
        for chunk in source():
            if chunk:
                yield self._encode(chunk, self._lut32)

    def _encode(self, text: str, lut: np.ndarray) -> np.ndarray:
        ids, cps, bad = self._lookup(text, lut)
        if bad is not None and bad.any():
            missing = sorted({chr(int(c)) for c in cps[bad]})
            raise CharnnError(
                f"{len(missing)} character(s) not in the model's vocabulary: {describe_chars(missing)}"
            )
        return ids

    def encode_known(self, text: str) -> tuple[np.ndarray, list[str]]:
        """The ids of the characters in the vocabulary, and the characters left out (in order):
        for scoring a text that holds characters the model has never seen."""
        ids, cps, bad = self._lookup(text, self._lut)
        if bad is None or not bad.any():
            return ids, []
        return ids[~bad], [chr(int(c)) for c in cps[bad]]

    @staticmethod
    def _lookup(text: str, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(ids, code points, mask of the characters not in the vocabulary or None: all known)."""
        cps = _codepoints(text)
        if len(cps) == 0:
            return np.zeros(0, dtype=lut.dtype), cps, None
        if cps.dtype == np.uint8:
            ids = lut.take(cps)               # take: several times faster than lut[cps]
            if ids.min() >= 0:                # one reduction, no mask, in the common case
                return ids, cps, None
            return ids, cps, ids < 0
        inside = cps < len(lut)
        ids = lut.take(np.where(inside, cps, 0))
        return ids, cps, (~inside) | (ids < 0)

    def decode(self, ids: Sequence[int]) -> str:
        a = np.asarray(ids, dtype=np.int64)
        if a.size and (a.min() < 0 or a.max() >= len(self.chars)):
            raise CharnnError(f"an id is outside the character vocabulary (0..{len(self.chars) - 1})")
        return "".join(self._chars_arr[a])

    def tokens(self, text: str) -> list[str]:
        return list(text)

    def extended(self, chars: Sequence[str]) -> CharTokenizer:
        """This vocabulary plus the characters of `chars` it lacks, appended in code point
        order after every existing id (fine-tuning: an old character keeps its id and so its
        rows of the model, never remapped)."""
        new = sorted(set(chars) - set(self.chars) - {EOD_CHAR})
        return CharTokenizer(self.chars + new, self.eod_id) if new else self

    def _add_eod(self) -> CharTokenizer:
        if EOD_CHAR in self.chars:
            raise CharnnError("the text holds U+FFFF, which charnn reserves for the end of a document")
        return CharTokenizer(self.chars + [EOD_CHAR], len(self.chars))

    def state(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars), **({"eod": self.eod_id} if self.eod_id is not None else {})}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CharTokenizer:
        chars = state.get("chars") if isinstance(state, dict) else None
        if not isinstance(chars, str) or not chars or len(set(chars)) != len(chars):
            raise CharnnError("the checkpoint's character vocabulary is damaged")
        check_text([chars], "character vocabulary")
        eod = state.get("eod")
        if eod is not None and (not isinstance(eod, int) or isinstance(eod, bool)):
            raise CharnnError("the checkpoint's character vocabulary is damaged")
        return cls(list(chars), eod)
