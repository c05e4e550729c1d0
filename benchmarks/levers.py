"""The quality levers of issue 17, measured so that a busy machine cannot bias them.

  speed    tokens/s of real training steps (forward, cross-entropy, backward, clip, AdamW) of
           each variant against the plain fused model, INTERLEAVED: every repetition times
           each variant once, in turn, and the ratio to the plain model is taken within the
           repetition; the table shows the median ratio over the repetitions. Another job
           slowing the machine slows the variants of one repetition alike.
  quality  `charnn train` for the same number of steps with the same seed, one variant at a
           time: the validation loss at equal steps, and the training loss measured the same
           way (eval mode, no regularisers) on the first tokens of the training split, so
           train - val shows the overfitting. The load changes how long it takes, not the result.

    .venv/bin/python benchmarks/levers.py speed --hidden 512 --variants plain wd0.3 bf16 att64
    .venv/bin/python benchmarks/levers.py quality --hidden 384 --steps 2000 --train-chars 250000 \\
        --variants d0.2 d0.2:wd0.3 d0.3:wd0.5:locked
A variant is ':'-joined parts: d<dropout> wd<weight drop> ed<embed dropout> locked ar<F> tar<F>
att<K> bf16 (fp32 otherwise) lr<F> B<batch> T<seq_len> L<layers> H<hidden> E<embed> s<seed>
wdecay<F>; "plain" is
none of them. Results: one JSON line per measurement on stdout, a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"

PARTS = {"d": ("dropout", float), "wd": ("weight_drop", float), "ed": ("embed_dropout", float),
         "ar": ("ar", float), "tar": ("tar", float), "att": ("attention", int), "lr": ("lr", float),
         "B": ("batch_size", int), "T": ("seq_len", int), "L": ("layers", int), "H": ("hidden", int),
         "E": ("embed_dim", int), "wdecay": ("weight_decay", float), "s": ("seed", int)}
MODEL_KEYS = ("dropout", "weight_drop", "embed_dropout", "locked_dropout", "attention", "layers",
              "hidden", "embed_dim")


def parse_variant(text: str, base: dict) -> dict:
    v = dict(base, name=text, amp=False)
    for part in text.split(":"):
        if part in ("plain", "fp32", ""):
            continue
        if part == "bf16":
            v["amp"] = True
        elif part == "locked":
            v["locked_dropout"] = True
        else:
            for prefix in sorted(PARTS, key=len, reverse=True):
                if part.startswith(prefix) and _number(part[len(prefix):]):
                    key, conv = PARTS[prefix]
                    v[key] = conv(part[len(prefix):])
                    break
            else:
                raise SystemExit(f"bad variant part {part!r} in {text!r}")
    return v


def _number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------------
# speed

def make_step(v: dict, vocab: int):
    """A training step of variant v on random ids, as the Trainer does it."""
    import torch
    import torch.nn.functional as F

    from charnn.config import ModelConfig
    from charnn.model import RNNLM
    from charnn.training.evaluate import autocast
    from charnn.training.regularize import activation_penalty

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=vocab, **{k: v[k] for k in MODEL_KEYS if k in v})
    model = RNNLM(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, vocab, (v["batch_size"], v["seq_len"] + 1))
    act = v.get("ar", 0) > 0 or v.get("tar", 0) > 0
    device = torch.device("cpu")
    state = [None]

    def step():
        with autocast(device, v["amp"]):
            logits, new, *top = model(ids[:, :-1], state[0], hidden=act)
            loss = F.cross_entropy(logits.reshape(-1, vocab).float(), ids[:, 1:].reshape(-1))
            if act:
                loss = loss + activation_penalty(top[0], v.get("ar", 0), v.get("tar", 0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state[0] = tuple(s.detach() for s in new)

    return step


def speed(a, variants: list[dict]) -> None:
    import torch

    torch.set_num_threads(a.threads)
    steps = {v["name"]: make_step(v, a.vocab) for v in variants}
    for fn in steps.values():            # warm-up: allocations, kernel selection
        fn(), fn()
    ratios: dict[str, list[float]] = {v["name"]: [] for v in variants}
    tps: dict[str, list[float]] = {v["name"]: [] for v in variants}
    for rep in range(a.reps):
        times = {}
        for v in variants:
            fn = steps[v["name"]]
            t0 = time.perf_counter()
            for _ in range(a.steps):
                fn()
            times[v["name"]] = (time.perf_counter() - t0) / a.steps
        base = times[variants[0]["name"]]
        for v in variants:
            n = v["batch_size"] * v["seq_len"]
            tps[v["name"]].append(n / times[v["name"]])
            ratios[v["name"]].append(base / times[v["name"]] * n / (variants[0]["batch_size"] * variants[0]["seq_len"]))
        # each repetition as it ends, so a run cut short keeps what it measured
        print(json.dumps({"kind": "speed-rep", "rep": rep, "ratios": {k: round(r[-1], 4) for k, r in ratios.items()},
                          "tokens_per_sec": {k: round(t[-1]) for k, t in tps.items()}}), flush=True)
    print(f"{'variant':<28}{'median tokens/s':>16}{'ratio (median)':>16}{'ratio range':>18}", file=sys.stderr)
    for v in variants:
        r = ratios[v["name"]]
        rec = {"kind": "speed", "variant": v["name"], "tokens_per_sec": statistics.median(tps[v["name"]]),
               "ratio": statistics.median(r), "ratios": [round(x, 4) for x in r]}
        print(json.dumps(rec), flush=True)
        print(f"{v['name']:<28}{rec['tokens_per_sec']:>16,.0f}{rec['ratio']:>16.3f}"
              f"{min(r):>9.3f}-{max(r):.3f}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# quality

def corpus_file(a, tmp: Path) -> tuple[Path, float]:
    """The corpus for the runs: the whole text, or (--train-chars N) its first N characters of
    the training split followed by the usual validation split (the last --val-frac), so every
    variant is validated on the same text and a small training set overfits in few steps."""
    text = a.corpus.read_text(encoding="utf-8")
    n_val = len(text) - int(len(text) * (1 - a.val_frac))
    if not (a.train_chars or a.train_every):
        return a.corpus, a.val_frac
    train = text[:len(text) - n_val]
    if a.train_every:   # every K-th block of 2,000 characters: a small training set from all of the text
        train = "".join(train[i:i + 2000] for i in range(0, len(train), 2000 * a.train_every))
    train = train[:a.train_chars] if a.train_chars else train
    path = tmp / "subset.txt"
    path.write_text(train + text[-n_val:], encoding="utf-8")
    return path, n_val / (len(train) + n_val) + 1e-9


def eval_mode_losses(run: Path, corpus: Path, val_frac: float, tokens: int, val: bool) -> tuple[float, float]:
    """The final model's loss in fp32 and eval mode on the first `tokens` of its training split,
    and (val=True) on the whole validation split (NaN otherwise)."""
    import numpy as np

    import charnn
    from charnn.training.evaluate import evaluate

    r = charnn.load(run, prefer="latest.pt")
    ids = np.asarray(r.tokenizer.encode(corpus.read_text(encoding="utf-8")))
    n_train = int(len(ids) * (1 - val_frac))
    train, _ = evaluate(r.model, ids[:min(tokens, n_train)], 32, 64)
    return train, evaluate(r.model, ids[n_train:], 32, 64)[0] if val else float("nan")


def quality_point(a, v: dict, corpus: Path, val_frac: float, tmp: Path) -> dict:
    out = tmp / "run"
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), CHARNN_CACHE=str(tmp / "cache"),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    flags = ["--layers", v["layers"], "--hidden", v["hidden"], "--embed-dim", v["embed_dim"],
             "--seq-len", v["seq_len"], "--batch-size", v["batch_size"], "--lr", v["lr"],
             "--dropout", v.get("dropout", 0.0), "--weight-drop", v.get("weight_drop", 0.0),
             "--embed-dropout", v.get("embed_dropout", 0.0), "--ar", v.get("ar", 0.0),
             "--tar", v.get("tar", 0.0), "--attention", v.get("attention", 0),
             "--weight-decay", v.get("weight_decay", 0.01),
             "--warmup", max(10, a.steps // 50), "--max-steps", a.steps, "--val-frac", val_frac,
             "--eval-every", a.eval_every or a.steps, "--seed", v.get("seed", a.seed),
             "--locked-dropout" if v.get("locked_dropout") else "--no-locked-dropout",
             "--amp" if v["amp"] else "--no-amp"]
    cmd = [sys.executable, "-m", "charnn", "train", str(corpus), "--out", str(out), "--force",
           "--quiet", "--json", *map(str, flags)]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"kind": "quality", "variant": v["name"], "error": r.stderr.strip()[-800:]}
    s = json.loads(r.stdout.strip().splitlines()[-1])
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    curve = [(e["step"], round(e["val_nats_per_char"], 4)) for e in evals if e.get("event") == "eval"]
    # bf16 runs evaluate in bf16: the fp32 figure of the same weights shows what that changes
    train, val32 = eval_mode_losses(out, corpus, val_frac, a.train_eval_tokens, v["amp"])
    return {"kind": "quality", "variant": v["name"], "steps": s["steps"], "seed": v.get("seed", a.seed),
            "val": round(s["val_nats_per_char"], 4), "best_val": round(s["best_val_loss"], 4),
            "train_eval_mode": round(train, 4), "val_fp32": round(val32, 4),
            "train_last_step": round(s["train_loss"], 4), "parameters": s["parameters"],
            "epochs": s["epochs"], "curve": curve, "wall_s": round(time.time() - t0, 1),
            "command": "charnn train CORPUS " + " ".join(map(str, flags))}


def quality(a, variants: list[dict]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus, val_frac = corpus_file(a, Path(tmp))
        for v in variants:
            rec = quality_point(a, v, corpus, val_frac, Path(tmp))
            rows.append(rec)
            print(json.dumps(rec), flush=True)
    print(f"{'variant':<34}{'train(eval)':>12}{'val':>8}{'best':>8}{'gap':>8}{'wall s':>8}", file=sys.stderr)
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:<34} failed: {r['error']}", file=sys.stderr)
            continue
        print(f"{r['variant']:<34}{r['train_eval_mode']:>12.4f}{r['val']:>8.4f}{r['best_val']:>8.4f}"
              f"{r['val'] - r['train_eval_mode']:>8.4f}{r['wall_s']:>8.0f}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["speed", "quality"])
    ap.add_argument("--variants", nargs="+", default=["plain"])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--embed-dim", type=int, default=None, help="[default: hidden/4, 64..256, as the planner]")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=65, help="speed: vocabulary of the random ids")
    ap.add_argument("--reps", type=int, default=7, help="speed: interleaved repetitions")
    ap.add_argument("--steps", type=int, default=None,
                    help="speed: steps per timing [default 5]; quality: training steps [default 2000]")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--val-frac", type=float, default=0.1)
    ap.add_argument("--train-chars", type=int, default=0, help="quality: train on only the first N characters")
    ap.add_argument("--train-every", type=int, default=0,
                    help="quality: train on every K-th block of 2,000 characters of the training split")
    ap.add_argument("--train-eval-tokens", type=int, default=1 << 17)
    ap.add_argument("--eval-every", type=int, default=0, help="quality: [default: only at the end]")
    ap.add_argument("--seed", type=int, default=1337)
    a = ap.parse_args()
    a.steps = a.steps or (5 if a.mode == "speed" else 2000)
    base = {"layers": a.layers, "hidden": a.hidden, "batch_size": a.batch_size, "seq_len": a.seq_len,
            "embed_dim": a.embed_dim or min(256, max(64, a.hidden // 4)), "lr": a.lr}
    variants = [parse_variant(t, base) for t in a.variants]
    import torch

    from charnn.machine import cpu_bf16

    print(f"# levers {a.mode} {date.today()}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {a.threads} threads, torch {torch.__version__}, native bf16 "
          f"{cpu_bf16()}; {' '.join(sys.argv[1:])}", file=sys.stderr)
    (speed if a.mode == "speed" else quality)(a, variants)


if __name__ == "__main__":
    main()
