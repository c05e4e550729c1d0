"""The time-budget planner: real calibration steps, a documented rule, flags that win."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from charnn.training import autosize
from tests.conftest import cli


def test_parameter_count_matches_the_real_model():
    from charnn.config import ModelConfig
    from charnn.model import RNNLM, num_parameters

    for cell in ("lstm", "gru", "rnn"):
        cfg = ModelConfig(vocab_size=65, cell=cell, layers=2, hidden=48, embed_dim=16)
        assert autosize.parameters(65, 16, 48, 2, cell) == num_parameters(RNNLM(cfg))


def test_a_small_corpus_caps_the_model_size():
    # 2,000 training tokens can feed at most 8,000 parameters: the smallest candidate is taken
    p = autosize.plan(30.0, 2_000, 40, torch.device("cpu"), fixed={"batch_size": 4, "seq_len": 16})
    assert (p.layers, p.hidden) == autosize.CANDIDATES[0]
    assert p.batch_size == 4 and p.seq_len == 16
    assert p.dropout > 0   # many passes over so little data
    assert any("chose" in r for r in p.reasons)


def test_fixed_flags_narrow_the_choice():
    p = autosize.plan(20.0, 10_000_000, 65, torch.device("cpu"),
                      fixed={"hidden": 128, "layers": 1, "dropout": 0.3, "lr": 0.01,
                             "batch_size": 8, "seq_len": 16})
    assert (p.layers, p.hidden, p.dropout, p.lr) == (1, 128, 0.3, 0.01)


def test_dry_run_prints_the_plan_and_trains_nothing(tiny_corpus):
    r = cli("train", str(tiny_corpus), "--time-budget", "20s", "--batch-size", "4", "--seq-len", "16",
            "--dry-run", "--json")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["plan"]["layers"] == plan["model"]["layers"] >= 1 and plan["why"] == plan["plan"]["reasons"]
    assert not Path("checkpoints").exists()
    text = cli("train", str(tiny_corpus), "--time-budget", "20s", "--batch-size", "4", "--dry-run")
    assert "why:" in text.stdout and "chose" in text.stdout


def test_nothing_left_to_choose_skips_the_calibration():
    fixed = {"hidden": 64, "layers": 1, "dropout": 0.0, "warmup": 5, "batch_size": 4, "seq_len": 16}
    p = autosize.plan(20.0, 10_000, 65, torch.device("cpu"), fixed=fixed)
    assert (p.layers, p.hidden, p.dropout, p.warmup) == (1, 64, 0.0, 5)
    assert p.tokens_per_sec == 0 and not any("calibration:" in r for r in p.reasons)
    assert "not measured" in autosize.describe(p)
