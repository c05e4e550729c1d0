"""Watching the speed a run actually gets, and acting on it.

A time-budget plan is made from a few seconds of calibration, but a machine can get busy (or
quiet) after those seconds. After every training step the Trainer tells the watch how many
tokens it trained; every WINDOW_SECONDS the watch compares the window's tokens/s with what it
saw before and with the plan, and decides:

  - threads: on a CPU, when the speed moves by a third or more (and once at the start), it
    times one window with the other thread count (1 or all cores) and keeps the faster. Other
    processes on the cores make threads that wait for each other at every operation crawl: on
    2 busy cores one thread trained 3x faster than two (2x256 LSTM, 11,400 vs 3,700 tokens/s).
  - re-plan: when, with the better thread count, the speed stays below SLOW or above FAST times
    the plan's for two windows and PERSIST of the budget (a restart throws away what the run
    learned so far, so a few seconds of another process must not cost it: a test suite run
    beside a quiet 5-minute budget once shrank 2x512 to 2x384 and cost 0.04 nats/char), while
    less than REPLAN_BEFORE of the budget is spent, the plan
    no longer fits the time: `replan(tokens_per_sec)` (the session's) is asked for a new plan
    at the speed of the faster of those windows (one stall does not size a whole run), and if
    it chooses another size the run restarts with it.
  - later, a run far off its plan only says so, once: restarting would waste too much of the
    budget, and the schedule, fitted to the clock, ends on time either way.

Time the run spends outside training steps (evaluations, checkpoints) is not the speed of
training: the Trainer hands it to `exclude(seconds)`, so a window that held an evaluation on a
busy machine does not read as a collapse (it once read 446 tokens/s for a run training at
20,000, and re-planned to a model far too small).

Everything the watch decides is returned as an event for the metrics log and the reporter.
The clock and the thread setter are parameters, so tests drive it with fake speeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Optional

WINDOW_SECONDS = 3.0        # speed is judged over windows at least this long...
MIN_WINDOW_STEPS = 3        # ... and of at least this many steps
SHIFT = 1 / 3               # a change of speed this large re-tries the thread count
SLOW, FAST = 0.5, 2.0       # re-plan when the speed leaves [SLOW, FAST] x the plan's
REPLAN_BEFORE = 0.35        # of the budget: later, a restart would waste too much of it
PERSIST = 0.06              # of the budget: how long the speed must stay off the plan (18 s of 5m)
BETTER = 1.1                # the other thread count must be this much faster to be kept


class ThroughputWatch:
    """planned: the plan's tokens/s (None: no plan; only the threads adapt). threads: the
    thread counts to choose between (e.g. [1, 2]; one or none: no choice). replan(rate): a new
    plan for that speed, or None if the plan would not change."""

    def __init__(self, planned: float | None = None, threads: list[int] | None = None,
                 replan: Callable[[float], Any] | None = None,
                 set_threads: Callable[[int], None] | None = None, current_threads: int = 0,
                 clock: Callable[[], float] = time.perf_counter):
        self.planned, self.replan = planned, replan
        self.choices = sorted(set(threads or []))
        self.set_threads = set_threads or _set_torch_threads
        self.current = current_threads or (self.choices[-1] if self.choices else 0)
        self.clock = clock
        self.window_start, self.tokens, self.steps = clock(), 0, 0
        self.warm = False            # the first window (allocations, caches) is not judged
        self.reference: float | None = None    # the speed of the last thread decision
        self.probe: Optional[tuple[int, float]] = None   # (threads before, their speed) while probing
        self.off_plan: list[float] = []   # the speeds of the last two consecutive windows outside [SLOW, FAST]
        self.off_since = 0.0         # the budget's progress when the first of that run of windows ended
        self.warned = False
        self.new_plan = None         # set when the run should restart with it

    def after_step(self, tokens: int, progress: float) -> dict[str, Any] | None:
        """Count a step's tokens; at the end of a window, judge it. progress: the fraction of
        the budget spent. Returns an event dict when something was decided."""
        if self.new_plan is not None:      # decided: the run stops at this step
            return None
        self.tokens += tokens
        self.steps += 1
        dt = self.clock() - self.window_start
        if dt < WINDOW_SECONDS or self.steps < MIN_WINDOW_STEPS:
            return None
        rate = self.tokens / dt
        self.window_start, self.tokens, self.steps = self.clock(), 0, 0
        if not self.warm:
            self.warm = True
            return None
        return self._judge(rate, progress)

    def exclude(self, seconds: float) -> None:
        """Time spent outside training steps (an evaluation, a save) leaves the window."""
        self.window_start += seconds

    def _judge(self, rate: float, progress: float) -> dict[str, Any] | None:
        if self.probe is not None:
            return self._end_probe(rate)
        if len(self.choices) > 1 and (self.reference is None or abs(rate / self.reference - 1) >= SHIFT):
            return self._start_probe(rate)
        return self._against_plan(rate, progress)

    def _start_probe(self, rate: float) -> dict[str, Any] | None:
        other = next(t for t in reversed(self.choices) if t != self.current)
        self.probe = (self.current, rate)
        self._use(other)
        return None

    def _end_probe(self, rate: float) -> dict[str, Any] | None:
        before, before_rate = self.probe
        self.probe = None
        if rate >= BETTER * before_rate:
            self.reference = rate
            return {"event": "threads", "threads": self.current, "tokens_per_sec": rate,
                    "was": before, "was_tokens_per_sec": before_rate}
        self._use(before)
        self.reference = before_rate
        return None

    def _against_plan(self, rate: float, progress: float) -> dict[str, Any] | None:
        if not self.planned:
            return None
        ratio = rate / self.planned
        if SLOW <= ratio <= FAST:
            self.off_plan = []
            return None
        if not self.off_plan:
            self.off_since = progress
        self.off_plan = (self.off_plan + [rate])[-2:]
        if len(self.off_plan) < 2 or progress - self.off_since < PERSIST:
            return None
        # the last two windows agree that the plan is off; the new plan is sized for the faster
        rate = max(self.off_plan) if ratio < SLOW else min(self.off_plan)
        if progress < REPLAN_BEFORE and self.replan is not None:
            plan = self.replan(rate)
            self.replan = None          # one re-plan per run: a machine that keeps changing
            if plan is not None:        # would otherwise restart it over and over
                self.new_plan = plan
                return {"event": "replan", "tokens_per_sec": rate, "planned_tokens_per_sec": self.planned,
                        "plan": plan.to_dict() if hasattr(plan, "to_dict") else plan}
            return None
        if not self.warned:
            self.warned = True
            return {"event": "off_plan", "tokens_per_sec": rate, "planned_tokens_per_sec": self.planned}
        return None

    def _use(self, threads: int) -> None:
        self.current = threads
        self.set_threads(threads)


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
