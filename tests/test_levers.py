"""Issue 17's levers: AWD-LSTM regularisers, --attention, bf16 on CPU. Each regulariser really
changes training and is off at evaluation; the Stepper equals the fused forward for every new
option; checkpoints made before these options existed still load and sample."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from charnn import checkpoint
from charnn.config import ModelConfig, SampleConfig, TrainConfig
from charnn.machine import cpu_bf16
from charnn.model import RNNLM
from charnn.sampling.generate import sample_text
from charnn.sampling.stepper import Stepper
from charnn.training.regularize import activation_penalty
from charnn.training.trainer import train
from tests.test_model import _data

NEW_MODEL_FIELDS = ("weight_drop", "locked_dropout", "embed_dropout", "attention")


def _model(cell="lstm", **kw) -> RNNLM:
    torch.manual_seed(0)
    return RNNLM(ModelConfig(vocab_size=13, cell=cell, layers=2, hidden=24, embed_dim=8, **kw))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_weight_drop_runs_the_fused_kernel_on_the_dropped_weights(cell):
    """The output equals that of a copy whose weight_hh tensors hold the very masks drawn (so
    the fused kernel did not keep reading its own flat copy of the weights), and the gradient
    reaches the real weights."""
    model = _model(cell, weight_drop=0.5).train()
    ids = torch.randint(0, 13, (3, 7))
    torch.manual_seed(5)
    logits, _ = model(ids)
    torch.manual_seed(5)                   # the same draws, in the same order: layer 0, layer 1
    dropped = [F.dropout(getattr(model.rnn, f"weight_hh_l{l}"), 0.5, True) for l in range(2)]
    ref = copy.deepcopy(model).eval()
    with torch.no_grad():
        for l, w in enumerate(dropped):
            getattr(ref.rnn, f"weight_hh_l{l}").copy_(w)
    assert torch.allclose(logits, ref(ids)[0], atol=1e-6)
    assert not torch.allclose(logits, model.eval()(ids)[0], atol=1e-3)   # and it did drop something
    model.train()
    model(ids)[0].sum().backward()
    assert model.rnn.weight_hh_l0.grad is not None and model.rnn.weight_hh_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("extra", [{"weight_drop": 0.5}, {"embed_dropout": 0.5},
                                   {"dropout": 0.5, "locked_dropout": True}])
def test_each_regulariser_changes_training_and_is_off_at_evaluation(extra):
    model = _model(**extra)
    plain = _model()                      # the same weights (same seed), no regulariser
    ids = torch.randint(0, 13, (4, 9))
    with torch.no_grad():
        assert torch.equal(model.eval()(ids)[0], plain.eval()(ids)[0])
        assert not torch.allclose(model.train()(ids)[0], plain.train()(ids)[0])


def test_locked_dropout_shares_its_mask_across_the_steps_of_a_chunk():
    model = _model(dropout=0.5, locked_dropout=True).train()
    x = torch.ones(2, 6, 5)
    out = model.dropout(x)
    assert torch.equal(out, out[:, :1].expand_as(out))           # one (B, 1, D) mask
    assert not torch.equal(out[0], out[1]) and (out == 0).any()
    free = _model(dropout=0.5).train().dropout(x)
    assert not torch.equal(free, free[:, :1].expand_as(free))


def test_embed_dropout_drops_a_token_type_everywhere_in_the_chunk():
    model = _model(embed_dropout=0.5).train()
    ids = torch.tensor([[1, 2, 1, 3, 1, 2, 4, 1]])
    x = model.inputs(ids)                                        # (1, 8, E)
    zero = (x == 0).all(-1)[0]
    for i in range(8):
        assert zero[i] == zero[ids[0] == ids[0, i]].all()        # every occurrence alike
    torch.manual_seed(1)
    drops = [(model.inputs(torch.arange(13)[None]) == 0).all(-1).float().mean() for _ in range(40)]
    assert 0.3 < float(torch.stack(drops).mean()) < 0.7


def test_ar_and_tar_penalise_size_and_change():
    h = torch.tensor([[[1.0, -1.0], [3.0, 1.0]]])               # (B=1, T=2, H=2)
    assert activation_penalty(h, 0.0, 0.0) == 0
    assert activation_penalty(h, 2.0, 0.0) == pytest.approx(2.0 * (1 + 1 + 9 + 1) / 4)
    assert activation_penalty(h, 0.0, 1.0) == pytest.approx((4 + 4) / 2)


def test_ar_tar_and_weight_drop_change_the_trained_weights_and_keep_training_working(tmp_path):
    data = _data("the quick brown fox jumps over the lazy dog\n" * 40)
    mcfg = ModelConfig(vocab_size=data.tokenizer.vocab_size, hidden=16, layers=2, embed_dim=8)
    tcfg = TrainConfig(seq_len=8, batch_size=4, max_steps=12, eval_every=100, warmup=2, lr=2e-2)
    runs = {"plain": (mcfg, tcfg), "ar_tar": (mcfg, TrainConfig(**{**tcfg.to_dict(), "ar": 2.0, "tar": 1.0})),
            "wd": (ModelConfig(**{**mcfg.to_dict(), "weight_drop": 0.3}), tcfg)}
    weights = {}
    for name, (m, t) in runs.items():
        s = train(m, t, data, tmp_path / name)
        assert s["steps"] == 12 and s["val_loss"] < math.log(mcfg.vocab_size)   # learned something
        weights[name] = checkpoint.load(tmp_path / name / "latest.pt")["model"]["rnn.weight_hh_l1"]
    assert not torch.equal(weights["plain"], weights["ar_tar"])
    assert not torch.equal(weights["plain"], weights["wd"])


STEPPER_CASES = [(cell, {"attention": 4}) for cell in ("lstm", "gru", "rnn")] + [
    ("lstm", {"attention": 3, "tie_weights": True}),
    ("gru", {"attention": 5, "input": "onehot"}),
    ("lstm", {"weight_drop": 0.4, "embed_dropout": 0.3, "dropout": 0.3, "locked_dropout": True,
              "attention": 6}),
]


@pytest.mark.parametrize("cell,extra", STEPPER_CASES)
def test_stepper_equals_the_fused_forward_with_the_new_options(cell, extra):
    model = _model(cell, **extra).eval()
    with torch.no_grad():     # non-zero attention weights and biases, so a misplaced one shows
        for name, p in model.named_parameters():
            if "attn" in name or "bias" in name:
                p.uniform_(-0.5, 0.5)
    ids = torch.randint(0, 13, (3, 11))
    with torch.no_grad():
        full, end = model(ids)
        _, mid = model(ids[:, :4])
    stepper = Stepper(model, batch_size=3)
    stepper.load_state(model.init_state(3))
    for t in range(11):
        assert torch.allclose(stepper.step(ids[:, t].contiguous()), full[:, t], atol=1e-5), t
    for got, want in zip(stepper.state(), end):
        assert torch.allclose(got, want, atol=1e-5)
    stepper.load_state(mid)                 # from a carried state (a long prime read fused)
    for t in range(4, 11):
        assert torch.allclose(stepper.step(ids[:, t].contiguous()), full[:, t], atol=1e-5), t


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_attention_window_carries_across_chunks(cell):
    model = _model(cell, attention=5).eval()
    with torch.no_grad():
        model.attn.out.weight.uniform_(-0.5, 0.5)
        ids = torch.randint(0, 13, (2, 17))
        full, _ = model(ids)
        state, parts = None, []
        for chunk in ids.split(3, dim=1):     # chunks shorter than the window
            logits, state = model(chunk, state)
            parts.append(logits)
        assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
        assert torch.allclose(model(ids, model.init_state(2))[0], full, atol=1e-6)  # zeros = no state
        cut = model(ids[:, 8:])[0]            # without the window the same chunk reads differently
        assert not torch.allclose(cut, full[:, 8:], atol=1e-4)


def test_an_attention_run_trains_resumes_and_samples(tmp_path):
    data = _data("the quick brown fox jumps over the lazy dog\n" * 40)
    mcfg = ModelConfig(vocab_size=data.tokenizer.vocab_size, hidden=16, layers=2, embed_dim=8, attention=8)
    tcfg = TrainConfig(seq_len=8, batch_size=4, max_steps=20, eval_every=7, warmup=2, seed=3)
    train(mcfg, tcfg, data, tmp_path / "straight")
    s = train(mcfg, tcfg, data, tmp_path / "split", callback=lambda ev: ev.get("event") == "step" and ev["step"] >= 10)
    ckpt = checkpoint.load(tmp_path / "split" / "latest.pt")
    checkpoint.check_resumable(ckpt)
    assert s["interrupted"] and ckpt["state"][-1].shape == (7, 4, 2 * 16 + 1)
    train(mcfg, tcfg, data, tmp_path / "split", resume=ckpt)
    a = checkpoint.load(tmp_path / "straight" / "latest.pt")["model"]
    b = checkpoint.load(tmp_path / "split" / "latest.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    model, tok = checkpoint.build_model(checkpoint.load(tmp_path / "split" / "best.pt"))
    text = sample_text(model, tok, SampleConfig(prime="the ", length=30, seed=1))[0]
    assert text.startswith("the ") and len(text) == 34


def test_checkpoints_from_before_the_new_options_still_load_resume_and_sample(tmp_path):
    data = _data("abcdefg hijklmnop\n" * 30)
    mcfg = ModelConfig(vocab_size=data.tokenizer.vocab_size, hidden=16, layers=2, embed_dim=8)
    train(mcfg, TrainConfig(seq_len=8, batch_size=4, max_steps=5), data, tmp_path / "r")
    ckpt = checkpoint.load(tmp_path / "r" / "latest.pt")
    for key in NEW_MODEL_FIELDS:                     # as an older charnn wrote it
        del ckpt["model_config"][key]
    for key in ("ar", "tar"):
        del ckpt["train_config"][key]
    checkpoint.save(ckpt, tmp_path / "old.pt")
    old = checkpoint.load(tmp_path / "old.pt")
    checkpoint.check_resumable(old)
    model, tok = checkpoint.build_model(old)
    assert model.attn is None and model.cfg.weight_drop == 0
    assert len(sample_text(model, tok, SampleConfig(prime="ab", length=20, seed=0))[0]) == 22
    s = train(mcfg, TrainConfig(seq_len=8, batch_size=4, max_steps=8), data, tmp_path / "r", resume=old)
    assert s["steps"] == 8


CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
model name\t: Some CPU
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw {extra} xsave
bogomips\t: 4000.00
"""


