"""The sweep behind `--time-budget`'s rule: which shape and schedule learns most per unit of compute.

Every point trains on tinyshakespeare (first 90% train, last 10% validation) for the SAME number
of floating-point operations, the compute a budget buys on this machine class:

    flops = budget_s * TRAIN_FRACTION * rate     (rate: effective training FLOP/s, measured below)

so a wider model gets fewer steps and a shorter --seq-len more of them. Matching FLOPs rather
than wall-clock seconds lets the points run side by side, one thread each, on a busy machine
without the load changing the answer; `charnn train --time-budget` itself then converts the rule
back into seconds with its own calibration. The catch: per-step overhead (small models, short
sequences) is invisible here, which is why the chosen shapes stay at B*T >= 2048 tokens a step.

    .venv/bin/python benchmarks/sweep.py                      # the committed sweep (5m of compute)
    .venv/bin/python benchmarks/sweep.py --budget 10m --points 2x512:T64:d0.2
    .venv/bin/python benchmarks/sweep.py --rate 127e9 --jobs 2

A point is LxH:T<seq_len>:d<dropout>[:lr<lr>][:B<batch>][:E<embed>][:wd<weight drop>][:att<K>][:ar<F>][:tar<F>]
[:fp32] (bf16 autocast where the CPU has it, as charnn train, unless fp32). Results go to stdout as
one JSON line per point and a table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"

from charnn.training.autosize import TRAIN_FRACTION, flops_per_token  # noqa: E402

DEFAULT_POINTS = ["2x384:T128:d0", "2x384:T128:d0.1", "2x384:T64:d0.1", "2x384:T64:d0.2",
                  "2x256:T64:d0.1", "2x512:T64:d0.2"]
VOCAB = 65   # tinyshakespeare's characters


def parse_point(s: str) -> dict:
    parts = s.split(":")
    layers, hidden = (int(v) for v in parts[0].split("x"))
    p = {"name": s, "layers": layers, "hidden": hidden, "seq_len": 128, "dropout": 0.0, "lr": 3e-3,
         "batch_size": 32, "embed_dim": min(256, max(64, hidden // 4)), "weight_drop": 0.0,
         "attention": 0, "amp": True, "ar": 0.0, "tar": 0.0}
    keys = {"T": ("seq_len", int), "d": ("dropout", float), "lr": ("lr", float),
            "B": ("batch_size", int), "E": ("embed_dim", int), "wd": ("weight_drop", float),
            "att": ("attention", int), "ar": ("ar", float), "tar": ("tar", float)}
    for part in parts[1:]:
        if part == "fp32":
            p["amp"] = False
            continue
        for prefix in sorted(keys, key=len, reverse=True):
            if part.startswith(prefix):
                field, conv = keys[prefix]
                p[field] = conv(part[len(prefix):])
                break
        else:
            raise SystemExit(f"bad point part {part!r} in {s!r}")
    return p


def seconds(budget: str) -> float:
    return float(budget[:-1]) * {"s": 1, "m": 60, "h": 3600}[budget[-1]]


def run_point(p: dict, flops: float, corpus: Path, threads: int) -> dict:
    per_token = flops_per_token(VOCAB, p["embed_dim"], p["hidden"], p["layers"])
    tokens_per_step = p["batch_size"] * p["seq_len"]
    steps = max(1, round(flops / per_token / tokens_per_step))
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), CHARNN_CACHE=str(Path(tmp) / "cache"),
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, "-m", "charnn", "train", str(corpus), "--out", str(Path(tmp) / "run"),
               "--layers", str(p["layers"]), "--hidden", str(p["hidden"]),
               "--embed-dim", str(p["embed_dim"]), "--seq-len", str(p["seq_len"]),
               "--batch-size", str(p["batch_size"]), "--dropout", str(p["dropout"]),
               "--lr", str(p["lr"]), "--warmup", str(max(10, steps // 50)),
               "--weight-drop", str(p["weight_drop"]), "--attention", str(p["attention"]),
               "--ar", str(p["ar"]), "--tar", str(p["tar"]),
               "--amp" if p["amp"] else "--no-amp",
               "--max-steps", str(steps), "--eval-every", str(10 ** 9), "--quiet", "--json"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            return {**p, "error": r.stderr.strip()[-500:]}
        s = json.loads(r.stdout.strip().splitlines()[-1])
    return {**p, "steps": steps, "tokens": steps * tokens_per_step, "flops": flops,
            "val": round(s["val_nats_per_char"], 4), "train": round(s["train_loss"], 4),
            "parameters": s["parameters"], "seconds": round(s["elapsed"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default="5m", help="compute of this budget on this machine class")
    ap.add_argument("--rate", type=float, default=127e9,
                    help="effective training FLOP/s of 2 cores (2x512 LSTM measured at 127e9)")
    ap.add_argument("--points", nargs="+", default=DEFAULT_POINTS)
    ap.add_argument("--jobs", type=int, default=2, help="points run at once, one thread each")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    a = ap.parse_args()
    flops = seconds(a.budget) * TRAIN_FRACTION * a.rate
    print(f"# sweep {date.today()}: {a.budget} of compute = {flops / 1e12:.1f} TFLOP per point, "
          f"{a.corpus.name}, {a.jobs} points at once, 1 thread each", file=sys.stderr)
    points = [parse_point(s) for s in a.points]
    results = []
    with ThreadPoolExecutor(a.jobs) as pool:
        # each point prints as it finishes, so a long sweep that is cut off keeps what it measured
        for fut in as_completed([pool.submit(run_point, p, flops, a.corpus, 1) for p in points]):
            results.append(fut.result())
            print(json.dumps(results[-1]), flush=True)
    print(f"{'point':<30}{'params':>10}{'steps':>7}{'tokens':>10}{'train':>8}{'val':>8}", file=sys.stderr)
    for r in sorted(results, key=lambda r: r.get("val", 99)):
        if "error" in r:
            print(f"{r['name']:<30} failed: {r['error']}", file=sys.stderr)
        else:
            print(f"{r['name']:<30}{r['parameters']:>10,}{r['steps']:>7}{r['tokens']:>10,}"
                  f"{r['train']:>8.4f}{r['val']:>8.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
