"""Fine-tuning against training from scratch, on a small text, for the same short time.

    .venv/bin/python benchmarks/finetune.py                       # base 5m on lee, then 1m each
    .venv/bin/python benchmarks/finetune.py --base-budget 20s --budget 10s     # a smoke run

1. base:      charnn train lee --time-budget 5m                  (Lee news articles, gensim's)
2. the small different text: the first --chars characters of tinyshakespeare.txt (in a
   temporary folder; read from ../shared/corpora, never committed)
3. fine-tune: charnn train small.txt --init-from base --time-budget 1m
   scratch:   charnn train small.txt --time-budget 1m
   as-is:     the base model on the small text before any step (--init-from base --max-steps 1
              --lr 1e-12: the validation loss right after initialisation)
All three report the loss on the same validation split (the last 10% of the small text), in
nats per character. Each run is a real `charnn train` subprocess with its own cache folder.
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
sys.path.insert(0, str(REPO / "benchmarks"))
from machine_info import cpu_name  # noqa: E402

SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"


def train(args: list[str], tmp: Path) -> dict:
    """`charnn train ARGS --json` in a subprocess -> its summary (and wall time)."""
    env = dict(os.environ, CHARNN_CACHE=str(tmp / "cache"),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "charnn", "train", *args, "--json", "--force"],
                       capture_output=True, text=True, env=env, cwd=tmp)
    if p.returncode != 0:
        raise SystemExit(f"charnn train {' '.join(args)} failed ({p.returncode}): {p.stderr[-2000:]}")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    summary["wall"] = time.time() - t0
    summary["plan"] = next((line.strip() for line in p.stderr.splitlines() if line.startswith("model ")), "")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-budget", default="5m")
    ap.add_argument("--budget", default="1m", help="for fine-tuning and for training from scratch")
    ap.add_argument("--base-corpus", default="lee")
    ap.add_argument("--text", type=Path, default=SHAKESPEARE, help="the small text is its beginning")
    ap.add_argument("--chars", type=int, default=100_000, help="how much of --text")
    ap.add_argument("extra", nargs="*", help="extra flags for the fine-tuning and scratch runs (after --)")
    a = ap.parse_args()
    import torch

    print(f"# {' '.join(['benchmarks/finetune.py', *sys.argv[1:]])}")
    print(f"# {date.today()}, {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        small = tmp / "small.txt"
        small.write_text(a.text.read_text(encoding="utf-8")[:a.chars], encoding="utf-8")
        base = train([a.base_corpus, "--time-budget", a.base_budget, "--out", "base"], tmp)
        print(f"base      charnn train {a.base_corpus} --time-budget {a.base_budget}: "
              f"val {base.get('val_nats_per_char', float('nan')):.4f} nats/char on its own text, {base['steps']} steps "
              f"({base['plan'] or 'sizes from flags'})")
        runs = [
            ("as-is", ["small.txt", "--init-from", "base", "--max-steps", "1", "--lr", "1e-12", "--out", "asis"]),
            ("fine-tune", ["small.txt", "--init-from", "base", "--time-budget", a.budget, "--out", "ft", *a.extra]),
            ("scratch", ["small.txt", "--time-budget", a.budget, "--out", "scratch", *a.extra]),
        ]
        print(f"small text: the first {a.chars:,} characters of {a.text.name}; validation = its last 10%")
        for name, args in runs:
            s = train(args, tmp)
            val = f"val {s['val_nats_per_char']:.4f} nats/char ({s['val_bpc']:.4f} bits/char)" \
                if "val_nats_per_char" in s else "no evaluation (the budget ran out before a step)"
            print(f"{name:9s} {val}, {s['steps']} steps, wall {s['wall']:.0f}s   charnn train {' '.join(args)}"
                  + (f"   [{s['plan']}]" if s["plan"] else ""))


if __name__ == "__main__":
    main()
