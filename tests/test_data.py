"""data.py and the char tokenizer: reading, validation, caching, batchify."""

from __future__ import annotations

import numpy as np
import pytest

from charnn.data import batchify, encode_corpus, get_chunk, iter_text, num_chunks, split
from charnn.errors import CharnnError
from charnn.tokenizers.char import CharTokenizer
from tests.conftest import MIXED


def test_char_tokenizer_round_trips_mixed_scripts():
    tok = CharTokenizer.fit(lambda: [MIXED])
    ids = tok.encode(MIXED)
    assert len(ids) == len(MIXED)            # one id per code point, not per byte
    assert tok.decode(ids) == MIXED
    assert "🙂" in tok.chars and "我" in tok.chars
    assert tok.vocab_size == len(set(MIXED))
    again = CharTokenizer.from_state(tok.state())
    assert again.chars == tok.chars


def test_char_tokenizer_names_unknown_characters():
    tok = CharTokenizer.fit(lambda: ["abc"])
    with pytest.raises(CharnnError, match="'z'"):
        tok.encode("abz")


def test_batchify_lays_out_parallel_streams():
    ids = np.arange(12)
    streams = batchify(ids, 2)
    assert streams.tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    # chunk i of T steps: inputs [:, :-1] and targets shifted by one
    c0, c1 = get_chunk(streams, 0, 3), get_chunk(streams, 1, 3)
    assert c0.tolist() == [[0, 1, 2, 3], [6, 7, 8, 9]]
    assert c1.tolist() == [[3, 4, 5], [9, 10, 11]]
    assert num_chunks(streams, 3) == 2


def test_split_is_first_90_percent_train():
    train, val = split(np.arange(1000), 0.1)
    assert len(train) == 900 and val[0] == 900


def test_invalid_utf8_names_file_and_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes("héllo wörld\n".encode() + b"ab\xff" + b"cd")
    with pytest.raises(CharnnError, match=r"bad\.txt: not valid UTF-8 at byte offset 16"):
        list(iter_text(p))


def test_invalid_utf8_offset_across_block_boundary(tmp_path):
    p = tmp_path / "bad.txt"
    data = b"a" * 9 + "é".encode() + b"b" * 5 + b"\xc3\x28"  # bad pair at offset 16
    p.write_bytes(data)
    with pytest.raises(CharnnError, match="byte offset 16"):
        list(iter_text(p, chunk_bytes=10))   # the é is split across the first two blocks


def test_iter_text_keeps_split_characters_whole(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(MIXED * 3, encoding="utf-8")
    assert "".join(iter_text(p, chunk_bytes=7)) == MIXED * 3


def test_encoding_is_cached_and_memory_mapped(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text(MIXED * 10, encoding="utf-8")
    first = encode_corpus(p)
    second = encode_corpus(p)
    assert not first.from_cache and second.from_cache
    assert isinstance(second.ids, np.memmap)
    assert second.tokenizer.decode(second.ids) == MIXED * 10
    p.write_text(MIXED * 11, encoding="utf-8")      # new content: encoded afresh
    assert not encode_corpus(p).from_cache


@pytest.mark.parametrize("content", ["", "  \n\t \n"])
def test_empty_corpus_is_refused(tmp_path, content):
    p = tmp_path / "e.txt"
    p.write_text(content)
    with pytest.raises(CharnnError, match="empty"):
        encode_corpus(p)
