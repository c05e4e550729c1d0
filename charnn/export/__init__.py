"""`charnn export`: a trained model as a file that runs without charnn.

    from charnn.export import export
    done = export(run, "onnx", "lee.onnx")      # writes lee.onnx and lee.vocab.json

Both formats hold one step of the model (charnn.export.step.StepModel):
    (ids (N,) int64, state (S, N, H) float32[, cond (N, bow_dim)]) -> (logits (N, V), state_out (S, N, H))
so a caller runs the sampling loop itself, in any language onnxruntime (or libtorch) has. The
vocabulary and the shapes (charnn.export.vocab) go beside the model as FILE-STEM.vocab.json, and
inside it as well: ONNX metadata "charnn", TorchScript extra file "charnn.json".

    onnx         torch's ONNX exporter (torch.export based; needs onnx and onnxscript)
    torchscript  torch.jit.trace, loadable with plain torch.jit.load

After writing, the file is loaded back with its own runtime (onnxruntime, torch.jit.load) and
stepped CHECK_STEPS times beside charnn's model: the largest logit difference is reported, and
an export that disagrees by more than TOLERANCE is an error, not a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charnn.errors import CharnnError

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 18
CHECK_STEPS = 40
TOLERANCE = 1e-3


@dataclass
class Exported:
    model: Path                  # the model file
    vocab: Path                  # the JSON beside it
    max_diff: float | None       # largest |logit difference| against charnn over the check, None if not run
    checked_with: str            # the runtime that ran the check, or why none did


def export(run: Any, fmt: str, out: str | Path, opset: int = DEFAULT_OPSET) -> Exported:
    """Write `run` (charnn.run.Run) in format `fmt` to `out`, its vocabulary beside it, and check it."""
    import torch

    from charnn.atomic import write_text
    from charnn.export.step import StepModel
    from charnn.export.vocab import describe

    if fmt not in FORMATS:
        raise CharnnError(f"unknown --format {fmt!r}: choose one of {', '.join(FORMATS)}", 2)
    out = Path(out)
    vocab = vocab_path(out)
    if out.is_dir():
        raise CharnnError(f"{out} is a folder: -o names the model file to write, e.g. {out / run.name}.onnx", 2)
    if not out.parent.is_dir():
        raise CharnnError(f"{out.parent}: no such folder", 2)
    step = StepModel(run.model).eval()
    doc = describe(run, step.state_size)
    doc["file"], doc["file_format"] = out.name, fmt
    example = example_inputs(step, run, 2)
    with torch.no_grad():
        if fmt == "onnx":
            from charnn.export.to_onnx import write
        else:
            from charnn.export.to_torchscript import write
        write(step, example, out, doc, opset)
    write_text(vocab, to_json(doc))
    diff, runtime = check(run, out, fmt, example)
    return Exported(out, vocab, diff, runtime)


def to_json(doc: dict[str, Any]) -> str:
    """One top-level key per line, each value on its line (readable, and a vocabulary of
    thousands of tokens stays one line rather than thousands)."""
    lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in doc.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def vocab_path(out: Path) -> Path:
    """lee.onnx -> lee.vocab.json (beside it; never the model's own name)."""
    return out.with_name((out.stem if out.suffix else out.name) + ".vocab.json")


def example_inputs(step: Any, run: Any, n: int) -> tuple:
    """Inputs for a batch of n streams at the zero state: (ids, state[, cond])."""
    import torch

    cfg = run.config
    ids = torch.zeros(n, dtype=torch.long)
    state = torch.zeros(step.state_size, n, cfg.hidden)
    return (ids, state, torch.zeros(n, cfg.bow_dim)) if cfg.input == "bow" else (ids, state)


def check(run: Any, path: Path, fmt: str, example: tuple, steps: int = CHECK_STEPS) -> tuple[float | None, str]:
    """Step the written file and charnn's model (its fused forward) through the same random
    tokens; returns (largest |logit difference|, the runtime used). Raises if they disagree."""
    import torch

    from charnn.export.runtimes import runner

    run_step, name = runner(path, fmt)
    if run_step is None:
        return None, name
    g = torch.Generator().manual_seed(0)
    n, V = example[0].shape[0], run.tokenizer.vocab_size
    ids = torch.randint(0, V, (n, steps), generator=g)                          # (n, T)
    cond = torch.rand(n, run.config.bow_dim, generator=g) if len(example) == 3 else None
    with torch.no_grad():
        want, _ = run.model(ids, None, cond)                                    # (n, T, V)
    state, worst = example[1].numpy(), 0.0
    for t in range(steps):
        extra = [cond.numpy()] if cond is not None else []
        logits, state = run_step(ids[:, t].numpy(), state, *extra)
        worst = max(worst, float(abs(logits - want[:, t].numpy()).max()))
    if not worst <= TOLERANCE:
        raise CharnnError(f"the exported model disagrees with charnn's by {worst:.3g} in its logits "
                          f"(over {steps} steps with {name}); the file was written but should not be used")
    return worst, name
