"""ONNX: the step module through torch's exporter (torch.export based), with a dynamic batch
dimension N, the JSON document as metadata "charnn", written atomically."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from charnn.errors import CharnnError


def write(step: Any, example: tuple, out: Path, doc: dict[str, Any], opset: int) -> None:
    import torch

    from charnn.atomic import atomic_path

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise CharnnError("--format onnx needs onnx and onnxscript: pip install 'charnn[export]'") from None
    names = ["ids", "state", "cond"][:len(example)]
    n = torch.export.Dim("N", min=1, max=1 << 16)
    dynamic = ({0: n}, {1: n}, {0: n})[:len(example)]
    with quiet():
        try:
            program = torch.onnx.export(step, example, dynamo=True, verbose=False, input_names=names,
                                        output_names=["logits", "state_out"], dynamic_shapes=dynamic,
                                        opset_version=opset)
        except Exception as e:   # the exporter's errors are long; its first line says what failed
            raise CharnnError(f"the ONNX exporter failed: {str(e).strip().splitlines()[0][:200]}") from None
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = "charnn", json.dumps(doc, ensure_ascii=False)
    proto.producer_name = "charnn"
    with atomic_path(out) as pending:
        onnx.save_model(proto, pending.tmp)


@contextlib.contextmanager
def quiet():
    """The exporter's progress lines, warnings and log notes stay off stdout (data only) and,
    unless something fails, off stderr too."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)
