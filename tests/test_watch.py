"""Following the speed a run actually gets (issue 12): the thread count that trains faster, and
re-planning when the machine gets busier or quieter than at calibration. Driven by fake clocks
and fake speeds, so the decisions are tested exactly, whatever the machine is doing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from charnn.training import autosize, watch
from charnn.training.watch import ThroughputWatch


class FakeMachine:
    """A clock that advances by each step's tokens over the speed of the current thread count."""

    def __init__(self, speeds: dict[int, float]):
        self.speeds, self.now, self.threads, self.calls = speeds, 0.0, max(speeds), []

    def clock(self) -> float:
        return self.now

    def set_threads(self, n: int) -> None:
        self.threads = n
        self.calls.append(n)

    def run(self, w: ThroughputWatch, steps: int, tokens: int = 1000, progress=lambda i: 0.0):
        events = []
        for i in range(steps):
            self.now += tokens / self.speeds[self.threads]
            ev = w.after_step(tokens, progress(i))
            if ev:
                events.append(ev)
        return events


def test_one_thread_is_kept_when_two_wait_for_each_other():
    m = FakeMachine({1: 11_400.0, 2: 3_700.0})        # what a busy 2-core machine measured
    w = ThroughputWatch(None, [1, 2], set_threads=m.set_threads, current_threads=2, clock=m.clock)
    events = m.run(w, 200)
    assert m.calls == [1] and m.threads == 1
    assert events == [{"event": "threads", "threads": 1, "tokens_per_sec": pytest.approx(11_400),
                       "was": 2, "was_tokens_per_sec": pytest.approx(3_700)}]


def test_the_faster_count_stays_when_the_other_is_slower():
    m = FakeMachine({1: 6_000.0, 2: 11_000.0})        # a quiet machine: two threads help
    w = ThroughputWatch(None, [1, 2], set_threads=m.set_threads, current_threads=2, clock=m.clock)
    assert m.run(w, 200) == [] and m.calls == [1, 2] and m.threads == 2


def test_a_change_of_speed_tries_the_threads_again():
    m = FakeMachine({1: 6_000.0, 2: 11_000.0})
    w = ThroughputWatch(None, [1, 2], set_threads=m.set_threads, current_threads=2, clock=m.clock)
    m.run(w, 100)
    m.speeds = {1: 5_500.0, 2: 1_800.0}              # other processes arrive
    events = m.run(w, 100)
    assert m.threads == 1 and [e["event"] for e in events] == ["threads"]


def test_far_below_plan_early_asks_for_a_new_plan_once():
    asked = []
    m = FakeMachine({1: 2_000.0})
    w = ThroughputWatch(10_000.0, [], replan=lambda r: asked.append(r) or "smaller", clock=m.clock)
    events = m.run(w, 100, progress=lambda i: m.now / 500)      # a 500 s budget: 50 s of it
    assert asked == [pytest.approx(2_000)] and w.new_plan == "smaller"
    assert [e["event"] for e in events] == ["replan"]


def test_time_outside_training_steps_is_not_read_as_a_slow_machine():
    """An evaluation in the middle of a window (20 s of a busy machine) is excluded: the speed
    stays the training speed, so nothing is re-planned."""
    m = FakeMachine({1: 10_000.0})
    w = ThroughputWatch(10_000.0, [], replan=lambda r: pytest.fail("no re-plan"), clock=m.clock)
    for _ in range(40):
        assert m.run(w, 10) == []
        m.now += 20.0                     # the Trainer evaluated and saved...
        w.exclude(20.0)                   # ...and said so
    # without exclude() the same windows read as far below the plan
    m2 = FakeMachine({1: 10_000.0})
    asked = []
    w2 = ThroughputWatch(10_000.0, [], replan=lambda r: asked.append(r), clock=m2.clock)
    for _ in range(40):
        m2.run(w2, 10, progress=lambda i: m2.now / 2000)
        m2.now += 20.0
    assert asked and asked[0] < 5_000


def test_the_new_plan_is_sized_for_the_faster_of_the_slow_windows():
    """One window with a stall (400 tokens/s) beside one at 3,000: the plan is made for 3,000."""
    asked = []
    w = ThroughputWatch(10_000.0, [], replan=lambda r: asked.append(r) or "smaller")
    assert w._against_plan(3_000.0, 0.1) is None
    ev = w._against_plan(400.0, 0.1 + watch.PERSIST)
    assert asked == [3_000.0] and ev["tokens_per_sec"] == 3_000.0


def test_the_trainer_keeps_evaluations_out_of_the_watched_speed(tmp_path, monkeypatch):
    """A real run: every periodic evaluation's time reaches the watch through exclude()."""
    import charnn

    excluded = []

    class Recorder(ThroughputWatch):
        def exclude(self, seconds):
            excluded.append(seconds)
            super().exclude(seconds)

    text = "".join(f"line {i} of a text about cats and dogs.\n" for i in range(300))
    (tmp_path / "c.txt").write_text(text)
    from charnn.training import session
    monkeypatch.setattr(session.Session, "make_watch", lambda self, replan: Recorder(None, []))
    charnn.train(str(tmp_path / "c.txt"), out=tmp_path / "run", max_steps=12, eval_every=4,
                 hidden=16, layers=1, batch_size=4, seq_len=16)
    assert len(excluded) == 2 and all(s > 0 for s in excluded)     # steps 4 and 8 (12 is the final one)


