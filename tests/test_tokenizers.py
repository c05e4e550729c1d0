"""Tokenizers: round trips, streaming decode, state through checkpoints, per-char accounting,
and a tiny model trained and sampled end to end with each."""

from __future__ import annotations

import io
import json
from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charnn.errors import CharnnError
from charnn.tokenizers import escape_token, get_tokenizer_class, tokenizer_from_dict
from charnn.tokenizers.word import join_words, split_words
from tests.conftest import MIXED, TINY_MODEL, cli

# a corpus mixing scripts, so sentencepiece sees real variety (vocab 400 > 256 bytes + chars)
CORPUS = MIXED * 8 + "the cat sat on the mat.\nA dog, a log; 42 dogs!\n" * 20
LOSSLESS = ("char", "byte", "bpe", "unigram")
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def fitted(name: str):
    return get_tokenizer_class(name).fit(lambda: iter([CORPUS]), vocab_size=400)


def stream(tok, ids) -> list[str]:
    d = tok.stream_decoder()
    return [d.push(int(i)) for i in ids] + [d.flush()]


@pytest.mark.parametrize("name", LOSSLESS)
def test_round_trip_mixed_script(name):
    tok = fitted(name)
    ids = tok.encode(MIXED)
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert tok.decode(ids) == MIXED
    assert "".join(stream(tok, ids)) == MIXED
    assert 0 <= ids.min() and ids.max() < tok.vocab_size


# text the subword and byte tokenizers never saw: any Unicode except surrogates
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@pytest.mark.parametrize("name", ("byte", "bpe", "unigram"))
@SETTINGS
@given(text=any_text)
def test_round_trip_any_text(name, text):
    tok = fitted(name)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert "".join(stream(tok, ids)) == text


@SETTINGS
@given(text=st.text(st.sampled_from(sorted(set(CORPUS))), max_size=80))
def test_char_round_trip_property(text):
    tok = fitted("char")
    assert tok.decode(tok.encode(text)) == text


def test_char_rejects_unknown_characters():
    with pytest.raises(CharnnError, match="not in the model's vocabulary"):
        fitted("char").encode("Ωmega")


def test_byte_needs_no_fitting_and_counts_characters_not_bytes():
    tok = fitted("byte")
    assert tok.vocab_size == 256
    ids = tok.encode("é🙂a")
    assert len(ids) == 2 + 4 + 1
    assert tok.count_chars(ids) == 3


def test_streaming_holds_a_multibyte_character_until_it_is_complete():
    tok = fitted("byte")
    pieces = stream(tok, tok.encode("🙂"))
    assert pieces[:3] == ["", "", ""] and pieces[3] == "🙂"
    sp = fitted("bpe")
    ids = sp.encode("ẞ")                    # not in the corpus: spelled as byte pieces
    assert len(ids) == 3
    assert stream(sp, ids)[:3] == ["", "", "ẞ"]


def test_subword_newline_is_its_own_piece_and_words_are_merged():
    for name in ("bpe", "unigram"):
        tok = fitted(name)
        nl = tok.id_of("\n")
        assert nl is not None
        ids = tok.encode("the cat\nthe cat")
        assert list(ids).count(nl) == 1
        assert len(ids) < len("the cat\nthe cat")  # merges happened


def test_subword_vocab_too_small_is_a_clear_error():
    with pytest.raises(CharnnError, match="--vocab-size"):
        get_tokenizer_class("bpe").fit(lambda: iter([CORPUS]), vocab_size=100)


# ---- word ---------------------------------------------------------------------------------------

def test_word_decoding_restores_readable_spacing():
    tok = get_tokenizer_class("word").fit(lambda: iter(["Hello, world. (Yes) \"no\" don't!\n"]))
    text = 'Hello, world. (Yes) "no" don\'t!\nHello, world.'
    assert tok.decode(tok.encode(text)) == text
    assert join_words(["Hello", ",", "world", "."]) == "Hello, world."


word_text = st.lists(st.sampled_from(["the", "cat", "don't", "well-known", "42", ",", ".", "!", "(",
                                      ")", '"', "'", "-", "\n", "мир", "。", "“", "”"]),
                     max_size=30).map(" ".join)


@SETTINGS
@given(text=word_text)
def test_word_round_trip_up_to_spacing(text):
    tok = get_tokenizer_class("word").fit(lambda: iter([text + " x"]))
    ids = tok.encode(text)
    decoded = tok.decode(ids)
    assert split_words(decoded) == split_words(text)      # same tokens, only spacing differs
    assert "".join(stream(tok, ids)) == decoded


