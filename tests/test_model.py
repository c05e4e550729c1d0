"""The model, training loop, checkpoints and sampler, on tiny models (real ones, no mocks)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from charnn import checkpoint
from charnn.config import ModelConfig, SampleConfig, TrainConfig
from charnn.model import RNNLM
from charnn.sampling.generate import pick, sample_text
from charnn.sampling.stepper import Stepper
from charnn.tokenizers.char import CharTokenizer
from charnn.training.dataset import TrainData, prepare_data
from charnn.training.evaluate import evaluate
from charnn.training.trainer import train


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_chunked_forward_with_carried_state_equals_full_forward(cell):
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(vocab_size=11, cell=cell, layers=2, hidden=16, embed_dim=8)).eval()
    ids = torch.randint(0, 11, (3, 20))
    full, _ = model(ids)
    state, parts = None, []
    for chunk in ids.split(7, dim=1):          # 7 + 7 + 6 steps, state carried across
        logits, state = model(chunk, state)
        parts.append(logits)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-6)


STEPPER_CASES = [
    # (cell, layers, extra ModelConfig fields)
    *[(cell, layers, {}) for cell in ("lstm", "gru", "rnn") for layers in (1, 2, 3)],
    *[(cell, 2, {"tie_weights": True}) for cell in ("lstm", "gru", "rnn")],      # + projection 24 -> 8
    ("lstm", 1, {"tie_weights": True, "hidden": 8}),                             # tied, no projection
    *[(cell, 2, {"input": "onehot"}) for cell in ("lstm", "gru", "rnn")],
    *[(cell, 2, {"input": "bow", "bow_dim": 7}) for cell in ("lstm", "gru", "rnn")],
]


@pytest.mark.parametrize("cell,layers,extra", STEPPER_CASES)
def test_stepper_matches_the_fused_model(cell, layers, extra):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=13, cell=cell, layers=layers, **{"hidden": 24, "embed_dim": 8, **extra})
    model = RNNLM(cfg).eval()
    with torch.no_grad():   # non-zero biases everywhere, so a misplaced bias shows
        for name, p in model.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
    ids = torch.randint(0, 13, (3, 9))
    cond = torch.rand(3, 7) if cfg.input == "bow" else None
    start = tuple(torch.randn_like(s) * 0.5 for s in model.init_state(3))   # from a non-zero state
    with torch.no_grad():
        full, end = model(ids, start, cond)
    stepper = Stepper(model, batch_size=3, cond=cond)
    stepper.load_state(start)
    for t in range(ids.shape[1]):
        logits = stepper.step(ids[:, t].contiguous())
        assert torch.allclose(logits, full[:, t], atol=1e-5), t
    for got, want in zip(stepper.state(), end):
        assert torch.allclose(got, want, atol=1e-5)


def _data(text: str, val_frac=0.1) -> TrainData:
    tok = CharTokenizer.fit(lambda: [text])
    ids = tok.encode(text)
    n = int(len(ids) * (1 - val_frac))
    return TrainData(tok, ids[:n], ids[n:], len(ids) - n)


def test_a_small_model_overfits_a_short_text(tmp_path):
    text = "hello world, this is charnn. " * 40
    data = _data(text)
    mcfg = ModelConfig(vocab_size=data.tokenizer.vocab_size, hidden=64, layers=1, embed_dim=16)
    tcfg = TrainConfig(seq_len=32, batch_size=4, lr=1e-2, max_steps=150, eval_every=1000, warmup=10)
    summary = train(mcfg, tcfg, data, tmp_path / "run")
    assert summary["val_loss"] < 0.15          # starts at ln(V) ~ 2.8 nats
    ckpt = checkpoint.load(tmp_path / "run" / "best.pt")
    model, tok = checkpoint.build_model(ckpt)
    out = sample_text(model, tok, SampleConfig(prime="hello ", length=40, temperature=0))[0]
    assert out.startswith("hello world, this is charnn. hello")


def test_save_load_gives_identical_logits(tmp_path):
    data = _data("abcdefg hijklmnop\n" * 30)
    mcfg = ModelConfig(vocab_size=data.tokenizer.vocab_size, hidden=16, layers=2, embed_dim=8)
    train(mcfg, TrainConfig(seq_len=8, batch_size=4, max_steps=5), data, tmp_path / "r")
    ckpt = checkpoint.load(tmp_path / "r" / "latest.pt")
    model, tok = checkpoint.build_model(ckpt)
    again, _ = checkpoint.build_model(checkpoint.load(tmp_path / "r" / "latest.pt"))
    ids = torch.randint(0, tok.vocab_size, (2, 12))
    assert torch.equal(model.eval()(ids)[0], again.eval()(ids)[0])
    assert tok.chars == data.tokenizer.chars
    # the saved weights are the trained ones, not a fresh init
    assert not torch.equal(RNNLM(mcfg).state_dict()["rnn.weight_hh_l0"], ckpt["model"]["rnn.weight_hh_l0"])


@pytest.mark.parametrize("mmap", [False, True])
def test_a_loaded_tied_model_keeps_its_weights_tied(tmp_path, mmap):
    """build_model gives the checkpoint's tensors to a model made on "meta": the tie (one
    tensor for the embedding and the output layer) must survive, and the file stay untouched."""
    data = _data("abcdefg hijklmnop\n" * 30)
    mcfg = ModelConfig(vocab_size=data.tokenizer.vocab_size, hidden=16, layers=1, embed_dim=8, tie_weights=True)
    train(mcfg, TrainConfig(seq_len=8, batch_size=4, max_steps=3), data, tmp_path / "r")
    ckpt = checkpoint.load(tmp_path / "r" / "latest.pt", mmap=mmap)
    model, _ = checkpoint.build_model(ckpt)
    assert model.head.weight is model.embed.weight
    ref = RNNLM(mcfg)
    ref.load_state_dict(checkpoint.load(tmp_path / "r" / "latest.pt")["model"])
    ids = torch.randint(0, mcfg.vocab_size, (2, 12))
    assert torch.equal(model.eval()(ids)[0], ref.eval()(ids)[0])
    with torch.no_grad():
        model.embed.weight.zero_()             # in place: mapped pages are copy-on-write
    assert torch.equal(checkpoint.load(tmp_path / "r" / "latest.pt")["model"]["embed.weight"],
                       ref.embed.weight)


def test_resume_ends_with_the_same_weights_as_uninterrupted_training(tmp_path):
    data = _data("the quick brown fox jumps over the lazy dog\n" * 40)
    mcfg = ModelConfig(vocab_size=data.tokenizer.vocab_size, hidden=16, layers=2, embed_dim=8, dropout=0.2)
    tcfg = TrainConfig(seq_len=8, batch_size=4, max_steps=30, eval_every=7, seed=3, warmup=5)
    train(mcfg, tcfg, data, tmp_path / "straight")

    stop_at = 13
    s = train(mcfg, tcfg, data, tmp_path / "split",
              callback=lambda ev: ev.get("event") == "step" and ev["step"] >= stop_at)
    assert s["interrupted"] and s["steps"] < 30
    resumed = checkpoint.load(tmp_path / "split" / "latest.pt")
    train(mcfg, tcfg, data, tmp_path / "split", resume=resumed)

    a = checkpoint.load(tmp_path / "straight" / "latest.pt")["model"]
    b = checkpoint.load(tmp_path / "split" / "latest.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_evaluate_is_mean_nats_per_token():
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(vocab_size=5, hidden=8, layers=1, embed_dim=4))
    with torch.no_grad():               # a model that predicts uniformly: loss = ln(5)
        for p in model.head.parameters():
            p.zero_()
    loss, n = evaluate(model, np.arange(101) % 5, batch_size=4, seq_len=10)
    assert abs(loss - math.log(5)) < 1e-6
    assert n == 4 * (101 // 4 - 1)      # 4 streams of 25 tokens score 24 targets each


def test_temperature_zero_is_argmax_and_seeds_repeat():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    assert pick(logits, 0.0).tolist() == [1, 0]
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = [pick(logits, 1.0, generator=g1).tolist() for _ in range(20)]
    b = [pick(logits, 1.0, generator=g2).tolist() for _ in range(20)]
    assert a == b


def test_top_k_and_top_p_restrict_the_choice():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    assert {pick(logits, 1.0, top_k=2, generator=g).item() for _ in range(200)} == {0, 1}
    assert {pick(logits, 1.0, top_p=0.7, generator=g).item() for _ in range(200)} == {0, 1}
    assert {pick(logits, 1.0, top_p=0.4, generator=g).item() for _ in range(50)} == {0}


def test_seeded_sampling_repeats_and_streams_match_batch():
    torch.manual_seed(0)
    tok = CharTokenizer(list("abc \n"))
    model = RNNLM(ModelConfig(vocab_size=5, hidden=8, layers=2, embed_dim=4))
    cfg = SampleConfig(length=50, seed=7, prime="ab")
    assert sample_text(model, tok, cfg) == sample_text(model, tok, cfg)
    other = sample_text(model, tok, SampleConfig(length=50, seed=8, prime="ab"))
    assert other != sample_text(model, tok, cfg)


def test_stop_text_ends_the_sample_before_it():
    tok = CharTokenizer(list("ab\n"))
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(vocab_size=3, hidden=8, layers=1, embed_dim=4))
    with torch.no_grad():   # always predict "b": the sample is "abbbb..." and stops at "bb"
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 10.0, 0.0]))
    out = sample_text(model, tok, SampleConfig(prime="a", length=20, temperature=0, stop="bbb"))
    assert out == ["a"]
    out = sample_text(model, tok, SampleConfig(prime="a", length=5, temperature=0))
    assert out == ["abbbbb"]


def test_prepare_data_uses_the_cache(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("some text here\n" * 50)
    a = prepare_data(p)
    b = prepare_data(p)
    assert not a.source["from_cache"] and b.source["from_cache"]
    assert a.val_chars == len(a.val_ids)


def test_a_time_budget_caps_the_final_evaluation(tmp_path):
    """A big validation split (a 1 GB corpus holds 100M validation tokens) must not push the
    run past its budget: the final evaluation reads only what fits in the time left."""
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcdefgh \n"), 400_000))
    data = _data(text, val_frac=0.75)                       # 300k validation tokens
    mcfg = ModelConfig(vocab_size=data.tokenizer.vocab_size, hidden=256, layers=2, embed_dim=16)
    tcfg = TrainConfig(seq_len=32, batch_size=8, time_budget=2.0, eval_every=10 ** 9, warmup=5)
    summary = train(mcfg, tcfg, data, tmp_path / "run")
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    final = [e for e in evals if e.get("event") == "eval" and e["final"]][-1]
    assert final["of_tokens"] == len(data.val_ids)
    assert 0 < final["tokens"] < final["of_tokens"]
    assert math.isfinite(summary["val_loss"])


def test_an_evaluation_past_its_deadline_stops_once_it_has_its_minimum():
    import time

    data = _data("the quick brown fox jumps over the lazy dog\n" * 60)
    model = RNNLM(ModelConfig(vocab_size=data.tokenizer.vocab_size, hidden=16, layers=1, embed_dim=8))
    full_loss, full = evaluate(model, data.val_ids, 4, 16)
    loss, n = evaluate(model, data.val_ids, 4, 16, deadline=time.time() - 1, min_tokens=100)
    assert n == 128 < full                       # two chunks of 4 x 16: the first pair past 100
    assert math.isfinite(loss) and abs(loss - full_loss) < 0.5
