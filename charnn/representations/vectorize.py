"""Text as vectors: bag-of-words over a fitted vocabulary, one-hot token indices, and word2vec
vectors read from a file. Used by `charnn vectorize`, by `--input bow` (the conditioning vector)
and by `--input word2vec` (initialising the embedding).

Bag-of-words words are split_words' word tokens (punctuation and newlines dropped), lowercased,
so "War" and "war" count as one word.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from charnn.errors import CharnnError
from charnn.tokenizers.word import split_words

_HAS_WORD_CHAR = re.compile(r"\w").match
WEIGHTS = ("count", "tf", "l2", "tfidf")


def bow_words(text: str) -> list[str]:
    """'War, war!\\n' -> ['war', 'war']"""
    return [w.lower() for w in split_words(text) if _HAS_WORD_CHAR(w)]


class BowVocab:
    """A bag-of-words vocabulary with document frequencies (for tf-idf).

    State is plain data (stored in checkpoints of --input bow models).
    """

    def __init__(self, words: Sequence[str], df: Sequence[int] | None = None, n_docs: int = 0):
        self.words = list(words)
        if not self.words:
            raise CharnnError("the bag-of-words vocabulary is empty: the text holds no words")
        self.index = {w: i for i, w in enumerate(self.words)}
        self.df = list(df) if df is not None else None
        self.n_docs = int(n_docs)

    @classmethod
    def fit(cls, docs: Iterable[str | list[str]], max_vocab: int | None = None,
            min_count: int = 1) -> BowVocab:
        """docs: texts, or already split word lists (bow_words). Keeps the max_vocab most
        frequent words seen at least min_count times (ties: alphabetical)."""
        counts: Counter[str] = Counter()
        df: Counter[str] = Counter()
        n = 0
        for doc in docs:
            words = bow_words(doc) if isinstance(doc, str) else doc
            counts.update(words)
            df.update(set(words))
            n += 1
        ranked = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
        if max_vocab:
            ranked = ranked[: int(max_vocab)]
        return cls(ranked, [df[w] for w in ranked], n)

    @property
    def dim(self) -> int:
        return len(self.words)

    def counts(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Sparse counts: (indices, counts), indices ascending; words outside the vocabulary are
        dropped."""
        idx = [self.index[w] for w in words if w in self.index]
        if not idx:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        u, c = np.unique(np.asarray(idx, dtype=np.int64), return_counts=True)
        return u, c.astype(np.float32)

    def sparse(self, text: str, weight: str = "tf") -> tuple[np.ndarray, np.ndarray]:
        """text -> (indices, values). weight: count (raw counts), tf (counts / their sum), l2
        (counts / their L2 norm: the unit-length term frequencies --input bow conditions on),
        tfidf (tf * smoothed idf, L2-normalised)."""
        idx, c = self.counts(bow_words(text))
        return idx, self.weigh(idx, c, weight)

    def weigh(self, idx: np.ndarray, c: np.ndarray, weight: str) -> np.ndarray:
        if weight == "count" or not len(c):
            return c
        if weight == "tf":
            return c / c.sum()
        if weight == "l2":
            return c / np.linalg.norm(c)
        if weight == "tfidf":
            if self.df is None or not self.n_docs:
                raise CharnnError("this vocabulary has no document frequencies, so no tf-idf: "
                                  "fit one with --fit FILE, or use --weight count or tf", 2)
            # sklearn's smoothed idf: log((1 + N) / (1 + df)) + 1
            idf = np.array([math.log((1 + self.n_docs) / (1 + self.df[i])) + 1 for i in idx], np.float32)
            v = c / c.sum() * idf
            return v / np.linalg.norm(v)
        raise CharnnError(f"unknown weight {weight!r}: choose one of {', '.join(WEIGHTS)}", 2)

    def vector(self, text: str, weight: str = "tf") -> np.ndarray:
        """text -> dense (dim,) float32."""
        v = np.zeros(self.dim, dtype=np.float32)
        idx, val = self.sparse(text, weight)
        v[idx] = val
        return v

    def state(self) -> dict[str, Any]:
        return {"words": list(self.words), "df": list(self.df) if self.df is not None else None,
                "n_docs": self.n_docs}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BowVocab:
        if not isinstance(state, dict) or not isinstance(state.get("words"), list):
            raise CharnnError("the checkpoint's bag-of-words vocabulary is damaged")
        return cls(state["words"], state.get("df"), int(state.get("n_docs") or 0))

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> BowVocab:
        """The bow vocabulary of an --input bow model, else one made of a word model's words."""
        if ckpt.get("bow"):
            return cls.from_state(ckpt["bow"])
        tok = ckpt.get("tokenizer") or {}
        if tok.get("name") == "word":
            words = list(dict.fromkeys(w.lower() for w in tok["state"]["vocab"][1:] if _HAS_WORD_CHAR(w)))
            return cls(words)
        raise CharnnError("this checkpoint has no word vocabulary (it is neither an --input bow "
                          "nor a --tokenizer word model): fit one with --fit FILE", 2)


# ----------------------------------------------------------------------------------------------
# word2vec vectors


def load_vectors(path: str | Path):
    """Word vectors from a file -> gensim KeyedVectors: gensim's native .kv (read with an
    allow-listed unpickler, so it cannot run code) or word2vec text/binary, with or without the
    "N D" header. One loader for the whole toolkit: charnn.representations.word2vec.load."""
    from charnn.representations.word2vec import load

    return load(Path(path))


