"""How the server's batch should change size: the design measurement behind charnn.serve.engine.

    python benchmarks/serve_batching.py [--hidden 512 --layers 2 --vocab 65] [--steps 300] [--repeat 5]

Streams join and leave a continuously batched step at any time, and a Stepper has a fixed batch
size. Three ways to follow the number of active streams n, timed per step (the Stepper step plus
the picking, as the engine does it) for n = 1, 4, 16, 64:

  exact      a Stepper of exactly n rows (one per size, sharing the prepared weights; what the
             engine does): rows that stay are gathered into the new size's buffers on each join/leave
  bucket     the next power of two >= n, idle rows stepped and ignored
  capacity   one Stepper of --capacity rows (64), idle rows stepped and ignored

and what a change of size costs in `exact` (gathering the state rows into the other Stepper).
Random weights (speed does not depend on their values), 1 thread. Not a test: run it on a quiet
machine.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_name  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--sizes", default="1,4,16,64")
    ap.add_argument("--capacity", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300, help="steps per timed run")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import torch

    from charnn.config import ModelConfig
    from charnn.model import RNNLM
    from charnn.sampling.stepper import Stepper
    from charnn.serve.picker import BatchPicker, Sampling

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(vocab_size=args.vocab, cell=args.cell, layers=args.layers, hidden=args.hidden,
                              embed_dim=128)).eval()
    base = Stepper(model, 1)
    steppers: dict[int, Stepper] = {}

    def stepper(n: int) -> Stepper:
        if n not in steppers:
            steppers[n] = base.resized(n)
        return steppers[n]

    def per_step(rows: int, active: int) -> float:
        """Seconds per step of a `rows`-row Stepper of which `active` rows pick."""
        s, picker = stepper(rows), BatchPicker([Sampling(0.8)] * rows)
        ids = torch.zeros(rows, dtype=torch.long)
        us = [0.5] * rows
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                logits = s.step(ids)
                ids = picker(logits, us)
                ids[active:] = 0
            best = min(best, (time.perf_counter() - t0) / args.steps)
        return best

    def resize_cost(n: int) -> float:
        """Seconds to move n - 1 kept rows and 1 new row into an n-row Stepper (a join)."""
        old, new = stepper(max(n - 1, 1)), stepper(n)
        zero = model.init_state(1)
        t0, reps = time.perf_counter(), 200
        for _ in range(reps):
            keep = torch.arange(max(n - 1, 1))
            parts = [tuple(t.index_select(1, keep) for t in old.state()), zero]
            new.load_state(tuple(torch.cat([p[j] for p in parts], 1)[:, :n] for j in range(len(zero))))
        return (time.perf_counter() - t0) / reps

    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"# serve_batching: {' '.join(sys.argv)}")
    print(f"# {datetime.datetime.now():%Y-%m-%d %H:%M}, {cpu_name()}, {platform.python_version()}, "
          f"torch {torch.__version__}, 1 thread; {args.layers}x{args.hidden} {args.cell}, vocab {args.vocab}")
    print(f"{'active':>7} {'exact us/step':>14} {'bucket us/step':>15} {'capacity us/step':>17} "
          f"{'exact chars/s':>14} {'join/leave us':>14}")
    for n in sizes:
        bucket = 1 << (n - 1).bit_length()
        exact, buck, cap = per_step(n, n), per_step(bucket, n), per_step(max(args.capacity, n), n)
        print(f"{n:>7} {exact * 1e6:>14.0f} {buck * 1e6:>15.0f} {cap * 1e6:>17.0f} {n / exact:>14,.0f} "
              f"{resize_cost(n) * 1e6:>14.0f}")


if __name__ == "__main__":
    main()
