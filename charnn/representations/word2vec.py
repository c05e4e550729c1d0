"""Word vectors with gensim's word2vec: build, load (any common format), query and evaluate.

    text file / stdin / catalog name
      -> charnn's word tokenizer (split_words), one sentence per line, tokens joined by spaces,
         written once to the cache (keyed by content hash + preprocessing) with its word counts
      -> gensim Word2Vec in corpus_file mode: C++ threads read the file directly, so the corpus
         is never held in RAM and training scales with cores; memory grows with the vocabulary
      -> KeyedVectors, saved atomically as gensim's native .kv or the word2vec text/binary format

Words are what `charnn.tokenizers.word.split_words` yields (punctuation marks are words too), so
the vectors line up with word-level language models; newline tokens end sentences.

No typer or rich here: progress goes through a callback of plain dict events.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from charnn import atomic
from charnn.atomic import atomic_file, atomic_path
from charnn.errors import CharnnError
from charnn.machine import available_cores
from charnn.tokenizers.word import split_words

PREP_VERSION = 1  # bump when the preprocessing changes, so old cached corpus files are not reused
FORMATS = ("native", "word2vec-text", "word2vec-bin")

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class EmbedConfig:
    """word2vec settings; the CLI flags map 1:1 to these fields."""

    dim: int = 100              # vector size
    window: int = 5             # max distance between a word and its context words
    min_count: int = 5          # words rarer than this are dropped
    sg: bool = False            # skip-gram (True) or CBOW (False, gensim's default)
    negative: int = 5           # negative samples; 0 switches to hierarchical softmax
    epochs: int = 5
    workers: Optional[int] = None   # None: all cores available to this process
    seed: int = 1
    lowercase: bool = False
    max_vocab: Optional[int] = None  # keep at most this many most frequent words
    encoding: str = "utf-8"          # the corpus' text encoding

    def validate(self) -> None:
        for name, low in (("dim", 1), ("window", 1), ("min_count", 1), ("negative", 0), ("epochs", 1)):
            if getattr(self, name) < low:
                raise CharnnError(f"--{name.replace('_', '-')} must be at least {low}", 2)
        if self.workers is not None and self.workers < 1:
            raise CharnnError("--workers must be at least 1", 2)
        if self.max_vocab is not None and self.max_vocab < 1:
            raise CharnnError("--max-vocab must be at least 1", 2)


# ----------------------------------------------------------------------------------------------
# Preprocessing: a corpus -> one tokenized sentence per line, cached


@dataclass(frozen=True)
class PreparedCorpus:
    path: Path                  # sentence-per-line file, tokens separated by single spaces
    counts: dict[str, int]      # word -> occurrences, in order of first occurrence
    sentences: int
    words: int
    cached: bool                # True when a previous run had already written it


# a run of newlines and the spaces around them: the sentence breaks in " ".join(tokens)
_BREAKS = re.compile(r" *\n[ \n]*")


def prepare_corpus(source: Path, lowercase: bool = False, progress: Progress | None = None,
                   encoding: str = "utf-8") -> PreparedCorpus:
    """Tokenize `source` once into the cache; later calls with the same bytes and options reuse it.

    Streams: one chunk of text (a few MiB) and the word counts are in memory at a time.
    """
    from charnn.data import cache_dir, check_encoding, file_digest, iter_text

    source = Path(source)
    if not source.is_file():
        raise CharnnError(f"{source}: no such file" if not source.exists() else f"{source} is not a file")
    encoding = check_encoding(encoding)
    key = (f"{file_digest(source)[:24]}-v{PREP_VERSION}{'-lower' if lowercase else ''}"
           f"{'' if encoding == 'utf-8' else '-' + encoding}")
    d = cache_dir() / "embed"
    text_path, meta_path = d / f"{key}.txt", d / f"{key}.json"
    meta = _read_json(meta_path)
    if (isinstance(meta, dict) and isinstance(meta.get("counts"), dict) and text_path.is_file()
            and text_path.stat().st_size == meta.get("bytes")):  # else (re)write both
        return PreparedCorpus(text_path, meta["counts"], int(meta.get("sentences", 0)),
                              int(meta.get("words", 0)), cached=True)

    d.mkdir(parents=True, exist_ok=True)
    total_bytes = source.stat().st_size
    counts: Counter[str] = Counter()
    sentences = done = 0
    with atomic_file(text_path, "w", suffix=".part") as out:
        open_line = False  # the last chunk ended inside a line (a line longer than a chunk)
        for chunk in iter_text(source, encoding=encoding):
            done += len(chunk.encode("utf-8"))
            if lowercase:
                chunk = chunk.lower()
            tokens = split_words(chunk)
            counts.update(tokens)
            text = _BREAKS.sub("\n", " ".join(tokens))
            if not open_line:
                text = text.lstrip("\n")
            if text:
                out.write((" " if open_line and text[0] != "\n" else "") + text)
                sentences += text.count("\n")
                open_line = not text.endswith("\n")
            if progress:
                progress({"event": "prepare", "done": done, "total": total_bytes})
        if open_line:
            out.write("\n")
            sentences += 1
        counts.pop("\n", None)
        words = sum(counts.values())
        if words == 0:
            raise CharnnError(f"{source}: the corpus has no words")
    counts_dict = dict(counts)
    atomic.write_text(meta_path, json.dumps({
        "source": str(source), "lowercase": lowercase, "sentences": sentences, "words": words,
        "bytes": text_path.stat().st_size, "counts": counts_dict,
    }, ensure_ascii=False))
    return PreparedCorpus(text_path, counts_dict, sentences, words, cached=False)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class BuildStats:
    corpus_words: int       # words per pass over the corpus
    sentences: int
    vocab: int              # words kept (after --min-count / --max-vocab)
    distinct: int           # distinct words in the corpus
    seconds: float          # training time (excluding preprocessing)
    words_per_sec: float    # corpus words per second of training, all epochs
    cached: bool            # the preprocessed corpus came from the cache


def build(source: Path, config: EmbedConfig = EmbedConfig(), progress: Progress | None = None):
    """Train word2vec on a corpus file -> (gensim KeyedVectors, BuildStats)."""
    config.validate()
    corpus = prepare_corpus(source, config.lowercase, progress, config.encoding)
    return train_prepared(corpus, config, progress)


def train_prepared(corpus: PreparedCorpus, config: EmbedConfig, progress: Progress | None = None):
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    config.validate()
    workers = config.workers or available_cores()
    model = Word2Vec(
        vector_size=config.dim, window=config.window, min_count=config.min_count, sg=int(config.sg),
        negative=config.negative, hs=int(config.negative == 0), epochs=config.epochs,
        workers=workers, seed=config.seed, max_final_vocab=config.max_vocab,
    )
    # the counts from preprocessing stand in for gensim's own vocabulary scan (a second pass
    # over the corpus in Python); same words, same first-occurrence order, so the same vocabulary
    model.build_vocab_from_freq(dict(corpus.counts), corpus_count=corpus.sentences)
    model.corpus_total_words = corpus.words
    if len(model.wv) == 0:
        top, n = max(corpus.counts.items(), key=lambda kv: kv[1])
        raise CharnnError(
            f"no word occurs at least --min-count {config.min_count} times (the most frequent, "
            f"{top!r}, occurs {n} time{'s' if n != 1 else ''}); lower --min-count or use a larger corpus"
        )
    if progress:
        progress({"event": "start", "vocab": len(model.wv), "distinct": len(corpus.counts),
                  "corpus_words": corpus.words, "sentences": corpus.sentences, "epochs": config.epochs,
                  "workers": workers, "cached": corpus.cached})

    class _Epochs(CallbackAny2Vec):
        # gensim reports only epoch boundaries in corpus_file mode (its C++ workers report once
        # per epoch), so progress is per epoch; the first epoch's rate gives the ETA
        def __init__(self):
            self.epoch = 0
            self.t0 = time.perf_counter()

        def on_epoch_end(self, _model):
            self.epoch += 1
            elapsed = time.perf_counter() - self.t0
            rate = corpus.words * self.epoch / elapsed if elapsed > 0 else float("nan")
            if progress:
                progress({"event": "epoch", "epoch": self.epoch, "epochs": config.epochs,
                          "words_per_sec": rate, "elapsed": elapsed,
                          "eta": elapsed / self.epoch * (config.epochs - self.epoch)})

    cb = _Epochs()
    model.train(corpus_file=str(corpus.path), total_words=corpus.words, epochs=config.epochs,
                callbacks=[cb])
    seconds = time.perf_counter() - cb.t0
    stats = BuildStats(corpus.words, corpus.sentences, len(model.wv), len(corpus.counts), seconds,
                       corpus.words * config.epochs / seconds if seconds > 0 else float("nan"),
                       corpus.cached)
    if progress:
        progress({"event": "done", **asdict(stats)})
    return model.wv, stats


# ----------------------------------------------------------------------------------------------
# Saving and loading


def format_for(path: Path, fmt: str | None = None) -> str:
    """The output format: as asked, or from the suffix (.txt/.vec text, .bin binary, else native)."""
    if fmt and fmt != "auto":
        if fmt not in FORMATS:
            raise CharnnError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}", 2)
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() not in (".gz", ".bz2")]
    last = suffixes[-1] if suffixes else ""
    return {".txt": "word2vec-text", ".vec": "word2vec-text", ".bin": "word2vec-bin"}.get(last, "native")


def save(kv, path: Path, fmt: str | None = None) -> str:
    """Write vectors atomically (temp file + rename); returns the format written.

    The native format is written as ONE self-contained pickle (no .npy side files, which gensim
    adds for arrays over 10 MB by default), so the rename publishes it whole or not at all.
    A name ending in .gz/.bz2 is compressed (gensim opens files through smart_open).
    """
    fmt = format_for(path, fmt)
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise CharnnError(f"{parent}: no such directory")
    # the temp name ends with the real name, so compression by suffix is decided the same way
    with atomic_path(path, prefix=".", suffix=f".part-{path.name}") as pending:
        if fmt == "native":
            kv.save(pending.tmp, sep_limit=1 << 62)
        else:
            kv.save_word2vec_format(pending.tmp, binary=fmt == "word2vec-bin")
    return fmt


def detect_format(path: Path) -> str:
    """'native' (gensim pickle), 'word2vec-text', 'word2vec-text-noheader' (GloVe) or
    'word2vec-bin', from the file's first bytes. Compressed .gz/.bz2 files are looked into."""
    path = Path(path)
    if not path.exists():
        raise CharnnError(f"{path}: no such file")
    if path.is_dir():
        raise CharnnError(f"{path} is a directory, not a vectors file")
    try:
        with _open_maybe_compressed(path) as f:
            head = f.read(1 << 16)
    except (OSError, EOFError, ValueError) as e:
        raise CharnnError(f"{path}: cannot read it: {e}") from None
    if not head:
        raise CharnnError(f"{path}: empty file, not word vectors")
    if head[:1] == b"\x80":
        return "native"
    first, _, rest = head.partition(b"\n")
    parts = first.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        dim = int(parts[1])
        line = rest.split(b"\n", 1)[0]
        try:
            fields = line.decode("utf-8").split()
        except UnicodeDecodeError:
            fields = []
        if len(fields) >= 2 and all(_is_float(x) for x in fields[1:]) and b"\0" not in line:
            if len(fields) == dim + 1:
                return "word2vec-text"
            raise CharnnError(f"{path}: its header says {dim}-dimensional vectors, but its first "
                              f"row holds {len(fields) - 1} values")
        return "word2vec-bin"
    try:
        fields = first.decode("utf-8").split()
    except UnicodeDecodeError:
        fields = []
    if len(fields) >= 2 and all(_is_float(x) for x in fields[1:]):
        return "word2vec-text-noheader"
    raise CharnnError(f"{path}: not a word-vectors file (expected gensim's native .kv, "
                      "or the word2vec text or binary format)")