@pytest.mark.parametrize("extra,want", [("", False), ("avx512_bf16", True), ("amx_bf16 amx_tile", True),
                                        ("avx512_bf16x", False), ("avx512_vnni", False)])
def test_native_bf16_is_read_from_the_cpu_flags(extra, want):
    assert cpu_bf16(CPUINFO.format(vendor="GenuineIntel", extra=extra)) is want


def test_no_cpu_flags_means_no_bf16():
    assert cpu_bf16("") is False
    assert cpu_bf16("processor : 0\nFeatures : fp asimd bf16\nCPU implementer : 0x41\n") is False  # ARM: unmeasured


def test_a_primed_sample_starts_after_a_line_break_like_an_unprimed_one():
    """The prime is read after a newline that is not printed: greedy decoding continues exactly
    as the model does from the text "\\n" + prime, not from a zero state."""
    from charnn.tokenizers.char import CharTokenizer

    text = "def f(x):\n    return x\n"
    tok = CharTokenizer.fit(lambda: [text])
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(vocab_size=tok.vocab_size, hidden=16, layers=1, embed_dim=8)).eval()
    out = sample_text(model, tok, SampleConfig(prime="def", length=1, temperature=0))[0]
    with torch.no_grad():
        after_nl = model(torch.as_tensor(tok.encode("\ndef")).long()[None])[0][0, -1]
    assert out == "def" + tok.decode([after_nl.argmax().item()])


