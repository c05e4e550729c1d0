"""Training speed of one process against data-parallel ranks (charnn train --nproc), same run.

    python benchmarks/ddp_speed.py [--corpus PATH] [--sizes 2x512,2x128] [--steps 30]
                                   [--device cpu|cuda] [--nproc N] [--batch-size 32 --seq-len 128]

Each point is a real `python -m charnn train` of this checkout on the corpus (default:
../shared/corpora/tinyshakespeare.txt), global batch B streams x T steps, --max-steps STEPS:

  cpu   1 process with all cores as torch threads  vs  N gloo ranks (`--nproc N`), cores/N each
  cuda  1 process on one GPU                       vs  N ranks on N GPUs (nccl), when N > 1

chars/s is what charnn's metrics log records (global characters per second over windows of 10
steps, as rank 0 sees them); the first window (start-up, allocations) is left out. Both sides
have the same global batch, so their steps do the same work: the ratio is the speed-up of the
ranks. Not a test: run it on a quiet machine; it prints one table with the command, machine
and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_name  # noqa: E402

from charnn.machine import available_cores  # noqa: E402


def run_point(corpus: Path, layers: int, hidden: int, args, nproc: int, threads: int | None,
              work: Path) -> float:
    """chars/s of one training run (mean over the 10-step windows after the first)."""
    out = work / f"{layers}x{hidden}-{nproc}"
    cmd = [sys.executable, "-m", "charnn", "train", str(corpus), "--layers", str(layers),
           "--hidden", str(hidden), "--embed-dim", str(min(256, max(64, hidden // 4))),
           "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
           "--max-steps", str(args.steps), "--eval-every", str(10 ** 9), "--val-frac", "0.01",
           "--dropout", "0", "--device", args.device, "--out", str(out), "--quiet"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
    if r.returncode != 0:
        sys.exit(f"failed: {shlex.join(cmd)}\n{r.stderr}")
    steps = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [s["chars_per_sec"] for s in steps if s["event"] == "step"][1:]
    if not rates:
        sys.exit("give --steps of at least 20: the first 10-step window is left out")
    return sum(rates) / len(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    ap.add_argument("--sizes", default="2x512,2x128", help="LAYERSxHIDDEN, comma-separated")
    ap.add_argument("--steps", type=int, default=30, help="training steps per point (>= 20)")
    ap.add_argument("--batch-size", type=int, default=32, help="the global batch")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--nproc", type=int, default=None,
                    help="ranks to compare with one process [default: 2 on cpu, every GPU on cuda]")
    args = ap.parse_args()

    import torch

    n_cores = available_cores()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda: no CUDA GPU here")
        gpus = torch.cuda.device_count()
        nproc = args.nproc or gpus
        if nproc > gpus:
            sys.exit(f"--nproc {nproc}: this machine has {gpus} GPU(s), one per rank")
        machine = f"{gpus} x {torch.cuda.get_device_name(0)}, {n_cores} CPU cores"
        one, many = "1 process, 1 GPU", f"{nproc} ranks, {nproc} GPUs (nccl)"
        threads_one = threads_many = None
    else:
        nproc = args.nproc or 2
        threads_one, threads_many = n_cores, max(1, n_cores // nproc)
        machine = f"{n_cores} CPU cores ({cpu_name()})"
        one = f"1 process ({threads_one} threads)"
        many = f"{nproc} gloo ranks ({threads_many} thread{'s' if threads_many > 1 else ''} each)"

    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="charnn-ddp-bench-") as tmp:
        for layers, hidden in sizes:
            a = run_point(args.corpus, layers, hidden, args, 1, threads_one, Path(tmp))
            b = run_point(args.corpus, layers, hidden, args, nproc, threads_many, Path(tmp)) \
                if nproc > 1 else float("nan")
            rows.append((f"{layers}x{hidden} LSTM", a, b))
            print(f"  {layers}x{hidden}: {a:,.0f} vs {b:,.0f} chars/s", file=sys.stderr, flush=True)

    print(f"command: python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}".rstrip())
    print(f"machine: {machine}, {platform.system()} {platform.machine()}, torch {torch.__version__}")
    print(f"date:    {datetime.date.today().isoformat()}")
    print(f"run:     {args.corpus.name}, global batch {args.batch_size} x {args.seq_len} steps, "
          f"{args.steps} steps per point, chars/s after the first 10 steps")
    print()
    print(f"| model | {one} | {many} | ratio |")
    print("|---|---:|---:|---:|")
    for name, a, b in rows:
        ratio = f"{b / a:.2f}x" if b == b else "-"
        print(f"| {name} | {a:,.0f} | {b:,.0f} | {ratio} |" if b == b else
              f"| {name} | {a:,.0f} | - | - |")


if __name__ == "__main__":
    main()