def _open_maybe_compressed(path: Path):
    with open(path, "rb") as f:
        magic = f.read(3)
    if magic[:2] == b"\x1f\x8b":
        import gzip

        return gzip.open(path, "rb")
    if magic == b"BZh":
        import bz2

        return bz2.open(path, "rb")
    return open(path, "rb")


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def load(path: Path):
    """Any word-vector file -> gensim KeyedVectors (the format is detected from its content).

    Native files are unpickled with an allow-list (gensim's KeyedVectors classes and numpy
    arrays only), so a .kv file from elsewhere cannot run code on load.
    """
    from gensim.models import KeyedVectors

    path = Path(path)
    fmt = detect_format(path)
    try:
        if fmt == "native":
            kv = _load_native(path)
        else:
            kv = KeyedVectors.load_word2vec_format(
                str(path), binary=fmt == "word2vec-bin", no_header=fmt == "word2vec-text-noheader",
                unicode_errors="replace")
    except CharnnError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # gensim/numpy/pickle raise many types for a damaged file
        raise CharnnError(f"{path}: damaged or unreadable {fmt} vectors file "
                          f"({type(e).__name__}: {_short(e)})") from None
    if not isinstance(kv, KeyedVectors) or kv.vectors is None or len(kv) == 0:
        raise CharnnError(f"{path}: holds no word vectors")
    if kv.vectors.ndim != 2 or kv.vectors.shape[0] != len(kv.index_to_key):
        raise CharnnError(f"{path}: damaged vectors file (vectors and vocabulary disagree)")
    return kv


