"""Bytes: one id per UTF-8 byte, 256 symbols. Any text encodes (no unknown symbol ever) and the
vocabulary needs no fitting, at the price of 1-4 steps per character outside ASCII.

A model may sample a byte sequence that is not valid UTF-8; decoding replaces it with U+FFFD
rather than failing. While streaming, a multi-byte character is held back until its last byte.
With an end-of-document token (`charnn train --docs`) the vocabulary is 257: id 256 ends a
document and decodes to nothing.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any

import numpy as np

from charnn.errors import CharnnError
from charnn.tokenizers.base import StreamDecoder, TextSource, Tokenizer, register

EOD = 256      # the end-of-document id, after the 256 bytes


class _ByteStream(StreamDecoder):
    def __init__(self, tokenizer: ByteTokenizer):
        super().__init__(tokenizer)
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, token_id: int) -> str:
        if token_id == EOD:
            return self._dec.decode(b"", final=True)
        return self._dec.decode(bytes((token_id,)))

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


@register
class ByteTokenizer(Tokenizer):
    name = "byte"

    def __init__(self, eod: bool = False):
        self.eod_id = EOD if eod else None

    @classmethod
    def fit(cls, source: TextSource, **options: Any) -> ByteTokenizer:
        return cls()   # nothing to learn: the vocabulary is all 256 byte values

    @property
    def vocab_size(self) -> int:
        return 256 if self.eod_id is None else 257

    def encode(self, text: str) -> np.ndarray:
        # (n_bytes,) int64; surrogates cannot occur in text decoded from UTF-8
        return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        if self.eod_id is not None:
            a = np.asarray(ids, dtype=np.int64)
            ids = a[a != EOD]
        return _as_bytes(ids).decode("utf-8", "replace")

    def tokens(self, text: str) -> list[str]:
        # a byte that is not a whole character shows as a surrogate escape (see escape_token)
        return [bytes((b,)).decode("utf-8", "surrogateescape") for b in text.encode("utf-8")]

    def count_chars(self, ids: Sequence[int]) -> int:
        # characters = bytes that start one: every byte except continuation bytes 10xxxxxx
        # (the end-of-document id, 256, counts as one, as Tokenizer.count_chars says)
        a = np.asarray(ids)
        return int(np.count_nonzero((a & 0xC0) != 0x80))

    def stream_decoder(self) -> StreamDecoder:
        return _ByteStream(self)

    def _add_eod(self) -> ByteTokenizer:
        return ByteTokenizer(eod=True)

    def state(self) -> dict[str, Any]:
        return {"eod": True} if self.eod_id is not None else {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ByteTokenizer:
        if not isinstance(state, dict) or not isinstance(state.get("eod", False), bool):
            raise CharnnError("the checkpoint's byte tokenizer entry is damaged")
        return cls(eod=state.get("eod", False))


def _as_bytes(ids: Sequence[int]) -> bytes:
    a = np.asarray(ids, dtype=np.int64)
    if a.size and (a.min() < 0 or a.max() > 255):
        raise CharnnError("byte ids must be in 0..255")
    return a.astype(np.uint8).tobytes()
