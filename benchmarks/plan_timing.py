"""How much the planner's timing of one size wanders on this machine (issue 17).

`charnn/training/autosize.choose` confirms the size it picked by timing a few real training
steps of a freshly built model. This builds that same bench (2x512 LSTM, B=32, T=64, bf16
autocast where the CPU has it, 2 threads) four times for each number of timed steps (2, 4, 8)
and prints the median tokens/s and every step's; then one bench for 40 steps, to compare the
first steps with later ones. If more steps steadied the figure, the spread would shrink with n.

    .venv/bin/python benchmarks/plan_timing.py > benchmarks/results/plan-timing-2x512.txt
"""
import statistics

import torch

from charnn.training import autosize


def main() -> None:
    shape = autosize.Shape(65, 32, 64, "lstm", {}, amp=True)
    dev = torch.device("cpu")
    torch.set_num_threads(2)
    for rep in range(4):
        for n in (2, 4, 8):
            bench = autosize._Bench(shape.config(2, 512), 32, 64, dev, True)
            ts = bench.times(n + 1, 2)      # times() makes one untimed warm-up step first
            print(f"rep {rep} n={n}: median {2048 / statistics.median(ts[:n]):,.0f} tok/s, steps "
                  + " ".join(f"{2048 / t:,.0f}" for t in ts), flush=True)
    bench = autosize._Bench(shape.config(2, 512), 32, 64, dev, True)
    ts = bench.times(40, 2)
    print(f"long: first 10 {2048 / statistics.median(ts[:10]):,.0f}, "
          f"last 30 {2048 / statistics.median(ts[10:]):,.0f} tok/s")


if __name__ == "__main__":
    main()
