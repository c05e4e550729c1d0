"""The text the inspector looks at, and how its tokens line up with its characters.

A text comes from the user (an argument, stdin, a file) or, when none is given, from the run's
own corpus: a stretch from the start of its validation part (the last val_frac of the file, the
text the model was not trained on). It is encoded with the run's tokenizer; each token's
`piece` is the text it adds when the ids are decoded one by one (a word model's " word", a
byte model's "" for the first bytes of a multi-byte character and the character at its last),
so the pieces joined are the decoded text, and character properties can be read per token.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import numpy as np

from charnn.errors import CharnnError


def read_file(path: str | Path, length: int | None = None) -> str:
    """A UTF-8 text file (its first `length` characters when given), with one-line errors."""
    from charnn.data import iter_text

    parts, have = [], 0
    for chunk in iter_text(Path(path)):
        parts.append(chunk)
        have += len(chunk)
        if length is not None and have >= length:
            break
    text = "".join(parts)
    return text[:length] if length is not None else text


def validation_text(ckpt: dict[str, Any], run_dir: Path, length: int) -> tuple[str, str]:
    """`length` characters from the start of the run's validation text -> (text, where from).
    The corpus is found by the path the checkpoint recorded (as given, or beside the run)."""
    recorded = (ckpt.get("corpus") or {}).get("path")
    candidates = [Path(recorded), run_dir.parent / recorded, run_dir / recorded] if recorded else []
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        where = f" ({recorded} is not there any more)" if recorded else ""
        raise CharnnError(f"no text to look at: give one (TEXT, - for stdin, or --file PATH); the run's "
                          f"corpus cannot be found{where}", 2)
    val_frac = float((ckpt.get("train_config") or {}).get("val_frac") or 0.1)
    size = path.stat().st_size
    start = int(size * (1 - val_frac))
    with open(path, "rb") as f:
        f.seek(start)
        raw = f.read(max(4 * length, 4096) + 4096)
    text = codecs.decode(raw, "utf-8", "ignore")   # the seek may land inside a character
    if start > 0 and "\n" in text[:-1]:
        text = text[text.index("\n") + 1:]           # begin on a line of its own
    return text[:length], f"{path} (validation part, from byte {start:,})"


def encode(tokenizer, text: str) -> np.ndarray:
    """text -> ids (T,) int64; an empty text, or characters the model does not know, are errors."""
    if not text:
        raise CharnnError("the text is empty: there is nothing to look at", 2)
    try:
        ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    except CharnnError as e:
        raise CharnnError(f"the text has {e}") from None
    if len(ids) == 0:
        raise CharnnError("the text holds no tokens this model reads", 2)
    return ids


def pieces(tokenizer, ids: np.ndarray) -> list[str]:
    """Each token's piece of the decoded text (see the module docstring); joined, the text."""
    dec = tokenizer.stream_decoder()
    out = [dec.push(int(i)) for i in ids]
    out[-1] += dec.flush()
    return out


def token_text(tokenizer, i: int) -> str:
    """One vocabulary entry as text, for showing a guess: a lone byte that is not a whole UTF-8
    character comes out as a surrogate escape (charnn.tokenizers.base.escape_token shows it)."""
    raw = getattr(tokenizer, "piece_bytes", None)
    if tokenizer.name == "byte":
        return bytes((i,)).decode("utf-8", "surrogateescape")
    if raw is not None:                                   # sentencepiece: the piece's bytes
        return raw[i].decode("utf-8", "surrogateescape")
    vocab = getattr(tokenizer, "vocab", None)
    if vocab is not None:                                 # word: the word itself, <unk> included
        return vocab[i]
    return tokenizer.decode([i])


def char_index(token_pieces: list[str]) -> np.ndarray:
    """For each token, the index of the character in the joined text that its state follows:
    its own last character, or for a token with no character yet (a byte inside a multi-byte
    character) the character it is part of. (T,) int64, clipped to the text."""
    ends = np.cumsum([len(p) for p in token_pieces])               # (T,) end of each piece
    empty = np.array([len(p) == 0 for p in token_pieces])
    idx = np.where(empty, ends, ends - 1)                          # the next char for an empty piece
    return np.clip(idx, 0, max(0, int(ends[-1]) - 1))
