"""Training throughput: `charnn train` beside a plain PyTorch loop, measured in the same run.

The reference is the loop everybody writes (pytorch/examples word_language_model): nn.Embedding
-> nn.LSTM -> nn.Linear, cross-entropy, backward, clip the gradient norm, AdamW, detach the
state, over B parallel streams of tinyshakespeare. charnn runs as a real `charnn train`
subprocess on the same text with the same shape, and its figures come from its own metrics log:

  loop chars/s     the median of the step records (each covers 10 steps: data, forward,
                   backward, clip, step, progress and logging included)
  with evals       training tokens / wall time over the whole loop, periodic evaluations and
                   checkpoint saves included (the run evaluates every --eval-every steps)
  amortised        what one evaluation + save costs, spread over the default 500 steps

Also printed: the fp32 matmul peak of this machine (1024 x 1024, the same run) and charnn's
training FLOP/s as a share of it (6 FLOPs per multiply-add: forward + backward).

    .venv/bin/python benchmarks/train_speed.py                    # 2x512 and 2x128
    .venv/bin/python benchmarks/train_speed.py --shapes 2x512 --steps 60
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

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"

from charnn.training.autosize import flops_per_token  # noqa: E402


def matmul_peak(n: int = 1024, reps: int = 30) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


class PlainLM(nn.Module):
    def __init__(self, V: int, E: int, H: int, L: int):
        super().__init__()
        self.embed, self.rnn, self.head = nn.Embedding(V, E), nn.LSTM(E, H, L, batch_first=True), nn.Linear(H, V)

    def forward(self, x, state):
        out, state = self.rnn(self.embed(x), state)       # (B, T, H)
        return self.head(out), state                      # (B, T, V)


def plain_loop(text: str, L: int, H: int, E: int, B: int, T: int, steps: int) -> float:
    """chars/s of the plain loop: the median over windows of 10 steps after 3 warm-up steps,
    the statistic charnn's metrics log gives (see charnn_run)."""
    chars = sorted(set(text))
    lut = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([lut[c] for c in text[: len(text) * 9 // 10]], dtype=torch.long)
    streams = ids[: len(ids) // B * B].view(B, -1)                       # (B, L)
    torch.manual_seed(0)
    model = PlainLM(len(chars), E, H, L)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    state, pos, t0, windows = None, 0, 0.0, []
    for i in range(steps + 3):
        if i >= 3 and (i - 3) % 10 == 0:
            if i > 3:
                windows.append(10 * B * T / (time.perf_counter() - t0))
            t0 = time.perf_counter()
        if pos + T + 1 > streams.shape[1]:
            pos, state = 0, None
        x, y = streams[:, pos:pos + T], streams[:, pos + 1:pos + T + 1]
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = tuple(s.detach() for s in state)
        pos += T
    return statistics.median(windows)


def charnn_run(corpus: Path, L: int, H: int, E: int, B: int, T: int, steps: int, eval_every: int,
               extra: list[str] = ()) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, CHARNN_CACHE=str(Path(tmp) / "cache"),
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "charnn", "train", str(corpus), "--out", str(run),
               "--layers", str(L), "--hidden", str(H), "--embed-dim", str(E), "--batch-size", str(B),
               "--seq-len", str(T), "--max-steps", str(steps), "--eval-every", str(eval_every),
               "--quiet", "--json", *extra]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise SystemExit(f"charnn train failed: {p.stderr[-2000:]}")
        recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    steps_r = [r for r in recs if r["event"] == "step"]
    eval_steps = [r["step"] for r in recs if r["event"] == "eval" and not r["final"]]
    # windows between consecutive step records: (seconds, steps, chars/s, holds a periodic eval);
    # an evaluation at step s runs after the step-s record, so its time lands in the next window
    wins = [(r["elapsed"] - prev["elapsed"], r["step"] - prev["step"], r["chars_per_sec"],
             any(prev["step"] <= s < r["step"] for s in eval_steps))
            for prev, r in zip(steps_r, steps_r[1:])]
    clean = [w for w in wins if not w[3]]
    step_s = statistics.median(dt / n for dt, n, _, _ in clean)
    gaps = [dt - n * step_s for dt, n, _, has_eval in wins if has_eval]   # eval + save time
    first, last = steps_r[0], steps_r[-1]
    return {"loop": statistics.median(c for _, _, c, _ in clean), "step_s": step_s,
            "whole": (last["step"] - first["step"]) * B * T / (last["elapsed"] - first["elapsed"]),
            "eval_save_s": statistics.median(gaps) if gaps else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["2x512", "2x128"], help="LxH, e.g. 2x512")
    ap.add_argument("--steps", type=int, default=0, help="steps per run (default: by shape)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--embed-dim", type=int, default=128)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    a = ap.parse_args()
    text = a.corpus.read_text(encoding="utf-8")
    V, B, T, E = len(set(text)), a.batch_size, a.seq_len, a.embed_dim
    peak = matmul_peak()
    print(f"# train_speed {date.today()}: {platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; {a.corpus.name}, B={B} T={T} E={E}")
    print(f"# command: .venv/bin/python benchmarks/train_speed.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"fp32 matmul peak (1024^2): {peak / 1e9:.0f} GFLOP/s")
    for shape in a.shapes:
        L, H = (int(v) for v in shape.split("x"))
        steps = a.steps or (80 if H >= 512 else 300)
        every = steps // 2
        fpt = flops_per_token(V, E, H, L)
        # plain, charnn, plain: the reference brackets charnn so drift in machine speed shows
        p1 = plain_loop(text, L, H, E, B, T, steps // 2)
        c = charnn_run(a.corpus, L, H, E, B, T, steps, every)
        p2 = plain_loop(text, L, H, E, B, T, steps // 2)
        ref = (p1 + p2) / 2
        amort = c["eval_save_s"] / (500 * c["step_s"] + c["eval_save_s"])
        print(f"{shape}: plain loop {ref:,.0f} chars/s ({p1:,.0f} before, {p2:,.0f} after); "
              f"charnn train loop {c['loop']:,.0f} chars/s = {100 * c['loop'] / ref:.1f}% of plain "
              f"(target >= 95%), {100 * c['loop'] * fpt / peak:.0f}% of matmul peak; "
              f"with an evaluation + save every {every} steps {c['whole']:,.0f} chars/s; one "
              f"evaluation + save costs {c['eval_save_s']:.1f}s = {100 * amort:.1f}% at the default "
              f"--eval-every 500")


if __name__ == "__main__":
    main()
