"""Start-up times of the `charnn` command, measured as a user meets them: real subprocesses.

    python benchmarks/startup.py [--run RUN] [--repeat 7] [--json]

  charnn --help          wall time from spawn to exit                       target < 0.3 s
  charnn sample RUN      time from spawn to the first byte on stdout, with   target < 1.5 s
                         no prime, so that byte is the first *sampled* character
  floors                 `python -c pass` (to exit) and `python -c "import torch; print(1)"` (to
                         its first byte): what any Python program, and any program using torch,
                         pays before it does anything

Each figure is the median of --repeat runs (interleaved). RUN defaults to a 2x512 LSTM over a
65-character vocabulary, made here by `charnn train --max-steps 1` on a small synthetic corpus
(a real training checkpoint: weights, optimizer state, history). The time a first character
takes beyond `import torch` is charnn's own: reading the checkpoint, building the model,
reading the prime, setting up the sampler. Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def charnn(*args: str) -> list[str]:
    return [sys.executable, "-m", "charnn", *args]


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), check=True)
    return time.perf_counter() - t


def first_byte(cmd: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env())
    got = p.stdout.read(1)
    dt = time.perf_counter() - t
    p.stdout.close()
    err = p.stderr.read().decode(errors="replace")
    p.wait()
    if not got:
        raise SystemExit(f"`{' '.join(cmd)}` printed nothing: {err.strip()}")
    return dt


def make_run(folder: Path) -> Path:
    """A real 2x512 checkpoint from one training step on a synthetic 65-character corpus."""
    import random

    rng = random.Random(0)
    chars = [chr(32 + i) for i in range(64)] + ["\n"]
    text = "".join(rng.choice(chars) for _ in range(60_000))
    corpus = folder / "synthetic.txt"
    corpus.write_text(text, encoding="utf-8")
    run = folder / "run"
    subprocess.run(charnn("train", str(corpus), "--layers", "2", "--hidden", "512", "--max-steps", "1",
                          "--batch-size", "4", "--seq-len", "32", "--out", str(run), "--quiet"),
                   env={**env(), "CHARNN_CACHE": str(folder / "cache")}, check=True,
                   stdout=subprocess.DEVNULL)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="run folder or checkpoint to sample from [default: a fresh 2x512]")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="charnn-startup-") as tmp:
        run = Path(args.run) if args.run else make_run(Path(tmp))
        probes = {
            "python": lambda: wall([sys.executable, "-c", "pass"]),
            # to its first byte, like the sample probe (a torch process also takes a while to exit)
            "import_torch": lambda: first_byte([sys.executable, "-c", "import torch; print(1, flush=True)"]),
            "help": lambda: wall(charnn("--help")),
            "sample_first_char": lambda: first_byte(charnn("sample", str(run), "--length", "300", "--seed", "0")),
        }
        for fn in probes.values():   # one untimed round warms the page cache
            fn()
        times: dict[str, list[float]] = {k: [] for k in probes}
        for _ in range(args.repeat):
            for k, fn in probes.items():
                times[k].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    machine = {"cores": os.cpu_count(), "torch": _torch_version(), "python": platform.python_version(),
               "date": datetime.datetime.now().isoformat(timespec="minutes"),
               "bytecode_cache": not sys.flags.dont_write_bytecode and not os.environ.get("PYTHONDONTWRITEBYTECODE")}
    command = "python benchmarks/startup.py " + " ".join(sys.argv[1:])
    if args.json:
        print(json.dumps({"command": command, "machine": machine, "median_s": med, "runs_s": times}))
        return
    print(f"command: {command.strip()}")
    print(f"machine: {machine['cores']} cores, torch {machine['torch']}, python {machine['python']}, "
          f"{machine['date']}" + ("" if machine["bytecode_cache"] else
                                   "  (PYTHONDONTWRITEBYTECODE set: charnn's modules compile each run)"))
    print(f"model: {run}")
    print(f"  {'what':<44} {'median':>8} {'min':>7} {'max':>7}   target")
    rows = (("python -c pass", "python", ""),
            ("python -c 'import torch; print(1)': first byte", "import_torch", ""),
            ("charnn --help", "help", "< 0.3 s"),
            ("charnn sample: spawn -> first character", "sample_first_char", "< 1.5 s"))
    for name, k, target in rows:
        v = times[k]
        print(f"  {name:<44} {med[k]:>7.3f}s {min(v):>6.3f}s {max(v):>6.3f}s   {target}")
    own = med["sample_first_char"] - med["import_torch"]
    print(f"  first character beyond `import torch`: {own:.3f} s (charnn's own start-up)"
          + ("  <- negative: the machine is too busy for these figures to mean much" if own < 0 else ""))
    ok_help, ok_first = med["help"] < 0.3, med["sample_first_char"] < 1.5
    print(f"  --help {'meets' if ok_help else 'MISSES'} its target; the first character "
          f"{'meets' if ok_first else 'MISSES'} its target")


def _torch_version() -> str:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


if __name__ == "__main__":
    main()
