"""The sampler beyond the Stepper's equality with the fused model (tests/test_model.py): the
pre-drawn-uniform picker, int8 quantization, batched streams, and scoring through the Stepper."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from charnn import checkpoint
from charnn.config import ModelConfig, SampleConfig
from charnn.model import RNNLM
from charnn.sampling import quantize as q
from charnn.sampling.generate import Picker, evaluate_stepwise, pick, sample_text
from charnn.sampling.stepper import Stepper
from charnn.tokenizers.char import CharTokenizer
from charnn.training.evaluate import evaluate
from tests.conftest import TINY_MODEL, cli


@pytest.fixture
def all_int8(monkeypatch):
    """Quantize every matrix, however small: the tiny test models are all below the size from
    which int8 pays off in speed (charnn.sampling.quantize.INT8_MIN_WEIGHTS), and so would stay fp32."""
    monkeypatch.setattr(q, "INT8_MIN_WEIGHTS", 0)


def _model(cell="lstm", layers=2, hidden=64, V=20, **kw) -> RNNLM:
    torch.manual_seed(0)
    return RNNLM(ModelConfig(vocab_size=V, cell=cell, layers=layers, hidden=hidden, embed_dim=16, **kw)).eval()


def test_picker_draws_follow_the_distribution_and_skip_impossible_tokens():
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05, 0.0]])
    logits = torch.log(p)                                     # log 0 = -inf: never to be drawn
    picker = Picker(1, 5, temperature=1.0, seed=0)
    draws = np.array([int(picker(logits)) for _ in range(20000)])
    freq = np.bincount(draws, minlength=5) / len(draws)
    assert freq[4] == 0
    assert np.abs(freq - p[0].numpy()).max() < 0.015
    # temperature 2 flattens: p^(1/2), renormalised
    hot = Picker(1, 5, temperature=2.0, seed=1)
    freq = np.bincount([int(hot(logits)) for _ in range(20000)], minlength=5) / 20000
    want = p[0].sqrt() / p[0].sqrt().sum()
    assert np.abs(freq - want.numpy()).max() < 0.015
    # top-k keeps the k likeliest; pick() draws the same way from a generator
    top2 = Picker(1, 5, temperature=1.0, top_k=2, seed=2)
    assert {int(top2(logits)) for _ in range(300)} == {0, 1}
    g = torch.Generator().manual_seed(3)
    assert {int(pick(logits, 1.0, top_p=0.7, generator=g)) for _ in range(300)} == {0, 1}


def test_num_samples_streams_equal_single_runs_with_consecutive_seeds():
    model = _model(V=5, hidden=16)
    tok = CharTokenizer(list("abc \n"))
    batch = sample_text(model, tok, SampleConfig(length=60, seed=11, prime="ab", num_samples=3))
    alone = [sample_text(model, tok, SampleConfig(length=60, seed=11 + i, prime="ab"))[0] for i in range(3)]
    assert batch == alone
    assert len(set(batch)) == 3


def test_int8_goes_where_it_pays():
    """A 2x512 LSTM over 65 characters: recurrent weights int8, the small output layer fp32;
    a 4096-token output layer int8 too."""
    s = Stepper(RNNLM(ModelConfig(vocab_size=65, layers=2, hidden=512)), quantize="int8")
    assert [type(m) for m in (s.rec[0], s.inp[1], s.head)] == [q.Int8, q.Int8, q.Dense]
    s = Stepper(RNNLM(ModelConfig(vocab_size=4096, layers=1, hidden=512)), quantize="int8")
    assert type(s.head) is q.Int8
    assert type(Stepper(RNNLM(ModelConfig(vocab_size=65, layers=1, hidden=64)), quantize="int8").rec[0]) is q.Dense


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_int8_logits_are_close_to_fp32(cell, all_int8):
    model = _model(cell, hidden=128, V=300)
    ids = torch.randint(0, 300, (2, 30))
    fp32, int8 = Stepper(model, 2), Stepper(model, 2, quantize="int8")
    assert type(int8.head) is q.Int8 and type(int8.rec[0]) is q.Int8
    worst = 0.0
    for t in range(ids.shape[1]):
        a = fp32.step(ids[:, t].contiguous()).clone()
        b = int8.step(ids[:, t].contiguous())
        worst = max(worst, float((a - b).abs().max() / a.abs().max()))
        pa, pb = a.softmax(-1), b.softmax(-1)
        assert float((pa * (pa.log() - pb.log())).sum(-1).max()) < 1e-3     # KL(fp32 || int8)
    assert 0 < worst < 0.05        # quantized (not identical), yet close


def test_int8_samples_are_valid_text_and_repeat(all_int8):
    model = _model()
    tok = CharTokenizer(list("abcdefghijklmnopqr \n"))
    cfg = SampleConfig(length=200, seed=4, prime="abc", num_samples=2)
    out = sample_text(model, tok, cfg, quantize="int8")
    assert out == sample_text(model, tok, cfg, quantize="int8")
    for text in out:
        assert text.startswith("abc") and len(text) == 203 and set(text) <= set(tok.chars)
    # greedy int8 follows greedy fp32 on a model whose choices are clear-cut
    with torch.no_grad():
        model.head.bias.copy_(torch.arange(20.0) * 0.5)
    greedy = SampleConfig(length=40, temperature=0, prime="a")
    assert sample_text(model, tok, greedy, quantize="int8") == sample_text(model, tok, greedy)


def test_stepwise_scoring_equals_the_fused_evaluation(all_int8):
    model = _model("gru", layers=3)
    ids = np.random.default_rng(0).integers(0, 20, 3000)
    fused, n = evaluate(model, ids, batch_size=4, seq_len=50)
    stepped, m = evaluate_stepwise(model, ids, batch_size=4, seq_len=50)
    assert n == m and abs(fused - stepped) < 1e-5
    q, _ = evaluate_stepwise(model, ids, batch_size=4, seq_len=50, quantize="int8")
    assert q != stepped and abs(q - stepped) < 0.01


def _trained(corpus: Path, *extra: str) -> Path:
    r = cli("train", str(corpus), *TINY_MODEL, "--max-steps", "40", "--quiet", "--out", "checkpoints/q", *extra)
    assert r.exit_code == 0, r.stderr
    return Path("checkpoints/q")


def test_quantize_int8_through_the_cli(tiny_corpus, all_int8):
    run = _trained(tiny_corpus)
    a = cli("sample", str(run), "--quantize", "int8", "--length", "80", "--seed", "2", "--prime", "the ")
    assert a.exit_code == 0 and a.stderr == ""           # no deprecation warning reaches the user
    assert a.stdout.startswith("the ") and len(a.stdout) >= 84
    assert a.stdout == cli("sample", str(run), "--quantize", "int8", "--length", "80", "--seed", "2",
                           "--prime", "the ").stdout
    fp = json.loads(cli("eval", str(run), str(tiny_corpus), "--json").stdout)
    r = cli("eval", str(run), str(tiny_corpus), "--json", "--quantize", "int8")
    assert r.exit_code == 0, r.stderr
    q = json.loads(r.stdout)
    assert q["quantize"] == "int8" and fp["quantize"] == "none" and q["tokens"] == fp["tokens"]
    assert math.isfinite(q["loss"]) and abs(q["loss"] - fp["loss"]) < 0.02
    bad = cli("sample", str(run), "--quantize", "int4")
    assert bad.exit_code == 2 and "int8" in bad.stderr and "Traceback" not in bad.stderr
    assert cli("sample", str(run), "--threads", "0").exit_code == 2


def test_quantized_eval_of_a_bow_model_matches_its_documents(tmp_path, all_int8):
    from tests.test_representations import two_topic_corpus

    corpus = two_topic_corpus(tmp_path / "topics.txt", docs=30)
    run = _trained(corpus, "--input", "bow")
    ckpt = checkpoint.load(run / "latest.pt")
    model, tok = checkpoint.build_model(ckpt)
    from charnn.data import encode_corpus
    from charnn.representations.bow import cond_for

    ids = encode_corpus(corpus, "char", tokenizer=tok).ids
    cond = cond_for(ckpt, tok, ids)
    fused, _ = evaluate(model, ids, 8, 64, cond=cond)
    stepped, _ = evaluate_stepwise(model, ids, 8, 64, cond=cond)
    assert abs(fused - stepped) < 1e-5
    r = cli("eval", str(run), str(corpus), "--json", "--quantize", "int8", "--batch-size", "8")
    assert r.exit_code == 0, r.stderr
    assert abs(json.loads(r.stdout)["loss"] - fused) < 0.02


def test_packing_int8_weights_prints_no_warning():
    """PyTorch warns (once per process) when a quantized tensor is created; charnn silences that
    one warning where it packs its weights, so a fresh process must show nothing."""
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    code = ("import torch; from charnn.sampling.quantize import Int8; m = Int8(torch.randn(64, 32), torch.zeros(64)); "
            "y = torch.zeros(1, 64); m.into(torch.randn(1, 32), y); print(float(y.abs().sum()) > 0)")
    r = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                       env=subprocess_env(), timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "True"
    assert r.stderr == ""


def test_the_sample_path_imports_nothing_it_does_not_need(tiny_corpus):
    """Start-up: `charnn sample` must not pull in gensim, sentencepiece, rich or torch._dynamo
    (the last comes with some meta-device ops, and costs over a second)."""
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    run = _trained(tiny_corpus)
    code = ("import sys; from charnn.cli import app\n"
            f"sys.argv = ['charnn', 'sample', {str(run)!r}, '--length', '5', '--seed', '0']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "heavy = ('torch._dynamo', 'gensim', 'sentencepiece', 'rich')\n"
            "print(' '.join(m for m in heavy if m in sys.modules) or 'none', file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert r.returncode == 0 and r.stdout
    assert r.stderr.strip() == "none"
