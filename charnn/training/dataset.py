"""A corpus made ready for training: encoded (charnn.data), split into train and validation,
with the character count the per-character loss divides by. With documents the split falls on
a document's start, so validation begins as a document does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charnn.data import CorpusText, encode_corpus, split
from charnn.tokenizers import Tokenizer


@dataclass
class TrainData:
    """A tokenized corpus split for training: ids are (N,) arrays, memory-mapped."""

    tokenizer: Tokenizer
    train_ids: np.ndarray
    val_ids: np.ndarray
    val_chars: int            # characters of text the validation ids stand for
    source: dict[str, Any] = field(default_factory=dict)   # {path, digest, from_cache}
    bow: Any = None           # representations.bow.BowData for --input bow: per-chunk document vectors
    docs: str | None = None   # the --docs mode (the ids hold end-of-document ids)
    fingerprints: np.ndarray | None = None   # the documents' (charnn.documents), sorted
    config: dict[str, Any] = field(default_factory=dict)   # the run's DataConfig, for the checkpoint

    @property
    def chars_per_token(self) -> float:
        return self.val_chars / max(1, len(self.val_ids))

    @property
    def eod(self) -> int | None:
        """The id before which the recurrent state is reset, when the ids hold documents."""
        return self.tokenizer.eod_id if self.docs else None


def prepare_data(path: Path | CorpusText, tokenizer_name: str = "char", val_frac: float = 0.1,
                 fit_options: dict[str, Any] | None = None,
                 tokenizer: Tokenizer | None = None, encoding: str = "utf-8") -> TrainData:
    corpus = CorpusText.of(path, encoding)
    enc = encode_corpus(corpus, tokenizer_name, fit_options, tokenizer)
    train_ids, val_ids = split(enc.ids, val_frac)
    if corpus.docs:
        train_ids, val_ids = split_at_document(enc.ids, len(train_ids), enc.tokenizer.eod_id)
    source = {"path": str(corpus.files[0]), "digest": enc.digest, "from_cache": enc.from_cache,
              "encoding": corpus.encoding}
    if len(corpus.files) > 1:
        source["files"] = [str(f) for f in corpus.files]
    return TrainData(enc.tokenizer, train_ids, val_ids, count_chars(enc.tokenizer, val_ids), source,
                     docs=corpus.docs, fingerprints=enc.fingerprints)


def split_at_document(ids: np.ndarray, n_train: int, eod: int, block: int = 1 << 20):
    """Move the split forward to the next end-of-document id, which then opens validation."""
    for start in range(n_train, len(ids), block):
        at = np.flatnonzero(ids[start:start + block] == eod)
        if len(at):
            cut = start + int(at[0])
            if cut < len(ids) - 1:
                return ids[:cut], ids[cut:]
            break
    return ids[:n_train], ids[n_train:]


def count_chars(tokenizer: Tokenizer, ids: np.ndarray, block: int = 1 << 20) -> int:
    """Characters of original text behind `ids` (the per-character loss divides by this)."""
    if tokenizer.name == "char":
        return len(ids)
    return sum(tokenizer.count_chars(ids[i:i + block]) for i in range(0, len(ids), block))
