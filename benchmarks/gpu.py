"""GPU training throughput: `charnn train --device cuda` (cuDNN LSTM, bf16 autocast) beside the
GPU's own bf16 matmul peak, measured in the same run.

For each shape it runs a real `charnn train` subprocess on tinyshakespeare and reads chars/s
from its metrics log (the loop's median, as benchmarks/train_speed.py does), then reports the
training FLOP/s (6 FLOPs per multiply-add: forward + backward) as a share of the measured
bf16 matmul peak (8192 x 8192). Also batch-1 sampling chars/s on the GPU for the 2x512 model.

    .venv/bin/python benchmarks/gpu.py                       # needs an NVIDIA GPU
    .venv/bin/python benchmarks/gpu.py --shapes 2x512 3x1024 --batch-size 64 --seq-len 256

On a machine without CUDA it says so and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import CORPUS, charnn_run  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from charnn.training.autosize import flops_per_token  # noqa: E402


def bf16_peak(n: int = 8192, reps: int = 50) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def sample_speed(length: int = 2000) -> float:
    from charnn.config import ModelConfig, SampleConfig
    from charnn.model import RNNLM
    from charnn.sampling.generate import generate
    from charnn.tokenizers.char import CharTokenizer

    text = CORPUS.read_text(encoding="utf-8")
    tok = CharTokenizer(sorted(set(text)))
    model = RNNLM(ModelConfig(vocab_size=tok.vocab_size, layers=2, hidden=512)).cuda()
    cfg = SampleConfig(length=length, temperature=0.8, prime="ROMEO:", seed=0)
    for _ in generate(model, tok, SampleConfig(length=50, prime="ROMEO:", seed=0), device="cuda"):
        pass
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = sum(len(p[0]) for p in generate(model, tok, cfg, device="cuda"))
    torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["2x512", "3x1024"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--embed-dim", type=int, default=256)
    ap.add_argument("--steps", type=int, default=400)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.stderr.write("error: no CUDA GPU here; this benchmark needs one\n")
        raise SystemExit(1)
    name = torch.cuda.get_device_name(0)
    peak = bf16_peak()
    text = CORPUS.read_text(encoding="utf-8")
    V, B, T, E = len(set(text)), a.batch_size, a.seq_len, a.embed_dim
    print(f"# gpu {date.today()}: {name}, torch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}; {CORPUS.name}, B={B} T={T} E={E}, bf16 autocast")
    print(f"# command: .venv/bin/python benchmarks/gpu.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"bf16 matmul peak (8192^2): {peak / 1e12:.0f} TFLOP/s")
    for shape in a.shapes:
        L, H = (int(v) for v in shape.split("x"))
        c = charnn_run(CORPUS, L, H, E, B, T, a.steps, a.steps // 2, ["--device", "cuda"])
        fpt = flops_per_token(V, E, H, L)
        print(f"{shape}: charnn train {c['loop']:,.0f} chars/s = {c['loop'] * fpt / 1e12:.1f} TFLOP/s, "
              f"{100 * c['loop'] * fpt / peak:.1f}% of the bf16 peak")
    print(f"sampling, 2x512, batch 1, on the GPU: {sample_speed():,.0f} chars/s "
          f"(CPU threads {os.cpu_count()}: compare benchmarks/sample_speed.py)")


if __name__ == "__main__":
    main()