def test_word_vocabulary_cut_and_unknown():
    text = "a a a b b c\n"
    tok = get_tokenizer_class("word").fit(lambda: iter([text]), min_count=2)
    assert tok.tokens("a b c d") == ["a", "b", "<unk>", "<unk>"]
    capped = get_tokenizer_class("word").fit(lambda: iter([text]), max_vocab=3)
    assert capped.vocab_size == 3 and capped.tokens("a b") == ["a", "<unk>"]
    # an <unk> counts as the mean length of the words it replaced (c: 1 char), not len("<unk>")
    assert tok.count_chars(tok.encode("a c")) == 3
    with pytest.raises(CharnnError, match="--min-count"):
        get_tokenizer_class("word").fit(lambda: iter([text]), min_count=0)


def test_split_words_contract_unchanged():
    assert split_words("Hello, world.\n") == ["Hello", ",", "world", ".", "\n"]
    assert split_words("don't well-known") == ["don't", "well-known"]


# ---- state, checkpoints, escapes -------------------------------------------------------------------

@pytest.mark.parametrize("name", ("char", "byte", "word", "bpe", "unigram"))
def test_state_survives_torch_weights_only_load_and_json_cache(name):
    from charnn.data import _json_bytes, _unjson_bytes

    tok = fitted(name)
    buf = io.BytesIO()
    torch.save({"tokenizer": tok.to_dict()}, buf)
    buf.seek(0)
    back = tokenizer_from_dict(torch.load(buf, weights_only=True)["tokenizer"])
    assert back.encode(CORPUS[:300]).tolist() == tok.encode(CORPUS[:300]).tolist()
    via_json = json.loads(json.dumps(tok.to_dict(), default=_json_bytes), object_hook=_unjson_bytes)
    assert tokenizer_from_dict(via_json).decode(tok.encode(MIXED)) == tok.decode(tok.encode(MIXED))


def test_escape_token_is_visible_and_space_free():
    assert escape_token(" ") == "\\s"
    assert escape_token("a\\b") == "a\\\\b"
    assert escape_token("\n\t") == "\\n\\t"
    assert escape_token(b"\xc3".decode("utf-8", "surrogateescape")) == "\\xc3"
    assert escape_token("\u00a0") == "\\u00a0"
    assert escape_token("мир🙂") == "мир🙂"


# ---- end to end: train a tiny model with each tokenizer and sample ---------------------------------

@pytest.mark.parametrize("name", ("char", "byte", "word", "bpe", "unigram"))
def test_train_and_sample_each_tokenizer(name, mixed_corpus, tmp_path):

    from charnn import checkpoint

    out = tmp_path / f"run_{name}"
    r = cli("train", str(mixed_corpus), "--tokenizer", name, "--vocab-size", "400", *TINY_MODEL,
            "--max-steps", "20", "--out", str(out), "--quiet", "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["steps"] == 20
    # per-character figures follow from per-token ones through the corpus' chars per token
    ck = checkpoint.load(out / "latest.pt")
    cpt = ck["progress"]["chars_per_token"]
    assert summary["val_nats_per_char"] == pytest.approx(summary["val_loss"] / cpt)
    if name == "char":
        assert cpt == 1.0
    elif name == "byte":
        assert 0.6 < cpt < 1.0     # the mixed text averages more than one byte per character
    else:
        assert cpt > 1.0
    assert list(out.iterdir())  # the run folder holds the tokenizer inside the checkpoint only
    assert not [p for p in out.iterdir() if p.suffix in (".model", ".vocab", ".json")]
    model, tok = checkpoint.build_model(ck)
    assert tok.name == name and tok.decode(tok.encode("the quick")) .startswith("the quick")
    s = cli("sample", str(out), "--length", "30", "--seed", "3", "--temp", "0.8")
    assert s.exit_code == 0, s.stderr
    assert s.stdout.strip()
    s2 = cli("sample", str(out), "--length", "30", "--seed", "3", "--temp", "0.8")
    assert s2.stdout == s.stdout   # a seed repeats


def test_sample_stop_works_on_decoded_text(mixed_corpus, tmp_path):
    out = tmp_path / "bytes"
    assert cli("train", str(mixed_corpus), "--tokenizer", "byte", *TINY_MODEL, "--max-steps", "20",
               "--out", str(out), "--quiet").exit_code == 0
    full = cli("sample", str(out), "--length", "200", "--seed", "1", "--temp", "1.5").stdout
    assert len(full) > 3
    stop = full[1:3]   # a piece of the decoded text, whatever bytes made it up
    cut = cli("sample", str(out), "--length", "200", "--seed", "1", "--temp", "1.5", "--stop", stop).stdout
    assert stop not in cut
    assert full.startswith(cut.rstrip("\n"))
