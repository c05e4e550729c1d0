"""From text on disk to batches of token ids.

    text file(s) / stdin / catalog name                    CorpusText: files in order, documents?
      -> chunks of str (validated UTF-8; errors name the file and byte offset)
      -> with --docs: documents, each framed by the end-of-document id (charnn.documents)
      -> tokenizer fit + encode, cached on disk as a raw id file keyed by content hash and
         tokenizer, memory-mapped (a second run skips encoding; RAM stays flat in corpus size)
      -> split: train = first (1 - val_frac), val = the rest (nanoGPT's convention)
      -> batchify: B parallel streams, (B, L); chunks of T steps for truncated BPTT
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from charnn import atomic
from charnn.atomic import atomic_path
from charnn.errors import CharnnError
from charnn.tokenizers import Tokenizer, get_tokenizer_class, tokenizer_from_dict

CHUNK_BYTES = 1 << 22  # 4 MiB of text per encode call: large enough for numpy, small for RAM
CACHE_VERSION = 1
FLUSH_TOKENS = 1 << 20   # document ids are gathered into writes of about this many


def cache_dir() -> Path:
    root = os.environ.get("CHARNN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "charnn"
    )
    return Path(root)


# ----------------------------------------------------------------------------------------------
# Reading text


def open_bytes(path: Path) -> BinaryIO:
    """open(path, "rb"), with the reasons a user can cause as one-line CharnnErrors."""
    try:
        return open(path, "rb")
    except IsADirectoryError:
        raise CharnnError(f"{path} is a directory, not a text file") from None
    except FileNotFoundError:
        raise CharnnError(f"{path}: no such file") from None
    except PermissionError:
        raise CharnnError(f"{path}: permission denied") from None


def check_encoding(encoding: str) -> str:
    """The codec's canonical name ("latin-1" -> "iso8859-1"); CharnnError for an unknown one."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise CharnnError(f"--encoding {encoding}: unknown encoding (e.g. utf-8, latin-1, cp1252, "
                          "utf-16)", 2) from None


def decode_error(what: str, encoding: str, where: str) -> CharnnError:
    """The one-line error for text that does not decode, saying what to do about it."""
    if codecs.lookup(encoding).name == "utf-8":
        return CharnnError(f"{what}: not valid UTF-8 {where}; if the text is in another encoding, "
                           "say which with --encoding (e.g. --encoding latin-1)")
    return CharnnError(f"{what}: not valid {encoding} {where}")


def iter_text(path: Path, chunk_bytes: int = CHUNK_BYTES, encoding: str = "utf-8") -> Iterator[str]:
    """Yield the file as str chunks that end on a line break where one is near.

    Raises CharnnError naming the file and byte offset for text that does not decode, or for
    NUL bytes (in UTF-8 and the 8-bit encodings, a sign of a binary file).
    """
    utf8 = check_encoding(encoding) == "utf-8"
    nul_ok = not utf8 and codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0  # bytes consumed before the current block
    carry = ""
    with open_bytes(path) as f:
        first = True
        while True:
            block = f.read(chunk_bytes)
            if first and utf8 and block.startswith(codecs.BOM_UTF8):
                block, offset = block[3:], 3
            first = False
            nul = -1 if nul_ok else block.find(b"\0")
            if nul >= 0:
                raise CharnnError(f"{path}: NUL byte at byte offset {offset + nul}: not a text file")
            held = len(decoder.getstate()[0])  # bytes of a split character kept from the last block
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                # e.start counts from the held-back bytes plus this block
                raise decode_error(str(path), encoding,
                                   f"at byte offset {max(0, offset - held + e.start)}") from None
            offset += len(block)
            text = carry + text
            if not block:
                if text:
                    yield text
                return
            cut = text.rfind("\n") + 1  # keep lines whole where possible
            if cut == 0 or len(text) - cut > chunk_bytes:
                cut = len(text)
            carry = text[cut:]
            if cut:
                yield text[:cut]


