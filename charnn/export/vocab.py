"""What a caller needs beside the exported step to run the sampling loop in any language: the
shapes of the inputs and outputs, and the tokenizer's vocabulary as plain JSON.

    {"format": "charnn-step", "version": 1, "cell": "lstm", "layers": 2, "hidden": 512,
     "vocab_size": 65, "state_shape": [4, "N", 512], "inputs": [...], "outputs": [...],
     "tokenizer": "char", "tokens": ["\\n", " ", "!", ...], "token_bytes": ["0a", "20", ...],
     "decode": "concat", "newline_id": 0, ...}

tokens[i] is token i's text and token_bytes[i] its UTF-8 bytes in hex: decoding is
concatenating token_bytes and reading the result as UTF-8 ("decode": "concat"; byte and
subword tokens may be parts of a character, which is why bytes are given). Word models decode
with spaces between words ("decode": "words": no space before closing punctuation or after an
opening bracket, as charnn.tokenizers.word.join_words). Encoding a prime: char models map each
character to its index in tokens, byte models take the UTF-8 bytes as ids; bpe and unigram
models carry their sentencepiece model ("sentencepiece_model", base64) for the sentencepiece
library; word models split text with charnn.tokenizers.word.WORD_RE ("word_pattern").
"""

from __future__ import annotations

import base64
from typing import Any

FORMAT, VERSION = "charnn-step", 1


def describe(run: Any, state_size: int) -> dict[str, Any]:
    """The JSON document for a charnn.run.Run whose step has a state of S = state_size rows."""
    cfg, tok = run.config, run.tokenizer
    inputs = [{"name": "ids", "shape": ["N"], "dtype": "int64", "meaning": "the current token of each stream"},
              {"name": "state", "shape": [state_size, "N", cfg.hidden], "dtype": "float32",
               "meaning": _state_meaning(cfg.cell)}]
    if cfg.input == "bow":
        inputs.append({"name": "cond", "shape": ["N", cfg.bow_dim], "dtype": "float32",
                       "meaning": "the bag-of-words topic vector (charnn sample --topic)"})
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "model": run.name, "cell": cfg.cell, "layers": cfg.layers,
        "hidden": cfg.hidden, "vocab_size": tok.vocab_size, "input": cfg.input,
        "state_shape": [state_size, "N", cfg.hidden], "inputs": inputs,
        "outputs": [{"name": "logits", "shape": ["N", tok.vocab_size], "dtype": "float32",
                     "meaning": "unnormalised log-probabilities of the next token"},
                    {"name": "state_out", "shape": [state_size, "N", cfg.hidden], "dtype": "float32",
                     "meaning": "the state after this step: feed it to the next"}],
        "best_val_loss": run.best_val_loss, "chars_per_token": run.chars_per_token,
        "newline_id": tok.id_of("\n"),
    }
    doc.update(_vocabulary(tok))
    return doc


def _state_meaning(cell: str) -> str:
    if cell == "lstm":
        return "h of layers 0..L-1, then c of layers 0..L-1; zeros to start"
    return "h of layers 0..L-1; zeros to start"


def _vocabulary(tok: Any) -> dict[str, Any]:
    name = tok.name
    if name == "byte":
        raw = [bytes((i,)) for i in range(256)]
    elif name in ("bpe", "unigram"):
        raw = list(tok.piece_bytes)
    elif name == "word":
        raw = [w.encode("utf-8") for w in tok.vocab]
    else:                                   # char: each token is one character
        raw = [tok.decode([i]).encode("utf-8") for i in range(tok.vocab_size)]
    out: dict[str, Any] = {
        "tokenizer": name,
        "tokens": [b.decode("utf-8", "replace") for b in raw],
        "token_bytes": [b.hex() for b in raw],
        "decode": "words" if name == "word" else "concat",
    }
    if name in ("bpe", "unigram"):
        out["sentencepiece_model"] = base64.b64encode(tok.model).decode("ascii")
    if name == "word":
        from charnn.tokenizers.word import WORD_RE

        out["word_pattern"] = WORD_RE.pattern
    return out