def lookup(kv, word: str) -> np.ndarray | None:
    """A word's vector: the word as written, else lowercased; None when it has none."""
    for w in (word, word.lower()):
        if w in kv.key_to_index:
            return kv[w]
    return None


def mean_vector(kv, text: str) -> tuple[np.ndarray, int]:
    """Mean vector of the text's words that have vectors -> ((D,) float32, words found)."""
    vecs = [v for v in (lookup(kv, w) for w in split_words(text) if _HAS_WORD_CHAR(w)) if v is not None]
    if not vecs:
        return np.zeros(kv.vector_size, dtype=np.float32), 0
    return np.mean(vecs, axis=0).astype(np.float32), len(vecs)


def embedding_from_vectors(vocab: Sequence[str], kv, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of an embedding for `vocab` from word vectors -> ((V, D) float32, covered (V,) bool).

    Uncovered rows (and <unk>) get a random normal init with the covered vectors' per-dimension
    spread, so they sit at the same scale as the pretrained ones.
    """
    D = kv.vector_size
    rows = np.zeros((len(vocab), D), dtype=np.float32)
    covered = np.zeros(len(vocab), dtype=bool)
    for i, w in enumerate(vocab):
        v = lookup(kv, w)
        if v is not None:
            rows[i], covered[i] = v, True
    std = rows[covered].std(axis=0) if covered.sum() > 1 else np.full(D, 0.1, np.float32)
    rng = np.random.default_rng(seed)
    n_new = int((~covered).sum())
    rows[~covered] = rng.standard_normal((n_new, D)).astype(np.float32) * np.maximum(std, 1e-3)
    return rows, covered


# ----------------------------------------------------------------------------------------------
# Line by line, for `charnn tokenize` and `charnn vectorize`


def read_lines(path: str | Path | None, encoding: str = "utf-8") -> Iterator[str]:
    """Yield the lines of a file (None or '-': standard input) without their '\\n', one at a
    time, so a pipeline starts producing before its input ends. Strict decoding (UTF-8 unless
    `encoding` says otherwise): a bad line raises CharnnError naming it."""
    import codecs
    import sys

    from charnn.data import check_encoding, decode_error

    encoding = check_encoding(encoding)
    if encoding.startswith(("utf-16", "utf-32")):
        raise CharnnError(f"--encoding {encoding}: line-by-line reading needs an encoding in which a "
                          "line break is one byte (convert the text first, e.g. with iconv)", 2)

    name = "standard input" if path in (None, "-") else str(path)
    if path in (None, "-"):
        if sys.stdin is None or sys.stdin.isatty():
            raise CharnnError("no input: give a FILE, or pipe text in", 2)
        f = sys.stdin.buffer
        close = False
    else:
        from charnn.data import open_bytes

        f = open_bytes(path)
        close = True
    try:
        for n, raw in enumerate(f, 1):
            if n == 1 and encoding == "utf-8" and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
            if b"\0" in raw:
                raise CharnnError(f"{name}: NUL byte on line {n}: not a text file")
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise decode_error(name, encoding, f"on line {n} (byte {e.start + 1} of the line)") from None
            yield line[:-1] if line.endswith("\n") else line
    finally:
        if close:
            f.close()


def _num(x: float) -> float | int:
    """Compact JSON numbers: whole counts as ints, others to 6 significant digits."""
    x = float(x)
    return int(x) if x.is_integer() and abs(x) < 2 ** 53 else float(f"{x:.6g}")


class OneHotLines:
    """A line -> the hot index of each token's one-hot vector (the token ids), over dim = V."""

    def __init__(self, tokenizer):
        self.tokenizer, self.dim = tokenizer, tokenizer.vocab_size

    def __call__(self, line: str) -> tuple[dict[str, Any], np.ndarray | None]:
        ids = [int(i) for i in self.tokenizer.encode(line)]
        return {"dim": self.dim, "ids": ids}, None


class BowLines:
    """A line -> its sparse bag of words: ascending indices and their weights."""

    def __init__(self, vocab: BowVocab, weight: str = "count"):
        if weight not in WEIGHTS:
            raise CharnnError(f"unknown --weight {weight!r}: choose one of {', '.join(WEIGHTS)}", 2)
        if weight == "tfidf":
            vocab.weigh(np.zeros(1, np.int64), np.ones(1, np.float32), weight)   # fails early without df
        self.vocab, self.weight, self.dim = vocab, weight, vocab.dim

    def __call__(self, line: str) -> tuple[dict[str, Any], np.ndarray]:
        idx, val = self.vocab.sparse(line, self.weight)
        dense = np.zeros(self.dim, dtype=np.float32)
        dense[idx] = val
        return {"dim": self.dim, "indices": idx.tolist(), "values": [_num(v) for v in val]}, dense


class Word2VecLines:
    """A line -> the mean vector of its words that have one (zeros when none has)."""

    def __init__(self, kv):
        self.kv, self.dim = kv, int(kv.vector_size)

    def __call__(self, line: str) -> tuple[dict[str, Any], np.ndarray]:
        v, found = mean_vector(self.kv, line)
        return {"dim": self.dim, "words": found, "vector": [_num(x) for x in v]}, v
