"""--input bow: condition the language model on the bag of words of the current document.

The corpus is split into documents at a separator (a blank line by default), found in token
space, so the cached, memory-mapped ids are used as they are. Each token gets the index of its
document (a uint32 array aligned with the ids: 4 bytes per token), and each document one sparse
vector: the normalised term frequencies of its words over a bag-of-words vocabulary (BowVocab).

The B training streams cross document boundaries, so the vector is chosen per stream per step:
each step is conditioned on the document of the token it predicts (DocCond.chunk).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from charnn.data import batchify
from charnn.errors import CharnnError
from charnn.representations.vectorize import BowVocab, bow_words
from charnn.tokenizers import Tokenizer

DEFAULT_BOW_VOCAB = 2000
# unit-length (L2) term frequencies: entries of a usable size whatever the document's length,
# and a 3-word --topic lands at the same scale as a long training document
COND_WEIGHT = "l2"


def document_ids(ids: np.ndarray, sep: np.ndarray) -> np.ndarray:
    """(N,) token ids -> (N,) uint32 document index; a document starts after each `sep` run.

    ids   a b \\n \\n c d \\n \\n \\n e      sep = [\\n, \\n]
    docs  0 0  0  0 1 1  1  1  2 3      (a third newline starts an empty document: harmless)
    """
    n, k = len(ids), len(sep)
    starts = np.zeros(n, dtype=bool)
    if k and n > k:
        hit = np.ones(n - k + 1, dtype=bool)
        for j, s in enumerate(sep):                       # (N - k + 1,) per separator token
            hit &= np.asarray(ids[j: n - k + 1 + j]) == s
        starts[k:] = hit[:-1]                             # the token after a separator
    return np.cumsum(starts, dtype=np.uint32)


class DocCond:
    """Per-token document ids + one sparse bag-of-words vector per document (CSR rows)."""

    def __init__(self, doc_ids: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                 values: np.ndarray, dim: int):
        self.doc_ids, self.indptr, self.indices, self.values, self.dim = doc_ids, indptr, indices, values, dim

    @property
    def num_docs(self) -> int:
        return len(self.indptr) - 1

    def prefix(self, n: int) -> DocCond:
        """The same documents seen by the first n tokens only."""
        return DocCond(self.doc_ids[:n], self.indptr, self.indices, self.values, self.dim)

    def rows(self, docs: np.ndarray) -> np.ndarray:
        """(B,) document ids -> dense (B, dim) float32."""
        out = np.zeros((len(docs), self.dim), dtype=np.float32)
        for b, d in enumerate(docs):
            s, e = self.indptr[d], self.indptr[d + 1]
            out[b, self.indices[s:e]] = self.values[s:e]
        return out

    def chunk(self, batch_size: int, index: int, seq_len: int, device=None,
              streams_rows: slice = slice(None)):
        """Per-step conditioning of chunk `index` (as data.get_chunk lays it out):
        (rows (K, dim), index (B, t)): the K documents the chunk touches, and for each step the
        row of the document its *target* token belongs to, so the first word of a document is
        predicted already knowing that document's words. RNNLM projects the K rows first and
        gathers per step, so the (B, t, dim) tensor is never built. streams_rows: the streams of
        this rank in a distributed run (charnn.training.distributed)."""
        import torch

        streams = batchify(self.doc_ids, batch_size)[streams_rows]    # (B, L), a view
        start = index * seq_len
        end = min(start + seq_len + 1, streams.shape[1])
        docs = np.asarray(streams[:, start + 1:end])                  # (B, t): targets' documents
        uniq, inv = np.unique(docs, return_inverse=True)
        rows = torch.from_numpy(self.rows(uniq)).to(device)           # (K, dim)
        return rows, torch.from_numpy(inv.reshape(docs.shape)).to(device)


@dataclass
class BowData:
    vocab: BowVocab
    train: DocCond
    val: DocCond
    doc_sep: str = "\n\n"

    def state(self) -> dict[str, Any]:
        """Plain data for the checkpoint: the vocabulary and how documents were split."""
        return {**self.vocab.state(), "doc_sep": self.doc_sep}


def _docs(tokenizer: Tokenizer, ids: np.ndarray, doc_ids: np.ndarray) -> Iterator[list[str]]:
    """The bag-of-words words of each document, in order (document ids are 0, 1, 2, ...)."""
    if len(ids) == 0:
        return
    edges = np.concatenate([[0], np.flatnonzero(np.diff(doc_ids)) + 1, [len(ids)]])
    for s, e in zip(edges[:-1], edges[1:]):
        yield bow_words(_text(tokenizer, ids[s:e]))


def _text(tokenizer: Tokenizer, ids: np.ndarray) -> str:
    if tokenizer.name == "word":   # <unk> stands for no known word: leave it out of the bag
        ids = np.asarray(ids)
        ids = ids[ids != 0]
    return tokenizer.decode(np.asarray(ids))


def _cond(tokenizer: Tokenizer, vocab: BowVocab, ids: np.ndarray, doc_ids: np.ndarray) -> DocCond:
    indptr, indices, values = [0], [], []
    for words in _docs(tokenizer, ids, doc_ids):
        idx, c = vocab.counts(words)
        indices.append(idx)
        values.append(vocab.weigh(idx, c, COND_WEIGHT))
        indptr.append(indptr[-1] + len(idx))
    return DocCond(doc_ids, np.asarray(indptr, dtype=np.int64),
                   np.concatenate(indices) if indices else np.zeros(0, np.int64),
                   np.concatenate(values).astype(np.float32) if values else np.zeros(0, np.float32),
                   vocab.dim)


def prepare_bow(tokenizer: Tokenizer, train_ids: np.ndarray, val_ids: np.ndarray,
                doc_sep: str = "\n\n", vocab: BowVocab | None = None,
                max_vocab: int | None = None, min_count: int = 1) -> tuple[BowData, list[str]]:
    """Documents, vocabulary (fitted on the training documents unless given) and vectors.

    Returns the BowData and warnings worth showing.
    """
    warnings = []
    try:
        sep = tokenizer.encode(doc_sep)
    except CharnnError:
        sep = np.zeros(0, dtype=np.int64)
    if len(sep) == 0:
        raise CharnnError(f"the document separator {doc_sep!r} never occurs in the corpus (the "
                          "tokenizer cannot even write it): check --doc-sep", 2)
    train_docs = document_ids(train_ids, sep)
    val_docs = document_ids(val_ids, sep)
    if vocab is None:
        vocab = BowVocab.fit(_docs(tokenizer, train_ids, train_docs),
                             max_vocab=max_vocab or DEFAULT_BOW_VOCAB, min_count=min_count)
    n_docs = int(train_docs[-1]) + 1 if len(train_docs) else 0
    if n_docs < 2:
        warnings.append(f"the training text holds a single document (no {doc_sep!r} in it): "
                        "the bag-of-words vector is the same everywhere; set --doc-sep")
    data = BowData(vocab, _cond(tokenizer, vocab, train_ids, train_docs),
                   _cond(tokenizer, vocab, val_ids, val_docs), doc_sep)
    return data, warnings


def topic_cond(ckpt: dict[str, Any], model, topic: str | None):
    """`charnn sample --topic WORDS` -> the (1, bow_dim) conditioning tensor, or None for a
    model that is not conditioned. Words outside the model's vocabulary are ignored."""
    import torch

    if model.cfg.input != "bow":
        if topic is not None:
            raise CharnnError("--topic needs a model trained with --input bow", 2)
        return None
    if topic is None:
        raise CharnnError("this model is conditioned on a bag of words (--input bow): give the "
                          "words to write about with --topic 'WORDS ...'", 2)
    vocab = BowVocab.from_state(ckpt.get("bow") or {})
    v = vocab.vector(topic, COND_WEIGHT)                                    # (bow_dim,)
    if not v.any():
        shown = ", ".join(vocab.words[:12])
        raise CharnnError(f"none of the --topic words is in the model's bag-of-words vocabulary "
                          f"(it has {vocab.dim:,} words, e.g. {shown})", 2)
    return torch.from_numpy(v).unsqueeze(0)                           # (1, bow_dim)


def cond_for(ckpt: dict[str, Any], tokenizer: Tokenizer, ids: np.ndarray) -> DocCond | None:
    """Per-step conditioning for scoring `ids` with a checkpoint's model (`charnn eval`): the
    text's own documents over the model's vocabulary; None for a model that is not --input bow."""
    if ckpt.get("model_config", {}).get("input") != "bow":
        return None
    state = ckpt.get("bow") or {}
    vocab = BowVocab.from_state(state)
    sep = tokenizer.encode(state.get("doc_sep", "\n\n"))
    return _cond(tokenizer, vocab, ids, document_ids(ids, sep))
