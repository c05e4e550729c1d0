"""Quality per minute: `charnn train tinyshakespeare.txt --time-budget B` for each budget,
exactly as a user types it, printing the validation loss (nats/char, first 90% train / last
10% validation) beside the reference figures measured on this machine class.

    .venv/bin/python benchmarks/quality_budget.py                 # 5m and 10m
    .venv/bin/python benchmarks/quality_budget.py --budgets 5m 10m 60m
    .venv/bin/python benchmarks/quality_budget.py --quick         # 1m, a smoke run

Each run is a real subprocess with its own cache folder, so corpus encoding is included in the
wall clock, as the target requires (the whole run ends within the budget + 5%).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"
TARGETS = {"5m": 1.48, "10m": 1.44, "60m": 1.38, "3m": 1.40}
REFERENCES = [
    ("nanoGPT CPU recipe, 4L x 128, 2000 iters (3m53s)", 1.886),
    ("plain stateful LSTM 2x384, B32 T128, AdamW 3e-3 cosine (294 s)", 1.527),
    ("plain LSTM 2x512, dropout 0.2 (597 s)", 1.532),
    ("nanoGPT shakespeare_char on one A100 (~3 min, its README)", 1.4697),
]


def run(budget: str, corpus: Path, extra: list[str], keep: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, CHARNN_CACHE=str(Path(tmp) / "cache"),
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = keep / budget if keep else Path(tmp) / "run"
        cmd = [sys.executable, "-m", "charnn", "train", str(corpus), "--time-budget", budget,
               "--out", str(out), "--force", "--json", *extra]
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.time() - t0
        if p.returncode != 0:
            raise SystemExit(f"run failed ({p.returncode}): {p.stderr[-2000:]}")
        summary = json.loads(p.stdout.strip().splitlines()[-1])
        plan = [l for l in p.stderr.splitlines() if l.startswith(("model ", "batches ", "expected "))]
        steps = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
        cps = [s["chars_per_sec"] for s in steps if s.get("event") == "step"]
        return {"budget": budget, "wall_s": wall, "summary": summary, "plan": plan,
                "chars_per_sec": sorted(cps)[len(cps) // 2] if cps else None,
                "command": "charnn train tinyshakespeare.txt --time-budget " + budget + " " + " ".join(extra)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", nargs="+", default=["5m", "10m"])
    ap.add_argument("--quick", action="store_true", help="one 1-minute run")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--keep", type=Path, help="keep each run in KEEP/<budget> (e.g. for int8_accuracy.py)")
    ap.add_argument("extra", nargs="*", help="extra flags for charnn train (after --)")
    a = ap.parse_args()
    budgets = ["1m"] if a.quick else a.budgets
    print(f"# quality per budget, {date.today()}, {platform.machine()} {os.cpu_count()} cores, "
          f"torch threads default; corpus {a.corpus.name}")
    for name, ref in REFERENCES:
        print(f"reference  {ref:.4f}  {name}")
    for b in budgets:
        r = run(b, a.corpus, a.extra, a.keep)
        s = r["summary"]
        budget_s = float(b[:-1]) * {"s": 1, "m": 60, "h": 3600}[b[-1]]
        target = TARGETS.get(b)
        met = "met" if target is not None and s["val_nats_per_char"] <= target else "MISSED"
        verdict = "" if target is None else f"  target <= {target:.2f}: {met}"
        print(f"budget {b:>4}  val {s['val_nats_per_char']:.4f} nats/char ({s['val_bpc']:.4f} bits/char), "
              f"best {s['best_val_loss']:.4f}, train {s['train_loss']:.4f}, {s['steps']} steps, "
              f"median {r['chars_per_sec'] or 0:,.0f} chars/s, wall {r['wall_s']:.1f}s "
              f"({100 * r['wall_s'] / budget_s:.1f}% of budget){verdict}")
        for line in r["plan"]:
            print("    " + line)


if __name__ == "__main__":
    main()
