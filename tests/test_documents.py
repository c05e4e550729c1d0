"""Documents (charnn.documents, charnn.resets): splitting, framing with the end-of-document
token, the state reset at each boundary (in training, evaluation and sampling), and
`charnn sample --docs N` / `--novel-only`; many input files (directories, --glob)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from charnn.config import ModelConfig
from charnn.data import CorpusText, encode_corpus
from charnn.documents import split
from charnn.model import RNNLM
from charnn.sampling.stepper import Stepper
from tests.conftest import TINY_MODEL, cli

NAMES = ["anna", "bob", "carla", "dora", "emil", "frida", "gustav", "hanna", "ida", "jan"]


def names_file(path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    path.write_text("\n".join(NAMES[i] for i in rng.integers(0, len(NAMES), n)) + "\n", encoding="utf-8")
    return path


def test_split_into_lines_and_paragraphs_across_chunks():
    assert list(split(["a\nb", "c\r\n\n", "d"], "lines")) == ["a", "bc", "d"]
    # a blank line split over two chunks, whitespace-only lines, an indented first line kept
    assert list(split(["p1 l1\np1 l2\n", "\n  \n  p2\n\n\n", "p3"], "blank-lines")) == \
        ["p1 l1\np1 l2", "  p2", "p3"]


@pytest.mark.parametrize("tokenizer", ["char", "byte", "word", "bpe"])
def test_documents_are_framed_by_the_end_token_and_fingerprinted(tmp_path, tokenizer):
    f = tmp_path / "d.txt"
    f.write_text("the cat\n\nthe dog\n\nthe cat\n" * 30)
    enc = encode_corpus(CorpusText((f,), "lines"), tokenizer, {"vocab_size": 300} if tokenizer == "bpe" else {})
    tok, ids = enc.tokenizer, np.asarray(enc.ids)
    eod = tok.eod_id
    assert eod == tok.vocab_size - 1 and ids[0] == eod and ids[-1] == eod
    docs = [tok.decode(d) for d in np.split(ids, np.flatnonzero(ids == eod))[1:-1]]
    assert docs[:3] == ["the cat", "the dog", "the cat"] and len(docs) == 90
    assert len(enc.fingerprints) == 2                 # two distinct documents
    again = encode_corpus(CorpusText((f,), "lines"), tokenizer, {"vocab_size": 300} if tokenizer == "bpe" else {})
    assert again.from_cache and np.array_equal(again.fingerprints, enc.fingerprints)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_resets_in_one_fused_call_equal_stepping_with_the_state_zeroed(cell):
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(vocab_size=9, cell=cell, layers=2, hidden=16, embed_dim=8)).eval()
    ids = torch.randint(0, 9, (4, 13))
    resets = torch.rand(4, 13) < 0.2
    resets[1] = False                                   # a stream with no reset
    resets[2, 0] = True                                 # one at the chunk's start
    start = tuple(torch.randn_like(s) for s in model.init_state(4))
    with torch.no_grad():
        fused, end = model(ids, start, resets=resets)
        state, steps = start, []
        for j in range(13):
            keep = (~resets[:, j]).float().view(1, 4, 1)
            state = tuple(s * keep for s in state)
            out, state = model(ids[:, j:j + 1], state)
            steps.append(out)
    assert torch.allclose(fused, torch.cat(steps, 1), atol=1e-5)
    for a, b in zip(end, state):
        assert torch.allclose(a, b, atol=1e-5)
    stepper = Stepper(model, 4)                         # the sampler resets the same way
    stepper.load_state(start)
    for j in range(13):
        stepper.reset(resets[:, j])
        assert torch.allclose(stepper.step(ids[:, j].contiguous()), fused[:, j], atol=1e-5)


def test_text_before_a_boundary_cannot_influence_predictions_after_it():
    """Two chunks that differ only before a document boundary (and start from different carried
    states) give identical logits from the boundary on, and gradients stop there too."""
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(vocab_size=12, layers=2, hidden=16, embed_dim=8))
    eod = 11
    after = [eod, 3, 4, 5, 6]
    a = torch.tensor([[1, 2, 3, 4, *after]])
    b = torch.tensor([[7, 8, 9, 10, *after]])
    state_a = tuple(torch.randn(2, 1, 16) for _ in range(2))
    out_a, _ = model(a, state_a, resets=a == eod)
    out_b, _ = model(b, None, resets=b == eod)
    assert torch.allclose(out_a[:, 4:], out_b[:, 4:], atol=1e-6)
    assert not torch.allclose(out_a[:, :4], out_b[:, :4])
    x = model.embed(a).detach().requires_grad_()        # no gradient crosses the boundary
    from charnn.resets import run_with_resets

    y, _ = run_with_resets(model.rnn, x, state_a, a == eod)
    y[:, 4:].sum().backward()
    assert x.grad[:, :4].abs().max() == 0 and x.grad[:, 4:].abs().max() > 0


@pytest.fixture(scope="module")
def names_run(tmp_path_factory):
    """A tiny char model trained on names as documents (lines), shared by the tests below."""
    d = tmp_path_factory.mktemp("names")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARNN_CACHE", str(d / ".cache"))
        r = cli("train", str(names_file(d / "names.txt", 600)), "--docs", "lines", *TINY_MODEL,
                "--max-steps", "120", "--lr", "0.02", "--out", str(d / "run"), "-q")
        assert r.exit_code == 0, r.stderr
    return d / "run"


def test_sample_docs_prints_n_whole_documents(names_run):
    r = cli("sample", str(names_run), "--docs", "12", "--seed", "3")
    assert r.exit_code == 0, r.stderr
    docs = r.stdout.split("\n")
    assert len(docs) == 13 and docs[-1] == ""           # 12 documents, one per line (the run's mode)
    assert all(d and "\n" not in d for d in docs[:-1])
    j = cli("sample", str(names_run), "--docs", "12", "--seed", "3", "--json")
    rows = [json.loads(line) for line in j.stdout.splitlines()]
    assert [x["text"] for x in rows] == docs[:-1] and all(x["logprob"] < 0 for x in rows)
    # each document ended at the end token: its token count is its characters plus the end
    assert all(x["tokens"] == len(x["text"]) + 1 for x in rows)


def test_novel_only_drops_training_documents(names_run):
    # at a low temperature a names model mostly writes names it saw
    seen = cli("sample", str(names_run), "--docs", "20", "--seed", "1", "--temp", "0.3").stdout.split()
    assert set(seen) & set(NAMES)
    r = cli("sample", str(names_run), "--docs", "5", "--seed", "1", "--temp", "0.3", "--novel-only")
    assert r.exit_code == 0, r.stderr
    novel = r.stdout.split()
    assert not set(novel) & set(NAMES)
    assert len(novel) == 5 or "warning: only" in r.stderr
    assert "in the training text" in r.stderr


def test_a_document_model_scores_evaluates_and_samples_text(names_run, tmp_path):
    held = names_file(tmp_path / "held.txt", 50, seed=1)
    r = cli("eval", str(names_run), str(held), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["loss"] < np.log(12)
    plain = cli("sample", str(names_run), "-n", "60", "--seed", "1")
    assert plain.exit_code == 0 and plain.stdout.count("\n") >= 3    # documents end in line breaks
    info = cli("info", str(names_run))
    assert "documents    lines" in info.stdout


def test_docs_refused_for_a_model_without_documents(tiny_corpus):
    cli("train", str(tiny_corpus), *TINY_MODEL, "--max-steps", "2", "-q")
    r = cli("sample", "checkpoints/tiny", "--docs", "3")
    assert r.exit_code == 1 and "not trained on documents" in r.stderr
    r = cli("sample", "checkpoints/tiny", "--novel-only")
    assert r.exit_code == 2 and "--novel-only goes with --docs" in r.stderr


@pytest.mark.parametrize("tokenizer,cell", [("byte", "gru"), ("word", "rnn"), ("bpe", "lstm")])
def test_documents_train_and_sample_with_every_tokenizer(tmp_path, tokenizer, cell):
    f = tmp_path / "poems.txt"
    f.write_text("roses are red\nviolets are blue\n\nthe sun is warm\nthe sea is wide\n\n" * 40)
    extra = ["--vocab-size", "300"] if tokenizer == "bpe" else []
    r = cli("train", str(f), "--docs", "blank-lines", "--tokenizer", tokenizer, "--cell", cell,
            *TINY_MODEL, *extra, "--max-steps", "30", "--lr", "0.02", "-q")
    assert r.exit_code == 0, r.stderr
    s = cli("sample", "checkpoints/poems", "--docs", "3", "--seed", "0", "--length", "60", "--json")
    assert s.exit_code == 0, s.stderr
    assert len(s.stdout.splitlines()) == 3 or "warning: only" in s.stderr
    resumed = cli("train", "--resume", "checkpoints/poems", "--max-steps", "35", "-q")
    assert resumed.exit_code == 0, resumed.stderr


# ----------------------------------------------------------------------------------------------
# many files


def test_a_directory_is_read_recursively_and_binary_files_are_skipped_with_a_count(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("the cat sat on the mat.\n" * 40)
    (d / "sub" / "b.md").write_text("a bird sang in the tree.\n" * 40)
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0" + bytes(range(256)))
    (d / "sub" / "latin1.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1") * 20)
    (d / ".hidden").write_text("never read")
    r = cli("train", str(d), *TINY_MODEL, "--max-steps", "3")
    assert r.exit_code == 0, r.stderr
    assert "reading 2 files; skipped 2 that are not text" in r.stderr
    ckpt = torch.load("checkpoints/corpus/latest.pt", weights_only=True)
    assert [p.split("/")[-1] for p in ckpt["corpus"]["files"]] == ["a.txt", "b.md"]
    assert ckpt["corpus"]["args"] == [str(d)]
    # --glob picks files inside; the cache is keyed on the contents, not the names
    g = cli("train", str(d), "--glob", "*.md", *TINY_MODEL, "--max-steps", "3", "--out", "g", "--json")
    assert g.exit_code == 0 and "reading" not in g.stderr
    moved = tmp_path / "elsewhere.md"
    moved.write_text((d / "sub" / "b.md").read_text())
    e = cli("train", str(moved), *TINY_MODEL, "--max-steps", "3", "--out", "m")
    assert e.exit_code == 0
    assert torch.load("m/latest.pt", weights_only=True)["corpus"]["digest"] == \
        torch.load("g/latest.pt", weights_only=True)["corpus"]["digest"]
    # resuming re-reads the same files, through the recorded arguments
    assert cli("train", "--resume", "checkpoints/corpus", "--max-steps", "5", "-q").exit_code == 0
    (d / "a.txt").write_text("changed\n" * 40)
    c = cli("train", "--resume", "checkpoints/corpus", "--max-steps", "7", "-q")
    assert c.exit_code == 1 and "its content changed" in c.stderr


def test_several_files_and_files_as_documents(tmp_path):
    for i, text in enumerate(["first poem\nline two", "second poem", "third\n\npoem"]):
        (tmp_path / f"p{i}.txt").write_text(text * 1)
    files = [str(tmp_path / f"p{i}.txt") for i in range(3)]
    enc = encode_corpus(CorpusText(tuple(map(Path, files)), "files"), "char")
    ids = np.asarray(enc.ids)
    docs = [enc.tokenizer.decode(x) for x in np.split(ids, np.flatnonzero(ids == enc.tokenizer.eod_id))[1:-1]]
    assert docs == ["first poem\nline two", "second poem", "third\n\npoem"]
    bad = cli("train", files[0], "--glob", "*.txt")
    assert bad.exit_code == 2 and "--glob" in bad.stderr
    empty = tmp_path / "bin"
    empty.mkdir()
    (empty / "x.bin").write_bytes(b"\0\1\2")
    r = cli("train", str(empty))
    assert r.exit_code == 1 and r.stderr.startswith("error: ") and "no text files" in r.stderr


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_three_ways_of_running_resets_agree(cell):
    """Plain pieces between reset steps, segments batched by length (the CPU's ways) and one
    packed call (a GPU's): the same outputs, final states and gradients."""
    from charnn import resets as R

    torch.manual_seed(1)
    model = RNNLM(ModelConfig(vocab_size=5, cell=cell, layers=2, hidden=8, embed_dim=4))
    state = tuple(torch.randn_like(s) for s in model.init_state(3))
    two_steps = torch.zeros(3, 11, dtype=torch.bool).index_fill_(1, torch.tensor([0, 6]), True)
    ways = [lambda x, r: R._run_in_pieces(model.rnn, x, state, r, r.any(0).nonzero().squeeze(1).tolist()),
            lambda x, r: R._run_by_length(model.rnn, x, state, R.Segments(r)),
            lambda x, r: R._run_packed(model.rnn, x, state, R.Segments(r))]
    for resets in (torch.rand(3, 11) < 0.4, two_steps):
        got = []
        for way in ways:
            x = model.embed(torch.arange(33).remainder(5).view(3, 11)).detach().requires_grad_()
            y, s = way(x, resets)
            (y.square().sum() + s[-1].sum()).backward()
            got.append((y, s, x.grad))
        for y, s, g in got[1:]:
            assert torch.allclose(y, got[0][0], atol=1e-6) and torch.allclose(g, got[0][2], atol=1e-6)
            assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(s, got[0][1]))
