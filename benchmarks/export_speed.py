"""Batch-1 sampling speed of an exported model beside charnn's own sampler, same model, same run.

    python benchmarks/export_speed.py [--hidden 512 --layers 2 --vocab 65 | --checkpoint RUN]
                                      [--chars 2000] [--repeat 5] [--json]

The model (random weights, or --checkpoint's) is exported with `charnn export` to ONNX and to
TorchScript, then each path samples --chars characters at batch 1 from a one-character prime,
temperature 0.8, 1 thread, the best of --repeat runs with the paths interleaved:

  charnn fp32    charnn.sampling.generate (the Stepper + Picker + decoding): `charnn sample`
  onnxruntime    session.run per character on numpy arrays (intra-op threads 1), picking in
                 numpy (softmax, cumulative sum, a pre-drawn uniform), decoding token_bytes:
                 the loop of docs/export.md, tightened
  torchscript    torch.jit.load's module per character, picking in torch the same way

Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import cpu_name  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=65)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--checkpoint", help="time this trained run instead of a random model")
    ap.add_argument("--chars", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    run = load_run(args)
    from charnn.export import export

    with tempfile.TemporaryDirectory(prefix="export_speed.") as tmp:
        onnx_file = export(run, "onnx", Path(tmp) / "m.onnx").model
        ts_file = export(run, "torchscript", Path(tmp) / "m.pt").model
        paths = {"charnn fp32": charnn_sampler(run, args.chars), "onnxruntime": onnx_sampler(onnx_file, args.chars),
                 "torchscript": torchscript_sampler(ts_file, run, args.chars)}
        best = {name: float("inf") for name in paths}
        for _ in range(args.repeat):
            for name, sample in paths.items():
                best[name] = min(best[name], sample())
    rates = {name: args.chars / secs for name, secs in best.items()}
    cfg = run.config
    print(f"# export_speed: python {' '.join(sys.argv)}")
    print(f"# {datetime.datetime.now():%Y-%m-%d %H:%M}, {cpu_name()}, Python {platform.python_version()}, "
          f"torch {torch.__version__}, onnxruntime {ort_version()}, 1 thread")
    print(f"# model: {args.checkpoint or 'random weights'}, {cfg.layers}x{cfg.hidden} {cfg.cell}, vocab "
          f"{cfg.vocab_size}; {args.chars} chars at batch 1, best of {args.repeat}")
    print(f"{'path':<14} {'chars/s':>9} {'x charnn':>9}")
    for name, rate in rates.items():
        print(f"{name:<14} {rate:>9,.0f} {rate / rates['charnn fp32']:>8.2f}x")
    if args.json:
        print(json.dumps({"argv": sys.argv, "chars_per_s": rates}))


def load_run(args: argparse.Namespace):
    import torch

    from charnn.config import ModelConfig
    from charnn.model import RNNLM
    from charnn.run import Run, load
    from charnn.tokenizers.char import CharTokenizer

    if args.checkpoint:
        return load(args.checkpoint)
    tok = CharTokenizer(sorted([chr(32 + i) for i in range(args.vocab - 1)] + ["\n"]))
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(vocab_size=tok.vocab_size, cell=args.cell, layers=args.layers, hidden=args.hidden,
                              embed_dim=128)).eval()
    return Run(Path("/random/bench/best.pt"), {"progress": {}}, model, tok)


def charnn_sampler(run, chars: int):
    from charnn.config import SampleConfig
    from charnn.sampling.generate import generate

    cfg = SampleConfig(length=chars, temperature=0.8, prime="\n", seed=0)

    def sample() -> float:
        pieces = generate(run.model, run.tokenizer, cfg)
        next(pieces)                                   # timed from the first character, as sample_speed
        t0 = time.perf_counter()
        for _ in pieces:
            pass
        return (time.perf_counter() - t0) * chars / (chars - 1)

    return sample


def onnx_sampler(path: Path, chars: int):
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["charnn"])
    token_bytes = [bytes.fromhex(b) for b in meta["token_bytes"]]

    def sample() -> float:
        rng = np.random.default_rng(0)
        u = rng.random(chars)
        state = np.zeros((meta["state_shape"][0], 1, meta["hidden"]), np.float32)
        ids = np.array([meta["newline_id"] or 0], np.int64)
        out = bytearray()
        t0 = time.perf_counter()
        for t in range(chars):
            logits, state = session.run(None, {"ids": ids, "state": state})
            p = np.exp((logits[0] - logits[0].max()) * 1.25)               # temperature 0.8
            cdf = np.cumsum(p)
            ids[0] = min(int(np.searchsorted(cdf, u[t] * cdf[-1], side="right")), len(cdf) - 1)
            out += token_bytes[ids[0]]
        out.decode("utf-8", "replace")
        return time.perf_counter() - t0

    return sample


def torchscript_sampler(path: Path, run, chars: int):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path))
    tok = run.tokenizer
    S = 2 * run.config.layers if run.config.cell == "lstm" else run.config.layers

    def sample() -> float:
        g = torch.Generator().manual_seed(0)
        u = torch.rand(chars, generator=g)
        state = torch.zeros(S, 1, run.config.hidden)
        ids = torch.tensor([tok.id_of("\n") or 0])
        decoder, text = tok.stream_decoder(), []
        t0 = time.perf_counter()
        with torch.no_grad():
            for t in range(chars):
                logits, state = module(ids, state)
                cdf = torch.softmax(logits * 1.25, -1).cumsum(-1)
                ids = torch.searchsorted(cdf, u[t:t + 1].unsqueeze(0) * cdf[:, -1:], right=True).squeeze(1)
                ids.clamp_(max=cdf.shape[1] - 1)
                text.append(decoder.push(int(ids)))
        return time.perf_counter() - t0

    return sample


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    main()