def test_a_few_seconds_of_another_process_do_not_restart_the_run():
    """Slow for 12 s of a 300 s budget (a test suite run beside it), then back to the plan's
    speed: the run keeps its model. The same slowness for 30 s re-plans."""
    budget = 300.0

    def slow_for(seconds):
        m = FakeMachine({1: 10_000.0})
        asked = []
        w = ThroughputWatch(10_000.0, [], replan=lambda r: asked.append(r) or "smaller", clock=m.clock)
        m.run(w, 100, progress=lambda i: m.now / budget)          # 10 s at the plan's speed
        m.speeds = {1: 2_000.0}
        m.run(w, int(seconds * 2), progress=lambda i: m.now / budget)
        m.speeds = {1: 10_000.0}
        m.run(w, 300, progress=lambda i: m.now / budget)
        return asked

    assert slow_for(12) == []
    assert slow_for(30) == [pytest.approx(2_000)]


def test_far_from_plan_late_only_warns_once():
    asked = []
    m = FakeMachine({1: 25_000.0})                    # the machine got quieter: 2.5x the plan
    w = ThroughputWatch(10_000.0, [], replan=lambda r: asked.append(r), clock=m.clock)
    events = m.run(w, 600, progress=lambda i: 0.6 + m.now / 100)
    assert asked == [] and [e["event"] for e in events] == ["off_plan"]


def test_within_the_plan_nothing_happens():
    m = FakeMachine({1: 7_000.0})
    w = ThroughputWatch(10_000.0, [], replan=lambda r: pytest.fail("no re-plan"), clock=m.clock)
    assert m.run(w, 300) == []


def test_replan_chooses_a_smaller_model_for_a_slower_machine():
    shape = autosize.shape_for(65, torch.device("cpu"), {}, "lstm")
    # 2x512 planned for 10 minutes at 12,000 tokens/s; the machine now gives it 2,000
    slow = autosize.replan(shape, (2, 512), 2_000.0, 1, 500.0, 1_000_000)
    assert slow is not None and (slow.layers, slow.hidden) < (2, 512)
    assert slow.tokens_per_sec > 2_000                  # a smaller model runs faster
    assert any("re-planned" in r for r in slow.reasons)
    # at the speed it was planned for, the plan stands
    assert autosize.replan(shape, (2, 512), 12_000.0, 2, 500.0, 1_000_000) is None


def test_a_run_that_falls_far_behind_restarts_with_the_new_plan(tmp_path, monkeypatch):
    """The session's part: the Trainer stops unsaved, the run folder is cleared, the new model
    trains to the end of the same budget, and stderr says what happened and why."""
    text = "".join(f"line {i} of a text about cats and dogs and birds.\n" for i in range(2000))
    (tmp_path / "c.txt").write_text(text)
    planned = autosize.Plan(layers=1, hidden=48, embed_dim=16, batch_size=4, seq_len=16, lr=5e-3,
                            dropout=0.0, warmup=5, tokens_per_sec=1e9, planned_tokens=1e9,
                            planned_epochs=1.0, parameters=1, reasons=["a plan for a machine far faster"])
    smaller = autosize.Plan(**{**planned.to_dict(), "hidden": 16, "tokens_per_sec": 1e4,
                               "reasons": ["re-planned"]})
    monkeypatch.setattr(autosize, "plan", lambda *a, **k: planned)
    monkeypatch.setattr(autosize, "replan", lambda *a, **k: smaller)
    asked = []

    class SlowMachine(ThroughputWatch):
        """The real watch, told at its third step that the run gets 1,234 tokens/s."""

        def after_step(self, tokens, progress):
            if self.replan is None or asked:      # the restarted run has no re-plan to ask for
                return None
            asked.append(progress)
            self._against_plan(1_234.0, 0.0)            # two windows far below the plan...
            return self._against_plan(1_234.0, watch.PERSIST)     # ...for long enough: a new one

    monkeypatch.setattr(watch, "ThroughputWatch", SlowMachine)
    import charnn

    events = []
    summary = charnn.train(str(tmp_path / "c.txt"), out=tmp_path / "run", time_budget=6,
                           callback=lambda ev: events.append(ev) and None)
    texts = [e["text"] for e in events if e["event"] == "message"]
    assert any(t.startswith("re-planning: 1x48 trains at") and "restarting with 1x16" in t for t in texts)
    ck = __import__("charnn").load(tmp_path / "run")
    assert (ck.config.layers, ck.config.hidden) == (1, 16) and summary["steps"] > 0
    assert summary["elapsed"] < 6.5 and summary["replan"] is None and len(asked) == 1
    records = [json.loads(x) for x in Path(tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert not any(r["event"] == "replan" for r in records)     # the first run's log was cleared