def spool_stdin() -> Path:
    """Copy standard input to a file in the cache (a corpus is read more than once)."""
    if sys.stdin is None or sys.stdin.isatty():
        raise CharnnError("corpus '-' means standard input, but nothing is piped in", 2)
    d = cache_dir() / "stdin"
    d.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    blank = True
    with atomic_path(d / "stdin.txt", suffix=".txt", prefix=".") as pending:
        with open(pending.tmp, "wb") as out:
            src = sys.stdin.buffer
            while block := src.read(CHUNK_BYTES):
                h.update(block)
                out.write(block)
                blank = blank and not block.strip()
        if blank:       # said here: the spool's path in the cache would mean nothing to a user
            raise CharnnError("standard input is empty (or only whitespace): nothing to train on")
        pending.target = d / f"{h.hexdigest()[:24]}.txt"     # named by its content
    return pending.target


@dataclass(frozen=True)
class CorpusText:
    """The text a run reads: files in order, as one text (a line break between two files where
    the first lacks one), or with `docs` as documents (charnn.documents.MODES)."""

    files: tuple[Path, ...]
    docs: str | None = None
    encoding: str = "utf-8"           # a codec name, canonical (check_encoding)

    def __post_init__(self):
        object.__setattr__(self, "encoding", check_encoding(self.encoding))

    @classmethod
    def of(cls, corpus: Path | str | CorpusText, encoding: str = "utf-8") -> CorpusText:
        return corpus if isinstance(corpus, CorpusText) else cls((Path(corpus),), encoding=encoding)

    @property
    def name(self) -> str:
        """For messages: the file, or the first file and how many more."""
        more = len(self.files) - 1
        return str(self.files[0]) + (f" (and {more} more file{'s' * (more > 1)})" if more else "")

    def digest(self) -> str:
        """The contents' sha256: a single file's own, or a hash of the files' hashes in order."""
        if len(self.files) == 1:
            return file_digest(self.files[0])
        h = hashlib.sha256(b"charnn-files-v1\n")
        for f in self.files:
            h.update(file_digest(f).encode() + b"\n")
        return h.hexdigest()

    def chunks(self) -> Iterator[str]:
        """The files as one text, in str chunks."""
        last = "\n"
        for f in self.files:
            if not last.endswith("\n"):
                yield "\n"
            for last in iter_text(f, encoding=self.encoding):
                yield last

    def documents(self) -> Iterator[str]:
        from charnn import documents

        for f in self.files:
            text = iter_text(f, encoding=self.encoding)
            yield from documents.whole(text) if self.docs == "files" else documents.split(text, self.docs)

    def source(self):
        """A restartable text source (tokenizers.base.TextSource) for fitting a tokenizer."""
        return self.documents if self.docs else self.chunks


# ----------------------------------------------------------------------------------------------
# Encoding with an on-disk cache


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes, remembered per (path, size, mtime) so a second run skips it."""
    st = path.stat()
    index_path = cache_dir() / "digests.json"
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key in index:
        return index[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    index[key] = digest = h.hexdigest()
    index_path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(index_path, json.dumps(index))
    return digest


def _id_dtype(vocab_size: int) -> np.dtype:
    """The smallest id type: a character corpus is mostly under 256 symbols, and its cache file
    is then the size of the text (encoding a large corpus is bound by writing it)."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


@dataclass
class EncodedCorpus:
    """A corpus seen through one tokenizer: ids is a read-only memmap of shape (N,).
    fingerprints: with documents, each document's fingerprint (charnn.documents), sorted."""

    path: Path
    tokenizer: Tokenizer
    ids: np.ndarray
    digest: str
    from_cache: bool
    fingerprints: np.ndarray | None = None


