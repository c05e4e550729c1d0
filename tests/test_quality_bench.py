"""The quality benchmark's own parts (benchmarks/): the plain reference it measures charnn
against, its monotonicity check, the corpora recipes, the levers' variant grammar."""

from __future__ import annotations

import importlib.util
import math
import sys
import time

import pytest

from tests.conftest import REPO


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plain_reference_trains_for_the_seconds_it_is_given():
    ref = _bench("plain_reference")
    text = "to be or not to be, that is the question.\n" * 400
    import torch

    w = torch.zeros(1, requires_grad=True)      # AdamW's first step imports torch._dynamo (~1 s):
    w.sum().backward()                           # not the loop's time
    torch.optim.AdamW([w]).step()
    t0 = time.time()
    r = ref.train_reference(text, seconds=3.0, hidden=32, B=4, T=16)    # the loop, on a tiny model
    assert r["steps"] >= 1 and math.isfinite(r["val_nats_per_char"])
    assert r["val_nats_per_char"] < math.log(len(set(text)))      # it learned something
    assert time.time() - t0 < 3.0 + 2.0       # the clock includes the final evaluation


def test_monotone_flags_a_longer_budget_that_ends_worse():
    qb = _bench("quality_budget")
    runs = [{"budget": "5m", "val": 1.45}, {"budget": "10m", "val": 1.42}, {"budget": "20m", "val": 1.44}]
    assert qb.monotone(runs) == ["10m 1.4200 < 20m 1.4400"]
    assert qb.monotone([{"budget": "5m", "val": 1.45}, {"budget": "10m", "val": 1.453}]) == []   # within noise


@pytest.mark.skipif(sys.version_info[:3] != (3, 11, 7), reason="the stdlib corpus depends on the Python version")
def test_the_code_corpus_is_the_recorded_one():
    import hashlib

    c = _bench("corpora")
    assert hashlib.sha256(c.python_stdlib().encode()).hexdigest() == c.EXPECTED["python-stdlib"]


def test_levers_variants_parse():
    lv = _bench("levers")
    v = lv.parse_variant("bf16:d0.3:wd0.5:locked:ar2:tar1:att32:s7", {"hidden": 256})
    assert (v["amp"], v["dropout"], v["weight_drop"], v["locked_dropout"], v["ar"], v["tar"],
            v["attention"], v["seed"], v["hidden"]) == (True, 0.3, 0.5, True, 2.0, 1.0, 32, 7, 256)
    with pytest.raises(SystemExit):
        lv.parse_variant("dx", {})
