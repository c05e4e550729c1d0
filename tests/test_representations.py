"""Input representations: one-hot, word2vec initialisation (and freezing), bag-of-words
conditioning with --topic, and the vectorize library."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from charnn import checkpoint
from charnn.errors import CharnnError
from tests.conftest import TINY_MODEL, cli

WAR = "war soldier battle army sword fight enemy attack".split()
GARDEN = "garden flower rose tree seed bloom leaf grow".split()
GLUE = "the a and of in".split()


def two_topic_corpus(path, docs=120, seed=0):
    """Documents (blank-line separated) each about one topic, chosen at random: 60% topic words,
    40% words shared by both."""
    rng = random.Random(seed)
    out = []
    for _ in range(docs):
        topic = rng.choice([WAR, GARDEN])
        lines = [" ".join(rng.choice(topic) if rng.random() < 0.6 else rng.choice(GLUE)
                          for _ in range(8)) + " ." for _ in range(4)]
        out.append("\n".join(lines))
    path.write_text("\n\n".join(out) + "\n", encoding="utf-8")
    return path


def write_vectors(path, words, dim=12, seed=0, fmt="kv"):
    from gensim.models import KeyedVectors

    vecs = np.random.default_rng(seed).standard_normal((len(words), dim)).astype(np.float32)
    kv = KeyedVectors(vector_size=dim)
    kv.add_vectors(list(words), vecs)
    if fmt == "kv":
        kv.save(str(path))
    else:
        kv.save_word2vec_format(str(path), binary=(fmt == "bin"))
    return dict(zip(words, vecs))


def test_onehot_input_trains_and_samples(tiny_corpus, tmp_path):
    out = tmp_path / "onehot"
    r = cli("train", str(tiny_corpus), "--input", "onehot", *TINY_MODEL, "--max-steps", "20",
            "--out", str(out), "--quiet")
    assert r.exit_code == 0, r.stderr
    ck = checkpoint.load(out / "latest.pt")
    assert ck["model_config"]["input"] == "onehot"
    model, tok = checkpoint.build_model(ck)
    assert model.embed is None
    # the first layer reads V-wide one-hot vectors
    assert model.rnn.weight_ih_l0.shape[1] == tok.vocab_size
    s = cli("sample", str(out), "--length", "40", "--seed", "0")
    assert s.exit_code == 0 and len(s.stdout) >= 40


@pytest.mark.parametrize("fmt", ["kv", "txt", "bin"])
def test_word2vec_init_copies_vectors_exactly(tiny_corpus, tmp_path, fmt):
    from charnn.config import ModelConfig
    from charnn.model import RNNLM
    from charnn.representations.inputs import setup_input
    from charnn.training.dataset import prepare_data

    data = prepare_data(tiny_corpus, "word")
    vocab = data.tokenizer.vocab
    covered = [w for w in vocab if w.isalpha()][:6]
    path = tmp_path / f"vec.{fmt}"
    vecs = write_vectors(path, covered + ["zebra"], fmt=fmt)
    inp = setup_input(data, "word2vec", str(path))
    assert inp.model_options["embed_dim"] == 12   # taken from the vectors
    assert "6 of" in inp.messages[0]
    model = RNNLM(ModelConfig(vocab_size=len(vocab), hidden=16, layers=1, **inp.model_options))
    inp.init_model(model)
    for w in covered:
        assert torch.equal(model.embed.weight[vocab.index(w)], torch.from_numpy(vecs[w]))
    with pytest.raises(CharnnError, match="--embed-dim 16 differs"):
        setup_input(data, "word2vec", str(path), embed_dim=16)


def test_word2vec_frozen_vectors_stay_unchanged_after_training(tiny_corpus, tmp_path):
    from charnn.tokenizers.word import split_words

    words = sorted({w for w in split_words(tiny_corpus.read_text()) if w.isalpha()})
    vecs = write_vectors(tmp_path / "v.kv", words, dim=16)
    args = ["train", str(tiny_corpus), "--tokenizer", "word", "--input", "word2vec",
            "--vectors", str(tmp_path / "v.kv"), *TINY_MODEL, "--max-steps", "20", "--lr", "0.01"]
    r = cli(*args, "--freeze-embeddings", "--out", str(tmp_path / "frozen"))
    assert r.exit_code == 0, r.stderr
    assert f"{len(words)} of" in r.stderr        # coverage is reported
    r2 = cli(*args, "--out", str(tmp_path / "free"), "--quiet")
    assert r2.exit_code == 0, r2.stderr
    for run, same in (("frozen", True), ("free", False)):
        ck = checkpoint.load(tmp_path / run / "latest.pt")
        vocab = ck["tokenizer"]["state"]["vocab"]
        emb = ck["model"]["embed.weight"]
        diffs = [torch.equal(emb[vocab.index(w)], torch.from_numpy(vecs[w])) for w in words]
        assert all(diffs) if same else not any(diffs)
        if same:
            assert ck["model_config"]["freeze_embeddings"] is True


def test_word2vec_needs_a_word_tokenizer(tiny_corpus, tmp_path):
    write_vectors(tmp_path / "v.kv", ["cat"])
    r = cli("train", str(tiny_corpus), "--input", "word2vec", "--vectors", str(tmp_path / "v.kv"),
            *TINY_MODEL, "--max-steps", "2", "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "--tokenizer word" in r.stderr and "Traceback" not in r.stderr


def test_bow_topic_steers_generation(tmp_path):
    corpus = two_topic_corpus(tmp_path / "topics.txt")
    out = tmp_path / "bow"
    r = cli("train", str(corpus), "--tokenizer", "word", "--input", "bow", "--hidden", "32",
            "--layers", "1", "--embed-dim", "16", "--seq-len", "16", "--batch-size", "8",
            "--eval-every", "100", "--max-steps", "200", "--lr", "0.01", "--warmup", "10",
            "--out", str(out))
    assert r.exit_code == 0, r.stderr
    assert "bag of words" in r.stderr
    ck = checkpoint.load(out / "latest.pt")
    assert set(WAR + GARDEN) <= set(ck["bow"]["words"])    # the vocabulary is in the checkpoint
    counts = {}
    for name, topic in (("war", "war soldier battle"), ("garden", "garden flower rose")):
        s = cli("sample", str(out), "--topic", topic, "--length", "60", "--num-samples", "4",
                "--seed", "5", "--json")
        assert s.exit_code == 0, s.stderr
        import json
        words = " ".join(json.loads(l)["text"] for l in s.stdout.splitlines()).split()
        counts[name] = (sum(w in WAR for w in words), sum(w in GARDEN for w in words))
    war_on_war, garden_on_war = counts["war"]
    war_on_garden, garden_on_garden = counts["garden"]
    assert war_on_war > 3 * garden_on_war
    assert garden_on_garden > 3 * war_on_garden
    # a bow model needs a topic, and a topic needs a bow model
    assert cli("sample", str(out), "--length", "5").exit_code == 2
    assert cli("sample", str(out), "--topic", "zzz", "--length", "5").exit_code == 2


def test_bow_on_a_char_model_stores_its_word_vocabulary(tmp_path):
    corpus = two_topic_corpus(tmp_path / "topics.txt", docs=30)
    out = tmp_path / "charbow"
    r = cli("train", str(corpus), "--input", "bow", *TINY_MODEL, "--max-steps", "10",
            "--out", str(out), "--quiet")
    assert r.exit_code == 0, r.stderr
    ck = checkpoint.load(out / "latest.pt")
    assert ck["tokenizer"]["name"] == "char" and "war" in ck["bow"]["words"]
    assert ck["model_config"]["bow_dim"] == len(ck["bow"]["words"])
    s = cli("sample", str(out), "--topic", "war", "--length", "20", "--seed", "1")
    assert s.exit_code == 0 and s.stdout
    e = cli("eval", str(out), str(corpus), "--json")   # scored with the text's own documents
    assert e.exit_code == 0, e.stderr


def test_document_ids_and_per_step_conditioning():
    from charnn.representations.bow import DocCond, document_ids

    ids = np.array([1, 2, 0, 0, 3, 4, 0, 0, 0, 5])        # 0 = newline; sep = blank line
    docs = document_ids(ids, np.array([0, 0]))
    assert docs.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 3]
    assert docs.dtype == np.uint32
    # 4 documents with one-hot-ish vectors over dim 4
    cond = DocCond(docs, np.array([0, 1, 2, 3, 4]), np.array([0, 1, 2, 3]), np.ones(4, np.float32), 4)
    rows, index = cond.chunk(batch_size=1, index=0, seq_len=4, device="cpu")
    # steps predict tokens 1..4, so they take the documents of tokens 1..4: 0 0 0 1
    picked = rows[index][0].argmax(-1).tolist()
    assert picked == [0, 0, 0, 1]


def test_bow_vocab_weights():
    from charnn.representations.vectorize import BowVocab

    v = BowVocab.fit(["War war peace", "peace garden"])
    assert v.words[:2] == ["peace", "war"]            # by count, then alphabetical
    idx, val = v.sparse("war war garden", "count")
    assert dict(zip(idx.tolist(), val.tolist())) == {v.index["war"]: 2, v.index["garden"]: 1}
    _, tf = v.sparse("war war garden", "tf")
    assert tf.sum() == pytest.approx(1.0)
    _, l2 = v.sparse("war war garden", "l2")
    assert np.linalg.norm(l2) == pytest.approx(1.0)
    _, tfidf = v.sparse("war peace", "tfidf")
    assert np.linalg.norm(tfidf) == pytest.approx(1.0)
    assert BowVocab.from_state(v.state()).words == v.words