def encode_corpus(
    path: Path | CorpusText,
    tokenizer_name: str = "char",
    fit_options: dict[str, Any] | None = None,
    tokenizer: Tokenizer | None = None,
    encoding: str = "utf-8",
) -> EncodedCorpus:
    """Fit (unless `tokenizer` is given) and encode the file(s), decoded from `encoding` (or the
    CorpusText's own), through the on-disk cache. With documents the tokenizer gains an
    end-of-document id if it has none."""
    corpus = CorpusText.of(path, encoding)
    for f in corpus.files:
        if not f.exists():
            raise CharnnError(f"{f}: no such file")
        if f.is_dir():
            raise CharnnError(f"{f} is a directory, not a text file")
    path = corpus.files[0]
    fit_options = dict(fit_options or {})
    digest = corpus.digest()
    spec = {"v": CACHE_VERSION, "corpus": digest, "tokenizer": tokenizer_name, "options": fit_options}
    if corpus.encoding != "utf-8":
        spec["encoding"] = corpus.encoding     # utf-8 keys stay as they were: old caches stay valid
    if corpus.docs:
        spec["docs"] = corpus.docs
        tokenizer = tokenizer.with_eod() if tokenizer is not None else None
    if tokenizer is not None:
        spec["fixed"] = hashlib.sha256(json.dumps(tokenizer.to_dict(), sort_keys=True,
                                                  default=repr).encode()).hexdigest()
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]
    d = cache_dir() / "encoded"
    meta_path, ids_path = d / f"{key}.json", d / f"{key}.ids"

    fp_path = d / f"{key}.fp"
    meta = _read_meta(meta_path)
    if meta is not None and ids_path.exists() and (not corpus.docs or fp_path.exists()):
        tok = tokenizer or tokenizer_from_dict(meta["tokenizer"])
        n = int(meta["length"])
        ids = np.memmap(ids_path, dtype=np.dtype(meta["dtype"]), mode="r", shape=(n,)) if n else \
            np.zeros(0, dtype=np.dtype(meta["dtype"]))
        fps = np.fromfile(fp_path, dtype=np.int64) if corpus.docs else None
        return EncodedCorpus(path, tok, ids, digest, True, fps)

    source = corpus.source()          # restartable: a fresh pass each call
    if tokenizer is None:
        if _is_blank(source):
            raise CharnnError(f"{corpus.name}: the corpus is empty or holds only whitespace"
                              + (" (no documents)" if corpus.docs else ""))
        tokenizer = get_tokenizer_class(tokenizer_name).fit(source, **fit_options)
        tokenizer = tokenizer.with_eod() if corpus.docs else tokenizer
    dtype = _id_dtype(tokenizer.vocab_size)
    d.mkdir(parents=True, exist_ok=True)
    n, fps = 0, None
    try:
        with atomic.atomic_file(ids_path) as out:     # a full disk leaves no half-written entry
            blocks = _DocumentIds(tokenizer, corpus) if corpus.docs else tokenizer.encode_chunks(source)
            for ids in blocks:
                out.write(ids.astype(dtype, copy=False).tobytes())
                n += len(ids)
            if corpus.docs:
                fps = blocks.fingerprints
                atomic.write_bytes(fp_path, fps.tobytes())
    except CharnnError as e:
        if str(path) not in str(e):
            # e.g. a character the model's vocabulary lacks: say which file holds it
            raise CharnnError(f"{corpus.name}: {e}", e.code) from None
        raise
    atomic.write_text(meta_path, json.dumps(
        {"length": n, "dtype": dtype.str, "tokenizer": tokenizer.to_dict(), "corpus": str(path)},
        default=_json_bytes))
    ids = np.memmap(ids_path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
    return EncodedCorpus(path, tokenizer, ids, digest, False, fps)


class _DocumentIds:
    """Iterate the corpus's documents as id blocks framed by the end-of-document id
    (EOD d1 EOD d2 ... EOD), FLUSH_TOKENS at a time; then .fingerprints holds the documents'."""

    def __init__(self, tokenizer: Tokenizer, corpus: CorpusText):
        self.tokenizer, self.corpus = tokenizer, corpus
        self.fingerprints = np.zeros(0, dtype=np.int64)

    def __iter__(self) -> Iterator[np.ndarray]:
        from charnn.documents import fingerprint

        eod = np.array([self.tokenizer.eod_id], dtype=np.int64)
        block, size, fps = [eod], 1, []
        for doc in self.corpus.documents():
            ids = self.tokenizer.encode(doc)
            if len(ids) == 0:
                continue
            fps.append(fingerprint(ids))
            block += [ids, eod]
            size += len(ids) + 1
            if size >= FLUSH_TOKENS:
                yield np.concatenate(block)
                block, size = [], 0
        if not fps:
            raise CharnnError(f"{self.corpus.name}: no documents (--docs {self.corpus.docs}) in the corpus")
        if block:
            yield np.concatenate(block)
        self.fingerprints = np.unique(np.asarray(fps, dtype=np.int64))


def encode_known(path: Path, tokenizer: Tokenizer, encoding: str = "utf-8") -> tuple[np.ndarray, dict[str, int]]:
    """Encode a file with a char tokenizer, leaving out the characters its vocabulary lacks:
    (ids, {character: times left out}). For scoring held-out text (`charnn eval --unknown skip`);
    other tokenizers encode any text, so their ids come back whole."""
    if not hasattr(tokenizer, "encode_known"):
        return encode_corpus(path, tokenizer.name, tokenizer=tokenizer, encoding=encoding).ids, {}
    parts, skipped = [], {}
    for chunk in iter_text(path, encoding=encoding):
        ids, left_out = tokenizer.encode_known(chunk)
        parts.append(ids)
        for c in left_out:
            skipped[c] = skipped.get(c, 0) + 1
    return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), skipped


