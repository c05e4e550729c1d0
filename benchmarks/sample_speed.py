"""Batch-1 streaming generation speed, charnn's sampler against the naive loop, in one run.

    python benchmarks/sample_speed.py [--hidden 512 --layers 2 --vocab 65 --chars 2000 --repeat 7]
                                      [--checkpoint RUN] [--cells lstm,gru,rnn] [--json]

The model is a (layers x hidden) network with vocabulary --vocab and random weights (speed does
not depend on their values), or the model of --checkpoint. Each figure is chars/s for --chars
characters at batch 1, the best of --repeat runs, with the runs of all paths interleaved so
that machine noise hits them alike:

  naive       the loop that calls the model (nn.Embedding -> nn.LSTM -> nn.Linear) once per
              character, then softmax + torch.multinomial, and decodes the character. nn.LSTM
              pays oneDNN's set-up on every call, so it is the slow reference...
  cell        ...and the textbook loop on nn.LSTMCell (GRUCell, RNNCell) layers holding the same
              weights, which does not: the fair reference for a step-wise loop
  fp32        charnn.sampling.stepper.generate: Stepper + Picker + stream decoding + a --stop filter,
              exactly what `charnn sample` runs (timed from its first character, so the prime and
              the set-up are left out; the set-up is shown apart)
  int8        the same with quantize="int8" (`charnn sample --quantize int8`)
  x8          --num-samples 8: eight streams as one batch (chars/s over all eight)

Targets (issue 5): fp32 >= 2,000 chars/s and >= 10x naive for the 2x512 LSTM; int8 >= 2x fp32.
The breakdown shows where a step's time goes: the matrix products alone (the same products on
the same buffers), the rest of the step (gate nonlinearities, the table lookup), and what
generate adds (sampling, decoding, the stop filter). Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
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
    ap.add_argument("--embed-dim", type=int, default=128)
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument("--chars", type=int, default=2000, help="characters per timed run")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the main figures")
    ap.add_argument("--checkpoint", help="time this trained model instead (its cell only)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from charnn.config import ModelConfig, SampleConfig
    from charnn.model import RNNLM
    from charnn.tokenizers.char import CharTokenizer

    torch.set_num_threads(args.threads)
    if args.checkpoint:
        from charnn import checkpoint

        model, tok = checkpoint.build_model(checkpoint.load(args.checkpoint))
        models = {model.cfg.cell: model.eval()}
    else:
        chars = [chr(32 + i) for i in range(args.vocab - 1)] + ["\n"]     # 65: like tinyshakespeare
        tok = CharTokenizer(sorted(chars))
        models = {}
        for cell in args.cells.split(","):
            torch.manual_seed(0)
            models[cell] = RNNLM(ModelConfig(vocab_size=tok.vocab_size, cell=cell, layers=args.layers,
                                             hidden=args.hidden, embed_dim=args.embed_dim)).eval()
    # a --stop text that never occurs, so the filter does its work on every character
    cfg = SampleConfig(length=args.chars, temperature=0.8, prime="\n", seed=0, stop="\x00\x01")
    rows, breakdown = [], {}
    for cell, model in models.items():
        results = measure(model, tok, cfg, args.repeat)
        results.update(threads_check(model, tok, cfg, args))
        rows.append((cell, model, results))
        if cell == next(iter(models)):
            breakdown = step_breakdown(model, tok, cfg, args.repeat)

    machine = {"cores": os.cpu_count(), "cpu": cpu_name(), "torch": torch.__version__,
               "threads": args.threads, "date": datetime.datetime.now().isoformat(timespec="minutes"),
               "python": platform.python_version()}
    command = "python benchmarks/sample_speed.py " + " ".join(sys.argv[1:])
    if args.json:
        print(json.dumps({"command": command, "machine": machine, "breakdown_us": breakdown,
                          "results": {cell: r for cell, _, r in rows}}))
        return
    print(f"command: {command.strip()}")
    print(f"machine: {machine['cores']} cores ({machine['cpu']}), torch {machine['torch']}, "
          f"python {machine['python']}, {args.threads} thread(s), {machine['date']}")
    for cell, model, r in rows:
        c = model.cfg
        fp32_mb, int8_mb = _weight_bytes(model)
        print(f"\n{c.layers}x{c.hidden} {cell}, vocabulary {c.vocab_size}: the step reads {fp32_mb:.1f} MB "
              f"of fp32 weights ({int8_mb:.1f} MB as int8) per character")
        print(f"  {'path':<34} {'chars/s':>9} {'us/char':>8} {'vs naive':>9} {'vs fp32':>8}   target")
        line = lambda name, key, target="", r=r: print(  # noqa: E731
            f"  {name:<34} {r[key]:>9,.0f} {1e6 / r[key]:>8.0f} {r[key] / r['naive']:>8.1f}x "
            f"{r[key] / r['fp32']:>7.2f}x   {target}")
        line("naive: nn.LSTM once per char" if cell == "lstm" else f"naive: nn.{cell.upper()} once per char", "naive")
        line(f"textbook: nn.{cell.upper() if cell != 'lstm' else 'LSTM'}Cell loop", "cell")
        line("charnn generate, fp32", "fp32", ">= 2,000 chars/s and >= 10x naive" if cell == "lstm" else "")
        line("charnn generate, --quantize int8", "int8", ">= 2x fp32" if cell == "lstm" else "")
        line("--num-samples 8, fp32 (all streams)", "x8_fp32")
        line("--num-samples 8, int8 (all streams)", "x8_int8")
        line("fp32, 2 threads", "fp32_2threads")
        line("naive, 2 threads", "naive_2threads")
        print(f"  set-up before the first character: fp32 {r['setup_fp32'] * 1e3:.1f} ms, "
              f"int8 {r['setup_int8'] * 1e3:.1f} ms (weights arranged; int8 quantized and packed)")
        if cell == "lstm":
            ok = r["fp32"] >= 2000 and r["fp32"] >= 10 * r["naive"]
            print(f"  fp32: {r['fp32']:,.0f} chars/s, {r['fp32'] / r['naive']:.1f}x the nn.LSTM loop, "
                  f"{r['fp32'] / r['cell']:.1f}x the nn.LSTMCell loop -> "
                  f"{'meets' if ok else 'MISSES'} the target; int8 {r['int8'] / r['fp32']:.2f}x fp32 -> "
                  f"{'meets' if r['int8'] >= 2 * r['fp32'] else 'MISSES'} >= 2x")
    if breakdown:
        cell = next(iter(models))
        print(f"\nwhere a character's time goes ({cell}, us, best of {max(10, 2 * args.repeat)} short runs):")
        print(f"  {'':<48} {'fp32':>7} {'int8':>7}")
        for name, key in (("matrix products (same shapes, same buffers)", "matmul"),
                          ("rest of the step (lookup, gate nonlinearities)", "rest_of_step"),
                          ("sampling + decoding + stop filter", "generate_overhead"),
                          ("whole generate step", "total")):
            print(f"  {name:<48} {breakdown['none'][key]:>7.1f} {breakdown['int8'][key]:>7.1f}")
        if any(v < 0 for b in breakdown.values() for v in b.values()):
            print("  (a negative part: the machine was too busy for this breakdown to be read closely)")
        print("  (the weights of a 2x512 model, 12 MB fp32, fit in this CPU's last-level cache, so "
              "the matrix products run at cache, not DRAM, bandwidth)")


def measure(model, tok, cfg, repeat: int) -> dict:
    best: dict[str, float] = {}
    setup: dict[str, float] = {}
    for _ in range(repeat):
        for name, fn in (("naive", lambda: naive(model, tok, cfg.length)),
                         ("cell", lambda: cellwise(model, tok, cfg.length)),
                         ("fp32", lambda: fast(model, tok, cfg, "none", setup)),
                         ("int8", lambda: fast(model, tok, cfg, "int8", setup)),
                         ("x8_fp32", lambda: fast(model, tok, _n(cfg, 8), "none", {}) * 8),
                         ("x8_int8", lambda: fast(model, tok, _n(cfg, 8), "int8", {}) * 8)):
            # (8 streams: a quarter of the steps, as many characters)
            best[name] = max(best.get(name, 0.0), fn())
    return {**best, "setup_fp32": setup["none"], "setup_int8": setup["int8"]}


def threads_check(model, tok, cfg, args) -> dict:
    """fp32 generate and the naive loop with 2 threads, to show what a second thread does."""
    import dataclasses

    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        best = {"fp32_2threads": 0.0, "naive_2threads": 0.0}
        for _ in range(3):
            short = dataclasses.replace(cfg, length=max(50, cfg.length // 4))
            best["fp32_2threads"] = max(best["fp32_2threads"], fast(model, tok, short, "none", {}))
            best["naive_2threads"] = max(best["naive_2threads"], naive(model, tok, 100))
    finally:
        torch.set_num_threads(old)
    return best


def _n(cfg, n):
    import dataclasses

    return dataclasses.replace(cfg, num_samples=n, length=max(50, cfg.length // 4))


def naive(model, tok, n: int) -> float:
    """The textbook loop: the whole model once per character, multinomial, decode."""
    import torch

    n = min(n, 300)   # it is slow; 300 characters time it well enough
    with torch.no_grad():
        state = model.init_state(1)
        x = torch.tensor([[tok.id_of("\n")]])
        out = []
        t = time.perf_counter()
        for _ in range(n):
            logits, state = model(x, state)                                       # (1, 1, V)
            x = torch.multinomial((logits[:, -1] / 0.8).softmax(-1), 1)          # (1, 1)
            out.append(tok.decode([int(x)]))
        return n / (time.perf_counter() - t)


def cellwise(model, tok, n: int) -> float:
    """The textbook step-wise loop: a stack of nn.LSTMCell (GRUCell, RNNCell) holding the
    model's weights, called once per layer per character; softmax + multinomial; decode."""
    import torch
    from torch import nn

    cfg, rnn = model.cfg, model.rnn
    kind = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[cfg.cell]
    cells = []
    for l in range(cfg.layers):
        c = kind(cfg.embed_dim if l == 0 else cfg.hidden, cfg.hidden)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(c, name).data.copy_(getattr(rnn, f"{name}_l{l}").data)
        cells.append(c.eval())
    n = min(n, 600)
    with torch.no_grad():
        h = [torch.zeros(1, cfg.hidden) for _ in cells]
        c_ = [torch.zeros(1, cfg.hidden) for _ in cells]
        x = torch.tensor([tok.id_of("\n")])
        out = []
        t = time.perf_counter()
        for _ in range(n):
            inp = model.embed(x)                                                  # (1, E)
            for l, cell in enumerate(cells):
                if cfg.cell == "lstm":
                    h[l], c_[l] = cell(inp, (h[l], c_[l]))
                else:
                    h[l] = cell(inp, h[l])
                inp = h[l]                                                        # (1, H)
            logits = model.head(inp)                                              # (1, V)
            x = torch.multinomial((logits / 0.8).softmax(-1), 1)[0]               # (1,)
            out.append(tok.decode([int(x)]))
        return n / (time.perf_counter() - t)


