"""charnn info: the loss curve in text (from the training losses when evaluations are few, and
why there is none), --plot for one run and several overlaid, and the curves read from metrics.jsonl."""

from __future__ import annotations

import json

import pytest

from charnn.inspect.curves import read_curves
from tests.conftest import TINY_MODEL, cli

PNG = b"\x89PNG\r\n\x1a\n"


def _train(corpus, out: str, *extra: str):
    r = cli("train", str(corpus), "--out", out, *TINY_MODEL, "--quiet", *extra)
    assert r.exit_code == 0, r.stderr


def test_few_evaluations_draw_the_training_loss_and_none_says_why(tiny_corpus, tmp_path):
    _train(tiny_corpus, "short", "--max-steps", "30", "--eval-every", "1000")     # one (final) evaluation
    r = cli("info", "short")
    assert r.exit_code == 0, r.stderr
    assert "training loss (nats/token) by step, from metrics.jsonl (the run has 1 evaluation" in r.stdout
    assert r.stdout.count("*") >= 3                                            # steps 10, 20, 30
    (tmp_path / "short" / "metrics.jsonl").unlink()
    r = cli("info", "short")
    assert "no loss curve: the run has 1 evaluation and 0 logged training steps (a curve needs two" in r.stdout


def test_plot_one_run_and_several_overlaid(tiny_corpus, tmp_path):
    _train(tiny_corpus, "a", "--max-steps", "40")
    _train(tiny_corpus, "b", "--max-steps", "20", "--cell", "gru")
    r = cli("info", "a", "--plot", str(tmp_path / "a.png"))
    assert r.exit_code == 0, r.stderr
    assert "validation loss (nats/token) by step" in r.stdout and f"wrote {tmp_path / 'a.png'}" in r.stderr
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG
    r = cli("info", "a", "b", "--plot", str(tmp_path / "ab.svg"), "--json")
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]                      # one JSON line per run
    assert [x["model"]["cell"] for x in lines] == ["lstm", "gru"]
    assert (tmp_path / "ab.svg").read_text().lstrip().startswith("<?xml")
    r = cli("info", "a", "--plot", str(tmp_path / "nowhere" / "x.png"))
    assert r.exit_code == 2 and "no such folder" in r.stderr


def test_curves_come_from_metrics_jsonl(tiny_corpus, tmp_path):
    _train(tiny_corpus, "c", "--max-steps", "40")
    log = tmp_path / "c" / "metrics.jsonl"
    with open(log, "a") as f:
        f.write('{"event": "step", "step": 40, "loss": 9.0, "lr": 0.1, "elapsed": 99}\n')   # 40 again: kept last
        f.write('{"event": "step", "st')                                                  # a torn last line
    from charnn.run import load

    run = load(str(tmp_path / "c"))
    c = read_curves(log.parent, run.ckpt, name="c")
    assert c.steps == [10, 20, 30, 40] and c.train[-1] == 9.0 and c.elapsed[-1] == 99
    assert c.val_steps == [20, 40] and all(v > 0 for v in c.val)
    assert c.per_char(c.train) == pytest.approx(c.train)                  # char model: one char per token
