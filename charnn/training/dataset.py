"""A corpus made ready for training: encoded (charnn.data), split into train and validation,
with the character count the per-character loss divides by."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charnn.data import encode_corpus, split
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

    @property
    def chars_per_token(self) -> float:
        return self.val_chars / max(1, len(self.val_ids))


def prepare_data(path: Path, tokenizer_name: str = "char", val_frac: float = 0.1,
                 fit_options: dict[str, Any] | None = None,
                 tokenizer: Tokenizer | None = None, encoding: str = "utf-8") -> TrainData:
    enc = encode_corpus(path, tokenizer_name, fit_options, tokenizer, encoding)
    train_ids, val_ids = split(enc.ids, val_frac)
    return TrainData(enc.tokenizer, train_ids, val_ids, count_chars(enc.tokenizer, val_ids),
                     {"path": str(path), "digest": enc.digest, "from_cache": enc.from_cache,
                      "encoding": encoding})


def count_chars(tokenizer: Tokenizer, ids: np.ndarray, block: int = 1 << 20) -> int:
    """Characters of original text behind `ids` (the per-character loss divides by this)."""
    if tokenizer.name == "char":
        return len(ids)
    return sum(tokenizer.count_chars(ids[i:i + block]) for i in range(0, len(ids), block))
