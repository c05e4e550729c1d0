"""Scoring and control over sampling: `charnn score` (per line, TSV/JSON, --tokens, streaming),
`charnn sample --logprobs`, `--prompts`, `--no-echo` and `--beam` (charnn.scoring,
charnn.sampling.beam, charnn.sampling.logprobs)."""

from __future__ import annotations

import json
import math
import select
import subprocess

import pytest
import torch

from charnn.config import ModelConfig
from charnn.model import RNNLM
from charnn.sampling.beam import beam_search
from charnn.scoring import Scorer
from charnn.tokenizers.char import CharTokenizer
from tests.conftest import TINY_MODEL, charnn_cmd, cli, subprocess_env

KINDS = [("char", "lstm"), ("byte", "gru"), ("word", "rnn"), ("bpe", "lstm")]
TEXT = "the cat sat on the mat.\nthe dog sat on the log.\na bird sang in the tree.\n" * 40


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny trained run per (tokenizer, cell) of KINDS."""
    d = tmp_path_factory.mktemp("runs")
    (d / "text.txt").write_text(TEXT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHARNN_CACHE", str(d / ".cache"))
        for tok, cell in KINDS:
            extra = ["--vocab-size", "300"] if tok == "bpe" else []
            r = cli("train", str(d / "text.txt"), "--tokenizer", tok, "--cell", cell, *TINY_MODEL, *extra,
                    "--max-steps", "80", "--lr", "0.02", "--out", str(d / tok), "-q")
            assert r.exit_code == 0, r.stderr
    return {tok: str(d / tok) for tok, _ in KINDS}


@pytest.mark.parametrize("tok", [k for k, _ in KINDS])
def test_score_each_line_tsv_json_and_tokens(runs, tok):
    lines = "the cat sat on the mat.\nbbbbbbbbbbb gggggg.\nzq\n"
    r = cli("score", runs[tok], "-", input=lines)
    assert r.exit_code == 0, r.stderr
    rows = [row.split("\t") for row in r.stdout.splitlines()]
    assert [row[4] for row in rows] == ["the cat sat on the mat.", "bbbbbbbbbbb gggggg.", "zq"]
    lp = [float(row[0]) for row in rows]
    assert lp[0] > lp[1]                   # the line it was trained on is the likelier
    j = cli("score", runs[tok], "--json", "--tokens", "-", input=lines)
    recs = [json.loads(x) for x in j.stdout.splitlines()]
    first = recs[0]
    assert math.isclose(first["logprob"], lp[0], abs_tol=1e-3)
    assert math.isclose(sum(t["logprob"] for t in first["token_logprobs"]), first["logprob"], rel_tol=1e-6)
    assert len(first["token_logprobs"]) == first["tokens"] and first["token_logprobs"][-1]["token"] == "\n"
    assert math.isclose(first["bits_per_char"], -first["logprob"] / first["chars"] / math.log(2))
    if tok == "char":                      # characters it never saw: probability zero, said once
        assert recs[2]["logprob"] is None and "not in the model's vocabulary" in recs[2]["error"]
        assert j.stderr.count("warning") == 1


def test_scorer_equals_the_models_own_probabilities():
    torch.manual_seed(0)
    tok = CharTokenizer(list("\nabc"))
    model = RNNLM(ModelConfig(vocab_size=4, hidden=8, embed_dim=4)).eval()
    s = Scorer(model, tok).score("abca", tokens=True)
    ids = torch.tensor([[0, 1, 2, 3, 1]])          # "\n" (the start) a b c a, then "\n" is predicted
    with torch.no_grad():
        logp = torch.log_softmax(model(ids)[0][0], -1)
    want = [logp[i, t] for i, t in enumerate([1, 2, 3, 1, 0])]
    assert math.isclose(s.logprob, float(sum(want)), rel_tol=1e-5)
    assert s.tokens == 5 and s.chars == 5 and [t for t, _ in s.token_logprobs] == list("abca\n")


def test_score_streams_a_line_out_for_each_line_in(runs):
    """A real process on a pipe: the first result arrives while stdin is still open."""
    p = subprocess.Popen(charnn_cmd("score", runs["char"]), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=subprocess_env())
    try:
        p.stdin.write(b"the cat sat on the mat.\n")
        p.stdin.flush()
        ready, _, _ = select.select([p.stdout], [], [], 60)
        assert ready, "no output before stdin closed"
        first = p.stdout.readline().decode()
        assert first.endswith("\tthe cat sat on the mat.\n") and p.poll() is None
        p.stdin.write(b"the dog\n")
        p.stdin.close()
        assert p.stdout.readline().decode().endswith("\tthe dog\n")
        assert p.wait(timeout=60) == 0
    finally:
        p.kill()


@pytest.mark.parametrize("tok", [k for k, _ in KINDS])
def test_logprobs_prompts_and_no_echo(runs, tok, tmp_path):
    r = cli("sample", runs[tok], "--prime", "the", "-n", "8", "--seed", "1", "--json", "--logprobs", "3")
    assert r.exit_code == 0, r.stderr
    rec = json.loads(r.stdout)
    assert len(rec["tokens"]) == 8 and all(len(t["top"]) == 3 for t in rec["tokens"])
    for t in rec["tokens"]:               # the top alternatives are sorted, and bound the drawn one
        tops = [a["logprob"] for a in t["top"]]
        assert tops == sorted(tops, reverse=True) and t["logprob"] <= tops[0] + 1e-6
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\na bird\nthe dog\n")
    p = cli("sample", runs[tok], "--prompts", str(prompts), "-n", "6", "--seed", "2", "--json", "--no-echo")
    assert p.exit_code == 0, p.stderr
    recs = [json.loads(x) for x in p.stdout.splitlines()]
    assert [x["prompt"] for x in recs] == ["the cat", "a bird", "the dog"]
    assert not any(x["text"].startswith(x["prompt"]) for x in recs if tok == "char")
    # stream i of a batch gives the text a single prompt with seed + i gives
    alone = cli("sample", runs[tok], "--prime", "a bird", "-n", "6", "--seed", "3", "--json", "--no-echo")
    assert json.loads(alone.stdout)["text"] == recs[1]["text"]


def test_prompts_errors_and_text_output(runs, tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("the cat\n\nthe dog\n")
    r = cli("sample", runs["char"], "--prompts", str(f))
    assert r.exit_code == 2 and r.stderr == f"error: --prompts {f}: line 2 is empty (each line is a prompt)\n"
    f.write_text("the cat\nthe dog")
    t = cli("sample", runs["char"], "--prompts", str(f), "-n", "5", "--seed", "1", "--separator", "|")
    assert t.exit_code == 0 and t.stdout.startswith("the cat") and "|the dog" in t.stdout
    for argv, needle in [(["--beam", "0"], "--beam must be at least 1"),
                         (["--logprobs", "2"], "--logprobs goes with --json"),
                         (["--prompts", str(f), "--prime", "x"], "choose one")]:
        r = cli("sample", runs["char"], *argv)
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and needle in r.stderr, (argv, r.stderr)


def markov_model() -> tuple[RNNLM, CharTokenizer]:
    """An RNN whose next-token distribution depends only on the current token, set by hand:
    after a line break a 0.4, b 0.6; a -> a; b -> x, y or z (1/3 each); x, y, z repeat."""
    chars = list("\nabxyz")
    tok = CharTokenizer(chars)
    V = len(chars)
    P = torch.full((V, V), 1e-9)                  # P[next, current]
    P[1, 0], P[2, 0] = 0.4, 0.6
    P[1, 1] = 1.0
    P[3:, 2] = 1 / 3
    for i in (3, 4, 5):
        P[i, i] = 1.0
    model = RNNLM(ModelConfig(vocab_size=V, cell="rnn", layers=1, hidden=V, embed_dim=V))
    with torch.no_grad():
        model.embed.weight.copy_(20 * torch.eye(V))       # h = tanh(20 one-hot) ~ one-hot
        model.rnn.weight_ih_l0.copy_(torch.eye(V))
        for name in ("weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(model.rnn, name).zero_()
        model.head.weight.copy_((P / P.sum(0)).log())
        model.head.bias.zero_()
    return model.eval(), tok


def test_beam_search_finds_a_likelier_sequence_than_greedy():
    model, tok = markov_model()
    greedy = beam_search(model, tok, "", beam=1, length=3)[0]
    best = beam_search(model, tok, "", beam=2, length=3)[0]
    assert tok.decode(greedy.ids) == "bxx" and tok.decode(best.ids) == "aaa"
    assert math.isclose(greedy.logprob, math.log(0.6 / 3), abs_tol=1e-3)
    assert math.isclose(best.logprob, math.log(0.4), abs_tol=1e-3)
    assert best.logprob > greedy.logprob
    three = beam_search(model, tok, "", beam=4, length=3, keep=3)
    assert [tok.decode(h.ids) for h in three][0] == "aaa" and len(three) == 3


@pytest.mark.parametrize("tok", [k for k, _ in KINDS])
def test_beam_one_is_greedy_and_beam_is_deterministic(runs, tok):
    greedy = cli("sample", runs[tok], "--prime", "the", "-n", "12", "--temp", "0")
    one = cli("sample", runs[tok], "--prime", "the", "-n", "12", "--beam", "1")
    assert one.exit_code == 0 and one.stdout == greedy.stdout
    a = cli("sample", runs[tok], "--prime", "the", "-n", "12", "--beam", "3", "--num-samples", "2", "--json")
    b = cli("sample", runs[tok], "--prime", "the", "-n", "12", "--beam", "3", "--num-samples", "2", "--json")
    assert a.stdout == b.stdout
    recs = [json.loads(x) for x in a.stdout.splitlines()]
    assert len(recs) == 2 and recs[0]["score"] >= recs[1]["score"]
