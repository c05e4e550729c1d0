"""charnn tokenize / charnn vectorize: the tokenizers and representations as Unix filters.

Both read UTF-8 text line by line (a FILE, or - / nothing for stdin) and write one line of data
per input line to stdout as they go, so `cat big.txt | charnn vectorize ... | head` stops early
and cleanly. Messages go to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from charnn.errors import CharnnError

Opt = typer.Option
TOKENIZERS = ("char", "byte", "word", "bpe", "unigram")
KINDS = ("onehot", "bow", "word2vec")


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    app.command(
        "tokenize",
        help="Print the tokens of each input line, space-separated, one output line per input "
        "line (or their ids with --ids). Tokens are escaped so each is one visible word: \\s "
        "space, \\t tab, \\r carriage return, \\n newline, \\\\ backslash, \\xNN an ASCII control "
        "character or a lone byte that is not a whole UTF-8 character, \\uNNNN other whitespace.\n\n"
        "bpe and unigram need a model: --model takes a checkpoint (its tokenizer) or a "
        "sentencepiece .model file; without one they are fitted on FILE.\n\n"
        "Example: charnn tokenize notes.txt --tokenizer bpe --vocab-size 500 | head",
    )(guard(tokenize_cmd))
    app.command(
        "vectorize",
        help="Print one vector per input line. onehot: the token ids (the hot index of each "
        "token's one-hot vector); bow: the sparse bag of words over a vocabulary fitted on "
        "--fit FILE (each line a document) or taken from --model; word2vec: the mean of the "
        "line's word vectors (--vectors). jsonl streams line by line; npy is one (lines, dim) "
        "float32 array, so it waits for the end of the input.\n\n"
        "Example: cat big.txt | charnn vectorize --kind bow --fit vocab.txt | head",
    )(guard(vectorize_cmd))


def tokenize_cmd(
    file: str = typer.Argument("-", help="Text file, or - for stdin."),
    tokenizer: Optional[str] = Opt(None, help="char, byte, word, bpe or unigram. [default: the model's, else char]"),
    model: Optional[str] = Opt(None, "--model", "-m",
                               help="A checkpoint or run folder (its tokenizer), or a sentencepiece .model file."),
    ids: bool = Opt(False, "--ids", help="Print token ids instead of tokens (char and word then need a model or a FILE to fit)."),
    vocab_size: Optional[int] = Opt(None, help="Fitting bpe/unigram on FILE: vocabulary size. [default: 1000]"),
    min_count: Optional[int] = Opt(None, help="Fitting word on FILE: drop rarer tokens to <unk>. [default: 1]"),
    max_vocab: Optional[int] = Opt(None, help="Fitting word on FILE: keep at most this many tokens."),
    encoding: str = Opt("utf-8", "--encoding", metavar="NAME", help="The text's encoding (e.g. latin-1, cp1252)."),
):
    from charnn.commands.common import at_least
    from charnn.representations.vectorize import read_lines
    from charnn.tokenizers import escape_token

    fit = dict(vocab_size=vocab_size, min_count=min_count, max_vocab=max_vocab)
    at_least(1, **fit)
    tok = _tokenizer(tokenizer, model, file, fit, need_vocab=ids, encoding=encoding)
    write, flush = _stdout()
    for line in read_lines(file, encoding):
        if ids:
            out = " ".join(str(int(i)) for i in tok.encode(line))
        else:
            out = " ".join(escape_token(t) for t in tok.tokens(line))
        write(out + "\n")
        flush()


def vectorize_cmd(
    file: str = typer.Argument("-", help="Text file, or - for stdin."),
    kind: str = Opt(..., "--kind", "-k", help="onehot, bow or word2vec."),
    fit: Optional[Path] = Opt(None, "--fit", help="bow: fit the vocabulary on this text file (each line a document); "
                              "onehot: fit the tokenizer on it."),
    model: Optional[str] = Opt(None, "--model", "-m", help="A checkpoint: bow takes its bag-of-words (or word) "
                               "vocabulary, onehot its tokenizer."),
    vectors: Optional[str] = Opt(None, help="word2vec: a `charnn embed` .kv file or a word2vec text/binary file."),
    weight: str = Opt("count", help="bow: count, tf (counts / their sum), l2 (counts / their norm) or tfidf "
                      "(needs --fit: the idf comes from its lines)."),
    tokenizer: Optional[str] = Opt(None, help="onehot: char, byte, word, bpe or unigram. [default: the model's, else char]"),
    fmt: str = Opt("jsonl", "--format", help="jsonl (one JSON object per line, streamed) or npy (binary; buffered)."),
    vocab_size: Optional[int] = Opt(None, help="Fitting bpe/unigram: vocabulary size. [default: 1000]"),
    min_count: Optional[int] = Opt(None, help="Fitting: drop words seen fewer times. [default: 1]"),
    max_vocab: Optional[int] = Opt(None, help="Fitting: keep at most this many words."),
    encoding: str = Opt("utf-8", "--encoding", metavar="NAME", help="The text's encoding (e.g. latin-1, cp1252)."),
):
    import json

    from charnn.commands.common import at_least
    from charnn.representations.vectorize import read_lines

    at_least(1, vocab_size=vocab_size, min_count=min_count, max_vocab=max_vocab)
    if kind not in KINDS:
        raise CharnnError(f"unknown --kind {kind!r}: choose one of {', '.join(KINDS)}", 2)
    if fmt not in ("jsonl", "npy"):
        raise CharnnError(f"unknown --format {fmt!r}: choose jsonl or npy", 2)
    if fmt == "npy" and kind == "onehot":
        raise CharnnError("onehot rows differ in length (one id per token): use --format jsonl, "
                          "or --kind bow --weight count for summed one-hot vectors", 2)
    if fmt == "npy" and sys.stdout.isatty():
        raise CharnnError("npy is binary: redirect stdout to a file (charnn vectorize ... > x.npy)", 2)
    if vectors and kind != "word2vec":
        raise CharnnError("--vectors goes with --kind word2vec", 2)
    line_vector = _vectorizer(kind, fit, model, vectors, weight, tokenizer,
                              dict(vocab_size=vocab_size, min_count=min_count, max_vocab=max_vocab), file,
                              encoding)
    write, flush = _stdout()
    rows = []
    for line in read_lines(file, encoding):
        record, dense = line_vector(line)
        if fmt == "jsonl":
            write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            flush()
        else:
            rows.append(dense)
    if fmt == "npy":
        import io

        import numpy as np

        arr = np.stack(rows) if rows else np.zeros((0, line_vector.dim), dtype=np.float32)
        buf = io.BytesIO()
        np.save(buf, arr.astype(np.float32, copy=False))
        sys.stdout.buffer.write(buf.getvalue())
        flush()


def _vectorizer(kind, fit, model, vectors, weight, tokenizer, fit_opts, file, encoding="utf-8"):
    from charnn.representations.vectorize import (
        BowLines,
        BowVocab,
        OneHotLines,
        Word2VecLines,
        load_vectors,
        read_lines,
    )

    if kind == "word2vec":
        if not vectors:
            raise CharnnError("--kind word2vec needs --vectors PATH (e.g. from `charnn embed`)", 2)
        return Word2VecLines(load_vectors(vectors))
    if kind == "bow":
        if fit is not None and model is not None:
            raise CharnnError("give --fit FILE or --model CHECKPOINT, not both", 2)
        if fit is not None:
            vocab = BowVocab.fit(read_lines(fit, encoding), max_vocab=fit_opts["max_vocab"],
                                 min_count=fit_opts["min_count"] or 1)
        elif model is not None:
            vocab = BowVocab.from_checkpoint(_load_checkpoint(model))
        else:
            raise CharnnError("--kind bow needs a vocabulary: --fit FILE or --model CHECKPOINT", 2)
        return BowLines(vocab, weight)
    return OneHotLines(_tokenizer(tokenizer, model, str(fit) if fit else file, fit_opts, need_vocab=True,
                                  encoding=encoding))


def _tokenizer(name, model, fit_path, fit_opts, need_vocab: bool, encoding: str = "utf-8"):
    """The tokenizer to use: a model's, a fitted one, or (tokens only) a vocabulary-free view."""
    from charnn.tokenizers import get_tokenizer_class

    if name is not None and name not in TOKENIZERS:
        raise CharnnError(f"unknown tokenizer {name!r}: choose one of {', '.join(TOKENIZERS)}", 2)
    if model is not None:
        tok = _model_tokenizer(model, name)
        if name is not None and tok.name != name:
            raise CharnnError(f"--tokenizer {name} differs from the model's tokenizer ({tok.name})", 2)
        return tok
    name = name or "char"
    cls = get_tokenizer_class(name)
    if name == "byte":
        return cls.fit(lambda: iter(()))
    if not need_vocab and name in ("char", "word"):
        return _Unfitted(name)   # tokens need no vocabulary
    if fit_path in (None, "-"):
        what = "a vocabulary for ids" if name in ("char", "word") else "a model"
        raise CharnnError(f"--tokenizer {name} needs {what}: give --model CHECKPOINT"
                          f"{'|FILE.model' if name in ('bpe', 'unigram') else ''}, or a FILE to fit it on", 2)
    from charnn.data import iter_text

    opts = {k: v for k, v in fit_opts.items() if v is not None}
    shown = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in opts.items())
    sys.stderr.write(f"fitting a {name} tokenizer on {fit_path}{f' ({shown})' if shown else ''}; "
                     "pass --model to use a trained model's\n")
    return cls.fit(lambda: iter_text(Path(fit_path), encoding=encoding), **opts)


def _model_tokenizer(model: str, name: str | None):
    from charnn.tokenizers import tokenizer_from_dict
    from charnn.tokenizers.subword import BPETokenizer, UnigramTokenizer

    if model.endswith(".model") and Path(model).is_file():
        return (UnigramTokenizer if name == "unigram" else BPETokenizer).from_file(model)
    return tokenizer_from_dict(_load_checkpoint(model)["tokenizer"])


def _load_checkpoint(model: str) -> dict:
    from charnn import checkpoint

    return checkpoint.load(checkpoint.resolve(model))


class _Unfitted:
    """char and word tokens without a vocabulary: every character, or every split_words token."""

    def __init__(self, name: str):
        from charnn.tokenizers.word import split_words

        self.name = name
        self.tokens = list if name == "char" else split_words


def _stdout():
    """Write UTF-8 to stdout whatever the locale; flush per line so pipelines stream."""
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        return sys.stdout.write, sys.stdout.flush
    return (lambda s: out.write(s.encode("utf-8"))), out.flush