def _short(e: BaseException, limit: int = 160) -> str:
    s = str(e).splitlines()[0] if str(e) else ""
    return s if len(s) <= limit else s[:limit] + "..."


_SAFE_GLOBALS = {
    ("gensim.models.keyedvectors", n) for n in ("KeyedVectors", "Word2VecKeyedVectors", "Vocab",
                                                "CompatVocab", "EuclideanKeyedVectors")
} | {
    (m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
    for n in ("_reconstruct", "scalar")
} | {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("copyreg", "_reconstructor"), ("builtins", "object"),
    ("builtins", "set"), ("builtins", "frozenset"), ("collections", "defaultdict"),
    ("collections", "OrderedDict"), ("builtins", "int"), ("builtins", "float"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise CharnnError(f"refusing to unpickle {module}.{name}: not part of gensim's KeyedVectors "
                          "format (the file may be another kind of gensim model, or unsafe)")


def _load_native(path: Path):
    """gensim's KeyedVectors.load with a restricted unpickler (side .npy files load without
    pickle, as numpy's allow_pickle=False)."""
    from gensim import utils

    compress, subname = utils.SaveLoad._adapt_by_suffix(str(path))
    with _open_maybe_compressed(path) as f:
        obj = _SafeUnpickler(f, encoding="latin1").load()
    if getattr(obj, "__scipys", None) or getattr(obj, "__recursive_saveloads", None):
        raise CharnnError(f"{path}: not a plain KeyedVectors file")
    missing = [a for a in getattr(obj, "__numpys", []) if not os.path.exists(subname(str(path), a))]
    if missing:
        raise CharnnError(f"{path}: its side file {subname(str(path), missing[0])} is missing "
                          "(gensim stores big arrays next to the .kv file; keep them together)")
    obj._load_specials(str(path), None, compress, subname)
    return obj


# ----------------------------------------------------------------------------------------------
# Queries


def check_words(kv, words: Iterable[str], what: str = "vectors") -> None:
    """CharnnError naming every word not in the vocabulary (with a case hint when it helps)."""
    missing = [w for w in dict.fromkeys(words) if w not in kv.key_to_index]
    if not missing:
        return
    shown = ", ".join(repr(w) for w in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    hint = ""
    lowered = [w.lower() for w in missing if w.lower() != w and w.lower() in kv.key_to_index]
    if lowered:
        hint = f" (but {lowered[0]!r} is; the vectors may be lowercased)"
    noun = "word is" if len(missing) == 1 else "words are"
    raise CharnnError(f"{len(missing)} {noun} not in the vocabulary of {what} ({len(kv):,} words): "
                      f"{shown}{hint}")


def similar(kv, word: str, topn: int = 10) -> list[tuple[str, float]]:
    """The `topn` nearest words by cosine similarity (the word itself excluded)."""
    _check_topn(topn)
    return [(w, float(s)) for w, s in kv.most_similar(positive=[word], topn=topn)]


def analogy(kv, a: str, b: str, c: str, topn: int = 5) -> list[tuple[str, float]]:
    """a is to b as c is to ?: the words nearest b - a + c (3CosAdd; a, b, c excluded)."""
    _check_topn(topn)
    return [(w, float(s)) for w, s in kv.most_similar(positive=[b, c], negative=[a], topn=topn)]


def _check_topn(topn: int) -> None:
    if topn < 1:
        raise CharnnError("--topn must be at least 1", 2)


# ----------------------------------------------------------------------------------------------
# Evaluation against gensim's bundled test sets


ANALOGY_SETS = ("questions-words.txt",)
SIMILARITY_SETS = ("wordsim353.tsv", "simlex999.txt")


def evaluate(kv, restrict: int = 300_000, analogies: Iterable[Path] | None = None,
             similarities: Iterable[Path] | None = None) -> list[dict[str, Any]]:
    """Score analogies (accuracy) and word-pair similarity (Spearman) -> one dict per test set.

    Like gensim (and the word2vec papers), only the `restrict` most frequent words are
    searched and words match case-insensitively; items with a word outside that vocabulary are
    skipped, and `covered` / `total` says how many were scored.
    """
    import warnings

    from gensim.test.utils import datapath

    if restrict < 1:
        raise CharnnError("--restrict must be at least 1", 2)
    analogies = list(analogies) if analogies is not None else [Path(datapath(n)) for n in ANALOGY_SETS]
    similarities = list(similarities) if similarities is not None else [Path(datapath(n)) for n in SIMILARITY_SETS]
    vocab = {k.upper() for k in kv.index_to_key[:restrict]}
    results = []
    for path in analogies:
        items = _read_items(path, 4, comment=":")
        covered = sum(all(w.upper() in vocab for w in item) for item in items)
        score = None
        if covered:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                score, _ = kv.evaluate_word_analogies(str(path), restrict_vocab=restrict)
        results.append({"test": Path(path).name, "kind": "analogy", "metric": "accuracy",
                        "score": float(score) if score is not None else None,
                        "covered": covered, "total": len(items)})
    for path in similarities:
        items = _read_items(path, 3, comment="#", delimiter="\t")
        covered = sum(all(w.upper() in vocab for w in item[:2]) for item in items)
        score = None
        if covered >= 2:  # a correlation needs two points
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, spearman, _ = kv.evaluate_word_pairs(str(path), restrict_vocab=restrict)
            rho = float(spearman[0])
            score = rho if rho == rho else None  # NaN when the covered scores are all equal
        results.append({"test": Path(path).name, "kind": "similarity", "metric": "spearman",
                        "score": score, "covered": covered, "total": len(items)})
    return results


def _read_items(path: Path, n: int, comment: str, delimiter: str | None = None) -> list[list[str]]:
    """The test items of a file as gensim reads them (n fields per line, comment lines skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CharnnError(f"{path}: cannot read the test set: {e}") from None
    items = []
    for line in lines:
        if not line or line.startswith(comment):
            continue
        fields = line.split(delimiter)
        if len(fields) == n:
            items.append(fields)
    return items