def test_the_planner_turns_on_ar_tar_and_keeps_flags_given():
    from charnn.training import autosize

    small = {"batch_size": 4, "seq_len": 16, "hidden": 64, "layers": 1}
    p = autosize.plan(10.0, 100_000, 40, torch.device("cpu"), fixed=small)
    assert (p.ar, p.tar) == (autosize.AR, autosize.TAR) and "AR" in autosize.describe(p)
    q = autosize.plan(10.0, 100_000, 40, torch.device("cpu"), fixed={**small, "ar": 0.0, "tar": 0.0,
                                                                     "weight_drop": 0.25})
    assert (q.ar, q.tar, q.weight_drop) == (0.0, 0.0, 0.25)
    assert autosize.regularisation(0.5) == (0.0, 0.0)
    assert autosize.regularisation(50.0)[0] == 0.3
    # a plain RNN gets none (they shrink its only state); a flag given still wins
    r = autosize.plan(10.0, 100_000, 40, torch.device("cpu"), fixed=small, cell="rnn")
    assert (r.ar, r.tar) == (0.0, 0.0) and any("no AR/TAR" in x for x in r.reasons)
    r2 = autosize.plan(10.0, 100_000, 40, torch.device("cpu"), fixed={**small, "ar": 1.0}, cell="rnn")
    assert (r2.ar, r2.tar) == (1.0, 0.0)


def test_weight_drop_goes_by_the_passes_a_run_would_make_and_its_cost_is_planned():
    from charnn.training import autosize

    # 10m (11 planned epochs, 9 real passes) had not overfit; at 20m (14-18 passes) 0.15 did best
    assert autosize.regularisation(11.2) == (0.3, 0.0)
    assert autosize.regularisation(22.2) == (0.3, 0.15)
    assert autosize.regularisation(24.0 / autosize.REALISED_SPEED - 0.1) == (0.3, 0.15)
    assert autosize.regularisation(60.0) == (0.3, 0.3)
    shape = autosize.Shape(65, 32, 64, "lstm", {})
    plain = shape.schedule(2, 512, 20_000.0, 2e7, 2_000_000, 1000.0, 2, [])
    dropped = autosize.Shape(65, 32, 64, "lstm", {"weight_drop": 0.3}).schedule(
        2, 512, 20_000.0, 2e7, 1_000_000, 1000.0, 2, [])
    assert plain.weight_drop == 0.0 and plain.tokens_per_sec == 20_000.0
    assert dropped.weight_drop == 0.3
    assert dropped.tokens_per_sec == pytest.approx(20_000.0 * autosize.WEIGHT_DROP_SPEED)
    assert dropped.planned_tokens == pytest.approx(plain.planned_tokens * autosize.WEIGHT_DROP_SPEED)
    assert any("0.84 of the speed" in r for r in dropped.reasons)


def test_a_budget_run_trains_with_the_planned_regularisers(tiny_corpus):
    import json

    from tests.conftest import cli

    r = cli("train", str(tiny_corpus), "--time-budget", "20s", "--batch-size", "4", "--seq-len", "16",
            "--hidden", "32", "--layers", "1", "--tar", "0.5", "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["train"]["ar"], d["train"]["tar"]) == (d["plan"]["ar"], 0.5) == (2.0, 0.5)
    assert d["model"]["weight_drop"] == d["plan"]["weight_drop"]