def fast(model, tok, cfg, quantize: str, setup: dict) -> float:
    """charnn.sampling.stepper.generate, timed from its first character."""
    from charnn.sampling.generate import generate

    t0 = time.perf_counter()
    it = generate(model, tok, cfg, quantize=quantize)
    next(it)
    t1 = time.perf_counter()
    setup[quantize] = min(setup.get(quantize, 1e9), t1 - t0)
    n = 1
    for _ in it:
        n += 1
    return (n - 1) / (time.perf_counter() - t1)


def step_breakdown(model, tok, cfg, repeat: int) -> dict:
    """us per character: the matrix products alone, the whole step, the whole generate step,
    each the best of many short runs, all three interleaved so that noise hits them alike."""
    import dataclasses

    import torch

    from charnn.sampling.stepper import Stepper

    out = {}
    n = 300
    short = dataclasses.replace(cfg, length=n)
    for quantize in ("none", "int8"):
        s = Stepper(model, quantize=quantize)
        ids = torch.zeros(1, dtype=torch.long)
        mm = step = total = 1e9
        for _ in range(max(10, 2 * repeat)):
            t = time.perf_counter()
            with torch.inference_mode():
                for _ in range(n):
                    _products(s)
            mm = min(mm, (time.perf_counter() - t) / n * 1e6)
            t = time.perf_counter()
            for _ in range(n):
                s.step(ids)
            step = min(step, (time.perf_counter() - t) / n * 1e6)
            total = min(total, 1e6 / fast(model, tok, short, quantize, {}))
        out[quantize] = {"matmul": mm, "rest_of_step": step - mm, "generate_overhead": total - step,
                         "total": total}
    return out


def _products(s) -> None:
    """The matrix products of one Stepper step, nothing else."""
    for l in range(s.layers):
        if s.cell == "gru":
            if l > 0:
                s.inp[l].into(s.h_l[l - 1], s.gates)
            s.rec[l].into(s.h_l[l], s.gh)
        elif l == 0:
            s.rec[0].add_into(s.h_l[0], s.gates)
        else:
            s.inp[l].into(s.xh_l[l], s.gates)
    x = s.h_l[-1]
    if s.proj is not None:
        s.proj.into(x, s.top)
        x = s.top
    s.head.into(x, s.logits)


def _weight_bytes(model) -> tuple[float, float]:
    """MB of weights one step reads (the layer-0 input part is a table row: not counted)."""
    c = model.cfg
    G = {"lstm": 4, "gru": 3, "rnn": 1}[c.cell] * c.hidden
    n = G * c.hidden + (c.layers - 1) * G * 2 * c.hidden + model.head.weight.numel()
    return n * 4 / 1e6, n / 1e6


if __name__ == "__main__":
    main()
