"""Words: words and punctuation as tokens, newlines kept as tokens so generated text keeps its
lines. `split_words` is also what `charnn embed` trains word2vec on, so word vectors line up
with word-level language models. WordTokenizer (below) builds a vocabulary over its tokens.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from charnn.errors import CharnnError
from charnn.tokenizers.base import StreamDecoder, TextSource, Tokenizer, check_text, register

# a word (letters/digits, inner apostrophes and hyphens kept: don't, well-known), a newline, or
# any other single non-space character (punctuation, symbols)
WORD_RE = re.compile(r"\w+(?:['’\-]\w+)*|\n|[^\w\s]", re.UNICODE)


def split_words(text: str) -> list[str]:
    """'Hello, world.\\n' -> ['Hello', ',', 'world', '.', '\\n']"""
    return WORD_RE.findall(text)


# ----------------------------------------------------------------------------------------------
# The word tokenizer: a vocabulary of the most frequent tokens of split_words, plus <unk>

UNK = "<unk>"
EOD = "<eod>"    # the end-of-document token: split_words never yields it ("<", "eod", ">")
# Spacing when joining tokens back into text: split_words drops the spaces, so decoding puts one
# between tokens except after an opening bracket or quote and before closing punctuation.
NO_SPACE_BEFORE = frozenset(".,;:!?)]}%»”’…\n" "。，、！？；：）」』】")
NO_SPACE_AFTER = frozenset("([{«“‘¿¡\n" "（「『【")
TOGGLE_QUOTES = frozenset('"')   # straight quotes: opening and closing alternate


class _WordStream(StreamDecoder):
    """Decides the space before each token from the previous token alone, so streaming and
    decode() agree and text appears word by word."""

    def __init__(self, tokenizer: WordTokenizer | None = None):
        self.tokenizer = tokenizer
        self.prev: str | None = None      # None at the start of the text and after a newline
        self.quote_open = False           # a straight quote is open (the next one closes it)
        self.after_open = False           # the previous token opened a straight quote

    def push(self, token_id: int) -> str:
        if token_id == self.tokenizer.eod_id:     # a document ends: the next starts a text
            self.prev, self.quote_open, self.after_open = None, False, False
            return ""
        return self.push_token(self.tokenizer.vocab[token_id])

    def push_token(self, tok: str) -> str:
        prev, after_open = self.prev, self.after_open
        is_quote = tok in TOGGLE_QUOTES
        closing = is_quote and self.quote_open
        if is_quote:
            self.quote_open = not self.quote_open
        self.after_open = is_quote and not closing
        self.prev = None if tok == "\n" else tok
        if tok == "\n":
            self.quote_open = False
        if prev is None or after_open or closing or tok in NO_SPACE_BEFORE or prev in NO_SPACE_AFTER:
            return tok
        return " " + tok


def join_words(tokens: Sequence[str]) -> str:
    """['Hello', ',', 'world', '.'] -> 'Hello, world.' (the word tokenizer's decoding)."""
    s = _WordStream()
    return "".join(s.push_token(t) for t in tokens)


@register
class WordTokenizer(Tokenizer):
    """Words, punctuation and newlines (split_words) with a frequency-cut vocabulary.

    fit options: min_count (drop rarer tokens, default 1), max_vocab (keep the most frequent;
    vocab_size is read as max_vocab too). Rarer tokens encode as <unk> (id 0). Decoding restores
    readable spacing, so decode(encode(x)) equals x up to whitespace between tokens.
    """

    name = "word"
    fit_options = ("min_count", "max_vocab", "vocab_size")

    def __init__(self, vocab: Sequence[str], unk_chars: float = float(len(UNK))):
        vocab = list(vocab)
        if not vocab or vocab[0] != UNK:
            raise CharnnError("a word vocabulary must start with <unk>")
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        if len(self.index) != len(vocab):
            raise CharnnError("the word vocabulary holds a token twice")
        # mean length of the words that <unk> stood for when fitting: the per-character loss
        # counts an <unk> as that many characters of the original text
        self.unk_chars = float(unk_chars)
        self.eod_id = self.index.get(EOD)

    @classmethod
    def fit(cls, source: TextSource, min_count: int | None = None, max_vocab: int | None = None,
            vocab_size: int | None = None, **ignored: Any) -> WordTokenizer:
        min_count = 1 if min_count is None else int(min_count)
        max_vocab = max_vocab or vocab_size
        if min_count < 1:
            raise CharnnError("--min-count must be at least 1", 2)
        if max_vocab is not None and int(max_vocab) < 3:
            raise CharnnError("--max-vocab must be at least 3 (<unk>, newline and one word)", 2)
        counts: Counter[str] = Counter()
        for chunk in source():
            counts.update(split_words(chunk))
        if not counts:
            raise CharnnError("the corpus holds no words")
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [w for w, c in ranked if c >= min_count and w != "\n"]
        if max_vocab is not None:
            kept = kept[: int(max_vocab) - 2]
        kept_set = set(kept)
        dropped = [(w, c) for w, c in ranked if w not in kept_set and w != "\n"]
        n_unk = sum(c for _, c in dropped)
        unk_chars = sum(len(w) * c for w, c in dropped) / n_unk if n_unk else float(len(UNK))
        return cls([UNK, "\n", *kept], unk_chars)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        get = self.index.get
        words = split_words(text)
        return np.fromiter((get(w, 0) for w in words), dtype=np.int64, count=len(words))

    def decode(self, ids: Sequence[int]) -> str:
        n = len(self.vocab)
        if any(not 0 <= int(i) < n for i in ids):
            raise CharnnError(f"an id is outside the word vocabulary (0..{n - 1})")
        if self.eod_id is None:
            return join_words([self.vocab[int(i)] for i in ids])
        s = _WordStream(self)        # a document's end restarts the spacing, as streaming does
        return "".join(s.push(int(i)) for i in ids)

    def _add_eod(self) -> WordTokenizer:
        return WordTokenizer([*self.vocab, EOD], self.unk_chars)

    def tokens(self, text: str) -> list[str]:
        return [w if w in self.index else UNK for w in split_words(text)]

    def count_chars(self, ids: Sequence[int]) -> int:
        a = np.asarray(ids, dtype=np.int64)
        n_unk = int(np.count_nonzero(a == 0))
        return len(self.decode(a)) + round(n_unk * (self.unk_chars - len(UNK))) + self.count_eod(a)

    def stream_decoder(self) -> StreamDecoder:
        return _WordStream(self)

    def state(self) -> dict[str, Any]:
        return {"vocab": list(self.vocab), "unk_chars": self.unk_chars}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WordTokenizer:
        vocab = state.get("vocab") if isinstance(state, dict) else None
        if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab):
            raise CharnnError("the checkpoint's word vocabulary is damaged")
        check_text(vocab, "word vocabulary")
        unk_chars = state.get("unk_chars", len(UNK))
        if not isinstance(unk_chars, (int, float)) or not 0 <= unk_chars < 1e6:
            raise CharnnError("the checkpoint's word vocabulary is damaged")
        return cls(vocab, float(unk_chars))
