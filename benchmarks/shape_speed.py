"""Training tokens/s of charnn's model for several shapes and batch layouts on this machine.

The FLOP-matched sweep (benchmarks/sweep.py) says which shape learns most per FLOP; this says
how many FLOPs per second each shape gets here, since small models, short chunks and narrow
batches pay per-step overhead that FLOP counts do not see. Each point times real training
steps (charnn.training.autosize.measure: forward, backward, clip, AdamW) with the default threads.

    .venv/bin/python benchmarks/shape_speed.py
    .venv/bin/python benchmarks/shape_speed.py --points 2x512:B32:T64 2x512:B64:T64
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from charnn.config import ModelConfig  # noqa: E402
from charnn.training.autosize import flops_per_token, measure, parameters  # noqa: E402

DEFAULT = ["2x256:B32:T128", "2x256:B32:T64", "2x384:B32:T128", "2x384:B32:T64", "2x384:B64:T64",
           "2x512:B32:T128", "2x512:B32:T64", "2x512:B64:T64", "3x512:B32:T64", "2x768:B32:T64"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", nargs="+", default=DEFAULT, help="LxH:B<batch>:T<seq_len>")
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--steps", type=int, default=6)
    a = ap.parse_args()
    print(f"# shape_speed {date.today()}: {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, vocab {a.vocab}")
    print(f"{'point':<18}{'params':>11}{'tokens/s':>11}{'GFLOP/s':>9}{'steps/s':>9}")
    for p in a.points:
        shape, *rest = p.split(":")
        L, H = (int(v) for v in shape.split("x"))
        opts = {k[0]: int(k[1:]) for k in rest}
        B, T = opts.get("B", 32), opts.get("T", 128)
        E = min(256, max(64, H // 4))
        cfg = ModelConfig(vocab_size=a.vocab, layers=L, hidden=H, embed_dim=E)
        tps = measure(cfg, B, T, torch.device("cpu"), steps=a.steps)
        print(f"{p:<18}{parameters(a.vocab, E, H, L):>11,}{tps:>11,.0f}"
              f"{tps * flops_per_token(a.vocab, E, H, L) / 1e9:>9.1f}{tps / (B * T):>9.2f}")


if __name__ == "__main__":
    main()
