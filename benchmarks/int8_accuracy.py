"""What `--quantize int8` costs in accuracy: a run's validation loss in fp32 and in int8.

    python benchmarks/int8_accuracy.py RUN [--corpus PATH] [--train [--time-budget 3m]] [--json]

RUN is a run folder of a character model. The validation split is cut from the corpus the run
was trained on (recorded in its checkpoint; --corpus to point elsewhere) exactly as training
cut it (the last val_frac of the tokens), written to a temporary file, and scored twice with
the real commands:

    charnn eval RUN VAL --json                    fp32, the fused model
    charnn eval RUN VAL --json --quantize int8    int8, step by step as `charnn sample --quantize int8` runs

Target (issue 5): int8 within 0.02 nats/char of fp32. With --train, the run is first trained:
    python -m charnn train CORPUS --layers 2 --hidden 512 --time-budget 3m --out RUN
(CORPUS defaults to tinyshakespeare, from ../shared/corpora next to the repository or the
catalog). A barely trained model (val loss near ln 65 = 4.17) says little: its weights have not
left their initialisation, so train until the loss is well below 2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def charnn(*args: str, capture: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "charnn", *args], env=env(), text=True,
                       capture_output=capture)
    if r.returncode != 0:
        raise SystemExit(f"charnn {' '.join(args)} failed: {(r.stderr or '').strip()}")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--corpus", help="the text the run was trained on [default: from the checkpoint]")
    ap.add_argument("--train", action="store_true", help="train the run first (2x512 LSTM)")
    ap.add_argument("--time-budget", default="3m")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))

    if args.train:
        corpus = args.corpus or (str(SHAKESPEARE) if SHAKESPEARE.is_file() else "tinyshakespeare")
        charnn("train", corpus, "--layers", "2", "--hidden", "512", "--time-budget", args.time_budget,
               "--out", args.run, capture=False)

    from charnn import checkpoint

    ckpt = checkpoint.load(checkpoint.resolve(args.run), mmap=True)
    if ckpt["tokenizer"]["name"] != "char":
        raise SystemExit("this script cuts the validation split by characters: it needs a char model")
    corpus = args.corpus or (ckpt.get("corpus") or {}).get("path")
    if not corpus or not Path(corpus).is_file():
        raise SystemExit(f"cannot find the run's corpus ({corpus!r}): give --corpus PATH")
    val_frac = ckpt.get("train_config", {}).get("val_frac", 0.1)
    text = Path(corpus).read_text(encoding="utf-8")
    val = text[int(len(text) * (1.0 - val_frac)):]          # data.split on char ids
    best = (ckpt.get("progress") or {}).get("best_val")

    with tempfile.TemporaryDirectory(prefix="charnn-int8-") as tmp:
        path = Path(tmp) / "val.txt"
        path.write_text(val, encoding="utf-8")
        res = {}
        for q in ("none", "int8"):
            t = time.perf_counter()
            out = charnn("eval", args.run, str(path), "--json", "--quantize", q)
            res[q] = {**json.loads(out.stdout), "seconds": time.perf_counter() - t}
    delta = res["int8"]["nats_per_char"] - res["none"]["nats_per_char"]
    machine = {"cores": os.cpu_count(), "python": platform.python_version(),
               "date": datetime.datetime.now().isoformat(timespec="minutes")}
    command = "python benchmarks/int8_accuracy.py " + " ".join(sys.argv[1:])
    if args.json:
        print(json.dumps({"command": command, "machine": machine, "delta_nats_per_char": delta,
                          "fp32": res["none"], "int8": res["int8"]}))
        return
    cfg = ckpt["model_config"]
    print(f"command: {command.strip()}")
    print(f"machine: {machine['cores']} cores, python {machine['python']}, {machine['date']}")
    print(f"model: {args.run}: {cfg['layers']}x{cfg['hidden']} {cfg['cell']}, vocabulary {cfg['vocab_size']}"
          + (f", best val loss in training {best:.4f}" if isinstance(best, float) else ""))
    print(f"validation split: last {val_frac:.0%} of {corpus}, {len(val):,} characters")
    print(f"  {'':<6} {'nats/char':>10} {'bits/char':>10} {'scored':>9} {'seconds':>8}")
    for name, q in (("fp32", "none"), ("int8", "int8")):
        r = res[q]
        print(f"  {name:<6} {r['nats_per_char']:>10.4f} {r['bits_per_char']:>10.4f} {r['tokens']:>9,} "
              f"{r['seconds']:>8.1f}")
    ok = abs(delta) <= 0.02
    print(f"  int8 - fp32: {delta:+.4f} nats/char -> {'within' if ok else 'OUTSIDE'} the 0.02 target")


if __name__ == "__main__":
    main()
