"""A time budget on a busy machine (issue 12): `charnn train CORPUS --time-budget B` run beside N
busy-loop processes, against a quiet run given the CPU share the loaded run actually got.

    .venv/bin/python benchmarks/busy_budget.py                      # lee, 3m, 2 busy loops
    .venv/bin/python benchmarks/busy_budget.py --budget 2m --busy 2 --corpus lee --dry-runs 5

Phases, all in one run of this script (run it on an otherwise quiet machine):
  1. stability: `--dry-run` repeated --dry-runs times on the quiet machine; the plans must agree.
  2. loaded: the budget beside --busy busy loops (`while True: pass`, one process each). Its CPU
     share is its own CPU seconds (user + system, from the kernel) over budget x cores.
  3. loaded, threads fixed: the same, with OMP_NUM_THREADS set to the core count, which turns
     charnn's thread choice off: the behaviour before the watch (for comparison).
  4. quiet at the share: the budget x share, alone on the machine.
Target: the loaded run's validation loss is no worse than the quiet run's at its share + 0.05
nats/char. Each run is a real subprocess with its own cache, as a user runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.machine_info import cpu_name  # noqa: E402
from charnn.config import parse_duration  # noqa: E402
from charnn.machine import available_cores  # noqa: E402


def charnn(args: list[str], env_extra: dict[str, str] | None = None) -> dict:
    """Run `charnn ARGS --json` in a fresh cache; its summary, stderr, wall and CPU seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CHARNN_CACHE": str(Path(tmp) / "cache"),
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {})}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "charnn", *args, "--json"], capture_output=True, text=True,
                           env=env, cwd=tmp)
        wall = time.time() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            raise SystemExit(f"charnn {' '.join(args)} failed ({p.returncode}): {p.stderr[-1500:]}")
        return {"summary": json.loads(p.stdout.strip().splitlines()[-1]), "stderr": p.stderr, "wall": wall,
                "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def busy_loops(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def train(corpus: str, budget: float, busy: int = 0, env_extra: dict | None = None) -> dict:
    loops = busy_loops(busy)
    try:
        time.sleep(0.5 if busy else 0)        # let them take their share first
        r = charnn(["train", corpus, "--time-budget", f"{budget:.0f}s", "--out", "run", "--force"], env_extra)
    finally:
        for p in loops:
            p.kill()
            p.wait()
    r["share"] = r["cpu"] / (r["wall"] * available_cores())
    return r


def describe(name: str, r: dict) -> str:
    s = r["summary"]
    chose = next((line.split("chose ")[1].split(" (")[0] for line in r["stderr"].splitlines() if "chose " in line), "?")
    events = [line.strip() for line in r["stderr"].splitlines()
              if line.startswith(("speed:", "re-planning:", "warning: training runs"))]
    val = f"{s['val_nats_per_char']:.4f}" if "val_nats_per_char" in s else "  -   "
    return (f"  {name:<34} val {val} nats/char  {s['steps']:>6} steps  wall {r['wall']:6.1f}s  "
            f"CPU share {r['share']:.0%}  first plan {chose}"
            + "".join(f"\n      {e}" for e in events))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="lee")
    ap.add_argument("--budget", default="3m")
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes beside the loaded run")
    ap.add_argument("--dry-runs", type=int, default=5)
    args = ap.parse_args()
    budget = parse_duration(args.budget)
    cores = available_cores()
    print(f"busy_budget: charnn train {args.corpus} --time-budget {args.budget}, beside {args.busy} busy loops")
    print(f"machine: {cpu_name()}, {cores} cores, python {platform.python_version()}, {date.today()}")
    print(f"command: python benchmarks/busy_budget.py {' '.join(sys.argv[1:])}\n")

    plans = [charnn(["train", args.corpus, "--time-budget", args.budget, "--dry-run"])["summary"]
             for _ in range(args.dry_runs)]
    sizes = [f"{p['model']['layers']}x{p['model']['hidden']}" for p in plans]
    print(f"1. --dry-run x{args.dry_runs} on the quiet machine: {', '.join(sizes)} "
          f"({'the same plan every time' if len(set(sizes)) == 1 else 'NOT the same plan'})")

    loaded = train(args.corpus, budget, args.busy)
    fixed = train(args.corpus, budget, args.busy, {"OMP_NUM_THREADS": str(cores)})
    quiet = train(args.corpus, budget * loaded["share"])
    print("\n2-4. validation loss (lower is better):")
    print(describe(f"loaded ({args.busy} busy loops)", loaded))
    print(describe("loaded, threads fixed (before)", fixed))
    print(describe(f"quiet, {budget * loaded['share']:.0f}s (budget x share)", quiet))
    nan = float("nan")
    gap = loaded["summary"].get("val_nats_per_char", nan) - quiet["summary"].get("val_nats_per_char", nan)
    print(f"\ntarget: loaded <= quiet at its share + 0.05 nats/char: {gap:+.4f} -> "
          f"{'met' if gap <= 0.05 else 'MISSED'}")


if __name__ == "__main__":
    main()
