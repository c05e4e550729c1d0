"""What the first recurrent layer reads (`charnn train --input`), set up before training.

    embedding  a learned (V, E) table (the default)
    onehot     fixed one-hot vectors, E = V, as the original char-rnn
    word2vec   the embedding starts from word vectors (--vectors; word tokenizer only), and
               --freeze-embeddings keeps them fixed
    bow        the embedding plus a learned projection of the current document's bag of words
               (charnn.representations.bow), so sampling can be steered with --topic

setup_input() returns what the model config gains, an init hook for train(), and messages for
stderr; it never prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from charnn.errors import CharnnError


@dataclass
class InputSetup:
    model_options: dict[str, Any] = field(default_factory=dict)   # ModelConfig fields
    init_model: Optional[Callable] = None                          # train()'s init_model hook
    messages: list[str] = field(default_factory=list)


def setup_input(data, input: str | None, vectors: str | None = None, embed_dim: int | None = None,
                freeze: bool = False, doc_sep: str | None = None, max_vocab: int | None = None,
                min_count: int | None = None, resumed: dict[str, Any] | None = None,
                seed: int = 0) -> InputSetup:
    """data: train.TrainData (its .bow is filled for --input bow)."""
    if resumed is not None:
        # the model config comes from the checkpoint; only the bow vectors need rebuilding
        mc = resumed.get("model_config", {})
        if mc.get("input") == "bow":
            from charnn.representations.bow import prepare_bow
            from charnn.representations.vectorize import BowVocab

            state = resumed.get("bow") or {}
            data.bow, _ = prepare_bow(data.tokenizer, data.train_ids, data.val_ids,
                                      state.get("doc_sep", "\n\n"), vocab=BowVocab.from_state(state))
        return InputSetup()

    if input is None:
        input = "word2vec" if vectors else "embedding"
    out = InputSetup(model_options={"input": input, **({"freeze_embeddings": True} if freeze else {})})
    if vectors and input != "word2vec":
        raise CharnnError("--vectors goes with --input word2vec", 2)
    if doc_sep is not None and input != "bow":
        raise CharnnError("--doc-sep goes with --input bow", 2)
    if input == "onehot":
        if freeze:
            raise CharnnError("--freeze-embeddings needs an embedding, not --input onehot", 2)
    elif input == "word2vec":
        _word2vec(out, data.tokenizer, vectors, embed_dim, seed)
    elif input == "bow":
        from charnn.representations.bow import prepare_bow

        data.bow, warnings = prepare_bow(data.tokenizer, data.train_ids, data.val_ids,
                                         doc_sep if doc_sep is not None else "\n\n",
                                         max_vocab=max_vocab, min_count=min_count or 1)
        out.model_options["bow_dim"] = data.bow.vocab.dim
        out.messages += [f"warning: {w}" for w in warnings]
        out.messages.append(f"bag of words: {data.bow.train.num_docs:,} training documents, "
                            f"{data.bow.vocab.dim:,} words")
    elif input != "embedding":
        from charnn.config import INPUTS

        raise CharnnError(f"unknown input {input!r}: choose one of {', '.join(INPUTS)}", 2)
    return out


def _word2vec(out: InputSetup, tokenizer, path: str | None, embed_dim: int | None, seed: int) -> None:
    import torch

    from charnn.representations.vectorize import embedding_from_vectors, load_vectors

    if tokenizer.name != "word":
        raise CharnnError("--input word2vec needs --tokenizer word (word vectors are per word)", 2)
    if not path:
        raise CharnnError("--input word2vec needs --vectors PATH (e.g. from `charnn embed`)", 2)
    kv = load_vectors(path)
    D = int(kv.vector_size)
    if embed_dim is not None and embed_dim != D:
        raise CharnnError(f"--embed-dim {embed_dim} differs from the {D}-dimensional vectors in "
                          f"{path}: leave --embed-dim out, or give {D}", 2)
    rows, covered = embedding_from_vectors(tokenizer.vocab, kv, seed)   # (V, D), (V,)
    n, V = int(covered.sum()), len(covered)
    if n == 0:
        raise CharnnError(f"none of the {V:,} vocabulary words has a vector in {path}")
    out.model_options["embed_dim"] = D
    out.messages.append(f"word2vec: {n:,} of {V:,} vocabulary words ({n / V:.1%}) have vectors in "
                        f"{path}; the other {V - n:,} start random")

    def init(model) -> None:
        with torch.no_grad():
            model.embed.weight.copy_(torch.from_numpy(np.ascontiguousarray(rows)))

    out.init_model = init