def _json_bytes(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        import base64
        return {"__bytes__": base64.b64encode(bytes(o)).decode()}
    raise TypeError(f"cannot store {type(o).__name__} in the cache")


def _unjson_bytes(o: dict) -> Any:
    if set(o) == {"__bytes__"}:
        import base64
        return base64.b64decode(o["__bytes__"])
    return o


def _read_meta(meta_path: Path) -> dict | None:
    try:
        return json.loads(meta_path.read_text(), object_hook=_unjson_bytes)
    except (OSError, ValueError):
        return None


def _is_blank(source) -> bool:
    return all(not chunk.strip() for chunk in source())


# ----------------------------------------------------------------------------------------------
# Split, batchify, chunks


def split(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """train = first (1 - val_frac) of the tokens, val = the rest (nanoGPT's split)."""
    n_train = int(len(ids) * (1.0 - val_frac))
    return ids[:n_train], ids[n_train:]


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """(N,) -> (B, L): B contiguous streams, each read left to right across chunks.

    token array  a b c d e f g h i j k l      B = 2
    streams      row 0: a b c d e f           (the tail that does not fill a row is dropped)
                 row 1: g h i j k l
    A view of the memmap: nothing is copied.
    """
    stream_len = len(ids) // batch_size
    return ids[: batch_size * stream_len].reshape(batch_size, stream_len)


def num_chunks(streams: np.ndarray, seq_len: int) -> int:
    """Chunks per pass over (B, L) streams; each needs one extra step for its targets."""
    return max(0, -(-(streams.shape[1] - 1) // seq_len))


def get_chunk(streams: np.ndarray, index: int, seq_len: int) -> np.ndarray:
    """Chunk `index` as a (B, t + 1) int64 array: inputs [:, :-1], targets [:, 1:]; t <= T."""
    start = index * seq_len
    end = min(start + seq_len + 1, streams.shape[1])
    return np.ascontiguousarray(streams[:, start:end], dtype=np.int64)


def check_trainable(n_train: int, n_val: int, batch_size: int, seq_len: int) -> list[str]:
    """Raise if the splits cannot make a single batch; return warnings worth showing."""
    if n_train < 2 * batch_size:
        raise CharnnError(
            f"the training split has {n_train} tokens, too few for --batch-size {batch_size} "
            f"(need at least {2 * batch_size}); use a longer corpus or a smaller --batch-size"
        )
    warnings = []
    if n_train // batch_size < seq_len + 1:
        warnings.append(
            f"each of the {batch_size} streams holds only {n_train // batch_size} tokens, fewer "
            f"than --seq-len {seq_len}: chunks will be shorter"
        )
    if n_val < 2:
        raise CharnnError("the validation split is empty; use a longer corpus or a larger --val-frac")
    return warnings
