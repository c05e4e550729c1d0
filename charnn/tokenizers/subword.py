"""Subwords with sentencepiece: byte-pair encoding (bpe) and the unigram language model (unigram).

The sentencepiece model is trained on the corpus itself (in memory, no files) and its serialized
bytes are kept in the tokenizer state, so a checkpoint carries it with no side files.

Settings chosen so decode(encode(text)) == text for any text:
  - normalization_rule_name=identity, remove_extra_whitespaces=False, add_dummy_prefix=False:
    sentencepiece leaves the text as it is (no NFKC, no squeezed or invented spaces);
  - byte_fallback=True: a character the vocabulary lacks becomes its UTF-8 bytes, never <unk>;
  - sentencepiece reads text as sentences, so text is encoded line by line and line breaks are
    an explicit piece: the user-defined symbol "\\n" (id 1);
  - split_digits=True: numbers are spelled digit by digit, as char models see them.
Decoding maps each id to its bytes (a table built once), so decode() and the streaming decoder
agree exactly and a multi-byte character split over byte pieces appears when it is complete.
The end-of-document token (`--docs`) is one id after sentencepiece's, outside its model: it
decodes to no bytes, and the state records it ("eod": True).
"""

from __future__ import annotations

import codecs
import io
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from charnn.errors import CharnnError
from charnn.tokenizers.base import StreamDecoder, TextSource, Tokenizer, register

DEFAULT_VOCAB = 1000
NEWLINE_ID = 1            # user_defined_symbols=["\n"] comes right after <unk> (id 0)
_MIN_VOCAB = 256 + 2      # the byte pieces, <unk> and the newline
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
UNK_SURFACE = " \u2047 "  # sentencepiece's own surface for <unk> (cannot occur with byte fallback)


def _lines(source: TextSource) -> Iterator[str]:
    for chunk in source():
        for line in chunk.split("\n"):
            if line:
                yield line


class _PieceStream(StreamDecoder):
    def __init__(self, tokenizer: SentencePieceTokenizer):
        super().__init__(tokenizer)
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, token_id: int) -> str:
        return self._dec.decode(self.tokenizer.piece_bytes[token_id])

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


class SentencePieceTokenizer(Tokenizer):
    model_type: ClassVar[str]
    fit_options = ("vocab_size",)

    def __init__(self, model: bytes, eod: bool = False):
        import sentencepiece as spm

        self.model = bytes(model)
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=self.model)
        except (RuntimeError, TypeError, ValueError) as e:
            raise CharnnError(f"the sentencepiece model is damaged ({str(e).splitlines()[0][:100]})") from None
        if self.sp.vocab_size() <= NEWLINE_ID or self.sp.id_to_piece(NEWLINE_ID) != "\n":
            raise CharnnError("this sentencepiece model has no newline piece: train it with charnn "
                              "(or with user_defined_symbols=['\\n'] and byte_fallback=True)")
        # id -> the UTF-8 bytes it stands for
        self.piece_bytes: list[bytes] = [self._bytes_of(i) for i in range(self.sp.vocab_size())]
        if eod:
            self.eod_id = len(self.piece_bytes)
            self.piece_bytes.append(b"")

    def _bytes_of(self, i: int) -> bytes:
        sp = self.sp
        if sp.is_byte(i):
            return bytes((int(_BYTE_PIECE.fullmatch(sp.id_to_piece(i)).group(1), 16),))
        if sp.is_unknown(i):
            return UNK_SURFACE.encode()
        if sp.is_control(i):
            return b""
        return sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8")

    @classmethod
    def fit(cls, source: TextSource, vocab_size: int | None = None, **ignored: Any):
        import sentencepiece as spm

        vocab_size = int(vocab_size or DEFAULT_VOCAB)
        if vocab_size < _MIN_VOCAB + 1:
            raise CharnnError(f"--vocab-size must be more than {_MIN_VOCAB} for {cls.name} "
                              "(256 byte pieces, <unk> and the newline come first)", 2)
        if not any(True for _ in _lines(source)):
            raise CharnnError("the corpus holds no text to train sentencepiece on")
        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=_lines(source), model_writer=out, model_type=cls.model_type,
                vocab_size=vocab_size, hard_vocab_limit=False, byte_fallback=True,
                normalization_rule_name="identity", remove_extra_whitespaces=False,
                add_dummy_prefix=False, split_digits=True, allow_whitespace_only_pieces=True,
                user_defined_symbols=["\n"], unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
                input_sentence_size=1_000_000, shuffle_input_sentence=True,
                max_sentence_length=1 << 16, num_threads=os.cpu_count() or 1, minloglevel=2,
            )
        except RuntimeError as e:
            msg = str(e)
            need = re.search(r"required_chars\.\s*(\d+) vs (\d+)", msg)
            if need:
                raise CharnnError(f"--vocab-size {vocab_size} is too small for this corpus: {cls.name} "
                                  f"needs at least {need.group(2)} (256 byte pieces plus its characters)", 2) from None
            raise CharnnError(f"sentencepiece could not train a {cls.name} model: "
                              f"{msg.strip().splitlines()[-1][:200]}") from None
        return cls(out.getvalue())

    @property
    def vocab_size(self) -> int:
        return len(self.piece_bytes)

    def encode(self, text: str) -> np.ndarray:
        lines = text.split("\n")
        flat: list[int] = []
        for ids in self.sp.encode(lines):       # a batch: sentencepiece encodes in C++
            flat.extend(ids)
            flat.append(NEWLINE_ID)
        flat.pop()                              # one fewer line break than lines
        return np.asarray(flat, dtype=np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        table = self.piece_bytes
        if any(int(i) < 0 for i in ids):
            raise CharnnError(f"an id is outside the {self.name} vocabulary")
        try:
            return b"".join([table[int(i)] for i in ids]).decode("utf-8", "replace")
        except IndexError:
            raise CharnnError(f"an id is outside the {self.name} vocabulary") from None

    def tokens(self, text: str) -> list[str]:
        # a byte piece that is not a whole character shows as a surrogate escape (escape_token)
        return [self.piece_bytes[i].decode("utf-8", "surrogateescape") for i in self.encode(text)]

    def stream_decoder(self) -> StreamDecoder:
        return _PieceStream(self)

    def _add_eod(self) -> SentencePieceTokenizer:
        return type(self)(self.model, eod=True)

    def state(self) -> dict[str, Any]:
        return {"model": self.model, **({"eod": True} if self.eod_id is not None else {})}

    @classmethod
    def from_state(cls, state: dict[str, Any]):
        model = state.get("model") if isinstance(state, dict) else None
        if isinstance(model, str):      # base64, as a JSON cache might hold it
            import base64
            model = base64.b64decode(model)
        if not isinstance(model, (bytes, bytearray)) or not model or \
                not isinstance(state.get("eod", False), bool):
            raise CharnnError(f"the checkpoint's {cls.name} model is damaged")
        return cls(bytes(model), eod=state.get("eod", False))

    @classmethod
    def from_file(cls, path) -> SentencePieceTokenizer:
        """A .model file written by sentencepiece (it must have the newline piece)."""
        try:
            data = open(path, "rb").read()
        except OSError as e:
            raise CharnnError(f"{path}: {e.strerror or e}") from None
        return cls(data)


@register
class BPETokenizer(SentencePieceTokenizer):
    name = "bpe"
    model_type = "bpe"


@register
class UnigramTokenizer(SentencePieceTokenizer):
    name = "unigram"
    model_type = "unigram"
