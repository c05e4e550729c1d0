"""Quality per minute: `charnn train CORPUS --time-budget B` for each budget, exactly as a user
types it, against a plain reference given the same minutes in the same run.

    .venv/bin/python benchmarks/quality_budget.py                      # 5m and 10m, tinyshakespeare
    .venv/bin/python benchmarks/quality_budget.py --budgets 5m 10m 20m 60m
    .venv/bin/python benchmarks/quality_budget.py --corpus /tmp/corpora/python-stdlib.txt --budgets 5m 10m
    .venv/bin/python benchmarks/quality_budget.py --quick              # 1m, a smoke run
    .venv/bin/python benchmarks/quality_budget.py --budgets 5m -- --no-amp   # flags after -- go to charnn train

For each budget, one after the other: charnn (a real subprocess with its own cache folder, so
corpus encoding is in the wall clock), then benchmarks/plain_reference.py (a plain stateful 2x384
LSTM, AdamW, warmup + cosine fitted to the clock, no dropout, no planner; also a subprocess from
its first import) for the same seconds. Machines differ by 2x or more, so the figure that
travels is the margin (reference - charnn, nats/char): issue 17 wants >= 0.08 at 5m, >= 0.13 at
10m, growing after. At the end: whether the curve is monotone (every longer budget ends at a
lower or equal validation loss than every shorter one). Figures of other projects are printed
only as quoted, never as measured.
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
SHAKESPEARE_SHA = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
# issue 17's targets on the development machine (2 vCPUs, Zen 5), tinyshakespeare only
TARGETS = {"5m": 1.44, "10m": 1.40, "20m": 1.38, "60m": 1.35}
MARGINS = {"5m": 0.08, "10m": 0.13}
QUOTED = [("nanoGPT shakespeare_char on one A100, ~3 min: quoted from nanoGPT's README, not measured here", 1.4697)]
NOISE = 0.005     # nats/char: a later budget within this of an earlier one counts as equal


def seconds(budget: str) -> float:
    return float(budget[:-1]) * {"s": 1, "m": 60, "h": 3600}[budget[-1]]


def env_for(tmp: str) -> dict:
    return dict(os.environ, CHARNN_CACHE=str(Path(tmp) / "cache"),
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_charnn(budget: str, corpus: Path, extra: list[str], keep: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = keep / budget if keep else Path(tmp) / "run"
        cmd = [sys.executable, "-m", "charnn", "train", str(corpus), "--time-budget", budget,
               "--out", str(out), "--force", "--json", *extra]
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env_for(tmp))
        wall = time.time() - t0
        if p.returncode != 0:
            raise SystemExit(f"charnn failed ({p.returncode}): {p.stderr[-2000:]}")
        summary = json.loads(p.stdout.strip().splitlines()[-1])
        plan = [line for line in p.stderr.splitlines() if line.startswith(("model ", "batches ", "expected "))]
        steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        cps = [s["chars_per_sec"] for s in steps if s.get("event") == "step"]
        return {"who": "charnn", "budget": budget, "wall_s": round(wall, 1), "summary": summary, "plan": plan,
                "val": summary.get("val_nats_per_char", float("nan")),
                "chars_per_sec": sorted(cps)[len(cps) // 2] if cps else None,
                "command": f"charnn train {corpus.name} --time-budget {budget} {' '.join(extra)}".strip()}


def run_reference(budget: str, corpus: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(REPO / "benchmarks" / "plain_reference.py"), str(corpus),
               "--seconds", str(seconds(budget))]
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env_for(tmp))
        if p.returncode != 0:
            raise SystemExit(f"the plain reference failed ({p.returncode}): {p.stderr[-2000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        return {"who": "reference", "budget": budget, "wall_s": round(time.time() - t0, 1), "summary": r,
                "val": r["val_nats_per_char"], "command": f"benchmarks/plain_reference.py {corpus.name} "
                f"--seconds {seconds(budget):g}"}


def monotone(results: list[dict]) -> list[str]:
    """The pairs (shorter, longer) where the longer budget ended worse, beyond NOISE."""
    ordered = sorted(results, key=lambda r: seconds(r["budget"]))
    return [f"{a['budget']} {a['val']:.4f} < {b['budget']} {b['val']:.4f}"
            for i, a in enumerate(ordered) for b in ordered[i + 1:] if b["val"] > a["val"] + NOISE]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", nargs="+", default=["5m", "10m"])
    ap.add_argument("--quick", action="store_true", help="one 1-minute run")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--no-reference", action="store_true", help="skip the plain reference")
    ap.add_argument("--keep", type=Path, help="keep each run in KEEP/<budget> (e.g. for int8_accuracy.py)")
    ap.add_argument("extra", nargs="*", help="extra flags for charnn train (after --)")
    a = ap.parse_args()
    budgets = ["1m"] if a.quick else a.budgets
    import hashlib

    shakespeare = hashlib.sha256(a.corpus.read_bytes()).hexdigest() == SHAKESPEARE_SHA
    print(f"# quality per budget, {date.today()}, {platform.processor() or platform.machine()} "
          f"{os.cpu_count()} cores; corpus {a.corpus.name} (first 90% train, last 10% validation, nats/char)")
    if shakespeare:
        for name, ref in QUOTED:
            print(f"quoted     {ref:.4f}  {name}")
    mine = []
    for b in budgets:
        r = run_charnn(b, a.corpus, a.extra, a.keep)
        mine.append(r)
        s = r["summary"]
        target = TARGETS.get(b) if shakespeare else None
        verdict = "" if target is None else f"  target <= {target:.2f}: {'met' if r['val'] <= target else 'MISSED'}"
        print(f"budget {b:>4}  charnn     val {r['val']:.4f} (best {s['best_val_loss']:.4f}), "
              f"train {s['train_loss']:.4f}, {s['steps']} steps, median {r['chars_per_sec'] or 0:,.0f} chars/s, "
              f"wall {r['wall_s']:.1f}s ({100 * r['wall_s'] / seconds(b):.1f}% of budget){verdict}", flush=True)
        for line in r["plan"]:
            print("    " + line)
        print("    " + json.dumps(r), flush=True)
        if not a.no_reference:
            ref = run_reference(b, a.corpus)
            margin = ref["val"] - r["val"]
            want = MARGINS.get(b)
            verdict = "" if want is None else f"  target >= {want:.2f}: {'met' if margin >= want else 'MISSED'}"
            print(f"budget {b:>4}  reference  val {ref['val']:.4f}, {ref['summary']['steps']} steps, wall "
                  f"{ref['wall_s']:.1f}s; charnn's margin {margin:+.4f} nats/char{verdict}", flush=True)
            print("    " + json.dumps(ref), flush=True)
    if len(mine) > 1:
        worse = monotone(mine)
        print("monotone: " + ("yes" if not worse else "NO: " + "; ".join(worse)) + f" (noise allowance {NOISE})")


if __name__ == "__main__":
    main()
