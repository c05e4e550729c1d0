"""charnn export: a trained model as an ONNX or TorchScript file that runs without charnn."""

from __future__ import annotations

import sys
from typing import Optional

import typer

Opt = typer.Option


def register(app: typer.Typer) -> None:
    from charnn.commands.guard import guard

    app.command(
        "export",
        short_help="Write a model as ONNX or TorchScript, to run without charnn (onnxruntime, torch.jit.load).",
        help="Write a trained model as a file that runs without charnn: one step of the model, "
        "(token ids, state) -> (logits, state), in ONNX (for onnxruntime in any language) or "
        "TorchScript (torch.jit.load). The vocabulary and the shapes go beside it as "
        "FILE-STEM.vocab.json (and inside it as metadata). The file is loaded back and checked "
        "against charnn's own logits. The paths written go to stdout.\n\n"
        "Example: charnn export checkpoints/shakespeare --format onnx -o shakespeare.onnx",
    )(guard(export_cmd))


def export_cmd(
    run: Optional[str] = typer.Argument(None, help="Run folder or checkpoint. [default: newest under checkpoints/]"),
    fmt: str = Opt(..., "--format", "-f", help="onnx or torchscript."),
    out: str = Opt(..., "--out", "-o", help="The model file to write, e.g. model.onnx; the vocabulary goes "
                   "beside it as model.vocab.json."),
    opset: int = Opt(18, help="ONNX opset version (onnxruntime 1.14 and later run 18)."),
    json_out: bool = Opt(False, "--json", help="Print what was written, and the check, as JSON."),
):
    from charnn.errors import CharnnError

    fmt = fmt.lower()
    if fmt not in ("onnx", "torchscript"):
        raise CharnnError(f"unknown --format {fmt!r}: choose onnx or torchscript", 2)
    if not 7 <= opset <= 30:
        raise CharnnError("--opset must be between 7 and 30", 2)
    from charnn.export import export
    from charnn.run import load

    done = export(load(run), fmt, out, opset)
    check = (f"checked with {done.checked_with}: logits within {done.max_diff:.1e} of charnn's"
             if done.max_diff is not None else done.checked_with)
    if json_out:
        from charnn.commands.common import write_json

        write_json({"model": str(done.model), "vocab": str(done.vocab), "format": fmt,
                    "max_logit_diff": done.max_diff, "checked_with": done.checked_with})
        return
    sys.stderr.write(f"{check}\n")
    sys.stdout.write(f"{done.model}\n{done.vocab}\n")
